"""State and reward normalization from dataset statistics (CORL's `normalize` and
`normalize_reward`, algorithms/offline/cql.py@eeeeef2: `compute_mean_std`,
`normalize_states`, `modify_reward`).

The observation statistics are applied inside the networks (`cql_sac.networks`), not to
the stored data: the networks see (s − mean)/std for every state and next state, as in
CORL, while the replay, the exported SavedModel policies and evaluation all take raw
observations.
"""

import numpy as np

from cql_sac.datasets import steps as steps_lib
from cql_sac.networks import ObservationStatistics

STD_FLOOR = 1e-3  # CORL adds it to every standard deviation.
CORL_RETURN_RANGE = 1000.0  # CORL's locomotion rule: r·1000/(max return − min return).


def observation_statistics(episodes: steps_lib.EpisodeSteps) -> ObservationStatistics:
  """Mean and std + 1e-3 of the dataset's observations (CORL's `compute_mean_std`).

  Args:
    episodes: The dataset, `EpisodeSteps` with float observations [N, O].

  Returns:
    `cql_sac.networks.ObservationStatistics` of float32 [O] arrays: the mean of the
    transitions' observations s (every step but each episode's last, as D4RL's
    `qlearning_dataset` observations CORL averages) and their standard deviation plus
    `STD_FLOOR`.

  Raises:
    ValueError: If the dataset has no transitions, or a dimension is constant over it
      (named; the 1e-3 floor would keep it finite but scale any evaluation-time change
      of it by 1000).
  """
  observations = np.asarray(episodes.observation, np.float64)[~episodes.is_last]
  if observations.shape[0] == 0:
    raise ValueError('Observation normalization needs at least one transition; the dataset '
                     'has none.')
  std = observations.std(axis=0)
  constant = np.flatnonzero(std == 0)
  if constant.size:
    raise ValueError(
        f'Observation dimension(s) {constant.tolist()} are constant over the dataset (std 0): '
        f'normalizing divides them by the {STD_FLOOR} floor alone, which keeps them finite but '
        'multiplies any change at evaluation by 1000. Drop them from the observation or turn '
        'observation normalization off.')
  return ObservationStatistics(observations.mean(axis=0).astype(np.float32),
                               (std + STD_FLOOR).astype(np.float32))


def corl_reward_scale(min_episode_return: float, max_episode_return: float) -> float:
  """CORL's locomotion reward factor 1000/(max − min episode return) (`modify_reward`).

  With it, CORL's r·1000/(max − min)·scale + bias is this package's
  `reward_scale_factor`·(r + `reward_shift`) with `reward_scale_factor` = factor·scale
  and `reward_shift` = bias/(factor·scale) (environment reward units).

  Args:
    min_episode_return: Smallest undiscounted episode return of the dataset.
    max_episode_return: Largest one (environment reward units).

  Returns:
    Python float, the factor.

  Raises:
    ValueError: If every episode has the same return (the range is 0).
  """
  spread = float(max_episode_return) - float(min_episode_return)
  if not spread > 0:
    raise ValueError(
        f'Reward normalization divides by the spread of episode returns, which is 0 here '
        f'(every episode returns {max_episode_return}); turn reward normalization off or use '
        'reward_scale_factor.')
  return CORL_RETURN_RANGE / spread
