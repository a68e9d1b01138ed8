"""Held-out episodes: whole episodes split off a dataset before training, by a seeded rule,
so that offline policy evaluation (`cql_sac.ope`) can be measured on data the agent never saw.

The rule: the episodes' indices 0..E−1 are permuted by `numpy.random.default_rng(seed)` and the
first round(fraction·E) (at least 1 when fraction > 0, at most E − 1) are held out.
"""

from typing import Optional

import numpy as np

from cql_sac.datasets.steps import EpisodeSteps


def holdout_seed(seed: Optional[int]) -> int:
  """The seed of a run's held-out split: `train_eval.seed`, or 0 when it is None."""
  return 0 if seed is None else int(seed)


def holdout_episodes(num_episodes: int, fraction: float, seed: int) -> np.ndarray:
  """The held-out episodes' indices (module docstring).

  Args:
    num_episodes: E, episodes in the dataset.
    fraction: In [0, 1); 0 holds none out.
    seed: Seeds the permutation.

  Returns:
    int64 [K], sorted.

  Raises:
    ValueError: If `fraction` is outside [0, 1), or `fraction` > 0 with fewer than 2 episodes.
  """
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'The held-out fraction must be in [0, 1), got {fraction!r}.')
  if fraction == 0.0:
    return np.zeros(0, np.int64)
  if num_episodes < 2:
    raise ValueError(f'Holding out episodes needs at least 2 episodes; the dataset has '
                     f'{num_episodes}. Set holdout_fraction = 0.0 or pass a larger dataset.')
  count = min(max(int(round(fraction * num_episodes)), 1), num_episodes - 1)
  permutation = np.random.default_rng(seed).permutation(num_episodes)
  return np.sort(permutation[:count]).astype(np.int64)


def select_episodes(steps: EpisodeSteps, episodes: np.ndarray) -> EpisodeSteps:
  """The steps of the given episodes, in dataset order, renumbered 0, 1, ...

  Args:
    steps: The dataset's `EpisodeSteps`.
    episodes: int [K] episode indices (distinct, each < `steps.num_episodes`).

  Returns:
    `EpisodeSteps` of those K episodes.

  Raises:
    ValueError: For an index outside [0, num_episodes).
  """
  episodes = np.unique(np.asarray(episodes, np.int64))
  if episodes.size and (episodes[0] < 0 or episodes[-1] >= steps.num_episodes):
    raise ValueError(f'Episode indices must be in [0, {steps.num_episodes}), got '
                     f'{episodes[0]}..{episodes[-1]}.')
  keep = np.isin(steps.episode_index, episodes)
  return EpisodeSteps(
      observation=steps.observation[keep], action=steps.action[keep],
      reward=steps.reward[keep], discount=steps.discount[keep], is_first=steps.is_first[keep],
      is_last=steps.is_last[keep], is_terminal=steps.is_terminal[keep],
      episode_index=np.searchsorted(episodes, steps.episode_index[keep]).astype(np.int64),
      num_episodes=int(episodes.size))


def split_episodes(steps: EpisodeSteps, held_out: np.ndarray):
  """(training `EpisodeSteps`, held-out `EpisodeSteps`) for the held-out indices `held_out`."""
  training = np.setdiff1d(np.arange(steps.num_episodes), held_out)
  return select_episodes(steps, training), select_episodes(steps, held_out)
