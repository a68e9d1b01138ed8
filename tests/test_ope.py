"""Offline policy evaluation (`cql_sac.ope`) against values computed exactly."""

import numpy as np
import pytest
import tensorflow as tf

from cql_sac import ope
from cql_sac.datasets.steps import EpisodeSteps


def _chain(num_states=12, gamma=0.95, num_transitions=20000, seed=0):
  """A random chain with one-hot observations and its exact value under a fixed policy.

  From state s < S−1 the chain moves to min(s + 1, S − 1) or min(s + 2, S − 1) with
  probability 1/2 whatever the action; S − 1 is terminal. r(s, a) = b_s + a/2, actions uniform
  in [−1, 1] in the data, μ(s) = m_s. V(s) = r(s, m_s) + γ·(V(n1) + V(n2))/2 backwards.

  Returns:
    (Transitions, μ(s') [N, 1], μ [S], one-hot eye [S, S], exact V [S]).
  """
  rng = np.random.default_rng(seed)
  base, mu = rng.uniform(0, 1, num_states), rng.uniform(-1, 1, num_states)
  value = np.zeros(num_states)
  for s in reversed(range(num_states)):
    following = [min(s + 1, num_states - 1), min(s + 2, num_states - 1)]
    value[s] = base[s] + mu[s] / 2 + (
        gamma * value[following].mean() if s < num_states - 1 else 0.0)
  s = rng.integers(0, num_states, num_transitions)
  a = rng.uniform(-1, 1, (num_transitions, 1)).astype(np.float32)
  s_next = np.minimum(s + rng.integers(1, 3, num_transitions), num_states - 1)
  eye = np.eye(num_states, dtype=np.float32)
  transitions = ope.Transitions(
      eye[s], a, (base[s] + a[:, 0] / 2).astype(np.float32),
      (s < num_states - 1).astype(np.float32), eye[s_next])
  return transitions, mu[s_next, None].astype(np.float32), mu, eye, value


def test_fqe_matches_the_exact_value_of_a_stochastic_chain():
  gamma = 0.95
  transitions, next_actions, mu, eye, value = _chain(gamma=gamma)
  config = ope.FqeConfig(num_steps=10000, batch_size=64, hidden_layers=(64, 64, 64),
                         gamma=gamma, steps_per_call=1000)
  result = ope.fitted_q_evaluation(transitions, next_actions, eye[:1],
                                   mu[:1, None].astype(np.float32), config)
  assert result.discounted_value == pytest.approx(value[0], rel=0.05)


def test_undiscounted_return_of_a_constant_reward():
  gamma, horizon, reward = 0.99, 1000, 3.0
  discounted = reward * (1 - gamma ** horizon) / (1 - gamma)
  assert ope.undiscounted_return(discounted, gamma, horizon) == pytest.approx(reward * horizon)


def test_critic_estimates_of_known_critics():
  """Q_k(s, a) = k·(s + a) in closed form: the initial value is the min, the TD residual
  is computed by hand."""
  class Linear(tf.Module):
    def __init__(self, k):
      super().__init__()
      self.k = k

    def __call__(self, inputs):
      observation, action = inputs
      return self.k * (observation[:, 0] + action[:, 0]), ()

  states = np.array([[1.0], [2.0]], np.float32)
  actions = np.array([[0.5], [-1.0]], np.float32)
  assert ope.critic_initial_value([Linear(2.0), Linear(1.0)], states, actions) == (
      pytest.approx(np.mean([1.5, 1.0])))
  transitions = ope.Transitions(states, actions, np.array([1.0, 2.0], np.float32),
                                np.array([1.0, 0.0], np.float32), states[::-1].copy())
  next_actions = actions[::-1].copy()
  td = ope.critic_td_error(Linear(1.0), [Linear(3.0), Linear(2.0)], transitions,
                           next_actions, gamma=0.5, reward_scale_factor=2.0, reward_shift=1.0)
  q = np.array([1.5, 1.0])
  target = 2.0 * (np.array([1.0, 2.0]) + 1.0) + 0.5 * np.array([1.0, 0.0]) * 2.0 * np.array(
      [1.0, 1.5])
  assert td == pytest.approx(np.sqrt(np.mean((q - target) ** 2)), rel=1e-5)


def test_dataset_transitions_and_initial_states():
  """Two episodes (3 and 2 steps, the second ending in a terminal state, whose discount
  D4RL stores on the step before it): 3 transitions."""
  observation = np.arange(5, dtype=np.float32)[:, None]
  steps = EpisodeSteps(
      observation=observation, action=observation * 10, reward=observation[:, 0] + 100,
      discount=np.array([1, 1, 1, 0, 1], np.float32), is_first=np.array([1, 0, 0, 1, 0], bool),
      is_last=np.array([0, 0, 1, 0, 1], bool), is_terminal=np.array([0, 0, 0, 0, 1], bool),
      episode_index=np.array([0, 0, 0, 1, 1]), num_episodes=2)
  transitions = ope.dataset_transitions(steps)
  np.testing.assert_array_equal(transitions.observation[:, 0], [0, 1, 3])
  np.testing.assert_array_equal(transitions.next_observation[:, 0], [1, 2, 4])
  np.testing.assert_array_equal(transitions.reward, [100, 101, 103])
  np.testing.assert_array_equal(transitions.discount, [1, 1, 0])
  np.testing.assert_array_equal(ope.initial_observations(steps)[:, 0], [0, 3])
