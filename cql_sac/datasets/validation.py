"""Checks an RLDS dataset against the environment before training, and summarizes it.

Every check counts the bad elements and raises one ValueError that names the dataset, the field,
the count and the fix. Nothing is dropped or repaired silently.
"""

import dataclasses
from typing import Union

import numpy as np
import tensorflow as tf
from absl import logging

from cql_sac.datasets import steps as steps_lib
from cql_sac.datasets import transitions

Episodes = Union[tf.data.Dataset, steps_lib.EpisodeSteps]


@dataclasses.dataclass(frozen=True)
class DatasetStats:
  """Summary of a validated dataset (rewards are raw, before any reward_shift).

  Attributes:
    num_episodes: episodes in the dataset.
    num_steps: RLDS steps in the dataset.
    num_transitions: pairs of consecutive steps within an episode (sum of length - 1); the
      replay holds this many items, plus `num_one_step_episodes` with pad_end_of_episodes.
    num_one_step_episodes: episodes with a single step (no next observation).
    num_terminal_episodes: episodes whose last step is terminal (discount 0 into it).
    num_truncated_episodes: episodes that end without a terminal state (time limit).
    mean_episode_return: mean over episodes of the summed rewards of all steps but the last
      (the last RLDS step's reward is undefined), in environment reward units.
    min_episode_return: smallest episode return.
    max_episode_return: largest episode return.
    mean_episode_length: mean number of steps per episode.
  """
  num_episodes: int
  num_steps: int
  num_transitions: int
  num_one_step_episodes: int
  num_terminal_episodes: int
  num_truncated_episodes: int
  mean_episode_return: float
  min_episode_return: float
  max_episode_return: float
  mean_episode_length: float


def as_episode_steps(episodes: Episodes, dataset_name: str) -> steps_lib.EpisodeSteps:
  """Returns `episodes` read into `EpisodeSteps` (or as is when already read)."""
  if isinstance(episodes, steps_lib.EpisodeSteps):
    return episodes
  return steps_lib.read_episode_steps(episodes, dataset_name)


class _Checker:
  """Raises the ValueError for a named dataset."""

  def __init__(self, dataset_name: str):
    self._name = dataset_name

  def fail_if(self, bad_count: int, field: str, problem: str, fix: str) -> None:
    if bad_count:
      raise ValueError(f'Dataset {self._name!r}, field {field!r}: {bad_count} {problem}. '
                       f'Fix: {fix}')

  def check_spec(self, array: np.ndarray, field: str, spec) -> None:
    shape, dtype = tuple(array.shape[1:]), array.dtype
    want_shape, want_dtype = tuple(spec.shape), np.dtype(spec.dtype)
    count = array.shape[0]
    self.fail_if(count if shape != want_shape else 0, field,
                 f'elements have shape {shape}, the environment expects {want_shape}',
                 'use the dataset recorded for this environment (check --env_name and '
                 '--dataset_name).')
    self.fail_if(count if dtype != want_dtype else 0, field,
                 f'elements have dtype {dtype.name}, the environment expects {want_dtype.name}',
                 'load the dataset with cql_sac.datasets.loading.load_episodes (which casts D4RL '
                 'float64 data to float32) or write it with the environment\'s dtypes.')


def validate_episodes(episodes: Episodes, dataset_name: str, observation_spec, action_spec,
                      action_clipping: transitions.ActionClipping = None) -> DatasetStats:
  """Checks a dataset against the environment's specs and the RLDS episode structure.

  Checks, in order: RLDS fields present; dataset not empty; observation and action shapes and
  dtypes equal the specs; reward and discount are scalars; no NaN or inf in observation, action,
  reward or discount; discounts in [0, 1]; actions (after `action_clipping`) within the action
  spec's bounds, on every step but episodes' last steps (whose actions RLDS leaves undefined);
  each episode starts with is_first and only there, ends with is_last and only there, and is
  terminal only on its last step.

  Args:
    episodes: RLDS episodes (`tf.data.Dataset`), or `EpisodeSteps` already read from them.
    dataset_name: name used in error messages (TFDS name or directory).
    observation_spec: the environment's observation spec (ArraySpec or TensorSpec).
    action_spec: the environment's action spec; bounds are checked if it is bounded.
    action_clipping: (min, max) that will be applied to dataset actions before training, or None.

  Returns:
    The dataset's `DatasetStats`.

  Raises:
    ValueError: on the first failed check, naming dataset, field, number of bad elements
      (steps or episodes) and the fix.
  """
  steps = as_episode_steps(episodes, dataset_name)
  check = _Checker(dataset_name)
  if steps.num_steps == 0:
    raise ValueError(f'Dataset {dataset_name!r}, field \'steps\': the dataset is empty '
                     f'({steps.num_episodes} episodes, 0 steps). Fix: check --dataset_name, '
                     '--data_dir and --data_take.')
  check.check_spec(steps.observation, 'observation', observation_spec)
  check.check_spec(steps.action, 'action', action_spec)
  for field in ('reward', 'discount'):
    array = getattr(steps, field)
    check.fail_if(steps.num_steps if array.ndim != 1 else 0, field,
                  f'elements have shape {array.shape[1:]} instead of a scalar',
                  'store one scalar per step, as TFDS D4RL does.')
  for field in ('observation', 'action', 'reward', 'discount'):
    array = getattr(steps, field)
    bad = ~np.isfinite(array.reshape(steps.num_steps, -1)).all(axis=1)
    check.fail_if(int(bad.sum()), field, 'steps contain NaN or inf',
                  'repair or drop these steps when writing the dataset.')
  check.fail_if(int(((steps.discount < 0) | (steps.discount > 1)).sum()), 'discount',
                'steps have a discount outside [0, 1]', 'write discounts as 0 or 1.')
  _check_action_bounds(steps, check, action_spec, action_clipping)
  _check_episode_structure(steps, check)
  return _stats(steps)


def _check_action_bounds(steps, check, action_spec, action_clipping) -> None:
  if not hasattr(action_spec, 'minimum'):
    return
  action = steps.action[~steps.is_last]
  if action_clipping is not None:
    action = np.clip(action, action_clipping[0], action_clipping[1])
  low = np.broadcast_to(np.asarray(action_spec.minimum), action.shape[1:])
  high = np.broadcast_to(np.asarray(action_spec.maximum), action.shape[1:])
  bad = ((action < low) | (action > high)).any(axis=1)
  check.fail_if(
      int(bad.sum()), 'action',
      f'steps have actions outside the action bounds [{low.min()}, {high.max()}]'
      + (f' after clipping to {action_clipping}' if action_clipping is not None else ''),
      'pass action_clipping=(low, high) within the bounds, or rescale the dataset actions.')


def _check_episode_structure(steps: steps_lib.EpisodeSteps, check: _Checker) -> None:
  bounds = steps.episode_bounds()
  starts, ends = bounds[:, 0], bounds[:, 1]
  expect_first = np.zeros(steps.num_steps, bool)
  expect_first[starts] = True
  expect_last = np.zeros(steps.num_steps, bool)
  expect_last[ends - 1] = True
  fix = ('write episodes in RLDS form: is_first only on the first step, is_last only on the '
         'last, is_terminal only on a last step (cql_sac_make_dataset does).')

  def bad_episodes(bad_steps):
    return len(np.unique(steps.episode_index[bad_steps]))

  check.fail_if(bad_episodes(steps.is_first != expect_first), 'is_first',
                'episodes have is_first missing on their first step or set on a later step', fix)
  check.fail_if(bad_episodes(steps.is_last != expect_last), 'is_last',
                'episodes have is_last missing on their last step or set on an earlier step', fix)
  check.fail_if(bad_episodes(steps.is_terminal & ~expect_last), 'is_terminal',
                'episodes are terminal on a step that is not their last', fix)


def _stats(steps: steps_lib.EpisodeSteps) -> DatasetStats:
  bounds = steps.episode_bounds()
  lengths = bounds[:, 1] - bounds[:, 0]
  rewards = np.where(steps.is_last, 0.0, steps.reward.astype(np.float64))
  returns = np.add.reduceat(rewards, bounds[:, 0])
  terminal = steps.is_terminal[bounds[:, 1] - 1]
  one_step = int((lengths == 1).sum())
  if one_step:
    logging.warning('%d one-step episodes have no next observation; see '
                    'cql_sac.datasets.transitions for how they are replayed.', one_step)
  return DatasetStats(
      num_episodes=steps.num_episodes,
      num_steps=steps.num_steps,
      num_transitions=int((lengths - 1).sum()),
      num_one_step_episodes=one_step,
      num_terminal_episodes=int(terminal.sum()),
      num_truncated_episodes=int((~terminal).sum()),
      mean_episode_return=float(returns.mean()),
      min_episode_return=float(returns.min()),
      max_episode_return=float(returns.max()),
      mean_episode_length=float(lengths.mean()))
