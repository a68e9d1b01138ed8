"""Held-out episodes (`cql_sac.datasets.holdout`): the seeded split and the episode subsets."""

import numpy as np
import pytest

from cql_sac.datasets import holdout
from cql_sac.datasets.steps import EpisodeSteps


def _steps(lengths):
  """EpisodeSteps of episodes of the given lengths; observation = global step index."""
  index = np.repeat(np.arange(len(lengths)), lengths)
  starts = np.cumsum([0] + list(lengths[:-1]))
  first = np.zeros(len(index), bool)
  first[starts] = True
  last = np.zeros(len(index), bool)
  last[starts + np.array(lengths) - 1] = True
  observation = np.arange(len(index), dtype=np.float32)[:, None]
  return EpisodeSteps(observation=observation, action=observation, reward=observation[:, 0],
                      discount=np.ones(len(index), np.float32), is_first=first, is_last=last,
                      is_terminal=np.zeros(len(index), bool), episode_index=index,
                      num_episodes=len(lengths))


def test_split_is_deterministic_from_the_seed_and_its_size_from_the_fraction():
  first = holdout.holdout_episodes(50, 0.2, seed=3)
  np.testing.assert_array_equal(first, holdout.holdout_episodes(50, 0.2, seed=3))
  assert len(first) == 10 and len(set(first.tolist())) == 10
  assert not np.array_equal(first, holdout.holdout_episodes(50, 0.2, seed=4))
  assert holdout.holdout_episodes(50, 0.0, seed=3).size == 0
  assert len(holdout.holdout_episodes(3, 0.01, seed=0)) == 1  # At least one,
  assert len(holdout.holdout_episodes(3, 0.99, seed=0)) == 2  # at most E - 1.


@pytest.mark.parametrize('fraction', [-0.1, 1.0, 1.5])
def test_fraction_outside_zero_one(fraction):
  with pytest.raises(ValueError, match=r'must be in \[0, 1\)'):
    holdout.holdout_episodes(10, fraction, seed=0)


def test_split_episodes_are_disjoint_whole_episodes_that_cover_the_dataset():
  steps = _steps([3, 1, 4, 2, 5])
  held_out = holdout.holdout_episodes(steps.num_episodes, 0.4, seed=1)
  training, test = holdout.split_episodes(steps, held_out)
  assert training.num_episodes + test.num_episodes == 5 and test.num_episodes == 2
  train_obs, test_obs = training.observation[:, 0], test.observation[:, 0]
  assert not set(train_obs) & set(test_obs)
  np.testing.assert_array_equal(np.sort(np.concatenate([train_obs, test_obs])), np.arange(15))
  # Whole episodes, renumbered: the held-out steps are exactly those of `held_out`.
  np.testing.assert_array_equal(test_obs, np.flatnonzero(np.isin(steps.episode_index, held_out)))
  np.testing.assert_array_equal(np.unique(test.episode_index), [0, 1])
  assert test.is_first.sum() == 2 and test.is_last.sum() == 2
