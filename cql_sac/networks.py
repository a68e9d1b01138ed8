"""Network factory for CQL-SAC: the TF-Agents kumar20 networks.

Actor: `ActorDistributionNetwork` (ReLU MLP, glorot-uniform kernels) with a
`TanhNormalProjectionNetwork` head, i.e. a tanh-squashed diagonal Gaussian.
Critics: `ddpg.critic_network.CriticNetwork` on concat(observation, action)
with ReLU joint layers and a linear Q output, glorot-uniform kernels. All four
critics (two online, two targets) are built here, so the agent copies none.

Mixed precision: with `compute_dtype='bfloat16'` the critics, which take
about 95% of a CQL step's FLOPs (they see B·(2N+1) rows, the actor B), run
their matmuls in bfloat16 under Keras' 'mixed_bfloat16' policy while keeping
float32 variables; the agent casts Q to float32 before every loss. The actor
stays float32 (its tanh-Normal log-densities need the precision and
`TanhNormalProjectionNetwork` requires float32 inputs).
"""

from typing import NamedTuple, Sequence

import gin
import tensorflow as tf
from tf_agents.agents.ddpg import critic_network
from tf_agents.agents.sac import tanh_normal_projection_network
from tf_agents.networks import actor_distribution_network
from tf_agents.networks import network

_COMPUTE_DTYPES = ('float32', 'bfloat16')


class CqlSacNetworks(NamedTuple):
  """The actor and the four critics of a CQL-SAC agent."""
  actor: network.Network
  critic_1: network.Network
  critic_2: network.Network
  target_critic_1: network.Network
  target_critic_2: network.Network


@gin.configurable
def make_networks(observation_spec, action_spec,
                  actor_fc_layers: Sequence[int] = (256, 256),
                  critic_joint_fc_layers: Sequence[int] = (256, 256, 256),
                  compute_dtype: str = 'float32') -> CqlSacNetworks:
  """Builds the actor and critic networks.

  Args:
    observation_spec: float32 `TensorSpec` [O] of observations.
    action_spec: float32 `BoundedTensorSpec` [A] of actions.
    actor_fc_layers: Hidden layer widths of the actor.
    critic_joint_fc_layers: Hidden layer widths of each critic.
    compute_dtype: 'float32', or 'bfloat16' for bfloat16 critic matmuls with
      float32 variables.

  Returns:
    `CqlSacNetworks`; pass them to `CqlSacAgent` as `actor_network`,
    `critic_network`, `critic_network_2`, `target_critic_network` and
    `target_critic_network_2`.

  Raises:
    ValueError: If `compute_dtype` is not one of 'float32', 'bfloat16'.
  """
  if compute_dtype not in _COMPUTE_DTYPES:
    raise ValueError(f'compute_dtype must be one of {_COMPUTE_DTYPES}, got '
                     f'{compute_dtype!r}.')
  actor = actor_distribution_network.ActorDistributionNetwork(
      observation_spec, action_spec, fc_layer_params=tuple(actor_fc_layers),
      continuous_projection_net=(
          tanh_normal_projection_network.TanhNormalProjectionNetwork))

  def critic(name):
    return critic_network.CriticNetwork(
        (observation_spec, action_spec),
        joint_fc_layer_params=tuple(critic_joint_fc_layers),
        kernel_initializer='glorot_uniform',
        last_kernel_initializer='glorot_uniform', name=name)

  previous_policy = tf.keras.mixed_precision.global_policy()
  policy = 'mixed_bfloat16' if compute_dtype == 'bfloat16' else 'float32'
  tf.keras.mixed_precision.set_global_policy(policy)
  try:
    critics = [critic(name) for name in (
        'CriticNetwork', 'CriticNetwork2', 'TargetCriticNetwork1',
        'TargetCriticNetwork2')]
  finally:
    tf.keras.mixed_precision.set_global_policy(previous_policy)
  return CqlSacNetworks(actor, *critics)
