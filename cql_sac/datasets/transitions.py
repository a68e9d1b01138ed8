"""RLDS steps -> TF-Agents Trajectory steps and the 2-step items the learner trains on.

Semantics follow `tf_agents.replay_buffers.rlds_to_reverb.convert_rlds_to_trajectories` followed
by `ReverbAddTrajectoryObserver(sequence_length=2, stride_length=1)` (study section 3.3):

* step_type is FIRST on is_first, else LAST on is_last, else MID; next_step_type is the step type
  of the following step (FIRST after an episode's last step).
* observation, action and reward come from the step itself; discount is 0 on a terminal last
  step and the step's own discount otherwise. TFDS D4RL stores discount 0 on the step *before* a
  terminal state, so the transition into it does not bootstrap, while a time-limit ending keeps
  discount 1 and bootstraps from the recorded next observation.
* An item is two consecutive steps of one episode, so an episode of n >= 2 steps gives n - 1
  items and no item crosses an episode boundary.
* A one-step episode (TF-Agents writes it LAST -> LAST) has no next observation. With
  `pad_end_of_episodes=True` it gives one item (step, zero padding step) as TF-Agents' observer
  writes it, except that its discount is set to 0 so that the learner never bootstraps from the
  all-zero padding observation; with False it gives no item.

`reward_shift` is added to the rewards and `action_clipping` clips the actions of the dataset's
steps (not the padding), as TF-Agents' CQL example does; policies' actions are never touched.

For Cal-QL each step can carry its Monte-Carlo return-to-go (`cql_sac.datasets.returns`) as
`policy_info = {'return_to_go': float32}` (0 on padding steps); without it `policy_info` is
`()`, as TF-Agents writes it.
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from cql_sac.agents.cal_ql_agent import RETURN_TO_GO  # The key CalQlAgent reads.
from cql_sac.datasets import steps as steps_lib

ActionClipping = Optional[Tuple[float, float]]


@dataclasses.dataclass(frozen=True)
class TrajectorySteps:
  """Per-step TF-Agents trajectories of a dataset and the items (pairs of steps) they form.

  Attributes:
    trajectory: `Trajectory` of numpy arrays with outer dim [M]: M = N dataset steps followed by
      one zero padding step per padded one-step episode. step_type/next_step_type int32,
      observation [M, obs_dim], action [M, A], reward [M], discount [M] (float32 for D4RL),
      policy_info () or {'return_to_go': float32 [M]}.
    items: int64 [num_items, 2], the indices into `trajectory` of each item's two steps; item k
      is the transition (observation[i], action[i], reward[i], discount[i]) -> observation[j] for
      (i, j) = items[k]. Ordered by position in the dataset.
    num_padded_episodes: number of one-step episodes written with a padding step.
  """
  trajectory: trajectory.Trajectory
  items: np.ndarray
  num_padded_episodes: int

  @property
  def num_items(self) -> int:
    """Number of 2-step items (transitions)."""
    return int(self.items.shape[0])


def data_spec(observation_spec: tf.TensorSpec, action_spec: tf.TensorSpec,
              reward_spec: tf.TensorSpec, with_return_to_go: bool = False
              ) -> trajectory.Trajectory:
  """The Trajectory spec of one replay step (no outer dims), as TF-Agents builds it from RLDS.

  Args:
    observation_spec: spec of one observation, e.g. float32 [obs_dim].
    action_spec: spec of one action, e.g. float32 [A].
    reward_spec: spec of one reward, float32 [].
    with_return_to_go: policy_info {'return_to_go': float32 []} instead of ().

  Returns:
    Trajectory of TensorSpecs: step_type/next_step_type int32 [], observation, action,
    policy_info, reward [], discount float32 [] (bounded to [0, 1]).
  """
  time_step_spec = ts.time_step_spec(observation_spec, reward_spec)
  info = ({RETURN_TO_GO: tf.TensorSpec([], tf.float32, name=RETURN_TO_GO)}
          if with_return_to_go else ())
  return trajectory.from_transition(
      time_step_spec, policy_step.PolicyStep(action_spec, info=info), time_step_spec)


def steps_data_spec(steps: steps_lib.EpisodeSteps,
                    with_return_to_go: bool = False) -> trajectory.Trajectory:
  """`data_spec` for the shapes and dtypes of `steps`' observation, action and reward."""
  def spec(array, name):
    return tf.TensorSpec(array.shape[1:], tf.as_dtype(array.dtype), name=name)
  return data_spec(spec(steps.observation, 'observation'), spec(steps.action, 'action'),
                   spec(steps.reward, 'reward'), with_return_to_go)


def to_trajectory_steps(steps: steps_lib.EpisodeSteps, reward_shift: float = 0.0,
                        action_clipping: ActionClipping = None,
                        pad_end_of_episodes: bool = True,
                        returns_to_go: Optional[np.ndarray] = None) -> TrajectorySteps:
  """Converts validated RLDS steps to TF-Agents trajectory steps and items (module docstring).

  Args:
    steps: the dataset's steps; episodes must be well formed (`validate_episodes` checks).
    reward_shift: added to every dataset reward (environment units).
    action_clipping: optional (min, max) to clip every dataset action component to.
    pad_end_of_episodes: whether one-step episodes give a padded item.
    returns_to_go: optional float [N], each step's return-to-go, stored as
      policy_info['return_to_go'].

  Returns:
    The `TrajectorySteps`.
  """
  n = steps.num_steps
  step_type = np.where(steps.is_first, ts.StepType.FIRST,
                       np.where(steps.is_last, ts.StepType.LAST, ts.StepType.MID)).astype(np.int32)
  next_step_type = np.append(step_type[1:], np.int32(ts.StepType.FIRST)).astype(np.int32)
  one_step = (step_type == ts.StepType.FIRST) & (next_step_type == ts.StepType.FIRST)
  step_type[one_step] = ts.StepType.LAST
  next_step_type[one_step] = ts.StepType.LAST
  discount = np.where(steps.is_last & steps.is_terminal, 0, steps.discount)
  action = steps.action
  if action_clipping is not None:
    action = np.clip(action, action_clipping[0], action_clipping[1])
  reward = steps.reward + np.asarray(reward_shift, steps.reward.dtype)

  bounds = steps.episode_bounds()
  lengths = bounds[:, 1] - bounds[:, 0]
  # Pairs (i, i + 1) for every step i that is not the last step of its episode.
  episode_last = np.zeros(n, bool)
  episode_last[bounds[:, 1] - 1] = True
  firsts = np.flatnonzero(~episode_last)
  items = np.stack([firsts, firsts + 1], axis=1)
  padded = bounds[lengths == 1, 0] if pad_end_of_episodes else np.zeros(0, np.int64)
  num_pad = len(padded)
  if num_pad:
    discount = np.where(one_step, 0, discount)
    pad_items = np.stack([padded, n + np.arange(num_pad)], axis=1)
    items = np.concatenate([items, pad_items])
    items = items[np.argsort(items[:, 0], kind='stable')]

  def with_padding(array, pad_value=0):
    pad = np.full((num_pad,) + array.shape[1:], pad_value, array.dtype)
    return np.concatenate([array, pad]) if num_pad else array

  info = () if returns_to_go is None else {
      RETURN_TO_GO: with_padding(np.asarray(returns_to_go, np.float32))}
  traj = trajectory.Trajectory(
      step_type=with_padding(step_type, ts.StepType.LAST),
      observation=with_padding(steps.observation),
      action=with_padding(action),
      policy_info=info,
      next_step_type=with_padding(next_step_type, ts.StepType.FIRST),
      reward=with_padding(reward),
      discount=with_padding(discount.astype(steps.discount.dtype)))
  return TrajectorySteps(trajectory=traj, items=items.astype(np.int64),
                         num_padded_episodes=num_pad)


def gather_items(traj: trajectory.Trajectory, items, item_indices) -> trajectory.Trajectory:
  """Gathers items as a Trajectory with outer dims [B, 2] (numpy arrays or tensors).

  Args:
    traj: `TrajectorySteps.trajectory`, or the same structure of tensors.
    items: `TrajectorySteps.items` [num_items, 2] (array or tensor).
    item_indices: int [B] indices into `items`.

  Returns:
    Trajectory whose fields have outer dims [B, 2].
  """
  pairs = tf.gather(items, item_indices)
  return tf.nest.map_structure(lambda field: tf.gather(field, pairs), traj)
