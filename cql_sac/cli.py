"""What every console script of the package does before its own work."""

import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging


def start_main(argv: Sequence[str]) -> flags.FlagValues:
  """Checks that no positional arguments are left, logs at INFO, returns the parsed flags.

  Args:
    argv: Command-line arguments left after absl's flag parsing.

  Returns:
    `absl.flags.FLAGS`.

  Raises:
    app.UsageError: If `argv` holds anything besides the program name.
  """
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  return flags.FLAGS


def list_flags_in_help(module_name: str) -> None:
  """Makes `--help` of a console script list the flags defined in `module_name`.

  absl's `--help` lists the flags of the main module, which for a console script is the
  generated wrapper rather than the module that defines them.

  Args:
    module_name: Name of the module whose flags the binary takes (its `__name__`).
  """
  for flag in flags.FLAGS.get_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
