"""Small CQL-SAC agents and batches shared by the agent tests."""
import numpy as np
import tensorflow as tf
from tf_agents.agents.ddpg import critic_network
from tf_agents.agents.sac import tanh_normal_projection_network
from tf_agents.networks import actor_distribution_network
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from cql_sac import critic_network as multi_action
from cql_sac.agents import cql_sac_agent

OBS_DIM = 3


def make_specs(action_min=-1.0, action_max=1.0, action_dim=2):
  observation_spec = tensor_spec.TensorSpec([OBS_DIM], tf.float32)
  action_spec = tensor_spec.BoundedTensorSpec(
      [action_dim], tf.float32, action_min, action_max)
  return ts.time_step_spec(observation_spec), action_spec


def make_networks(time_step_spec, action_spec, hidden=(8, 8)):
  """Actor (tanh-Normal) and concat-input critic, both with created variables."""
  observation_spec = time_step_spec.observation
  actor = actor_distribution_network.ActorDistributionNetwork(
      observation_spec, action_spec, fc_layer_params=hidden[:1],
      continuous_projection_net=(
          tanh_normal_projection_network.TanhNormalProjectionNetwork))
  critic = critic_network.CriticNetwork(
      (observation_spec, action_spec), joint_fc_layer_params=hidden,
      kernel_initializer='glorot_uniform',
      last_kernel_initializer='glorot_uniform')
  return actor, critic


def make_critic(kind, time_step_spec, action_spec, hidden=(8, 8)):
  """A critic of `kind`: 'tf_agents' (CriticNetwork, rows with states repeated)
  or 'multi_action' (cql_sac's MultiActionCriticNetwork, per-state action sets)."""
  if kind == 'tf_agents':
    return make_networks(time_step_spec, action_spec, hidden)[1]
  return multi_action.MultiActionCriticNetwork(
      (time_step_spec.observation, action_spec), hidden)


def make_agent(agent_class=cql_sac_agent.CqlSacAgent, time_step_spec=None,
               action_spec=None, hidden=(8, 8), learning_rate=1e-3, **kwargs):
  if time_step_spec is None:
    time_step_spec, action_spec = make_specs()
  actor, critic = make_networks(time_step_spec, action_spec, hidden)
  actor = kwargs.pop('actor_network', actor)
  critic = kwargs.pop('critic_network', critic)
  args = dict(cql_alpha=2.0, num_cql_samples=4,
              include_critic_entropy_term=False, use_lagrange_cql_alpha=False,
              random_seed=0,
              train_step_counter=tf.Variable(0, dtype=tf.int64))
  args.update(kwargs)
  agent = agent_class(
      time_step_spec, action_spec, critic_network=critic, actor_network=actor,
      actor_optimizer=tf.keras.optimizers.Adam(learning_rate),
      critic_optimizer=tf.keras.optimizers.Adam(learning_rate),
      alpha_optimizer=tf.keras.optimizers.Adam(learning_rate), **args)
  agent.initialize()
  return agent


def layers(network):
  """[(kernel, bias), ...] as float64 NumPy arrays, in layer order.

  `network`: a network, or its list of (kernel, bias) variables in layer order.
  """
  variables = getattr(network, 'trainable_variables', network)
  values = [v.numpy().astype(np.float64) for v in variables]
  return list(zip(values[0::2], values[1::2]))


def random_batch(rng, batch_size, action_dim=2, low=-0.8, high=0.8):
  """NumPy transition batch (s, a, r, d, s') with mixed terminal discounts."""
  return (rng.normal(size=(batch_size, OBS_DIM)),
          rng.uniform(low, high, size=(batch_size, action_dim)),
          rng.normal(size=batch_size),
          (rng.uniform(size=batch_size) > 0.3).astype(np.float64),
          rng.normal(size=(batch_size, OBS_DIM)))


def as_trajectory(batch):
  """The NumPy batch as a float32 Trajectory with outer dims [B, 2]."""
  s, a, r, d, s2 = (np.asarray(x, np.float32) for x in batch)
  b = s.shape[0]
  zeros = lambda x: np.zeros_like(x)
  return trajectory.Trajectory(
      step_type=tf.ones([b, 2], tf.int32),
      observation=tf.constant(np.stack([s, s2], axis=1)),
      action=tf.constant(np.stack([a, zeros(a)], axis=1)),
      policy_info=(),
      next_step_type=tf.ones([b, 2], tf.int32),
      reward=tf.constant(np.stack([r, zeros(r)], axis=1)),
      discount=tf.constant(np.stack([d, np.ones_like(d)], axis=1)))


def transition_parts(agent, batch):
  """(time_steps, actions, next_time_steps) tensors of a NumPy batch."""
  time_steps, policy_steps, next_time_steps = agent._as_transition(
      as_trajectory(batch))
  return time_steps, policy_steps.action, next_time_steps


class InjectedSamplesAgent(cql_sac_agent.CqlSacAgent):
  """CqlSacAgent whose random draws are replaced by fixed arrays.

  `injected` maps a seed purpose (cql_sac_agent._SEED_*) to the actions to
  return, plus 'uniform' and 'reward_noise'. It is kept out of tf.Module's
  variable tracking.
  """

  @property
  def injected(self):
    return self._injected_holder[0]

  @injected.setter
  def injected(self, values):
    self._injected_holder = _Untracked(values)

  def _sample_actions(self, distribution, sample_shape, purpose):
    return tf.constant(self.injected[purpose], tf.float32)

  def _sample_uniform_actions(self, shape):
    return tf.constant(self.injected['uniform'], tf.float32)

  def _sample_reward_noise(self, shape):
    return tf.constant(self.injected['reward_noise'], tf.float32)

  def _sample_state_perturbations(self, shape):
    return tf.constant(self.injected['state_perturbation'], tf.float32)


class _Untracked:
  """Holds a value where tf.Module's attribute tracking does not look."""

  def __init__(self, value):
    self._value = value

  def __getitem__(self, index):
    assert index == 0
    return self._value
