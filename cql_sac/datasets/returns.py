"""Discounted Monte-Carlo returns-to-go of a dataset's transitions, for Cal-QL.

Cal-QL (Nakamoto et al. 2023, eq. 5) bounds the Q values of policy actions in the CQL term
below by the return-to-go G(s) of the dataset's behaviour. Definitions follow the authors'
`calc_return_to_go` (nakamotoo/Cal-QL@ac6eafe, JaxCQL/replay_buffer.py) and CORL's
`get_return_to_go` (corl-team/CORL@eeeeef2, algorithms/finetune/cal_ql.py):

* rewards are in TD-target units, r' = reward_scale_factor·(r + reward_shift), as the
  agent's TD target sees them;
* G_t = r'_t + γ·d_t·G_{t+1} within an episode, with d_t the step's discount (0 into a
  terminal state) and G = 0 after the episode's last transition: no bootstrap at a
  time-limit ending, the return simply stops;
* the sparse-failure rule: when every transition reward of an episode equals the failure
  reward r_fail' = reward_scale_factor·(r_fail + reward_shift) (AntMaze: r_fail = 0, so
  r_fail' = 10·(0 − 0.5) = −5), every step of it gets r_fail'/(1 − γ), the return of failing
  forever (−500 with γ = 0.99).

Indexing follows RLDS (`cql_sac.datasets.steps`): step t holds o_t, a_t, r_t, d_t; an episode's
last step holds only its final observation and gets G = 0, except a one-step episode, whose
only step is the padded item's transition (`cql_sac.datasets.transitions`, discount 0): G = r'.
"""

from typing import Optional

import numpy as np

from cql_sac.datasets import steps as steps_lib


def returns_to_go(steps: steps_lib.EpisodeSteps, gamma: float,
                  reward_scale_factor: float = 1.0, reward_shift: float = 0.0,
                  sparse_failure_reward: Optional[float] = None) -> np.ndarray:
  """The discounted return-to-go G_t of every step (module docstring).

  Args:
    steps: The dataset's steps (episodes well formed, `validate_episodes`).
    gamma: Discount γ in [0, 1).
    reward_scale_factor: The TD target's reward scale.
    reward_shift: Added to each reward before the scale (environment units).
    sparse_failure_reward: r_fail in environment units for the sparse-failure rule, or
      None for dense rewards (no rule).

  Returns:
    float32 [N], G_t in TD-target units.

  Raises:
    ValueError: If `gamma` is not in [0, 1).
  """
  if not 0.0 <= gamma < 1.0:
    raise ValueError(f'gamma must be in [0, 1) for returns-to-go, got {gamma}.')
  rewards = reward_scale_factor * (steps.reward.astype(np.float64) + reward_shift)
  discounts = steps.discount.astype(np.float64)
  failure = (None if sparse_failure_reward is None
             else reward_scale_factor * (float(sparse_failure_reward) + reward_shift))
  returns = np.zeros(steps.num_steps, np.float64)
  for start, end in steps.episode_bounds():
    if end - start == 1:
      returns[start] = rewards[start]
      continue
    transitions = slice(start, end - 1)
    if failure is not None and np.all(rewards[transitions] == failure):
      returns[transitions] = failure / (1.0 - gamma)
      continue
    following = 0.0
    for t in range(end - 2, start - 1, -1):
      following = rewards[t] + gamma * discounts[t] * following
      returns[t] = following
  return returns.astype(np.float32)
