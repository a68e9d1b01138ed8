"""cql_sac_make_dataset: write a D4RL-style RLDS dataset from the real simulator or a D4RL file.

  cql_sac_make_dataset --env_name=hopper-medium-v2 --policy=random --num_steps=5000 \
      --output_dir=/tmp/hopper_random
  cql_sac_make_dataset --env_name=hopper-medium-v2 --policy=/runs/1/policies/greedy_policy ...
  cql_sac_make_dataset --env_name=hopper-medium-v2 --from_hdf5=hopper_medium-v2.hdf5 \
      --output_dir=/tmp/hopper_medium
  cql_sac_make_dataset --quickstart --output_dir=/tmp/quickstart  # The README's quickstart data.
  cql_sac_make_dataset --env_name=hopper-medium-v2 --format=minari \
      --output_dir=$MINARI_DATASETS_PATH/cql_sac/hopper-random-v0  # minari.load_dataset loads it.

Train on the result with `--dataset_name=<output_dir>`.
"""

import sys

from absl import app
from absl import flags

from cql_sac.datasets import hdf5
from cql_sac.recording import collect

_ENV_NAME = flags.DEFINE_string('env_name', None, 'D4RL name, e.g. hopper-medium-v2 '
                                '(required unless --quickstart).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'New directory for the dataset.',
                                  required=True)
_POLICY = flags.DEFINE_string(
    'policy', collect.RANDOM_POLICY,
    "'random', the directory of a TF-Agents policy SavedModel, or an actor weights file *.npz "
    '(cql_sac.recording.numpy_actor; the shipped Hopper one is '
    'cql_sac/recording/behavior/hopper_medium_actor.npz) to run in the environment.')
_ACTION_NOISE = flags.DEFINE_float(
    'action_noise', 0.0, 'For a .npz policy: std of Gaussian noise added to its greedy action.')
_RANDOM_ACTION_PROBABILITY = flags.DEFINE_float(
    'random_action_probability', 0.0, 'For a .npz policy: probability of a uniform-random '
    'action at each step.')
_RANDOM_EPISODE_PROBABILITY = flags.DEFINE_float(
    'random_episode_probability', 0.0, 'For a .npz policy: probability that a whole episode '
    'is uniform-random.')
_NUM_STEPS = flags.DEFINE_integer('num_steps', 1000, 'Environment steps to record.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the environment and the random policy.')
_MAX_EPISODE_STEPS = flags.DEFINE_integer(
    'max_episode_steps', None, "Time limit override; default D4RL's (1000, AntMaze umaze 700).")
_QUICKSTART = flags.DEFINE_bool(
    'quickstart', False, 'Record the quickstart dataset (cql_sac.recording.collect.'
    'QUICKSTART_DATASET: the shipped Hopper behaviour actor with noise, mixed with random '
    'episodes); sets '
    '--env_name, --policy, --num_steps and the noise flags, which must not be given.')
_FROM_HDF5 = flags.DEFINE_string(
    'from_hdf5', None, 'Convert this D4RL .hdf5 file instead of running a policy.')
_FORMAT = flags.DEFINE_enum(
    'format', 'rlds', collect.DATASET_FORMATS, "'rlds' (TFDS directory) or 'minari' (Minari's "
    'HDF5 layout, which minari.load_dataset loads; not with --from_hdf5).')
_MINARI_DATASET_ID = flags.DEFINE_string(
    'minari_dataset_id', None, "With --format=minari: the dataset id, e.g. "
    "cql_sac/hopper-random-v0; default: --output_dir relative to $MINARI_DATASETS_PATH (or "
    "~/.minari/datasets) when under it, else cql_sac/<basename of --output_dir>.")


def main(argv=None) -> None:
  """Entry point of the console script `cql_sac_make_dataset`."""
  def run(unused_argv):
    writer_format = {'dataset_format': _FORMAT.value,
                     'minari_dataset_id': _MINARI_DATASET_ID.value}
    if _QUICKSTART.value:
      given = [name for name in ('env_name', 'policy', 'num_steps', 'action_noise',
                                 'random_action_probability', 'random_episode_probability',
                                 'from_hdf5') if flags.FLAGS[name].present]
      if given:
        raise app.UsageError(f'--quickstart sets --{", --".join(given)}; drop them, or drop '
                             '--quickstart to record your own dataset.')
      path = collect.write_dataset(output_dir=_OUTPUT_DIR.value, seed=_SEED.value,
                                   **collect.QUICKSTART_DATASET, **writer_format)
    elif not _ENV_NAME.value:
      raise app.UsageError('--env_name is required (or --quickstart).')
    elif _FROM_HDF5.value:
      if _FORMAT.value != 'rlds':
        raise app.UsageError('--from_hdf5 converts to RLDS only; drop --format (Minari hosts '
                             'D4RL\'s datasets itself: minari download D4RL/...).')
      try:
        path = hdf5.convert_hdf5(_FROM_HDF5.value, _ENV_NAME.value, _OUTPUT_DIR.value)
      except ValueError as e:  # A damaged or foreign file: one line, nothing written.
        sys.exit(f'cql_sac_make_dataset: error: {e}')
    else:
      path = collect.write_dataset(_ENV_NAME.value, _POLICY.value, _NUM_STEPS.value,
                                   _OUTPUT_DIR.value, seed=_SEED.value,
                                   max_episode_steps=_MAX_EPISODE_STEPS.value,
                                   action_noise=_ACTION_NOISE.value,
                                   random_action_probability=_RANDOM_ACTION_PROBABILITY.value,
                                   random_episode_probability=_RANDOM_EPISODE_PROBABILITY.value,
                                   **writer_format)
    print(f'Wrote {"Minari" if _FORMAT.value == "minari" else "RLDS"} dataset to {path}')
  app.run(run, argv=argv)


if __name__ == '__main__':
  main()
