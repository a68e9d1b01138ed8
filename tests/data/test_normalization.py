"""Dataset statistics for CORL's state and reward normalization, against NumPy."""
import numpy as np
import pytest

from cql_sac.datasets import normalization
from tests.data import helpers


def test_observation_statistics_of_the_transitions_states():
  """Mean and std + 1e-3 over every step but each episode's last (its s' only)."""
  rng = np.random.default_rng(0)
  observation = rng.normal(2.0, 3.0, size=(12, 4)).astype(np.float32)
  observation[[4, 11]] = 1e6  # The two last steps: not a transition's s.
  stats = normalization.observation_statistics(helpers.episode_steps(observation, [5, 7]))
  states = np.delete(observation.astype(np.float64), [4, 11], axis=0)
  np.testing.assert_allclose(stats.mean, states.mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(stats.std, states.std(axis=0) + 1e-3, rtol=1e-6)
  assert stats.mean.dtype == stats.std.dtype == np.float32


def test_constant_observation_dimension_is_named():
  observation = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
  observation[:, 1] = 7.0
  with pytest.raises(ValueError, match=r'dimension\(s\) \[1\] are constant.*1000'):
    normalization.observation_statistics(helpers.episode_steps(observation, [6]))


def test_corl_reward_scale():
  np.testing.assert_allclose(normalization.corl_reward_scale(-20.0, 3180.0), 1000.0 / 3200.0)
  with pytest.raises(ValueError, match='spread of episode returns, which is 0'):
    normalization.corl_reward_scale(5.0, 5.0)
