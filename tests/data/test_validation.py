"""Each validation error fires on a deliberately broken dataset, naming dataset, field and count."""

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import array_spec

from cql_sac.datasets import validation
from tests.data import helpers

OBSERVATION_SPEC = array_spec.ArraySpec((2,), np.float32, name='observation')
ACTION_SPEC = array_spec.BoundedArraySpec((1,), np.float32, -1.0, 1.0, name='action')
EPISODES, LENGTH = 3, 4


def _good_steps():
  """3 episodes of 4 steps; the first ends terminal, the others at the time limit."""
  position = np.tile(np.arange(LENGTH), (EPISODES, 1))
  is_last = position == LENGTH - 1
  return dict(
      observation=np.ones((EPISODES, LENGTH, 2), np.float32),
      action=np.full((EPISODES, LENGTH, 1), 0.5, np.float32),
      reward=np.ones((EPISODES, LENGTH), np.float32),
      discount=np.ones((EPISODES, LENGTH), np.float32),
      is_first=position == 0, is_last=is_last,
      is_terminal=is_last & (np.arange(EPISODES)[:, None] == 0))


def _validate(action_clipping=None, **changes):
  steps = {**_good_steps(), **changes}
  return validation.validate_episodes(helpers.make_episodes(**steps), 'toy', OBSERVATION_SPEC,
                                      ACTION_SPEC, action_clipping=action_clipping)


def test_good_dataset_stats():
  stats = _validate()
  assert (stats.num_episodes, stats.num_steps, stats.num_transitions) == (3, 12, 9)
  assert (stats.num_terminal_episodes, stats.num_truncated_episodes) == (1, 2)
  assert stats.mean_episode_return == 3.0  # The last step's reward is not part of the return.


def _with(field, index, value):
  array = _good_steps()[field].copy()
  array[index] = value
  return {field: array}


@pytest.mark.parametrize('changes, message', [
    (dict(observation=np.ones((EPISODES, LENGTH, 3), np.float32)),
     r"'toy', field 'observation': 12 elements have shape \(3,\), the environment expects \(2,\)"),
    (dict(observation=np.ones((EPISODES, LENGTH, 2), np.float64)),
     r"field 'observation': 12 elements have dtype float64, the environment expects float32"),
    (dict(action=np.ones((EPISODES, LENGTH, 2), np.float32)),
     r"field 'action': 12 elements have shape \(2,\)"),
    (dict(reward=np.ones((EPISODES, LENGTH, 1), np.float32)),
     r"field 'reward': 12 elements have shape \(1,\) instead of a scalar"),
    (_with('observation', (1, 2, 0), np.nan), r"field 'observation': 1 steps contain NaN or inf"),
    (_with('reward', (slice(None), 0), np.inf), r"field 'reward': 3 steps contain NaN or inf"),
    (_with('discount', (0, 1), 2.0), r"field 'discount': 1 steps have a discount outside"),
    (_with('action', (slice(None), 1), 1.5), r"field 'action': 3 steps have actions outside"),
    (_with('is_last', (2, 3), False), r"field 'is_last': 1 episodes have is_last missing"),
    (_with('is_first', (1, 2), True), r"field 'is_first': 1 episodes have is_first missing"),
    (_with('is_terminal', (1, 1), True), r"field 'is_terminal': 1 episodes are terminal"),
])
def test_each_error_names_dataset_field_and_count(changes, message):
  with pytest.raises(ValueError, match=message) as error:
    _validate(**changes)
  assert 'Fix:' in str(error.value)


def test_action_bounds_after_clipping():
  out_of_bounds = _with('action', (slice(None), 1), 1.5)
  assert _validate(action_clipping=(-1.0, 1.0), **out_of_bounds).num_steps == 12
  with pytest.raises(ValueError, match=r"3 steps have actions outside .* after clipping"):
    _validate(action_clipping=(-2.0, 2.0), **out_of_bounds)


def test_last_step_actions_are_not_checked():
  assert _validate(**_with('action', (slice(None), LENGTH - 1), 7.0)).num_episodes == 3


def test_empty_dataset():
  empty = {k: v[:0] for k, v in _good_steps().items()}
  with pytest.raises(ValueError,
                     match=r"'toy', field 'steps': the dataset is empty \(0 episodes, 0 steps\)"):
    _validate(**empty)


def test_missing_fields():
  steps = _good_steps()
  del steps['is_terminal']
  with pytest.raises(ValueError, match=r"step field\(s\) \['is_terminal'\] are missing"):
    validation.validate_episodes(helpers.make_episodes(**steps), 'toy', OBSERVATION_SPEC,
                                 ACTION_SPEC)
  flat = tf.data.Dataset.from_tensor_slices({'observation': np.ones((3, 2), np.float32)})
  with pytest.raises(ValueError, match=r"field 'steps' is missing from all episodes"):
    validation.validate_episodes(flat, 'toy', OBSERVATION_SPEC, ACTION_SPEC)
