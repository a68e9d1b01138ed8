"""A Q(s, a) critic that evaluates many actions per state cheaply.

CQL's critic step evaluates each critic on 2N+1 actions per state (the dataset
action and N policy and N uniform samples; Kumar et al. 2020, eq. 4 and
App. F). A critic on concat(observation, action), like TF-Agents'
`ddpg.critic_network.CriticNetwork`, recomputes the observation's share of its
first layer for every one of them. Since concat(o, a)·W = o·W_o + a·W_a, this
network computes o·W_o + b once per state and adds it to a·W_a for each of the
M actions: the same function, with the first layer's observation matmul and
its weight gradient on B rows instead of B·M. The output layer (width 1) is a
matrix-vector product.

Architecture, initialization and variables match `CriticNetwork` with
`joint_fc_layer_params` and glorot-uniform kernels: ReLU layers on
concat(observation, action) and a linear output; the first kernel is one
[O + A, H] variable, sliced at use, and the variables come in `CriticNetwork`'s order (kernel
and bias per layer, then the output layer's), so weights copy between the two with `zip`.
"""

from typing import List, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf
from tf_agents.networks import network

_COMPUTE_DTYPES = {'float32': tf.float32, 'bfloat16': tf.bfloat16}


@gin.configurable
class MultiActionCriticNetwork(network.Network):
  """Q(s, a) = MLP(concat(s, a)), computed per state for sets of actions.

  Call it as a TF-Agents critic, `net((observation, action), step_type)` with
  observation [B, O] and action [B, A] → (Q [B], ()), or with M actions per
  state through `q_for_action_sets(observation [B, O], actions [B, M, A])`
  → Q [B, M].

  Args:
    input_tensor_spec: (observation_spec, action_spec), float32 `TensorSpec`s
      of rank 1 ([O] and [A]).
    joint_fc_layer_params: Widths of the hidden ReLU layers (at least one).
    compute_dtype: 'float32', or 'bfloat16' to run the hidden and output layers'
      matmuls in bfloat16 (the thin first layer, the variables and the
      returned Q stay float32).
    name: Variable scope name.
    orthogonal_init: Orthogonal kernels, gain √2 for the hidden layers and 1e-2 for
      the output (CORL's `orthogonal_init`, algorithms/offline/cql.py@eeeeef2,
      `init_module_weights`; JaxCQL's). Biases are zero either way. False:
      glorot-uniform kernels, as `CriticNetwork`.
    observation_mean: float [O] or None. With `observation_std`, the network sees
      (observation − mean)/std (`cql_sac.datasets.normalization`, CORL's `normalize`);
      constants of the graph, not variables.
    observation_std: float [O] (> 0) or None.
    layer_norm: Layer normalization (Ba et al. 2016; learned scale and offset, ε 1e-5)
      of every hidden layer's pre-activation, computed in float32: ReLU(LN(x·W + b)), the
      critic of ReBRAC (Tarasov et al. 2023) and RLPD (Ball et al. 2023), which bounds
      Q's growth away from the data. False: `CriticNetwork`'s layers.

  Raises:
    ValueError: If the specs are not two rank-1 float specs, if there are no
      hidden layers, if `compute_dtype` is unknown, or if only one of
      `observation_mean` and `observation_std` is given.
  """

  def __init__(self, input_tensor_spec, joint_fc_layer_params: Sequence[int] = (256, 256),
               compute_dtype: str = 'float32', name: str = 'CriticNetwork',
               orthogonal_init: bool = False,
               observation_mean: Optional[Sequence[float]] = None,
               observation_std: Optional[Sequence[float]] = None,
               layer_norm: bool = False):
    super().__init__(input_tensor_spec=input_tensor_spec, state_spec=(), name=name)
    observation_spec, action_spec = _split_specs(input_tensor_spec)
    if not joint_fc_layer_params:
      raise ValueError('joint_fc_layer_params must name at least one hidden layer, got '
                       f'{joint_fc_layer_params!r}.')
    if compute_dtype not in _COMPUTE_DTYPES:
      raise ValueError(f'compute_dtype must be one of {tuple(_COMPUTE_DTYPES)}, got '
                       f'{compute_dtype!r}.')
    self._observation_dim = observation_spec.shape[0]
    self._normalize = normalization_layer(observation_mean, observation_std)
    self._matmul_dtype = _COMPUTE_DTYPES[compute_dtype]
    widths = [self._observation_dim + action_spec.shape[0]] + list(joint_fc_layer_params)
    self._kernels, self._biases = [], []
    hidden_init, output_init = (
        (lambda: tf.keras.initializers.Orthogonal(gain=2 ** 0.5),
         lambda: tf.keras.initializers.Orthogonal(gain=1e-2)) if orthogonal_init
        else (tf.keras.initializers.GlorotUniform,) * 2)
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
      self._kernels.append(self._weight(f'dense{i}/kernel', [fan_in, fan_out], hidden_init()))
      self._biases.append(self._weight(f'dense{i}/bias', [fan_out], 'zeros'))
    self._value_kernel = self._weight('value/kernel', [widths[-1], 1], output_init())
    self._layer_norms = [tf.keras.layers.LayerNormalization(epsilon=1e-5,
                                                            name=f'dense{i}/layer_norm')
                         for i in range(len(widths) - 1)] if layer_norm else None
    self._value_bias = self._weight('value/bias', [1], 'zeros')

  def _weight(self, name, shape, initializer):
    return self.add_weight(name=name, shape=shape, dtype=tf.float32,
                           initializer=initializer, trainable=True)

  @property
  def matmul_dtype(self) -> tf.DType:
    """The dtype the matmuls run in (tf.float32 or tf.bfloat16)."""
    return self._matmul_dtype

  def q_for_action_sets(self, observation: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
    """Q for M actions per state.

    Args:
      observation: float32 [B, O].
      actions: float32 [B, M, A].

    Returns:
      float32 Q-values [B, M].
    """
    cast = lambda x: tf.cast(x, self._matmul_dtype)
    if self._normalize is not None:
      observation = self._normalize(observation)
    first_kernel = self._kernels[0]
    batch_size, num_actions = tf.shape(actions)[0], tf.shape(actions)[1]
    # The first layer runs in float32 in both modes: its matmuls are thin (O and A rows of
    # weights), and measured on CPU they and the broadcast add are faster in float32.
    per_state = tf.nn.bias_add(observation @ first_kernel[:self._observation_dim],
                               self._biases[0])  # [B, H]
    flat_actions = tf.reshape(actions, [batch_size * num_actions, -1])
    per_action = flat_actions @ first_kernel[self._observation_dim:]  # [B·M, H]
    width = tf.shape(per_action)[-1]
    pre_activation = (tf.reshape(per_action, [batch_size, num_actions, width])
                      + per_state[:, None, :])
    hidden = tf.nn.relu(self._normalized(0, pre_activation))
    hidden = cast(tf.reshape(hidden, [batch_size * num_actions, width]))
    for i, (kernel, bias) in enumerate(zip(self._kernels[1:], self._biases[1:]), start=1):
      if self._layer_norms is None:
        hidden = self._dense_relu(hidden, cast(kernel), cast(bias), batch_size, num_actions)
      else:
        pre_activation = tf.cast(tf.nn.bias_add(hidden @ cast(kernel), cast(bias)), tf.float32)
        hidden = cast(tf.nn.relu(self._normalized(i, pre_activation)))
    q = tf.linalg.matvec(hidden, cast(self._value_kernel[:, 0])) + cast(self._value_bias)
    return tf.reshape(tf.cast(q, tf.float32), [batch_size, num_actions])

  def _normalized(self, layer: int, pre_activation: tf.Tensor) -> tf.Tensor:
    """LN over the last axis of hidden layer `layer`'s float32 pre-activation (or as is)."""
    if self._layer_norms is None:
      return pre_activation
    return self._layer_norms[layer](pre_activation)

  def _dense_relu(self, hidden, kernel, bias, batch_size, num_actions):
    """relu(hidden [B·M, H_in] · kernel + bias) → [B·M, H_out], in the matmul dtype.

    In bfloat16 the bias and ReLU are applied to a [B, M, H_out] view of the product:
    TensorFlow's graph rewriter then leaves the matmul alone instead of fusing it with
    them into oneDNN's inner-product kernel, which on CPUs with AMX runs bfloat16 about
    3x slower than the plain matmul kernel. In float32 the fused kernel is as fast.
    """
    if self._matmul_dtype == tf.float32:
      return tf.nn.relu(tf.nn.bias_add(hidden @ kernel, bias))
    product = tf.reshape(hidden @ kernel, [batch_size, num_actions, -1])
    return tf.reshape(tf.nn.relu(product + bias), [batch_size * num_actions, -1])

  def call(self, inputs, step_type=(), network_state=(), training=False):
    """Q(s, a) for one action per state.

    Args:
      inputs: (observation float32 [B, O], action float32 [B, A]).
      step_type: Unused.
      network_state: Unused (feed-forward); returned as is.
      training: Unused (no dropout or batch norm).

    Returns:
      (float32 Q [B], network_state).
    """
    del step_type, training
    observation, action = inputs
    return self.q_for_action_sets(observation, action[:, None, :])[:, 0], network_state


def q_values(critic, observations, actions, step_types, training: bool = False) -> tf.Tensor:
  """Q(s, a) of any TF-Agents critic as float32 [rows], whatever its compute dtype.

  Args:
    critic: A critic network called as `critic((observations, actions), step_type)`.
    observations: float32 [rows, O] (or the critic's observation nest).
    actions: float32 [rows, A].
    step_types: int32 [rows] (or `()`).
    training: Passed to the critic.

  Returns:
    float32 [rows] (bfloat16 critics of `cql_sac.networks` are cast back).
  """
  q, _ = critic((observations, actions), step_type=step_types, training=training)
  return tf.cast(q, tf.float32)


def q_at_action_sets(critics, time_steps, action_sets: tf.Tensor,
                     training: bool = False) -> List[tf.Tensor]:
  """Evaluates critics at M actions per state, one call per critic.

  A critic with `q_for_action_sets` (`MultiActionCriticNetwork`) takes the actions as
  [B, M, A] and computes each state's share once; any other TF-Agents critic gets B·M
  rows with every state repeated, built once for all critics. Either way every layer is
  one large matmul.

  Recurrent critics (`CriticRnnNetwork`) take sequences: `time_steps` [B, T] and
  `action_sets` [B, T, M, A]; each of the B·M action sequences is unrolled over the
  state sequence from the zero state (`q_over_sequences`).

  Args:
    critics: Sequence of critic networks.
    time_steps: `TimeStep` [B] of the states ([B, T] for recurrent critics).
    action_sets: float32 [B, M, A] ([B, T, M, A]), M static.
    training: Passed to the critics without `q_for_action_sets`.

  Returns:
    A list, per critic, of float32 Q [B, M] ([B, T, M]).
  """
  if action_sets.shape.rank == 4:
    return q_over_sequences(critics, time_steps, action_sets, training)
  if all(hasattr(critic, 'q_for_action_sets') for critic in critics):
    return [critic.q_for_action_sets(time_steps.observation, action_sets)
            for critic in critics]
  num_actions = action_sets.shape[1]  # Static: XLA needs the repeat count.
  repeat = lambda x: tf.repeat(x, num_actions, axis=0)  # s0,...,s0,s1,...
  observations = tf.nest.map_structure(repeat, time_steps.observation)
  flat_actions = tf.reshape(action_sets, [-1, action_sets.shape[-1]])
  step_types = repeat(time_steps.step_type)
  return [tf.reshape(q_values(critic, observations, flat_actions, step_types, training),
                     [-1, num_actions])
          for critic in critics]


def q_over_sequences(critics, time_steps, action_sets: tf.Tensor,
                     training: bool = False) -> List[tf.Tensor]:
  """Evaluates recurrent critics at M action sequences per state sequence.

  The B state sequences are repeated M times (s_b paired with action sequence m) and each
  critic unrolls the B·M sequences in one call, from its zero state, resetting at FIRST
  steps, as tf_agents' CqlSacAgent tiles its batch for the CQL samples.

  Args:
    critics: Sequence of recurrent critic networks, `critic((obs, act), step_type)` with
      [rows, T, ...] inputs → Q [rows, T].
    time_steps: `TimeStep` [B, T].
    action_sets: float32 [B, T, M, A], M static.
    training: Passed to the critics.

  Returns:
    A list, per critic, of float32 Q [B, T, M].
  """
  num_actions = action_sets.shape[2]
  repeat = lambda x: tf.repeat(x, num_actions, axis=0)  # b0,...,b0,b1,...
  observations = tf.nest.map_structure(repeat, time_steps.observation)
  step_types = repeat(time_steps.step_type)
  shape = tf.shape(action_sets)
  sequences = tf.reshape(tf.transpose(action_sets, [0, 2, 1, 3]),
                         [-1, shape[1], action_sets.shape[-1]])  # [B·M, T, A]
  return [tf.transpose(tf.reshape(q_values(critic, observations, sequences, step_types,
                                           training), [-1, num_actions, shape[1]]), [0, 2, 1])
          for critic in critics]


def normalization_layer(mean: Optional[Sequence[float]], std: Optional[Sequence[float]]):
  """A Keras `Normalization` layer computing (x − mean)/std, or None without statistics.

  Args:
    mean: float [O] or None.
    std: float [O], > 0, or None.

  Returns:
    `tf.keras.layers.Normalization` (its variance is std², so it divides by std), or None.

  Raises:
    ValueError: If exactly one of `mean` and `std` is None.
  """
  if (mean is None) != (std is None):
    raise ValueError('Pass both observation_mean and observation_std, or neither.')
  if mean is None:
    return None
  return tf.keras.layers.Normalization(
      mean=np.asarray(mean, np.float32), variance=np.square(np.asarray(std, np.float32)))


def _split_specs(input_tensor_spec):
  """(observation_spec, action_spec), checked to be rank-1 float specs."""
  try:
    observation_spec, action_spec = input_tensor_spec
  except (TypeError, ValueError):
    raise ValueError('input_tensor_spec must be an (observation_spec, action_spec) pair, '
                     f'got {input_tensor_spec!r}.') from None
  for what, spec in (('observation', observation_spec), ('action', action_spec)):
    if not isinstance(spec, tf.TensorSpec) or spec.shape.rank != 1 or not spec.dtype.is_floating:
      raise ValueError(
          f'MultiActionCriticNetwork needs a rank-1 float {what} spec, got {spec!r}. '
          'Flatten dict or image observations first, or use '
          'tf_agents.agents.ddpg.critic_network.CriticNetwork.')
  return observation_spec, action_spec
