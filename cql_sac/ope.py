"""Offline policy evaluation: how good a saved policy is, from the dataset alone.

Three estimates of a deterministic evaluation policy μ (the greedy policy a run exports):

* `fitted_q_evaluation`: Fitted Q Evaluation (Le, Voloshin & Yue 2019, "Batch Policy Learning
  under Constraints", Algorithm 3; the estimator Paine et al. 2020 found most reliable for
  ranking offline policies). A fresh critic Q_θ is regressed on the TD target
  r + γ·d·Q_θ̄(s', μ(s')) over the dataset's transitions (s, a, r, d, s'), with a Polyak-averaged
  target copy θ̄, both starting at the output r̄/(1 − γ) of the dataset's mean reward; the
  policy's discounted return is then the mean of Q_θ̄(s0, μ(s0)) over the dataset's initial
  states s0 (the averaged critic: less SGD noise than the last iterate). μ is deterministic, so its actions at s' are computed once.
* `critic_initial_value`: the trained CQL critics' own min_k Q_k(s0, μ(s0)), in their
  training units (CQL's Q is pushed down on purpose, so only its ranking can mean anything).
* `critic_td_error`: the root mean squared Bellman residual of the trained critic for μ on
  (held-out) transitions, Q_1(s, a) − [c·(r + shift) + γ·d·min_k Q̄_k(s', μ(s'))].

Units: FQE regresses raw environment rewards (internally divided by `reward_unit`, then
multiplied back), so its value is in the reward units of the D4RL score.
`undiscounted_return` turns a discounted value into an episode return under the assumption
that the policy collects the same reward at every step of a full-length episode of H steps:
R ≈ V·H / Σ_{t<H} γ^t.
"""

import dataclasses
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from cql_sac.critic_network import MultiActionCriticNetwork
from cql_sac.datasets.steps import EpisodeSteps
from cql_sac.datasets.transitions import to_trajectory_steps
from cql_sac.networks import ObservationStatistics


class Transitions(NamedTuple):
  """A dataset's transitions (s, a, r, d, s') as float32 numpy arrays, N of them.

  Attributes:
    observation: [N, O] s.
    action: [N, A] a (the dataset's).
    reward: [N] r, environment units.
    discount: [N] d: 0 on a transition into a terminal state, else the step's discount.
    next_observation: [N, O] s'.
  """
  observation: np.ndarray
  action: np.ndarray
  reward: np.ndarray
  discount: np.ndarray
  next_observation: np.ndarray


def dataset_transitions(steps: EpisodeSteps) -> Transitions:
  """The transitions of every episode with two or more steps, as the replay forms them
  (`cql_sac.datasets.transitions.to_trajectory_steps`, no padding, no reward shift).

  Args:
    steps: Validated `EpisodeSteps`.

  Returns:
    `Transitions`, float32.
  """
  traj_steps = to_trajectory_steps(steps, pad_end_of_episodes=False)
  traj, (first, second) = traj_steps.trajectory, traj_steps.items.T
  as_float = lambda x: np.asarray(x, np.float32)
  return Transitions(as_float(traj.observation[first]), as_float(traj.action[first]),
                     as_float(traj.reward[first]), as_float(traj.discount[first]),
                     as_float(traj.observation[second]))


def initial_observations(steps: EpisodeSteps) -> np.ndarray:
  """float32 [E, O]: the first observation of every episode that has steps."""
  return np.asarray(steps.observation[steps.is_first], np.float32)


def undiscounted_return(discounted_value, gamma: float, horizon: int):
  """R ≈ V·H / Σ_{t<H} γ^t: the episode return of a policy earning the same reward at each of
  H steps whose discounted value is V (an assumption: a policy that falls early earns less).

  Args:
    discounted_value: V, a float or array, reward units.
    gamma: γ in (0, 1].
    horizon: H >= 1, the task's episode length in steps (`D4rlDataset.max_episode_steps`).

  Returns:
    R in the same reward units and shape.
  """
  normalizer = float(np.sum(gamma ** np.arange(horizon, dtype=np.float64)))
  return discounted_value * horizon / normalizer


@dataclasses.dataclass(frozen=True)
class FqeConfig:
  """The settings of one Fitted Q Evaluation.

  Attributes:
    num_steps: TD gradient steps (Adam).
    batch_size: Transitions per step, drawn uniformly with replacement.
    hidden_layers: Widths of the critic's ReLU layers (`MultiActionCriticNetwork`).
    learning_rate: Adam learning rate.
    target_update_tau: Polyak rate τ of the target critic, θ̄ ← (1−τ)·θ̄ + τ·θ per step.
    gamma: Discount γ of the evaluated return.
    steps_per_call: Gradient steps per compiled call (a `tf.while_loop`).
    jit_compile: Compile each call with XLA.
    seed: Seeds the critic's initialization and the batches.
  """
  num_steps: int = 100000
  batch_size: int = 256
  hidden_layers: Tuple[int, ...] = (256, 256, 256)
  learning_rate: float = 3e-4
  target_update_tau: float = 5e-3
  gamma: float = 0.99
  steps_per_call: int = 1000
  jit_compile: bool = True
  seed: int = 0


class FqeResult(NamedTuple):
  """What `fitted_q_evaluation` gives.

  Attributes:
    discounted_value: mean Q̄(s0, μ(s0)) over the initial states (the target critic, the
      Polyak average of the critic's last iterates), reward units.
    td_loss: The mean squared TD error of the last call's steps, in squared reward units.
  """
  discounted_value: float
  td_loss: float


def reward_unit(reward: np.ndarray, gamma: float) -> float:
  """u = mean |r| / (1 − γ), at least 1e-6: FQE regresses Q/u, which is of order 1 whatever
  the task's reward size (the estimate is multiplied back by u)."""
  return max(float(np.mean(np.abs(reward))) / (1.0 - gamma), 1e-6)


def fitted_q_evaluation(transitions: Transitions, next_actions: np.ndarray,
                        initial_states: np.ndarray, initial_actions: np.ndarray,
                        config: FqeConfig,
                        observation_statistics: Optional[ObservationStatistics] = None
                        ) -> FqeResult:
  """Fitted Q Evaluation of a deterministic policy μ (module docstring).

  Args:
    transitions: The dataset's `Transitions` (N), rewards in environment units.
    next_actions: float32 [N, A], μ(s') of every transition.
    initial_states: float32 [E, O], the initial states s0.
    initial_actions: float32 [E, A], μ(s0).
    config: `FqeConfig`.
    observation_statistics: The critic normalizes its observations with these (the
      dataset's, `cql_sac.datasets.normalization.observation_statistics`), or None.

  Returns:
    `FqeResult`.

  Raises:
    ValueError: If there are no transitions or initial states, or the shapes disagree.
  """
  num = transitions.reward.shape[0]
  if num == 0 or initial_states.shape[0] == 0:
    raise ValueError('Fitted Q Evaluation needs transitions and initial states; the dataset '
                     f'gives {num} transitions and {initial_states.shape[0]} initial states.')
  if next_actions.shape != transitions.action.shape or (
      initial_actions.shape[0] != initial_states.shape[0]):
    raise ValueError(f'μ(s\') {next_actions.shape} must match the actions '
                     f'{transitions.action.shape}, μ(s0) {initial_actions.shape} the initial '
                     f'states {initial_states.shape}.')
  unit = reward_unit(transitions.reward, config.gamma)
  data = tuple(tf.constant(x, tf.float32) for x in (
      transitions.observation, transitions.action, transitions.reward / unit,
      transitions.discount, transitions.next_observation, next_actions))
  critic, target = _make_critics(transitions, config, observation_statistics)
  # Start both critics at the value of the dataset's mean reward forever, r̄/(1 − γ): the TD
  # steps then correct a guess of the right size instead of growing Q from 0 through the
  # target's lag (hopper-medium, last iterate: 283 after 20,000 steps and 100,000 steps;
  # from 0: 124 and 270, and 289 after 200,000).
  initial_q = float(np.mean(transitions.reward)) / (1.0 - config.gamma) / unit
  for variable in critic.variables + target.variables:
    if variable.name.endswith('value/bias:0'):  # MultiActionCriticNetwork's output bias.
      variable.assign([initial_q])
  trainer = _TdTrainer(critic, target, config)
  for start in range(0, config.num_steps, config.steps_per_call):
    loss = trainer.train(data, tf.constant(start, tf.int64),
                         tf.constant(min(config.steps_per_call, config.num_steps - start)))
  # The Polyak-averaged target critic: an average of the last ~1/τ iterates, less noisy.
  q0, _ = target((tf.constant(initial_states), tf.constant(initial_actions, tf.float32)))
  return FqeResult(float(tf.reduce_mean(q0)) * unit, float(loss) * unit ** 2)


def _make_critics(transitions: Transitions, config: FqeConfig,
                  statistics: Optional[ObservationStatistics]):
  """(critic, target critic), the target a copy of the freshly initialized critic."""
  specs = (tf.TensorSpec(transitions.observation.shape[1:], tf.float32),
           tf.TensorSpec(transitions.action.shape[1:], tf.float32))
  mean, std = statistics or (None, None)
  tf.random.set_seed(config.seed)  # The initializers draw from TF's global generator.
  critic, target = (MultiActionCriticNetwork(specs, tuple(config.hidden_layers), name=name,
                                             observation_mean=mean, observation_std=std)
                    for name in ('FqeCritic', 'FqeTargetCritic'))
  critic.create_variables()
  target.create_variables()
  for source, copy in zip(critic.variables, target.variables):
    copy.assign(source)
  return critic, target


class _TdTrainer(tf.Module):
  """K TD steps of the FQE critic per call, one compiled `tf.while_loop`."""

  def __init__(self, critic, target, config: FqeConfig):
    super().__init__(name='FqeTrainer')
    self._critic, self._target, self._config = critic, target, config
    self._optimizer = tf.keras.optimizers.Adam(learning_rate=config.learning_rate)
    self._optimizer.build(critic.trainable_variables)
    self.train = tf.function(self._train, autograph=False, jit_compile=config.jit_compile)

  def _step(self, data, step):
    """One TD step on a uniform batch (seeded by `seed` and `step`); its mean squared TD error."""
    observation, action, reward, discount, next_observation, next_action = data
    seed = tf.stack([tf.constant(self._config.seed, tf.int64), step])
    index = tf.random.stateless_uniform([self._config.batch_size], seed, 0,
                                        tf.shape(reward, out_type=tf.int64)[0], tf.int64)
    batch = lambda x: tf.gather(x, index)
    next_q, _ = self._target((batch(next_observation), batch(next_action)))
    td_target = tf.stop_gradient(batch(reward) + self._config.gamma * batch(discount) * next_q)
    with tf.GradientTape() as tape:
      q, _ = self._critic((batch(observation), batch(action)))
      loss = tf.reduce_mean(tf.square(q - td_target))
    variables = self._critic.trainable_variables
    self._optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    tau = self._config.target_update_tau
    for source, copy in zip(self._critic.variables, self._target.variables):
      copy.assign((1.0 - tau) * copy + tau * source)
    return loss

  def _train(self, data, start, num_steps):
    """`num_steps` TD steps numbered from `start`; the mean of their losses."""
    def body(i, total):
      return i + 1, total + self._step(data, start + tf.cast(i, tf.int64))
    _, total = tf.while_loop(lambda i, _: i < num_steps, body,
                             (tf.constant(0), tf.constant(0.0)))
    return total / tf.cast(num_steps, tf.float32)


def critic_initial_value(critics: Sequence[tf.Module], initial_states: np.ndarray,
                         initial_actions: np.ndarray) -> float:
  """The trained critics' mean over s0 of min_k Q_k(s0, μ(s0)), in their training units.

  Args:
    critics: TF-Agents critic networks, called as `critic((observation, action))` → Q [E].
    initial_states: float32 [E, O].
    initial_actions: float32 [E, A], μ(s0).

  Returns:
    The mean, a float.
  """
  return float(tf.reduce_mean(_min_q(critics, initial_states, initial_actions)))


def critic_td_error(critic: tf.Module, target_critics: Sequence[tf.Module],
                    transitions: Transitions, next_actions: np.ndarray, gamma: float,
                    reward_scale_factor: float, reward_shift: float) -> float:
  """Root mean squared Bellman residual of a trained critic for μ, in its training units.

  δ = Q(s, a) − [c·(r + shift) + γ·d·min_k Q̄_k(s', μ(s'))] over `transitions`, with the run's
  reward scale c and shift (`train_eval.reward_scale_factor` after normalization,
  `reward_shift`): the TD target the agent trains on, with μ's deterministic action at s' and
  no entropy term.

  Args:
    critic: The online critic Q (Q_1).
    target_critics: The target critics Q̄_k.
    transitions: `Transitions` (N), raw rewards.
    next_actions: float32 [N, A], μ(s').
    gamma: The run's γ.
    reward_scale_factor: c.
    reward_shift: Added to each reward before scaling, environment units.

  Returns:
    sqrt(mean δ²), a float in the critic's units (divide by c for reward units).
  """
  q, _ = critic((tf.constant(transitions.observation), tf.constant(transitions.action)))
  next_q = _min_q(target_critics, transitions.next_observation, next_actions)
  td_target = (reward_scale_factor * (transitions.reward + reward_shift)
               + gamma * transitions.discount * next_q)
  return float(tf.sqrt(tf.reduce_mean(tf.square(tf.cast(q, tf.float32) - td_target))))


def _min_q(critics, observations: np.ndarray, actions: np.ndarray) -> tf.Tensor:
  """min_k Q_k(s, a), float32 [rows]."""
  inputs = (tf.constant(observations, tf.float32), tf.constant(actions, tf.float32))
  return tf.reduce_min(tf.stack([tf.cast(critic(inputs)[0], tf.float32) for critic in critics]),
                       axis=0)
