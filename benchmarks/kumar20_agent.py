"""The agent every benchmark times: cql_sac's or tf_agents' CqlSacAgent with kumar20's values.

HalfCheetah shapes (observation 17, action 6) and N=10 CQL samples by default; the MuJoCo gin
values of TF-Agents' kumar20 example (cql_alpha 5, no Lagrange, softmax temperature 50,
reward scale 0.1, lr 3e-4). `benchmarks.speed` and `benchmarks.xla_export`
build their agents here, so they time the same configuration.
"""

import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.train.utils import train_utils
from tf_agents.trajectories import time_step as ts

from cql_sac import networks as networks_lib

OBSERVATION_DIM, ACTION_DIM, NUM_CQL_SAMPLES = 17, 6, 10


def _specs(observation_dim, action_dim):
  observation_spec = tensor_spec.TensorSpec([observation_dim], tf.float32)
  action_spec = tensor_spec.BoundedTensorSpec([action_dim], tf.float32, -1.0, 1.0)
  return ts.time_step_spec(observation_spec), action_spec


def make_agent(agent_class, critic_layers, compute_dtype='float32',
               observation_dim=OBSERVATION_DIM, action_dim=ACTION_DIM, actor_layers=(256, 256),
               num_cql_samples=NUM_CQL_SAMPLES, **agent_options):
  """An initialized agent with the kumar20 hyperparameters (MuJoCo gin values).

  Args:
    agent_class: cql_sac's or tf_agents' `CqlSacAgent`.
    critic_layers: critic hidden widths, e.g. (256, 256).
    compute_dtype: 'float32' or 'bfloat16' critic matmuls (`make_networks`).
    observation_dim, action_dim: the shapes (HalfCheetah's by default).
    actor_layers: actor hidden widths.
    num_cql_samples: N.
    **agent_options: More constructor arguments of cql_sac's agent (e.g. `num_critics=5`).

  Returns:
    The agent; gin bindings of `CqlSacAgent` (agent options) apply to cql_sac's.
  """
  time_step_spec, action_spec = _specs(observation_dim, action_dim)
  nets = networks_lib.make_networks(
      time_step_spec.observation, action_spec, actor_layers, critic_layers,
      compute_dtype)
  kwargs = dict(critic_network_2=nets.critic_2,
                target_critic_network=nets.target_critic_1,
                target_critic_network_2=nets.target_critic_2)
  adam = lambda: tf.keras.optimizers.Adam(3e-4)
  agent = agent_class(
      time_step_spec, action_spec, critic_network=nets.critic_1,
      actor_network=nets.actor, actor_optimizer=adam(),
      critic_optimizer=adam(), alpha_optimizer=adam(), cql_alpha=5.0,
      num_cql_samples=num_cql_samples, include_critic_entropy_term=False,
      use_lagrange_cql_alpha=False, softmax_temperature=50.0,
      target_update_tau=5e-3, gamma=0.99, reward_scale_factor=0.1,
      train_step_counter=train_utils.create_train_step(), **kwargs, **agent_options)
  agent.initialize()
  return agent
