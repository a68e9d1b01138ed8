"""Hopper random policy -> RLDS/TFDS directory -> load_episodes -> transitions, checked exactly."""

import numpy as np
import tensorflow as tf
from tf_agents.replay_buffers import rlds_to_reverb

from cql_sac import envs
from cql_sac.datasets import loading
from cql_sac.datasets import steps as steps_lib
from cql_sac.datasets import transitions
from cql_sac.datasets import validation
from tests.data import helpers


def test_dataset_has_tfds_d4rl_step_features(hopper_dataset):
  path, _ = hopper_dataset
  spec = loading.load_episodes(path).element_spec['steps'].element_spec
  assert {k: (tuple(v.shape), v.dtype) for k, v in spec.items()} == {
      'observation': ((11,), tf.float32), 'action': ((3,), tf.float32),
      'reward': ((), tf.float32), 'discount': ((), tf.float32), 'is_first': ((), tf.bool),
      'is_last': ((), tf.bool), 'is_terminal': ((), tf.bool)}


def test_every_transition_matches_the_simulator(hopper_dataset):
  path, expected = hopper_dataset
  env = envs.load_env(helpers.ENV_NAME)
  episodes = loading.load_episodes(path)
  stats = validation.validate_episodes(episodes, path, env.observation_spec(), env.action_spec())
  traj_steps = transitions.to_trajectory_steps(steps_lib.read_episode_steps(episodes, path))

  actual = helpers.item_transitions(traj_steps.trajectory, traj_steps.items)
  helpers.assert_transitions_equal(actual, expected)
  ends = expected.episode_end
  assert (expected.discount[ends] == 0).sum() >= 1, 'no terminal episode recorded'
  assert (expected.discount[ends] == 1).sum() >= 1, 'no time-limit episode recorded'
  assert stats.num_transitions == helpers.NUM_STEPS == traj_steps.num_items
  assert stats.num_episodes == ends.sum()
  assert stats.num_terminal_episodes == (expected.discount[ends] == 0).sum()
  np.testing.assert_allclose(stats.mean_episode_return * stats.num_episodes,
                             expected.reward.sum(), rtol=1e-5)


def test_trajectories_equal_tf_agents_rlds_conversion(hopper_dataset):
  path, _ = hopper_dataset
  episodes = loading.load_episodes(path)
  traj = transitions.to_trajectory_steps(steps_lib.read_episode_steps(episodes, path)).trajectory
  reference = list(rlds_to_reverb.convert_rlds_to_trajectories(episodes).as_numpy_iterator())
  for field in ('step_type', 'observation', 'action', 'next_step_type', 'reward', 'discount'):
    np.testing.assert_array_equal(getattr(traj, field),
                                  np.stack([getattr(t, field) for t in reference]), field)


def test_load_episodes_take_counts_episodes(hopper_dataset):
  path, _ = hopper_dataset
  assert len(list(loading.load_episodes(path, take=2))) == 2
