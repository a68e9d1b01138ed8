"""cql-sac: Conservative Q-Learning (Kumar et al. 2020) for continuous control on TF-Agents."""

import contextlib
import io
import warnings

# Known-harmless noise, silenced once here so that the binaries' logs show what matters:
# - tf_agents imports the old `gym` package (cql_sac uses gymnasium), which prints its
#   "Gym has been unmaintained" banner to stderr on import and offers no switch for it;
# - PolicySaver warns for each policy it saves that loading needs the distribution type specs
#   registered, which importing tf_agents does.
with contextlib.redirect_stderr(io.StringIO()):
  import gym  # pylint: disable=unused-import,g-import-not-at-top
warnings.filterwarnings('ignore', message='Encoding a StructuredValue with type',
                        category=UserWarning)

__version__ = "0.1.0"
