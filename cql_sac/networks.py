"""Network factory for CQL-SAC: the TF-Agents kumar20 architecture.

Actor: `ActorDistributionNetwork` (ReLU MLP, glorot-uniform kernels) with a
`TanhNormalProjectionNetwork` head, i.e. a tanh-squashed diagonal Gaussian.
Critics: `MultiActionCriticNetwork`, the function of TF-Agents'
`ddpg.critic_network.CriticNetwork` on concat(observation, action) (ReLU joint
layers, linear Q output, glorot-uniform kernels) computed once per state for the
2N+1 actions of CQL's critic step. All four critics (two online, two targets) are
built here, so the agent copies none.

Anchor options (off by default): orthogonal initialization of the critics and,
separately, of the actor, CORL's and JaxCQL's log-std head
(`LogStdTanhNormalProjectionNetwork`) in place of TF-Agents' exp(raw) head, and layer
normalization in the critics (ReBRAC, RLPD).

Recurrent networks (`lstm_size`, for partially observed tasks): TF-Agents'
`ActorDistributionRnnNetwork` (same tanh-Normal head) and `CriticRnnNetwork`, with the
LSTM after the first hidden layer of each; the agent then trains on sequences.

Mixed precision: with `compute_dtype='bfloat16'` the critics, which take
about 95% of a CQL step's FLOPs (they see B·(2N+1) rows, the actor B), run
their matmuls in bfloat16 while keeping float32 variables and returning float32
Q-values. The actor stays float32 (its tanh-Normal log-densities need the
precision and `TanhNormalProjectionNetwork` requires float32 inputs).
"""

import functools
from typing import NamedTuple, Optional, Sequence, Tuple

import gin
import numpy as np
import tensorflow as tf
from tf_agents.agents.ddpg import critic_rnn_network
from tf_agents.agents.sac import tanh_normal_projection_network
from tf_agents.networks import actor_distribution_network
from tf_agents.networks import actor_distribution_rnn_network
from tf_agents.networks import network

from cql_sac.critic_network import MultiActionCriticNetwork
from cql_sac.critic_network import normalization_layer


class ObservationStatistics(NamedTuple):
  """Per-dimension statistics the networks normalize observations with, (s − mean)/std.

  `cql_sac.datasets.normalization.observation_statistics` computes them from a dataset
  (CORL's `compute_mean_std`, algorithms/offline/cql.py@eeeeef2).

  Attributes:
    mean: float32 [O], the mean of the dataset's transition observations.
    std: float32 [O], their standard deviation plus a floor (CORL's 1e-3).
  """
  mean: np.ndarray
  std: np.ndarray


class CqlSacNetworks(NamedTuple):
  """The actor and the four critics of a CQL-SAC agent."""
  actor: network.Network
  critic_1: network.Network
  critic_2: network.Network
  target_critic_1: network.Network
  target_critic_2: network.Network


LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class LogStdTanhNormalProjectionNetwork(
    tanh_normal_projection_network.TanhNormalProjectionNetwork):
  """Tanh-squashed Gaussian head with CORL's and JaxCQL's log-std parametrization.

  One linear layer gives (mean, raw) [B, A] each; log σ = clip(m·raw + o, −20, 2)
  with trainable scalars m (initial `log_std_multiplier`) and o (initial
  `log_std_offset`), σ = exp(log σ); actions are squashed into the spec as in
  TF-Agents' `TanhNormalProjectionNetwork`, whose distribution this returns.
  Sources: CORL algorithms/offline/cql.py@eeeeef2 (`TanhGaussianPolicy`,
  `Scalar`), JaxCQL SimpleSAC/model.py@bac4299. m = 0 starts every state at
  σ = exp(o) (JaxCQL's AntMaze recipe, young-geng/CQL issue 2).

  Args:
    sample_spec: float32 `BoundedTensorSpec` [A] of actions.
    log_std_multiplier: Initial m (float).
    log_std_offset: Initial o (float), nats.
    orthogonal_init: Output kernel orthogonal with gain 1e-2 (JaxCQL's
      `orthogonal_init`); False: variance scaling 1e-2, fan-in, uniform (JaxCQL's
      default). Bias zero.
    name: Variable scope name.
  """

  def __init__(self, sample_spec, log_std_multiplier: float = 1.0,
               log_std_offset: float = -1.0, orthogonal_init: bool = False,
               name: str = 'LogStdTanhNormalProjectionNetwork'):
    super().__init__(sample_spec, std_transform=self._std_from_raw, name=name)
    kernel_initializer = (
        tf.keras.initializers.Orthogonal(gain=1e-2) if orthogonal_init else
        tf.keras.initializers.VarianceScaling(1e-2, mode='fan_in', distribution='uniform'))
    self._projection_layer = tf.keras.layers.Dense(
        sample_spec.shape.num_elements() * 2, kernel_initializer=kernel_initializer,
        name='projection_layer')
    self._log_std_multiplier = self.add_weight(
        name='log_std_multiplier', shape=[], dtype=tf.float32,
        initializer=tf.keras.initializers.Constant(log_std_multiplier))
    self._log_std_offset = self.add_weight(
        name='log_std_offset', shape=[], dtype=tf.float32,
        initializer=tf.keras.initializers.Constant(log_std_offset))

  def _std_from_raw(self, raw: tf.Tensor) -> tf.Tensor:
    """σ = exp(clip(m·raw + o, −20, 2)), float32 [..., A]."""
    return tf.exp(tf.clip_by_value(
        self._log_std_multiplier * raw + self._log_std_offset, LOG_STD_MIN, LOG_STD_MAX))


@gin.configurable
def make_networks(observation_spec, action_spec,
                  actor_fc_layers: Sequence[int] = (256, 256),
                  critic_joint_fc_layers: Sequence[int] = (256, 256, 256),
                  compute_dtype: str = 'float32',
                  critic_orthogonal_init: bool = False,
                  actor_orthogonal_init: bool = False,
                  critic_layer_norm: bool = False,
                  actor_log_std_head: bool = False,
                  log_std_multiplier: float = 1.0,
                  log_std_offset: float = -1.0,
                  observation_statistics: Optional[ObservationStatistics] = None,
                  lstm_size: Optional[Sequence[int]] = None
                  ) -> CqlSacNetworks:
  """Builds the actor and critic networks.

  Args:
    observation_spec: float32 `TensorSpec` [O] of observations.
    action_spec: float32 `BoundedTensorSpec` [A] of actions.
    actor_fc_layers: Hidden layer widths of the actor.
    critic_joint_fc_layers: Hidden layer widths of each critic.
    compute_dtype: 'float32', or 'bfloat16' for bfloat16 critic matmuls with
      float32 variables.
    critic_orthogonal_init: Orthogonal critic kernels, gain √2 hidden and 1e-2
      output, zero biases (CORL's and JaxCQL's `orthogonal_init`).
    actor_orthogonal_init: The same for the actor's hidden layers (gain √2) and,
      with `actor_log_std_head`, its output layer (1e-2). Separate from the
      critics' because CORL's flag never reaches its actor (cql.py@eeeeef2
      l.338) while JaxCQL's covers both.
    critic_layer_norm: Layer normalization of every hidden layer of the critics
      (`MultiActionCriticNetwork.layer_norm`; ReBRAC's and RLPD's critic).
    actor_log_std_head: `LogStdTanhNormalProjectionNetwork` (CORL, JaxCQL) as the
      actor's head; False: TF-Agents' `TanhNormalProjectionNetwork` (σ = exp(raw)).
    log_std_multiplier: Initial m of that head (CORL's, JaxCQL's
      `policy_log_std_multiplier`).
    log_std_offset: Initial o of that head (their fixed −1).
    observation_statistics: Dataset `ObservationStatistics` (mean, std + 1e-3): every
      network then normalizes its observations itself, (s − mean)/std (CORL's
      `normalize`), so the replay, SavedModel policies and evaluation take raw
      observations. None: no normalization.
    lstm_size: LSTM cell sizes, e.g. (128,): recurrent actor and critics
      (`ActorDistributionRnnNetwork`, `CriticRnnNetwork`: first hidden layer, LSTM, the
      remaining hidden layers). None: feed-forward networks.

  Returns:
    `CqlSacNetworks`; pass them to `CqlSacAgent` as `actor_network`,
    `critic_network`, `critic_network_2`, `target_critic_network` and
    `target_critic_network_2`.

  Raises:
    ValueError: If `compute_dtype` is not one of 'float32', 'bfloat16', or the
      observation or action spec is not a rank-1 float spec (flatten dict
      observations first); with `lstm_size`, for bfloat16, orthogonal initialization,
      layer normalization, the log-std head or observation statistics (feed-forward
      options).
  """
  if lstm_size:
    check_recurrent_options(dict(
        compute_dtype=compute_dtype, critic_orthogonal_init=critic_orthogonal_init,
        actor_orthogonal_init=actor_orthogonal_init, critic_layer_norm=critic_layer_norm,
        actor_log_std_head=actor_log_std_head))
    if observation_statistics is not None:
      raise ValueError('Observation normalization is for feed-forward networks; set '
                       'train_eval.normalize_observations = False or unset '
                       'make_networks.lstm_size.')
    return _recurrent_networks(observation_spec, action_spec, tuple(actor_fc_layers),
                               tuple(critic_joint_fc_layers), tuple(lstm_size))
  head = tanh_normal_projection_network.TanhNormalProjectionNetwork
  if actor_log_std_head:
    head = functools.partial(
        LogStdTanhNormalProjectionNetwork, log_std_multiplier=log_std_multiplier,
        log_std_offset=log_std_offset, orthogonal_init=actor_orthogonal_init)
  mean, std = observation_statistics or (None, None)
  actor = actor_distribution_network.ActorDistributionNetwork(
      observation_spec, action_spec, fc_layer_params=tuple(actor_fc_layers),
      preprocessing_layers=normalization_layer(mean, std),
      kernel_initializer=(tf.keras.initializers.Orthogonal(gain=2 ** 0.5)
                          if actor_orthogonal_init else None),
      continuous_projection_net=head)
  critics = [MultiActionCriticNetwork((observation_spec, action_spec),
                                      tuple(critic_joint_fc_layers), compute_dtype, name=name,
                                      orthogonal_init=critic_orthogonal_init,
                                      layer_norm=critic_layer_norm,
                                      observation_mean=mean, observation_std=std)
             for name in ('CriticNetwork', 'CriticNetwork2', 'TargetCriticNetwork1',
                          'TargetCriticNetwork2')]
  return CqlSacNetworks(actor, *critics)


# make_networks' options of the feed-forward networks only, with their defaults.
_FEED_FORWARD_ONLY = {'compute_dtype': 'float32', 'critic_orthogonal_init': False,
                      'actor_orthogonal_init': False, 'critic_layer_norm': False,
                      'actor_log_std_head': False}


def check_recurrent_options(options: dict) -> None:
  """Checks that no feed-forward-only option of `make_networks` is set with `lstm_size`.

  Args:
    options: {make_networks argument name: value}; missing names take their defaults.

  Raises:
    ValueError: naming the first such option that is not at its default (bfloat16,
      orthogonal initialization, layer normalization, the log-std head).
  """
  for name, default in _FEED_FORWARD_ONLY.items():
    if options.get(name, default) != default:
      raise ValueError(f'make_networks.{name} = {options[name]!r} is for feed-forward '
                       'networks; unset it or make_networks.lstm_size.')


def configured_lstm_size() -> Optional[Tuple[int, ...]]:
  """`make_networks.lstm_size` as bound in gin (None: feed-forward), its options checked.

  Lets `train_eval` refuse a recurrent configuration before it writes anything.

  Raises:
    ValueError: As `check_recurrent_options`, for the options bound in gin.
  """
  try:
    bound = gin.get_bindings(make_networks)
  except ValueError:
    return None
  lstm_size = bound.get('lstm_size')
  if lstm_size:
    check_recurrent_options(bound)
  return tuple(lstm_size) if lstm_size else None


def _recurrent_networks(observation_spec, action_spec, actor_fc_layers, critic_fc_layers,
                        lstm_size) -> CqlSacNetworks:
  """TF-Agents' recurrent actor and critics: first hidden layer, LSTM, the other layers."""
  actor = actor_distribution_rnn_network.ActorDistributionRnnNetwork(
      observation_spec, action_spec, input_fc_layer_params=actor_fc_layers[:1],
      lstm_size=lstm_size, output_fc_layer_params=actor_fc_layers[1:],
      continuous_projection_net=tanh_normal_projection_network.TanhNormalProjectionNetwork)
  critics = [critic_rnn_network.CriticRnnNetwork(
      (observation_spec, action_spec), observation_fc_layer_params=None,
      action_fc_layer_params=None, joint_fc_layer_params=critic_fc_layers[:1],
      lstm_size=lstm_size, output_fc_layer_params=critic_fc_layers[1:],
      kernel_initializer='glorot_uniform', last_kernel_initializer='glorot_uniform',
      name=name)
             for name in ('CriticNetwork', 'CriticNetwork2', 'TargetCriticNetwork1',
                          'TargetCriticNetwork2')]
  return CqlSacNetworks(actor, *critics)
