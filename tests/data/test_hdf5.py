"""D4RL HDF5 -> RLDS conversion gives the same transitions as recording the episodes directly."""

import h5py
import numpy as np
import pytest

from cql_sac.datasets import hdf5
from cql_sac.datasets import loading
from cql_sac.datasets import steps as steps_lib
from cql_sac.datasets import transitions
from tests.data import helpers


def _write_d4rl_file(path, expected: helpers.Transitions, next_observations: bool) -> None:
  """Lays the recorded transitions out as D4RL does (flat arrays, terminals and timeouts)."""
  ends = expected.episode_end
  with h5py.File(path, 'w') as f:
    f['observations'] = expected.observation.astype(np.float64)  # As in medium-replay files.
    f['actions'] = expected.action
    f['rewards'] = expected.reward[:, None]  # Some D4RL files store [N, 1].
    f['terminals'] = ends & (expected.discount == 0)
    f['timeouts'] = ends & (expected.discount == 1)
    if next_observations:
      f['next_observations'] = expected.next_observation


def _converted_transitions(tmp_path, expected, next_observations):
  h5_path = str(tmp_path / 'hopper.hdf5')
  _write_d4rl_file(h5_path, expected, next_observations)
  path = hdf5.convert_hdf5(h5_path, helpers.ENV_NAME, str(tmp_path / 'rlds'))
  steps = steps_lib.read_episode_steps(loading.load_episodes(path), path)
  traj_steps = transitions.to_trajectory_steps(steps)
  return helpers.item_transitions(traj_steps.trajectory, traj_steps.items)


def test_conversion_with_next_observations_equals_direct_writing(tmp_path, hopper_dataset):
  path, expected = hopper_dataset
  direct_steps = steps_lib.read_episode_steps(loading.load_episodes(path), path)
  direct = transitions.to_trajectory_steps(direct_steps)
  helpers.assert_transitions_equal(
      _converted_transitions(tmp_path, expected, next_observations=True),
      helpers.item_transitions(direct.trajectory, direct.items))


def test_conversion_without_next_observations_drops_only_timeout_transitions(
    tmp_path, hopper_dataset):
  _, expected = hopper_dataset
  actual = _converted_transitions(tmp_path, expected, next_observations=False)
  ends = expected.episode_end
  keep = ~(ends & (expected.discount == 1))  # The last transition of time-limit episodes.
  episode_ids = np.concatenate([[0], np.cumsum(ends)[:-1]])[keep]
  episode_end = np.append(episode_ids[1:] != episode_ids[:-1], True)
  helpers.assert_transitions_equal(actual, helpers.Transitions(
      observation=expected.observation[keep], action=expected.action[keep],
      reward=expected.reward[keep], discount=expected.discount[keep],
      next_observation=np.where((ends & (expected.discount == 0))[keep, None], 0.0,
                                expected.next_observation[keep]),
      episode_end=episode_end))


def test_missing_key_and_wrong_task_raise(tmp_path, hopper_dataset):
  _, expected = hopper_dataset
  h5_path = str(tmp_path / 'broken.hdf5')
  _write_d4rl_file(h5_path, expected, next_observations=False)
  with pytest.raises(ValueError, match='walker2d-medium-v2 needs'):
    hdf5.convert_hdf5(h5_path, 'walker2d-medium-v2', str(tmp_path / 'a'))
  with h5py.File(h5_path, 'a') as f:
    del f['timeouts']
  with pytest.raises(ValueError, match=r"lacks key\(s\) \['timeouts'\]"):
    hdf5.convert_hdf5(h5_path, helpers.ENV_NAME, str(tmp_path / 'b'))
