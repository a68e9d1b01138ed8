"""Helpers for the data tests: recording the simulator, comparing transitions, toy episodes."""

import dataclasses
from typing import List

import numpy as np
import tensorflow as tf
from tf_agents.policies import py_policy
from tf_agents.policies import random_py_policy

from cql_sac import envs
from cql_sac.datasets import steps as steps_lib

ENV_NAME = 'hopper-random-v2'
NUM_STEPS = 300
TIME_LIMIT = 25  # Short, so that a random Hopper both falls (terminal) and times out.
SEED = 3


class RecordingPolicy(py_policy.PyPolicy):
  """Uniform random policy that remembers every action it returned."""

  def __init__(self, time_step_spec, action_spec):
    super().__init__(time_step_spec, action_spec)
    self._random = random_py_policy.RandomPyPolicy(time_step_spec, action_spec, seed=SEED)
    self.actions: List[np.ndarray] = []

  def _action(self, time_step, policy_state):
    step = self._random.action(time_step, policy_state)
    self.actions.append(np.array(step.action))
    return step


@dataclasses.dataclass
class Transitions:
  """Flat transitions (s, a, r, d, s') in recording order."""
  observation: np.ndarray
  action: np.ndarray
  reward: np.ndarray
  discount: np.ndarray
  next_observation: np.ndarray
  episode_end: np.ndarray  # True where s' is the last observation of its episode.


def replay_in_simulator(actions: List[np.ndarray]) -> Transitions:
  """Re-runs the seeded simulator with `actions`, independently of the dataset code."""
  env = envs.load_env(ENV_NAME, seed=SEED, max_episode_steps=TIME_LIMIT)
  rows = []
  time_step = env.reset()
  for action in actions:
    next_time_step = env.step(action)
    rows.append((time_step.observation, action, next_time_step.reward, next_time_step.discount,
                 next_time_step.observation, next_time_step.is_last()))
    time_step = env.reset() if next_time_step.is_last() else next_time_step
  columns = [np.array(column) for column in zip(*rows)]
  columns[-1][-1] = True  # The dataset is cut after the last action.
  return Transitions(*columns)


def item_transitions(traj, items) -> Transitions:
  """Transitions of replay items given as (Trajectory of per-step arrays, [K, 2] indices)."""
  first, second = items[:, 0], items[:, 1]
  return Transitions(
      observation=traj.observation[first], action=traj.action[first],
      reward=traj.reward[first], discount=traj.discount[first],
      next_observation=traj.observation[second],
      episode_end=traj.next_step_type[first] == 2)


def assert_transitions_equal(actual: Transitions, expected: Transitions) -> None:
  for field in dataclasses.fields(Transitions):
    np.testing.assert_array_equal(getattr(actual, field.name), getattr(expected, field.name),
                                  err_msg=field.name)


def make_episodes(**steps) -> tf.data.Dataset:
  """RLDS episodes from step arrays with outer dims [episodes, steps per episode]."""
  return tf.data.Dataset.from_tensor_slices(steps).map(
      lambda episode: {'steps': tf.data.Dataset.from_tensor_slices(episode)})


def episode_steps(observation, episode_lengths, reward=None, discount=None,
                  is_terminal=None) -> steps_lib.EpisodeSteps:
  """EpisodeSteps of observations [N, O] split into episodes of `episode_lengths` steps.

  reward, discount: [N] (zeros and ones by default); is_terminal: [N] bool, True only on
  last steps (none by default). Actions are zeros [N, 1].
  """
  n = observation.shape[0]
  lengths = np.asarray(episode_lengths)
  episode_index = np.repeat(np.arange(len(lengths)), lengths).astype(np.int64)
  ends = np.cumsum(lengths)
  is_first = np.zeros(n, bool)
  is_first[ends - lengths] = True
  is_last = np.zeros(n, bool)
  is_last[ends - 1] = True
  return steps_lib.EpisodeSteps(
      observation=observation, action=np.zeros((n, 1), np.float32),
      reward=np.zeros(n, np.float32) if reward is None else np.asarray(reward, np.float32),
      discount=np.ones(n, np.float32) if discount is None else np.asarray(discount, np.float32),
      is_first=is_first, is_last=is_last,
      is_terminal=np.zeros(n, bool) if is_terminal is None else np.asarray(is_terminal, bool),
      episode_index=episode_index, num_episodes=len(lengths))
