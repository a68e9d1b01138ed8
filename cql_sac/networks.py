"""Network factory for CQL-SAC: the TF-Agents kumar20 architecture.

Actor: `ActorDistributionNetwork` (ReLU MLP, glorot-uniform kernels) with a
`TanhNormalProjectionNetwork` head, i.e. a tanh-squashed diagonal Gaussian.
Critics: `MultiActionCriticNetwork`, the function of TF-Agents'
`ddpg.critic_network.CriticNetwork` on concat(observation, action) (ReLU joint
layers, linear Q output, glorot-uniform kernels) computed once per state for the
2N+1 actions of CQL's critic step. All four critics (two online, two targets) are
built here, so the agent copies none.

Mixed precision: with `compute_dtype='bfloat16'` the critics, which take
about 95% of a CQL step's FLOPs (they see B·(2N+1) rows, the actor B), run
their matmuls in bfloat16 while keeping float32 variables and returning float32
Q-values. The actor stays float32 (its tanh-Normal log-densities need the
precision and `TanhNormalProjectionNetwork` requires float32 inputs).
"""

from typing import NamedTuple, Sequence

import gin
from tf_agents.agents.sac import tanh_normal_projection_network
from tf_agents.networks import actor_distribution_network
from tf_agents.networks import network

from cql_sac.critic_network import MultiActionCriticNetwork


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
    ValueError: If `compute_dtype` is not one of 'float32', 'bfloat16', or the
      observation or action spec is not a rank-1 float spec (flatten dict
      observations first).
  """
  actor = actor_distribution_network.ActorDistributionNetwork(
      observation_spec, action_spec, fc_layer_params=tuple(actor_fc_layers),
      continuous_projection_net=(
          tanh_normal_projection_network.TanhNormalProjectionNetwork))
  critics = [MultiActionCriticNetwork((observation_spec, action_spec),
                                      tuple(critic_joint_fc_layers), compute_dtype, name=name)
             for name in ('CriticNetwork', 'CriticNetwork2', 'TargetCriticNetwork1',
                          'TargetCriticNetwork2')]
  return CqlSacNetworks(actor, *critics)
