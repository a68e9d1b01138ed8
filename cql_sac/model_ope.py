"""Model-based offline policy evaluation: a policy's episode return in a learned dynamics model.

The estimators of `cql_sac.ope` score a policy on the dataset's own transitions, so none of
them sees the states the policy itself reaches, where on Hopper its collapses happen
(docs/selection.md). This one does, the way DOPE's model-based estimator does (Fu et al.
2021, "Benchmarks for Deep Off-Policy Evaluation", section 5: an ensemble of feed-forward
dynamics models, the policy rolled out in it from the dataset's initial states; the
ensemble of probabilistic networks follows Chua et al. 2018, PETS, with a deterministic
mean here):

* **Model**: K independently initialized MLPs, each fit by mean squared error to the
  standardized (s' − s, r) of every transition (s, a, r, d, s') from the standardized (s, a),
  with a logistic output for "s' is terminal" (d = 0) fit by cross-entropy, the rare terminal
  class weighted by sqrt(#non-terminal / #terminal). The members see independent uniform
  batches.
* **Rollout**: from each initial state, the policy μ acts; the next state, reward and terminal
  probability are the means over the K members; the rollout stops after the step whose
  terminal probability exceeds `terminal_threshold`, or after `horizon` steps. Next states are
  clipped to the dataset's observation range widened by half its span on each side, so that a
  model driven off its data cannot overflow (out-of-range states are not ended: on Hopper that
  cut good gaits short).
* **Estimate**: the mean undiscounted return over the rollouts, in the dataset's reward units:
  an episode return, comparable to the D4RL normalized score's constants.

Measured on the shipped configs' runs (docs/selection.md, "The model estimate in
`cql_sac_select`"): mean rank correlation with the real return 0.45-0.98 on the Hopper,
HalfCheetah and Walker2d medium-replay runs, better than FQE's on Hopper; like FQE it misses
Hopper's collapses, and on hopper-medium it rated a policy that falls at once as never falling.
"""

import dataclasses
import json
import os
import shutil
from typing import Callable, Mapping, NamedTuple, Optional, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from cql_sac.files import write_file_atomically
from cql_sac.ope import Transitions

MODEL_SETTINGS_FILE = 'model_settings.json'
_CHECKPOINT_PREFIX = 'dynamics_model'


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The settings of the dynamics model and its rollouts (gin-configurable: COMBO's model,
  `cql_sac.model_rollouts`, is built with the bound values).

  Attributes:
    ensemble_size: K, the number of MLPs.
    hidden_layers: Widths of each MLP's swish layers.
    num_steps: Adam steps of the fit; every member takes a batch at each.
    batch_size: Transitions per member per step, uniform with replacement.
    learning_rate: Adam learning rate.
    steps_per_call: Fit steps per compiled call (a `tf.while_loop`).
    num_rollouts: Initial states rolled out from (all of them if the dataset has fewer),
      drawn without replacement by `seed`.
    horizon: Steps per rollout at most; None: the task's episode length.
    terminal_threshold: A rollout ends after a step whose mean terminal probability exceeds it.
    jit_compile: Compile the fit with XLA.
    seed: Seeds the initialization, the batches and the initial states.
  """
  ensemble_size: int = 5
  hidden_layers: Tuple[int, ...] = (200, 200, 200)
  num_steps: int = 30000
  batch_size: int = 256
  learning_rate: float = 1e-3
  steps_per_call: int = 1000
  num_rollouts: int = 300
  horizon: Optional[int] = None
  terminal_threshold: float = 0.5
  jit_compile: bool = True
  seed: int = 0


class _Standardizer(tf.Module):
  """x ↦ (x − mean)/std with the statistics of the fit's data, kept in the checkpoint."""

  def __init__(self, values: np.ndarray, name: str):
    super().__init__(name=name)
    self.mean = tf.Variable(values.mean(0).astype(np.float32), trainable=False, name='mean')
    self.std = tf.Variable(values.std(0).astype(np.float32) + 1e-6, trainable=False,
                           name='std')


class DynamicsEnsemble(tf.Module):
  """K MLPs (s, a) → (s' − s, r, terminal logit) and the statistics that scale them.

  Build it with `fit_dynamics_model`, or restore one with `load_dynamics_model`.

  Args:
    transitions: The `Transitions` the statistics come from (N >= 1).
    config: `ModelConfig`.
  """

  def __init__(self, transitions: Transitions, config: ModelConfig):
    super().__init__(name='DynamicsEnsemble')
    self._observation_size = transitions.observation.shape[1]
    self.inputs = _Standardizer(
        np.concatenate([transitions.observation, transitions.action], 1), 'inputs')
    self.deltas = _Standardizer(transitions.next_observation - transitions.observation,
                                'deltas')
    self.rewards = _Standardizer(transitions.reward[:, None], 'rewards')
    low, high = transitions.observation.min(0), transitions.observation.max(0)
    self.state_low = tf.Variable(low - (high - low) / 2, trainable=False, name='state_low')
    self.state_high = tf.Variable(high + (high - low) / 2, trainable=False, name='state_high')
    tf.random.set_seed(config.seed)  # The initializers draw from TF's global generator.
    self.members = [
        tf.keras.Sequential([tf.keras.layers.Dense(width, activation='swish')
                             for width in config.hidden_layers]
                            + [tf.keras.layers.Dense(self._observation_size + 2)],
                            name=f'member_{k}')
        for k in range(config.ensemble_size)]
    for member in self.members:
      member.build((None, transitions.observation.shape[1] + transitions.action.shape[1]))

  def outputs(self, observation: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
    """float32 [K, B, O + 2]: each member's standardized Δs (O), reward and terminal logit."""
    inputs = self.standardized_inputs(observation, action)
    return tf.stack([member(inputs) for member in self.members])

  def standardized_inputs(self, observation: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
    """float32 [B, O + A]: (s, a) standardized by the fit data's statistics."""
    return (tf.concat([observation, action], 1) - self.inputs.mean) / self.inputs.std

  @tf.function(autograph=False)
  def predict(self, observation: tf.Tensor, action: tf.Tensor):
    """The ensemble's mean prediction of one step.

    Args:
      observation: float32 [B, O], s.
      action: float32 [B, A], a.

    Returns:
      (s' float32 [B, O] clipped to the widened data range, r float32 [B] reward units,
      terminal probability float32 [B]).
    """
    outputs = self.outputs(observation, action)
    terminal = tf.reduce_mean(tf.sigmoid(outputs[:, :, self._observation_size + 1]), 0)
    next_observation, reward, _ = self._step(observation, tf.reduce_mean(outputs, 0))
    return next_observation, reward, terminal

  @tf.function(autograph=False)
  def member_predict(self, observation: tf.Tensor, action: tf.Tensor, member: tf.Tensor):
    """One step predicted by a chosen member per row (MOPO's and COMBO's rollouts).

    Args:
      observation: float32 [B, O], s.
      action: float32 [B, A], a.
      member: int32 [B], the member k in [0, K) of each row.

    Returns:
      (s' float32 [B, O] clipped as `predict`'s, r float32 [B] reward units, terminal
      probability float32 [B]), each member k's own.
    """
    outputs = self.outputs(observation, action)  # [K, B, O + 2]
    rows = tf.range(tf.shape(member)[0])
    return self._step(observation, tf.gather_nd(outputs, tf.stack([member, rows], 1)))

  def _step(self, observation: tf.Tensor, output: tf.Tensor):
    """(s', r, terminal probability) of standardized outputs [B, O + 2] at s [B, O]."""
    size = self._observation_size
    next_observation = observation + output[:, :size] * self.deltas.std + self.deltas.mean
    next_observation = tf.clip_by_value(next_observation, self.state_low, self.state_high)
    reward = output[:, size] * self.rewards.std[0] + self.rewards.mean[0]
    return next_observation, reward, tf.sigmoid(output[:, size + 1])


def fit_dynamics_model(transitions: Transitions, config: ModelConfig) -> DynamicsEnsemble:
  """Fits a `DynamicsEnsemble` to the transitions (module docstring).

  Args:
    transitions: The dataset's `Transitions` (N), rewards in environment units; d = 0 marks a
      terminal s'.
    config: `ModelConfig`.

  Returns:
    The fitted `DynamicsEnsemble`.

  Raises:
    ValueError: If there are no transitions.
  """
  num = transitions.reward.shape[0]
  if num == 0:
    raise ValueError('The dynamics model needs transitions; the dataset gives none.')
  model = DynamicsEnsemble(transitions, config)
  terminal = (transitions.discount == 0).astype(np.float32)
  fraction = float(terminal.mean())
  terminal_weight = np.sqrt((1.0 - fraction) / fraction) if 0 < fraction < 1 else 1.0
  targets = np.concatenate([
      (transitions.next_observation - transitions.observation - model.deltas.mean.numpy())
      / model.deltas.std.numpy(),
      (transitions.reward[:, None] - model.rewards.mean.numpy()) / model.rewards.std.numpy(),
      terminal[:, None]], 1).astype(np.float32)
  data = tuple(tf.constant(x, tf.float32) for x in (
      transitions.observation, transitions.action, targets))
  optimizer = tf.keras.optimizers.Adam(learning_rate=config.learning_rate)
  variables = [v for member in model.members for v in member.trainable_variables]
  optimizer.build(variables)
  size = transitions.observation.shape[1]

  def fit_step(step):
    """One Adam step of every member on its own batch; the summed loss."""
    seed = tf.stack([tf.constant(config.seed, tf.int64), step])
    index = tf.random.stateless_uniform([config.ensemble_size, config.batch_size], seed, 0,
                                        num, tf.int64)
    observation, action, target = (tf.gather(x, index) for x in data)  # [K, B, ...].
    with tf.GradientTape() as tape:
      loss = 0.0
      for k, member in enumerate(model.members):
        out = member(model.standardized_inputs(observation[k], action[k]))
        loss += tf.reduce_mean(tf.square(out[:, :size + 1] - target[k, :, :size + 1]))
        loss += tf.reduce_mean(tf.nn.weighted_cross_entropy_with_logits(
            target[k, :, size + 1], out[:, size + 1], terminal_weight))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  @tf.function(autograph=False, jit_compile=config.jit_compile)
  def fit_steps(start, count):
    """`count` steps numbered from `start`; the mean of their losses."""
    def body(i, total):
      return i + 1, total + fit_step(start + tf.cast(i, tf.int64))
    _, total = tf.while_loop(lambda i, _: i < count, body, (tf.constant(0), tf.constant(0.0)))
    return total / tf.cast(count, tf.float32)

  for start in range(0, config.num_steps, config.steps_per_call):
    loss = fit_steps(tf.constant(start, tf.int64),
                     tf.constant(min(config.steps_per_call, config.num_steps - start)))
    logging.log_every_n_seconds(logging.INFO, 'Dynamics model: step %d of %d, loss %.4f', 30,
                                start + config.steps_per_call, config.num_steps, float(loss))
  return model


def dataset_identity(record: Mapping[str, object]) -> dict:
  """The dataset_name, data_dir and data_take of a run record (or of `train_eval`'s
  arguments): what a dynamics model was fit on, saved with it (`model_settings`)."""
  return {key: record.get(key) for key in ('dataset_name', 'data_dir', 'data_take')}


def model_settings(config: ModelConfig, dataset: dict) -> dict:
  """What a saved model was fit with: the config and the dataset's identity (JSON-ready)."""
  return json.loads(json.dumps({'model': dataclasses.asdict(config), 'dataset': dataset}))


def load_or_fit_dynamics_model(model_dir: str, transitions: Transitions, config: ModelConfig,
                               dataset: dict) -> DynamicsEnsemble:
  """The model saved in `model_dir` with the same settings, or a new fit saved there.

  A model dir with other settings (another dataset or config) is replaced: it holds only
  what this function wrote.

  Args:
    model_dir: Directory of the saved model (created if missing).
    transitions: The dataset's `Transitions`.
    config: `ModelConfig`.
    dataset: The dataset's identity (e.g. its name and the run record's data_take).

  Returns:
    The `DynamicsEnsemble`.
  """
  settings = model_settings(config, dataset)
  settings_path = os.path.join(model_dir, MODEL_SETTINGS_FILE)
  try:
    with open(settings_path) as f:
      saved = json.load(f)
  except (OSError, ValueError):
    saved = None
  if saved == settings:
    model = DynamicsEnsemble(transitions, config)
    tf.train.Checkpoint(model=model).read(
        os.path.join(model_dir, _CHECKPOINT_PREFIX)).assert_existing_objects_matched()
    logging.info('Dynamics model restored from %s.', model_dir)
    return model
  logging.info('Fitting the dynamics model (%d steps); it is saved to %s.', config.num_steps,
               model_dir)
  model = fit_dynamics_model(transitions, config)
  staging = model_dir.rstrip('/') + '.tmp'
  shutil.rmtree(staging, ignore_errors=True)
  tf.train.Checkpoint(model=model).write(os.path.join(staging, _CHECKPOINT_PREFIX))
  write_file_atomically(os.path.join(staging, MODEL_SETTINGS_FILE), json.dumps(settings))
  shutil.rmtree(model_dir, ignore_errors=True)
  os.replace(staging, model_dir)
  return model


class ModelRollouts(NamedTuple):
  """What `model_return` gives.

  Attributes:
    mean_return: The mean undiscounted return of the rollouts, reward units.
    mean_length: Their mean length in steps.
  """
  mean_return: float
  mean_length: float


def initial_states_for_rollouts(initial_states: np.ndarray, config: ModelConfig) -> np.ndarray:
  """float32 [min(E, num_rollouts), O]: the initial states drawn without replacement by seed."""
  count = min(config.num_rollouts, initial_states.shape[0])
  chosen = np.random.default_rng(config.seed).choice(initial_states.shape[0], count,
                                                      replace=False)
  return np.asarray(initial_states[np.sort(chosen)], np.float32)


def model_return(model: DynamicsEnsemble, policy: Callable[[np.ndarray], np.ndarray],
                 initial_states: np.ndarray, horizon: int,
                 terminal_threshold: float = 0.5) -> ModelRollouts:
  """Rolls a deterministic policy out in the model (module docstring) and averages its return.

  Args:
    model: A fitted `DynamicsEnsemble`.
    policy: μ: float32 observations [B, O] → float32 actions [B, A].
    initial_states: float32 [E, O], E >= 1, one rollout from each.
    horizon: Steps per rollout at most, >= 1.
    terminal_threshold: A rollout ends after the step whose terminal probability exceeds it.

  Returns:
    `ModelRollouts`.

  Raises:
    ValueError: If there are no initial states or the horizon is below 1.
  """
  if initial_states.shape[0] == 0 or horizon < 1:
    raise ValueError(f'A model rollout needs initial states and a horizon >= 1; got '
                     f'{initial_states.shape[0]} states and horizon {horizon}.')
  observation = np.asarray(initial_states, np.float32)
  alive = np.ones(observation.shape[0], bool)
  total, length = np.zeros(observation.shape[0]), np.zeros(observation.shape[0])
  for _ in range(horizon):
    action = np.asarray(policy(observation), np.float32)
    next_observation, reward, terminal = (x.numpy() for x in model.predict(
        tf.constant(observation), tf.constant(action)))
    total += np.where(alive, reward, 0.0)
    length += alive
    alive &= terminal <= terminal_threshold
    if not alive.any():
      break
    observation = next_observation
  return ModelRollouts(float(total.mean()), float(length.mean()))


class ModelEstimator(NamedTuple):
  """A fitted model with the rollouts every policy it rates shares (`cql_sac_select`'s model
  estimate, `cql_sac.policy_rollback`'s rating).

  Attributes:
    model: The fitted `DynamicsEnsemble`.
    initial_states: float32 [E, O], the rollouts' initial states.
    horizon: Steps per rollout at most.
    terminal_threshold: `model_return`'s.
  """
  model: DynamicsEnsemble
  initial_states: np.ndarray
  horizon: int
  terminal_threshold: float

  def rate(self, policy: Callable[[np.ndarray], np.ndarray]) -> ModelRollouts:
    """`model_return` of μ (float32 [B, O] → float32 [B, A]) from the shared initial states."""
    return model_return(self.model, policy, self.initial_states, self.horizon,
                        self.terminal_threshold)


def build_model_estimator(model_dir: str, transitions: Transitions, initial_states: np.ndarray,
                          config: ModelConfig, dataset: dict,
                          max_episode_steps: int) -> ModelEstimator:
  """The dataset's model (`load_or_fit_dynamics_model`) with `config.num_rollouts` of the
  initial states (`initial_states_for_rollouts`) and the horizon `config.horizon`, or the
  task's episode length `max_episode_steps` if None.

  Args:
    model_dir: `load_or_fit_dynamics_model`'s.
    transitions: The dataset's `Transitions`.
    initial_states: float32 [E, O], every episode's first observation.
    config: `ModelConfig`.
    dataset: The dataset's identity (`dataset_identity`).
    max_episode_steps: The task's episode length in steps.

  Returns:
    `ModelEstimator`.
  """
  model = load_or_fit_dynamics_model(model_dir, transitions, config, dataset)
  return ModelEstimator(model, initial_states_for_rollouts(initial_states, config),
                        config.horizon or max_episode_steps, config.terminal_threshold)
