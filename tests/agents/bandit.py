"""A one-step continuous bandit whose dataset covers half the action space.

One state (observation [1.0]), actions a in [-1, 1]. The environment's reward
is 1 + a for a <= 0 and -1 for a > 0 (a cliff the data never shows); every
transition is terminal, so the true Q(s, a) is the reward. The dataset holds
only actions in [-1, 0].
"""
import numpy as np
import tensorflow as tf
from tf_agents.agents.sac import sac_agent
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from cql_sac.agents import cql_sac_agent
from tests.agents import agent_fixtures as fx

OUT_OF_DATA_ACTIONS = np.array([[0.25], [0.5], [0.75], [1.0]], np.float32)
DATA_ACTIONS = np.array([[-0.75], [-0.5], [-0.25], [0.0]], np.float32)
TRUE_OUT_OF_DATA_VALUE = -1.0


def specs():
  observation_spec = tensor_spec.TensorSpec([1], tf.float32)
  action_spec = tensor_spec.BoundedTensorSpec([1], tf.float32, -1.0, 1.0)
  return ts.time_step_spec(observation_spec), action_spec


def make_agent(cql: bool, **kwargs):
  """A CqlSacAgent (cql=True) or plain SacAgent with 32x32 networks."""
  time_step_spec, action_spec = specs()
  actor, critic = fx.make_networks(time_step_spec, action_spec, (32, 32))
  args = dict(gamma=0.0, target_update_tau=0.05,
              train_step_counter=tf.Variable(0, dtype=tf.int64))
  if cql:
    args.update(cql_alpha=1.0, num_cql_samples=4,
                include_critic_entropy_term=False,
                use_lagrange_cql_alpha=False, random_seed=0)
  args.update(kwargs)
  agent_class = cql_sac_agent.CqlSacAgent if cql else sac_agent.SacAgent
  agent = agent_class(
      time_step_spec, action_spec, critic_network=critic, actor_network=actor,
      actor_optimizer=tf.keras.optimizers.Adam(3e-3),
      critic_optimizer=tf.keras.optimizers.Adam(3e-3),
      alpha_optimizer=tf.keras.optimizers.Adam(3e-3), **args)
  agent.initialize()
  return agent


def batch(rng, batch_size=64):
  """A Trajectory [B, 2] of dataset transitions (a ~ U[-1, 0], terminal)."""
  actions = rng.uniform(-1.0, 0.0, size=(batch_size, 1)).astype(np.float32)
  rewards = (1.0 + actions[:, 0]).astype(np.float32)
  ones = np.ones((batch_size, 2), np.float32)
  return trajectory.Trajectory(
      step_type=tf.constant(np.tile([[0, 2]], (batch_size, 1)), tf.int32),
      observation=tf.ones((batch_size, 2, 1)),
      action=tf.constant(np.stack([actions, np.zeros_like(actions)], axis=1)),
      policy_info=(),
      next_step_type=tf.constant(np.tile([[2, 0]], (batch_size, 1)), tf.int32),
      reward=tf.constant(np.stack([rewards, np.zeros_like(rewards)], axis=1)),
      discount=tf.constant(ones * [[0.0, 1.0]], tf.float32))


def train(agent, steps, seed=0):
  """Trains on fresh dataset batches; returns the LossInfo of every step."""
  rng = np.random.default_rng(seed)
  train_step = tf.function(agent.train)
  return [train_step(batch(rng)) for _ in range(steps)]


def q_values(agent, actions):
  """min(Q1, Q2) at the single state for each action [K, 1] -> [K]."""
  observations = tf.ones((len(actions), 1))
  q_1, _ = agent._critic_network_1((observations, actions))
  q_2, _ = agent._critic_network_2((observations, actions))
  return tf.minimum(q_1, q_2).numpy()
