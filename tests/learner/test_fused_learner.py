"""The fused K-step learner equals K separate agent.train() calls.

Without XLA the agent's own stateless random draws are reproduced exactly. XLA
generates different (equally distributed) numbers from the same stateless
seeds, so the XLA case injects fixed samples through the agent's sampling seam.
"""
import contextlib

import numpy as np
import pytest
import tensorflow as tf

from cql_sac import learner as learner_lib
from cql_sac.agents import cql_sac_agent as cql
from cql_sac.datasets import replay as replay_lib
from cql_sac.datasets import transitions
from tests.agents import agent_fixtures as fx

K, B = 6, 16


def _twin_agents(agent_class, second_strategy=None, **kwargs):
  """Two agents with identical variables (and their own step counters); the second is
  built under `second_strategy`'s scope when one is given."""
  agents = [fx.make_agent(agent_class, **kwargs)]
  with (second_strategy.scope() if second_strategy else contextlib.nullcontext()):
    agents.append(fx.make_agent(agent_class, **kwargs))
  if agent_class is fx.InjectedSamplesAgent:
    rng = np.random.default_rng(1)
    injected = {purpose: rng.uniform(-0.9, 0.9, size=shape) for purpose, shape in (
        (cql._SEED_TD_NEXT_ACTION, (B, 2)), (cql._SEED_CQL_POLICY, (4, B, 2)),
        (cql._SEED_ACTOR, (B, 2)), (cql._SEED_ALPHA, (B, 2)),
        ('uniform', (B, 4, 2)))}
    injected['reward_noise'] = rng.normal(size=B)
    for agent in agents:
      agent.injected = injected
  for source, target in zip(agents[0].variables, agents[1].variables):
    target.assign(source)
  return agents


def _stacked_batches(seed):
  rng = np.random.default_rng(seed)
  batches = [fx.as_trajectory(fx.random_batch(rng, B)) for _ in range(K)]
  return batches, tf.nest.map_structure(lambda *x: tf.stack(x), *batches)


def _optimizer_variables(agent):
  optimizers = [agent._actor_optimizer, agent._critic_optimizer,
                agent._alpha_optimizer]
  if agent._use_lagrange_cql_alpha:
    optimizers.append(agent._cql_alpha_optimizer)
  return [v for o in optimizers for v in sorted(
      o.variables() if callable(o.variables) else o.variables,
      key=lambda v: v.name.replace('while/', '').split('/', 1)[-1])]


@pytest.mark.parametrize('jit_compile', [False, True])
@pytest.mark.parametrize('lagrange', [False, True])
@pytest.mark.slow
def test_fused_steps_equal_single_steps(jit_compile, lagrange):
  # num_bc_steps=3 puts the BC->SAC switch inside the loop; target updates
  # every 2 steps exercise the Periodically counter inside the loop.
  kwargs = dict(num_bc_steps=3, target_update_tau=0.1, target_update_period=2,
                reward_noise_variance=0.1, include_critic_entropy_term=True)
  if lagrange:
    kwargs.update(use_lagrange_cql_alpha=True, cql_alpha=1.0, cql_tau=3.0,
                  cql_alpha_learning_rate=0.05, log_cql_alpha_clipping=(-2., 2.))
  agent_class = fx.InjectedSamplesAgent if jit_compile else None
  single, fused_agent = _twin_agents(agent_class or cql.CqlSacAgent, **kwargs)
  batches, stacked = _stacked_batches(0)
  train = tf.function(single.train)
  single_losses = [train(b) for b in batches]
  fused = learner_lib.FusedLearner(fused_agent, steps_per_call=K,
                                   jit_compile=jit_compile).train(stacked)

  np.testing.assert_allclose(fused.loss.numpy(),
                             [l.loss.numpy() for l in single_losses],
                             rtol=1e-5, atol=1e-6)
  for field in single_losses[0].extra._fields:
    np.testing.assert_allclose(
        getattr(fused.extra, field).numpy(),
        [getattr(l.extra, field).numpy() for l in single_losses],
        rtol=1e-5, atol=1e-6, err_msg=field)
  assert fused_agent.train_step_counter.numpy() == K
  for a, b in zip(list(single.variables) + _optimizer_variables(single),
                  list(fused_agent.variables) + _optimizer_variables(fused_agent)):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6,
                               err_msg=a.name)


def test_steps_per_call_must_be_positive():
  with pytest.raises(ValueError, match='steps_per_call must be >= 1, got 0'):
    learner_lib.FusedLearner(fx.make_agent(), steps_per_call=0)


@pytest.mark.slow
def test_two_replica_mirrored_update_equals_one_replica():
  """MirroredStrategy over two logical CPUs, global batch split in halves, gives
  the one-replica update (the CQL term is not over-weighted by the replica
  count, and the Lagrange threshold is split across replicas)."""
  import json
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
  out = subprocess.run(
      [sys.executable, '-m', 'tests.learner.mirrored_check'], cwd=root,
      capture_output=True, text=True, timeout=600, check=True,
      env=dict(os.environ, PYTHONPATH=root))
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['replicas'] == 2
  # Every variable within rtol=1e-5, atol=1e-6 of the one-replica value.
  assert result['max_variable_difference_beyond_rtol'] <= 1e-6, result
  for field, difference in result['max_loss_difference'].items():
    assert difference < 1e-5, (field, result)


@pytest.mark.slow
def test_one_replica_mirrored_learner_equals_default_strategy():
  """`--use_gpu` on a machine with one GPU builds a one-replica MirroredStrategy, in which
  the fused loop runs the agent step in cross-replica context: the same update as
  without a strategy (here on the CPU device)."""
  mirrored = tf.distribute.MirroredStrategy(['/cpu:0'])
  default_agent, mirrored_agent = _twin_agents(cql.CqlSacAgent, second_strategy=mirrored)
  _, stacked = _stacked_batches(2)
  expected = learner_lib.FusedLearner(default_agent, K).train(stacked)
  losses = learner_lib.FusedLearner(mirrored_agent, K, strategy=mirrored).train(stacked)

  np.testing.assert_allclose(losses.loss.numpy(), expected.loss.numpy(), rtol=1e-5, atol=1e-6)
  assert mirrored_agent.train_step_counter.numpy() == K
  for a, b in zip(default_agent.variables, mirrored_agent.variables):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.name)


def _replay(seed, num_steps=40):
  """An in-memory replay of `num_steps` random steps forming num_steps - 1 items."""
  rng = np.random.default_rng(seed)
  batch = fx.random_batch(rng, num_steps)
  steps = tf.nest.map_structure(lambda x: np.asarray(x)[:, 0], fx.as_trajectory(batch))
  items = np.stack([np.arange(num_steps - 1), np.arange(1, num_steps)], axis=1)
  return replay_lib.InMemoryReplay(transitions.TrajectorySteps(steps, items, 0), data_spec=None)


@pytest.mark.slow
def test_sampling_inside_the_loop_trains_on_the_seeded_uniform_batches():
  """Step t of `train_on_replay` trains on sample_uniform(tensors, B, replay_seed() at t)."""
  single, fused_agent = _twin_agents(cql.CqlSacAgent, num_bc_steps=2)
  replay = _replay(3)
  train = tf.function(single.train)
  single_losses = []
  for _ in range(K):
    batch = replay_lib.sample_uniform(replay.tensors, B, single.replay_seed())
    single_losses.append(train(batch).loss.numpy())
  fused = learner_lib.FusedLearner(fused_agent, K).train_on_replay(replay, B, K)

  np.testing.assert_allclose(fused.loss.numpy(), single_losses, rtol=1e-5, atol=1e-6)
  for a, b in zip(single.variables, fused_agent.variables):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.name)


@pytest.mark.parametrize('jit_compile', [False, pytest.param(True, marks=pytest.mark.slow)])
def test_sampled_batches_do_not_depend_on_steps_per_call(jit_compile):
  """K steps in one call equal K/3 calls of 3 steps (the batch of step t is seeded by t)."""
  one_call, three_calls = _twin_agents(cql.CqlSacAgent)
  replay = _replay(4)
  learner_lib.FusedLearner(one_call, K, jit_compile).train_on_replay(replay, B, K)
  learner = learner_lib.FusedLearner(three_calls, K, jit_compile)
  for _ in range(3):
    learner.train_on_replay(replay, B, K // 3)
  assert three_calls.train_step_counter.numpy() == K
  for a, b in zip(one_call.variables, three_calls.variables):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.name)


def test_learner_needs_exactly_one_data_source():
  agent = fx.make_agent()
  with pytest.raises(ValueError, match='either experience_dataset_fn or replay'):
    learner_lib.CqlLearner('/tmp/unused', agent.train_step_counter, agent)
