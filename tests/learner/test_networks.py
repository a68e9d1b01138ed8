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
