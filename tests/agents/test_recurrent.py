"""CqlSacAgent with tf_agents' recurrent actor and critic networks, on sequences.

Checked against independent computations: the TD loss against tf_agents' own agent on the
same (shared) networks where it is deterministic (γ = 0), and the CQL gap per time step
against a step-by-step NumPy log-sum-exp over the agent's own draws, each sample sequence
evaluated by a separate critic call; masking of transitions that start at an episode's
LAST step.
"""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.agents.cql import cql_sac_agent as reference
from tf_agents.agents.ddpg import critic_rnn_network
from tf_agents.networks import actor_distribution_rnn_network
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from tests.agents import agent_fixtures as fx

B, T, N = 3, 5, 4


def _recurrent_networks(time_step_spec, action_spec):
  actor = actor_distribution_rnn_network.ActorDistributionRnnNetwork(
      time_step_spec.observation, action_spec, input_fc_layer_params=(8,),
      output_fc_layer_params=None, lstm_size=(6,))
  critic = critic_rnn_network.CriticRnnNetwork(
      (time_step_spec.observation, action_spec), observation_fc_layer_params=(8,),
      action_fc_layer_params=None, joint_fc_layer_params=(8,), lstm_size=(6,),
      output_fc_layer_params=None)
  return actor, critic


def _agent(**kwargs):
  time_step_spec, action_spec = fx.make_specs()
  actor, critic = _recurrent_networks(time_step_spec, action_spec)
  return fx.make_agent(time_step_spec=time_step_spec, action_spec=action_spec,
                       actor_network=actor, critic_network=critic, num_cql_samples=N,
                       **kwargs)


def _sequences(step_type=None, seed=0):
  """A float32 Trajectory [B, T] with random observations, actions and rewards."""
  rng = np.random.default_rng(seed)
  if step_type is None:
    step_type = np.ones([B, T], np.int32)
  return trajectory.Trajectory(
      step_type=tf.constant(step_type, tf.int32),
      observation=tf.constant(rng.normal(size=(B, T, fx.OBS_DIM)), tf.float32),
      action=tf.constant(rng.uniform(-0.8, 0.8, size=(B, T, 2)), tf.float32),
      policy_info=(),
      next_step_type=tf.constant(np.roll(step_type, -1, axis=1), tf.int32),
      reward=tf.constant(rng.normal(size=(B, T)), tf.float32),
      discount=tf.ones([B, T], tf.float32))


def test_td_loss_matches_tf_agents_agent_on_the_same_networks():
  time_step_spec, action_spec = fx.make_specs()
  actor, critic = _recurrent_networks(time_step_spec, action_spec)
  args = dict(cql_alpha=1.0, num_cql_samples=N, include_critic_entropy_term=False,
              use_lagrange_cql_alpha=False, gamma=0.0, reward_scale_factor=2.0)
  ours = fx.make_agent(time_step_spec=time_step_spec, action_spec=action_spec,
                       actor_network=actor, critic_network=critic, **args)
  theirs = reference.CqlSacAgent(
      time_step_spec, action_spec, critic_network=ours._critic_network_1,
      actor_network=actor, actor_optimizer=None, critic_optimizer=None,
      alpha_optimizer=None, critic_network_2=ours._critic_network_2,
      target_critic_network=ours._target_critic_network_1,
      target_critic_network_2=ours._target_critic_network_2, **args)
  time_steps, policy_steps, next_time_steps = ours._as_transition(_sequences())
  loss_args = (time_steps, policy_steps.action, next_time_steps, tf.math.squared_difference,
               0.0, 2.0)
  got = ours._critic_loss_with_optional_entropy_term(*loss_args)
  want = theirs._critic_loss_with_optional_entropy_term(*loss_args)
  assert time_steps.step_type.shape == (B, T - 1)
  np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


def _numpy_cql_gap_per_step(agent, time_steps, actions):
  """[B, T-1]: mean over the two critics of lse − Q(s, a_data), one critic call per sample."""
  samples = agent.sample_cql_actions(time_steps)
  gaps = []
  for critic in agent.critics[:2]:
    q = lambda a: critic((time_steps.observation, a), step_type=time_steps.step_type)[0].numpy()
    q_data = q(actions).astype(np.float64)
    terms = [q(samples.policy_actions[:, :, j]) - samples.policy_log_probs[:, :, j].numpy()
             for j in range(N)]
    terms += [q(samples.uniform_actions[:, :, j]) - agent._uniform_log_density
              for j in range(N)]
    terms = np.stack(terms, axis=-1).astype(np.float64)
    top = terms.max(axis=-1)
    gaps.append(top + np.log(np.exp(terms - top[..., None]).sum(axis=-1)) - q_data)
  return np.mean(gaps, axis=0)


def test_cql_gap_is_per_time_step_and_masked_after_last_steps():
  agent = _agent()
  step_type = np.ones([B, T], np.int32)
  step_type[0, 1] = ts.StepType.LAST  # s at t=1 and s' at t=2 lie in different episodes.
  step_type[0, 2] = ts.StepType.FIRST
  step_type[2, 3] = ts.StepType.LAST
  time_steps, policy_steps, _ = agent._as_transition(_sequences(step_type))
  gaps = _numpy_cql_gap_per_step(agent, time_steps, policy_steps.action)
  valid = step_type[:, :-1] != ts.StepType.LAST
  want = gaps[valid].mean()
  got = agent._cql_loss(time_steps, policy_steps.action).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert abs(gaps.mean() - want) > 1e-4  # The mask changes the value.


def test_train_on_sequences_with_episode_boundaries_updates_every_network():
  agent = _agent(use_lagrange_cql_alpha=True, cql_alpha=1.0, max_target_backup=True,
                 cql_next_state_samples=True, num_critics=3, actor_ema_tau=0.5)
  step_type = np.ones([B, T], np.int32)
  step_type[:, 0] = ts.StepType.FIRST
  step_type[1, 2] = ts.StepType.LAST
  step_type[1, 3] = ts.StepType.FIRST
  networks = (agent._actor_network, agent._critic_network_1, agent._critic_network_2)
  before = [[v.numpy() for v in net.trainable_variables] for net in networks]
  loss = agent.train(_sequences(step_type))
  assert agent.trains_on_sequences
  assert np.isfinite(loss.loss.numpy())
  assert all(np.isfinite(value.numpy()) for value in loss.extra)
  for net, old in zip(networks, before):
    assert any(not np.allclose(a, v.numpy()) for a, v in zip(old, net.trainable_variables))


def test_recurrent_actor_needs_a_recurrent_critic():
  time_step_spec, action_spec = fx.make_specs()
  actor, _ = _recurrent_networks(time_step_spec, action_spec)
  with pytest.raises(ValueError, match='actor_network is recurrent but critic_network'):
    fx.make_agent(time_step_spec=time_step_spec, action_spec=action_spec,
                  actor_network=actor)


def test_state_smoothing_needs_feed_forward_networks():
  with pytest.raises(ValueError, match='actor_state_smoothing_weight > 0 needs a feed-forward'):
    _agent(actor_state_smoothing_weight=1.0)
  _agent(actor_state_smoothing_weight=0.0)  # Off: recurrent networks are fine.


def test_feed_forward_agent_trains_on_pairs():
  assert not fx.make_agent().trains_on_sequences
