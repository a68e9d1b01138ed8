"""Short rollouts of the current policy in a learned dynamics model, for COMBO.

COMBO (Yu et al. 2021, Algorithm 1) trains on batches that mix dataset
transitions with transitions the current policy makes in a learned model: every `interval`
train steps, `num_starts` states drawn uniformly from the dataset are rolled out `horizon`
steps, each step by the policy's sampled action and one ensemble member drawn uniformly per
row (as MOPO, Yu et al. 2020, section 4.3); a row stops after a step the member calls
terminal. The transitions go into a FIFO table (`ModelReplay`) that keeps the last
`retained_rollouts` rollouts, and `mixed_dataset` draws each batch's share 1 − f from it
(`ComboAgent.real_ratio` = f). The table is in memory as variables and sampled as
`InMemoryReplay` samples the dataset: writing a rollout of 22,000 transitions into a Reverb
table took 8.2 s on these 2 cores, about as long as the 1,000 train steps between rollouts.

The model is `cql_sac.model_ope`'s ensemble (deterministic members: each predicts its mean,
where COMBO's members are Gaussian and sampled), fit once on the dataset and kept with the
run (`load_or_fit_dynamics_model`). The table is not checkpointed: a resumed run rolls out
again before its first train step.
"""

import dataclasses
import os
from typing import Callable, Optional

import gin
import numpy as np
import tensorflow as tf
from tf_agents.policies import tf_policy
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from cql_sac import ope
from cql_sac.datasets import transitions
from cql_sac.datasets.steps import EpisodeSteps
from cql_sac.datasets.replay import ReplayTensors
from cql_sac.datasets.replay import sample_uniform
from cql_sac.model_ope import DynamicsEnsemble
from cql_sac.model_ope import ModelConfig
from cql_sac.model_ope import load_or_fit_dynamics_model

# The model's directory under root_dir unless `RolloutConfig.model_dir` names another.
MODEL_DIR = 'dynamics_model'

# (observations float32 [B, O], stateless seed int32 [2]) -> actions float32 [B, A].
ActionSampler = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


@gin.configurable
@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  """What COMBO's model rollouts do (MOPO- and COMBO-style code rolls 1-5 steps out from
  50,000-100,000 dataset states every 250-1,000 steps; the defaults are scaled to 2 CPUs).

  Attributes:
    horizon: h, steps per rollout at most, >= 1.
    num_starts: Dataset states rolled out from at each rollout, >= 1.
    interval: Train steps between rollouts, >= 1.
    retained_rollouts: The table keeps the transitions of this many rollouts (its capacity
      is num_starts·horizon·retained_rollouts), >= 1.
    terminal_threshold: A row ends after a step whose member's terminal probability
      exceeds it; that transition's discount is 0.
    model_dir: Where the dynamics model is kept (fit there on first use, reused while the
      dataset and `ModelConfig` are the same); None: root_dir/dynamics_model. Runs on one
      dataset may share one.
  """
  horizon: int = 5
  num_starts: int = 5000
  interval: int = 1000
  retained_rollouts: int = 5
  terminal_threshold: float = 0.5
  model_dir: Optional[str] = None

  @property
  def capacity(self) -> int:
    """Items the table keeps: num_starts·horizon·retained_rollouts."""
    return self.num_starts * self.horizon * self.retained_rollouts

  def check(self) -> None:
    """Raises ValueError naming the first setting out of range."""
    for name in ('horizon', 'num_starts', 'interval', 'retained_rollouts'):
      if getattr(self, name) < 1:
        raise ValueError(f'RolloutConfig.{name} must be >= 1, got {getattr(self, name)}.')
    if not 0.0 < self.terminal_threshold <= 1.0:
      raise ValueError('RolloutConfig.terminal_threshold is a probability in (0, 1], got '
                       f'{self.terminal_threshold}.')


def policy_action_sampler(policy: tf_policy.TFPolicy) -> ActionSampler:
  """a ~ π(·|s) for a batch of states, by a stateless seed (the policy's own distribution).

  Args:
    policy: A TF policy whose `distribution` is a TFP distribution over actions (the SAC
      actor's `collect_policy`).

  Returns:
    An `ActionSampler`.
  """
  @tf.function(autograph=False)
  def sample(observation, seed):
    batch = tf.shape(observation)[0]
    time_step = ts.transition(observation, reward=tf.zeros([batch]),
                              discount=tf.ones([batch]))
    return policy.distribution(time_step).action.sample(seed=seed)
  return sample


def rollout_steps(model: DynamicsEnsemble, sample_actions: ActionSampler,
                  start_observations: np.ndarray, horizon: int, seed: int,
                  terminal_threshold: float = 0.5) -> transitions.TrajectorySteps:
  """Rolls the policy out in the model (module docstring) and packs the transitions as items.

  Args:
    model: The fitted `DynamicsEnsemble` (K members).
    sample_actions: The policy's `ActionSampler`.
    start_observations: float32 [S, O], S >= 1, one row per rollout.
    horizon: Steps per row at most, >= 1.
    seed: Seeds the actions and the members (rollout t draws with (seed, t)).
    terminal_threshold: A row ends after a step whose terminal probability exceeds it.

  Returns:
    `TrajectorySteps` of M transitions, M <= S·horizon, as 2M steps: item k is steps (2k,
    2k + 1), the first with s, a, the model's r and discount 0 (terminal) or 1, the second
    with s'. step_type MID; next_step_type LAST after a terminal step, else MID.

  Raises:
    ValueError: If there are no start states or the horizon is below 1.
  """
  if start_observations.shape[0] == 0 or horizon < 1:
    raise ValueError(f'A model rollout needs start states and a horizon >= 1; got '
                     f'{start_observations.shape[0]} states and horizon {horizon}.')
  num_members, num_rows = len(model.members), start_observations.shape[0]
  observation = tf.constant(start_observations, tf.float32)
  alive = np.ones(num_rows, bool)  # Every row stays in the batch (one traced shape).
  parts = []
  for t in range(horizon):
    action_seed, member_seed = tf.unstack(tf.random.experimental.stateless_split(
        tf.constant([seed, t], tf.int64), 2))
    action = sample_actions(observation, tf.cast(action_seed, tf.int32))
    member = tf.random.stateless_uniform([num_rows], member_seed, 0, num_members, tf.int32)
    next_observation, reward, terminal = model.member_predict(observation, action, member)
    ended = (terminal > terminal_threshold).numpy()
    parts.append(tuple(np.asarray(x)[alive] for x in (
        observation, action, reward, ended, next_observation)))
    alive &= ~ended
    if not alive.any():
      break
    observation = next_observation
  return as_trajectory_steps(*(np.concatenate(field) for field in zip(*parts)))


def as_trajectory_steps(observation: np.ndarray, action: np.ndarray, reward: np.ndarray,
                        ended: np.ndarray,
                        next_observation: np.ndarray) -> transitions.TrajectorySteps:
  """M transitions as the 2M steps and M items `rollout_steps` returns (its layout).

  Args:
    observation: float32 [M, O], s.
    action: float32 [M, A], a.
    reward: float32 [M], r.
    ended: bool [M], whether s' is terminal (discount 0).
    next_observation: float32 [M, O], s'.

  Returns:
    `transitions.TrajectorySteps`.
  """
  num = observation.shape[0]
  interleave = lambda first, second: np.stack([first, second], 1).reshape(
      (2 * num,) + first.shape[1:])
  mid, last = np.int32(ts.StepType.MID), np.int32(ts.StepType.LAST)
  next_type = np.where(ended, last, mid).astype(np.int32)
  traj = trajectory.Trajectory(
      step_type=interleave(np.full(num, mid), next_type),
      observation=interleave(observation, next_observation).astype(np.float32),
      action=interleave(action, np.zeros_like(action)).astype(np.float32),
      policy_info=(),
      next_step_type=interleave(next_type, np.full(num, mid)),
      reward=interleave(reward, np.zeros_like(reward)).astype(np.float32),
      discount=interleave(1.0 - ended, np.ones(num)).astype(np.float32))
  items = np.stack([np.arange(0, 2 * num, 2), np.arange(1, 2 * num, 2)], 1).astype(np.int64)
  return transitions.TrajectorySteps(trajectory=traj, items=items, num_padded_episodes=0)


class ModelReplay:
  """A FIFO table of model transitions in memory, sampled uniformly with replacement.

  Holds `capacity` items as 2·capacity steps in variables (item k: steps 2k and 2k + 1);
  `add` overwrites the oldest items once it is full.

  Attributes:
    data_spec: The step spec (`cql_sac.datasets.transitions.data_spec`, policy_info ()).
    capacity: Items it holds at most.
  """

  def __init__(self, data_spec: trajectory.Trajectory, capacity: int):
    """Empty table.

    Raises:
      ValueError: If `capacity` < 1 or the spec carries policy_info.
    """
    if capacity < 1:
      raise ValueError(f'The model table needs a capacity of at least 1 item, got {capacity}.')
    if data_spec.policy_info != ():
      raise ValueError('Model transitions carry no policy_info; pass the step spec without '
                       f'it, got {data_spec.policy_info}.')
    self.data_spec, self.capacity = data_spec, capacity
    self._steps = tf.nest.map_structure(
        lambda spec: tf.Variable(tf.zeros([2 * capacity] + spec.shape.as_list(), spec.dtype),
                                 trainable=False), data_spec)
    self._items = tf.reshape(tf.range(2 * capacity, dtype=tf.int32), [capacity, 2])
    self._num_filled = tf.Variable(0, dtype=tf.int32, trainable=False)
    self._next_slot = 0

  @property
  def num_items(self) -> int:
    """Items held, <= capacity."""
    return int(self._num_filled.numpy())

  def add(self, traj_steps: transitions.TrajectorySteps) -> None:
    """Writes the items of `traj_steps` (`rollout_steps`' layout: item k is steps 2k, 2k + 1);
    of more than `capacity` items only the last `capacity` are kept."""
    num = min(traj_steps.num_items, self.capacity)
    first = traj_steps.num_items - num
    steps = np.stack([2 * np.arange(first, first + num), 2 * np.arange(first, first + num) + 1],
                     1).reshape(-1)
    slots = (self._next_slot + np.arange(num)) % self.capacity
    rows = np.stack([2 * slots, 2 * slots + 1], 1).reshape(-1, 1)
    tf.nest.map_structure(
        lambda variable, values: variable.scatter_nd_update(
            rows, tf.constant(np.asarray(values)[steps], variable.dtype)),
        self._steps, traj_steps.trajectory)
    self._next_slot = int((self._next_slot + num) % self.capacity)
    self._num_filled.assign(min(self.capacity, self.num_items + num))

  def as_dataset(self, batch_size: int, prefetch: int = tf.data.AUTOTUNE,
                 seed: int = 0) -> tf.data.Dataset:
    """An endless dataset of uniformly sampled batches of the items held at each draw.

    Args:
      batch_size: B.
      prefetch: batches to prefetch.
      seed: seed of the stateless sampler; batch k uses the seed pair (seed, k).

    Returns:
      `tf.data.Dataset` of (Trajectory with outer dims [B, 2], int32 [B] zeros): the same
      elements as `InMemoryReplay.as_dataset`, for `mixed_dataset`. Draw only after `add`.
    """
    def sample(batch_index):
      batch_seed = tf.stack([tf.constant(seed, tf.int64), batch_index])
      tensors = ReplayTensors(tf.nest.map_structure(tf.convert_to_tensor, self._steps),
                              self._items[:self._num_filled])
      return sample_uniform(tensors, batch_size, batch_seed), tf.zeros([batch_size], tf.int32)

    return tf.data.Dataset.counter().map(sample).prefetch(prefetch)


class ModelRolloutWriter:
  """Writes a rollout into the model table every `interval` train steps (`maybe_roll_out`).

  Args:
    model: The fitted `DynamicsEnsemble`.
    replay: The model table, a `ModelReplay` of `config.capacity` items.
    start_states: float32 [N, O], the dataset's states rollouts start from (uniformly).
    sample_actions: The current policy's `ActionSampler`.
    config: `RolloutConfig`.
    seed: Seeds the starts, actions and members of every rollout.
    reward_shift: Added to the model's rewards, as to the dataset's (`train_eval.reward_shift`).

  Attributes:
    replay: The `ModelReplay`.
  """

  def __init__(self, model: DynamicsEnsemble, replay: 'ModelReplay', start_states: np.ndarray,
               sample_actions: ActionSampler, config: RolloutConfig, seed: int,
               reward_shift: float = 0.0):
    self.replay, self._model, self._start_states = replay, model, start_states
    self._sample_actions, self._config, self._seed = sample_actions, config, seed
    self._reward_shift = reward_shift
    self._last_rollout = None

  def maybe_roll_out(self, step: int) -> int:
    """Rolls out if none has run yet or `step` is in a later interval than the last one
    (`train_eval` calls it before each compiled call of `learner_iterations_per_call` steps,
    so a rollout lands on the first call of each interval; the input pipeline's prefetch
    trains on it up to a few calls later).

    Args:
      step: The train step about to run.

    Returns:
      The number of transitions written (0 if no rollout was due).
    """
    interval = self._config.interval
    if self._last_rollout is not None and step // interval == self._last_rollout // interval:
      return 0
    self._last_rollout = step
    rng = np.random.default_rng([self._seed, step])
    starts = self._start_states[rng.integers(0, self._start_states.shape[0],
                                             self._config.num_starts)]
    steps = rollout_steps(self._model, self._sample_actions, starts, self._config.horizon,
                          seed=int(rng.integers(2**31)),
                          terminal_threshold=self._config.terminal_threshold)
    if self._reward_shift:
      shifted = steps.trajectory.reward + np.float32(self._reward_shift)
      steps = dataclasses.replace(steps, trajectory=steps.trajectory._replace(reward=shifted))
    self.replay.add(steps)
    return steps.num_items


def model_directory(root_dir: str, config: RolloutConfig) -> str:
  """Where COMBO's dynamics model is kept: `config.model_dir`, else root_dir/dynamics_model."""
  return config.model_dir or os.path.join(root_dir, MODEL_DIR)


def build_rollout_writer(root_dir: str, episodes: EpisodeSteps, dataset: dict,
                         data_spec: trajectory.Trajectory, policy: tf_policy.TFPolicy,
                         seed: int, reward_shift: float = 0.0,
                         config: Optional[RolloutConfig] = None) -> ModelRolloutWriter:
  """COMBO's model side of a run: the dynamics model (fit or restored), the empty model
  table and the writer that fills it with `policy`'s rollouts.

  Args:
    root_dir: The run's directory (the model goes to root_dir/dynamics_model unless
      `config.model_dir`).
    episodes: The training episodes (what the model is fit on, and the starts).
    dataset: The dataset's identity, saved with the model (`model_ope.model_settings`).
    data_spec: The offline replay's step spec (`Replay.data_spec`).
    policy: The policy rolled out (the agent's `collect_policy`: the trained actor, sampled).
    seed: Seeds the rollouts.
    reward_shift: `ModelRolloutWriter`'s.
    config: `RolloutConfig`; None: the gin-bound one.

  Returns:
    The `ModelRolloutWriter`.

  Raises:
    ValueError: For a `RolloutConfig` setting out of range, or a dataset without
      transitions.
  """
  config = config or RolloutConfig()
  config.check()
  data = ope.dataset_transitions(episodes)
  model = load_or_fit_dynamics_model(model_directory(root_dir, config), data, ModelConfig(),
                                     dataset)
  replay = ModelReplay(data_spec, config.capacity)
  return ModelRolloutWriter(model, replay, data.observation, policy_action_sampler(policy),
                            config, seed, reward_shift)
