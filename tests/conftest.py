"""Shared pytest setup: quiet TensorFlow, the package importable from the checkout, and the
small datasets recorded in the real simulators that the binaries' tests train on."""
import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cql_sac.recording.collect import write_dataset  # pylint: disable=wrong-import-position

HOPPER_ENV_NAME = 'hopper-random-v2'


@pytest.fixture(scope='session')
def dataset_dir(tmp_path_factory):
  """A 2,000-step RLDS dataset recorded with a random policy in the real Hopper."""
  return write_dataset(HOPPER_ENV_NAME, 'random', 2000,
                       str(tmp_path_factory.mktemp('data') / 'hopper'), seed=0)


@pytest.fixture(scope='session')
def antmaze_dataset_dir(tmp_path_factory):
  """A small RLDS dataset recorded with a random policy in the real AntMaze (umaze)."""
  return write_dataset('antmaze-umaze-v2', 'random', 600,
                       str(tmp_path_factory.mktemp('data') / 'antmaze'), seed=0)
