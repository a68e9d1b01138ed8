"""The network factory, including its bfloat16 critic switch."""
import numpy as np
import pytest
import tensorflow as tf

from cql_sac import networks as networks_lib
from tests.agents import agent_fixtures as fx


def _agent(compute_dtype):
  time_step_spec, action_spec = fx.make_specs()
  nets = networks_lib.make_networks(time_step_spec.observation, action_spec,
                                    (16, 16), (16, 16), compute_dtype)
  return nets, fx.make_agent(
      time_step_spec=time_step_spec, action_spec=action_spec,
      critic_network=nets.critic_1, critic_network_2=nets.critic_2,
      target_critic_network=nets.target_critic_1,
      target_critic_network_2=nets.target_critic_2)


def test_bfloat16_critics_compute_in_bfloat16_with_float32_variables():
  nets, agent = _agent('bfloat16')
  for critic in nets[1:]:
    assert {v.dtype for v in critic.variables} == {tf.float32}
    assert critic.matmul_dtype == tf.bfloat16
  assert {layer.compute_dtype for layer in nets.actor.layers} == {'float32'}
  rng = np.random.default_rng(0)
  for _ in range(3):
    info = agent.train(fx.as_trajectory(fx.random_batch(rng, 32)))
  for value in tf.nest.flatten(info):
    assert value.dtype == tf.float32 and np.isfinite(value.numpy())


def test_float32_and_bfloat16_losses_agree_to_bfloat16_precision():
  rng = np.random.default_rng(1)
  experience = fx.as_trajectory(fx.random_batch(rng, 64))
  (_, full), (_, half) = _agent('float32'), _agent('bfloat16')
  for source, target in zip(full.variables, half.variables):
    target.assign(source)
  a, b = full.loss(experience).extra, half.loss(experience).extra
  for field in ('critic_loss', 'cql_loss', 'actor_loss'):
    np.testing.assert_allclose(getattr(b, field).numpy(),
                               getattr(a, field).numpy(), rtol=0.05, atol=0.05)


def test_unknown_compute_dtype_raises():
  time_step_spec, action_spec = fx.make_specs()
  with pytest.raises(ValueError, match="compute_dtype must be one of .* 'float16'"):
    networks_lib.make_networks(time_step_spec.observation, action_spec,
                               compute_dtype='float16')


def _singular_values(kernel):
  return np.linalg.svd(kernel.numpy(), compute_uv=False)


def test_orthogonal_init_of_critics_and_actor():
  """Hidden kernels orthogonal with gain √2 (every singular value √2), outputs 1e-2, zero
  biases (CORL's `init_module_weights`); the actor's switch is separate."""
  time_step_spec, action_spec = fx.make_specs()
  nets = networks_lib.make_networks(
      time_step_spec.observation, action_spec, (16, 8), (16, 8),
      critic_orthogonal_init=True, actor_log_std_head=True)
  for critic in nets[1:]:
    critic.create_variables()
  *hidden, value_kernel, value_bias = [v for v in nets.critic_1.variables]
  for kernel in hidden[0::2]:
    np.testing.assert_allclose(_singular_values(kernel), np.sqrt(2.0), rtol=1e-5)
  np.testing.assert_allclose(_singular_values(value_kernel), 1e-2, rtol=1e-5)
  for bias in hidden[1::2] + [value_bias]:
    np.testing.assert_array_equal(bias.numpy(), 0.0)
  nets.actor.create_variables()
  first_actor_kernel = nets.actor.trainable_variables[0]
  assert np.ptp(_singular_values(first_actor_kernel)) > 0.1  # Glorot, not orthogonal.

  nets = networks_lib.make_networks(
      time_step_spec.observation, action_spec, (16, 8), (16, 8),
      actor_orthogonal_init=True, actor_log_std_head=True)
  nets.actor.create_variables()
  nets.critic_1.create_variables()
  kernels = [v for v in nets.actor.trainable_variables if 'kernel' in v.name]
  for kernel in kernels[:-1]:
    np.testing.assert_allclose(_singular_values(kernel), np.sqrt(2.0), rtol=1e-5)
  np.testing.assert_allclose(_singular_values(kernels[-1]), 1e-2, rtol=1e-5)
  assert np.ptp(_singular_values(nets.critic_1.variables[0])) > 0.1


def _head_stddev_and_loc(actor, observations):
  distribution, _ = actor(observations, step_type=(), network_state=(), training=False)
  normal = distribution.input_distribution
  return normal.stddev().numpy(), normal.mean().numpy()


@pytest.mark.parametrize('multiplier,offset', [(0.5, -0.3), (0.0, -1.0), (40.0, 0.0)])
def test_log_std_head_matches_numpy(multiplier, offset):
  """log σ = clip(m·raw + o, −20, 2) on the head's linear output (CORL, JaxCQL); m = 0 gives
  σ = exp(o) everywhere; m = 40 drives the clip at both ends."""
  time_step_spec, action_spec = fx.make_specs()
  nets = networks_lib.make_networks(
      time_step_spec.observation, action_spec, (16,), (16,), actor_log_std_head=True,
      log_std_multiplier=multiplier, log_std_offset=offset)
  nets.actor.create_variables()
  rng = np.random.default_rng(3)
  for v in nets.actor.trainable_variables:  # Outputs away from zero, so the clip binds.
    if v.shape.rank:
      v.assign(rng.normal(size=v.shape).astype(np.float32))
  observations = rng.normal(size=(6, fx.OBS_DIM)).astype(np.float32)
  stddev, loc = _head_stddev_and_loc(nets.actor, observations)
  variables = nets.actor.trainable_variables
  scalars = {v.name.split('/')[-1].split(':')[0]: float(v.numpy()) for v in variables
             if v.shape.rank == 0}
  (hidden_kernel, hidden_bias), (out_kernel, out_bias) = fx.layers(
      [v for v in variables if v.shape.rank])
  out = np.maximum(observations @ hidden_kernel + hidden_bias, 0) @ out_kernel + out_bias
  raw = out[:, 2:]
  want = np.exp(np.clip(scalars['log_std_multiplier'] * raw + scalars['log_std_offset'],
                        -20.0, 2.0))
  np.testing.assert_allclose(loc, out[:, :2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stddev, want, rtol=1e-5)
  if multiplier == 0.0:
    np.testing.assert_allclose(stddev, np.exp(-1.0), rtol=1e-6)
  if multiplier == 40.0:
    assert (stddev == np.float32(np.exp(2.0))).any() and (stddev < 1e-8).any()


def test_log_std_head_scalars_are_trained():
  time_step_spec, action_spec = fx.make_specs()
  nets = networks_lib.make_networks(time_step_spec.observation, action_spec, (16,), (16,),
                                    actor_log_std_head=True)
  agent = fx.make_agent(time_step_spec=time_step_spec, action_spec=action_spec,
                        actor_network=nets.actor, critic_network=nets.critic_1)
  scalars = [v for v in agent._actor_network.trainable_variables if v.shape.rank == 0]
  assert sorted(v.name.split('/')[-1] for v in scalars) == [
      'log_std_multiplier:0', 'log_std_offset:0']
  before = [v.numpy() for v in scalars]
  rng = np.random.default_rng(4)
  for _ in range(3):
    agent.train(fx.as_trajectory(fx.random_batch(rng, 16)))
  assert all(v.numpy() != b for v, b in zip(scalars, before))


@pytest.mark.slow
def test_observation_normalization_survives_policy_export(tmp_path):
  """Networks built with dataset statistics normalize inside: a few train steps, export with
  PolicySaver, load; on raw observations the SavedModel's greedy actions equal the in-training
  policy's (1e-6), and equal an un-normalized actor fed (s − mean)/std by hand."""
  from tf_agents.policies import greedy_policy
  from tf_agents.policies import policy_saver
  from tf_agents.trajectories import time_step as ts
  from cql_sac.networks import ObservationStatistics
  time_step_spec, action_spec = fx.make_specs()
  rng = np.random.default_rng(5)
  stats = ObservationStatistics(rng.normal(size=fx.OBS_DIM).astype(np.float32) * 3,
                                rng.uniform(0.5, 4, size=fx.OBS_DIM).astype(np.float32))
  nets = networks_lib.make_networks(time_step_spec.observation, action_spec, (16,), (16,),
                                    observation_statistics=stats)
  agent = fx.make_agent(time_step_spec=time_step_spec, action_spec=action_spec,
                        actor_network=nets.actor, critic_network=nets.critic_1,
                        critic_network_2=nets.critic_2, target_critic_network=nets.target_critic_1,
                        target_critic_network_2=nets.target_critic_2)
  for _ in range(5):
    agent.train(fx.as_trajectory(fx.random_batch(rng, 16)))
  policy = greedy_policy.GreedyPolicy(agent.policy)
  policy_saver.PolicySaver(policy).save(str(tmp_path / 'greedy'))
  loaded = tf.saved_model.load(str(tmp_path / 'greedy'))
  raw = (stats.mean + stats.std * rng.normal(size=(8, fx.OBS_DIM))).astype(np.float32)
  steps = ts.restart(tf.constant(raw), batch_size=8)
  want = policy.action(steps).action.numpy()
  np.testing.assert_allclose(loaded.action(steps).action.numpy(), want, rtol=1e-6, atol=1e-6)

  plain = networks_lib.make_networks(time_step_spec.observation, action_spec, (16,), (16,))
  plain.actor.create_variables()
  for source, target in zip(nets.actor.trainable_variables, plain.actor.trainable_variables):
    target.assign(source)
  by_hand, _ = plain.actor((raw - stats.mean) / stats.std, step_type=(), network_state=())
  np.testing.assert_allclose(by_hand.mode().numpy(), want, rtol=1e-5, atol=1e-6)
  plain.critic_1.create_variables()
  for source, target in zip(nets.critic_1.variables, plain.critic_1.variables):
    target.assign(source)
  q_raw, _ = nets.critic_1((raw, want), step_type=())
  q_by_hand, _ = plain.critic_1(((raw - stats.mean) / stats.std, want), step_type=())
  np.testing.assert_allclose(q_raw.numpy(), q_by_hand.numpy(), rtol=1e-5, atol=1e-6)
