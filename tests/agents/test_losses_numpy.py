"""Each CQL-SAC loss term against an independent NumPy computation (rtol 1e-5).

The agent's random draws are replaced by fixed arrays through the sampling
seam (`InjectedSamplesAgent`), and NumPy recomputes every term from the network
weights alone (tests/agents/numpy_reference.py).
"""
import logging

import numpy as np
import pytest
import tensorflow as tf

from cql_sac.agents import cql_sac_agent as cql
from tests.agents import agent_fixtures as fx
from tests.agents import numpy_reference as ref

B, N, A = 5, 4, 2
RTOL, ATOL = 1e-5, 1e-6


def _injected(rng, low=-0.9, high=0.9, batch_size=B):
  uniform = lambda *shape: rng.uniform(low, high, size=shape)
  return {
      cql._SEED_TD_NEXT_ACTION: uniform(batch_size, A),
      cql._SEED_CQL_POLICY: uniform(N, batch_size, A),
      cql._SEED_ACTOR: uniform(batch_size, A),
      cql._SEED_ALPHA: uniform(batch_size, A),
      'uniform': uniform(batch_size, N, A),
      'reward_noise': rng.normal(size=batch_size),
  }


def _agent(rng, time_step_spec=None, action_spec=None, **kwargs):
  agent = fx.make_agent(fx.InjectedSamplesAgent, time_step_spec, action_spec,
                        initial_log_alpha=0.3, **kwargs)
  agent.injected = _injected(rng)
  return agent


def _bounds(agent):
  spec = agent.action_spec
  return (np.broadcast_to(spec.minimum, spec.shape).astype(np.float64),
          np.broadcast_to(spec.maximum, spec.shape).astype(np.float64))


def _critics(agent, targets=False):
  return [fx.layers(c) for c in (agent.target_critics if targets else agent.critics)]


def _perturb_targets(agent, rng):
  """Make the target critics differ from the online ones."""
  for net in agent.target_critics:
    for v in net.trainable_variables:
      v.assign_add(0.1 * rng.normal(size=v.shape).astype(np.float32))


CRITICS = ('tf_agents', 'multi_action')


@pytest.mark.parametrize('critic', CRITICS)
@pytest.mark.parametrize('entropy_term,noise_is_variance', [
    (False, False), (True, False), (True, True)])
def test_td_loss_matches_numpy(entropy_term, noise_is_variance, critic):
  rng = np.random.default_rng(1)
  time_step_spec, action_spec = fx.make_specs()
  agent = _agent(rng, time_step_spec, action_spec,
                 critic_network=fx.make_critic(critic, time_step_spec, action_spec),
                 include_critic_entropy_term=entropy_term,
                 reward_noise_variance=0.25,
                 reward_noise_is_variance=noise_is_variance)
  _perturb_targets(agent, rng)
  batch = fx.random_batch(rng, B)
  got = agent.critic_loss(*fx.transition_parts(agent, batch), gamma=0.9,
                          reward_scale_factor=2.0)
  want = ref.td_loss(
      _critics(agent),
      [fx.layers(agent._target_critic_network_1),
       fx.layers(agent._target_critic_network_2)],
      fx.layers(agent._actor_network), batch,
      agent.injected[cql._SEED_TD_NEXT_ACTION], agent.injected['reward_noise'],
      gamma=0.9, reward_scale=2.0,
      noise_std=0.5 if noise_is_variance else 0.25,
      alpha=np.exp(0.3), entropy_term=entropy_term, bounds=_bounds(agent))
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('critic', CRITICS)
@pytest.mark.parametrize('temperature', [1.0, 50.0])
def test_cql_loss_matches_numpy(temperature, critic):
  rng = np.random.default_rng(2)
  time_step_spec, action_spec = fx.make_specs()
  agent = _agent(rng, time_step_spec, action_spec, softmax_temperature=temperature,
                 critic_network=fx.make_critic(critic, time_step_spec, action_spec))
  batch = fx.random_batch(rng, B)
  time_steps, actions, _ = fx.transition_parts(agent, batch)
  got = agent.cql_loss(time_steps, actions)
  want = ref.cql_loss(
      _critics(agent), fx.layers(agent._actor_network), batch[0], batch[1],
      np.transpose(agent.injected[cql._SEED_CQL_POLICY], [1, 0, 2]),
      agent.injected['uniform'], temperature=temperature,
      uniform_log_density=-A * np.log(2.0), bounds=_bounds(agent))
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)


def test_clipped_cql_gap_matches_numpy():
  """CORL's cql_clip_diff_min/max clip each state's gap before the mean; the range is
  chosen inside the gaps' spread so that both bounds bind."""
  rng = np.random.default_rng(5)
  agent = _agent(rng)
  batch = fx.random_batch(rng, B)
  networks = (_critics(agent), fx.layers(agent._actor_network))
  data = (batch[0], batch[1], np.transpose(agent.injected[cql._SEED_CQL_POLICY], [1, 0, 2]),
          agent.injected['uniform'])
  kwargs = dict(temperature=1.0, uniform_log_density=-A * np.log(2.0), bounds=_bounds(agent))
  per_state = [ref.cql_loss(*networks, *[x[i:i + 1] for x in data], **kwargs)
               for i in range(B)]
  low, high = np.quantile(per_state, [0.3, 0.7])
  clipped = _agent(rng, cql_clip_diff_min=low, cql_clip_diff_max=high)
  clipped.injected = agent.injected
  for source, target in zip(agent.variables, clipped.variables):
    target.assign(source)
  got = clipped.cql_loss(*fx.transition_parts(clipped, batch)[:2])
  want = ref.cql_loss(*networks, *data, clip_diff=(low, high), **kwargs)
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)
  assert abs(want - ref.cql_loss(*networks, *data, **kwargs)) > 1e-3  # The clip binds.


@pytest.mark.parametrize('critic', CRITICS)
@pytest.mark.parametrize('importance_sample', [True, False])
def test_cql_loss_with_next_state_samples_matches_numpy(critic, importance_sample):
  """cql_next_state_samples: N actions a' ~ π(·|s') scored at s with log π(a'|s'), 3N terms;
  without importance sampling, raw T·Q at uniform, data, next-state and policy actions."""
  rng = np.random.default_rng(6)
  time_step_spec, action_spec = fx.make_specs()
  agent = _agent(rng, time_step_spec, action_spec, cql_next_state_samples=True,
                 cql_importance_sample=importance_sample,
                 critic_network=fx.make_critic(critic, time_step_spec, action_spec))
  agent.injected[cql._SEED_CQL_NEXT_POLICY] = rng.uniform(-0.9, 0.9, size=(N, B, A))
  batch = fx.random_batch(rng, B)
  time_steps, actions, next_time_steps = fx.transition_parts(agent, batch)
  got = agent.cql_loss(time_steps, actions, next_time_steps=next_time_steps)
  kwargs = dict(temperature=1.0, uniform_log_density=-A * np.log(2.0), bounds=_bounds(agent))
  args = (_critics(agent), fx.layers(agent._actor_network), batch[0], batch[1],
          np.transpose(agent.injected[cql._SEED_CQL_POLICY], [1, 0, 2]),
          agent.injected['uniform'])
  want = ref.cql_loss(*args, next_observations=batch[4], next_policy_actions=np.transpose(
      agent.injected[cql._SEED_CQL_NEXT_POLICY], [1, 0, 2]),
                      importance_sample=importance_sample, **kwargs)
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)
  assert abs(want - ref.cql_loss(*args, **kwargs)) > 1e-3  # The options change the loss.
  with pytest.raises(ValueError, match='cql_next_state_samples=True needs the next states'):
    agent.cql_loss(time_steps, actions)


def test_train_step_uses_the_next_state_samples():
  """The critic step's cql_loss (before the update) is the 3N-term cql_loss."""
  rng = np.random.default_rng(7)
  agent = _agent(rng, cql_next_state_samples=True)
  agent.injected[cql._SEED_CQL_NEXT_POLICY] = rng.uniform(-0.9, 0.9, size=(N, B, A))
  batch = fx.random_batch(rng, B)
  time_steps, actions, next_time_steps = fx.transition_parts(agent, batch)
  want = agent.cql_loss(time_steps, actions, next_time_steps=next_time_steps).numpy()
  info = agent.train(fx.as_trajectory(batch))
  np.testing.assert_allclose(info.extra.cql_loss.numpy(), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('temperature', [1.0, 10.0])
def test_cql_loss_without_importance_sampling_matches_numpy(temperature):
  """CORL's cql_importance_sample=False with 2N: raw T·Q at uniform, policy and data actions."""
  rng = np.random.default_rng(8)
  agent = _agent(rng, cql_importance_sample=False, softmax_temperature=temperature)
  batch = fx.random_batch(rng, B)
  got = agent.cql_loss(*fx.transition_parts(agent, batch)[:2])
  want = ref.cql_loss(
      _critics(agent), fx.layers(agent._actor_network), batch[0], batch[1],
      np.transpose(agent.injected[cql._SEED_CQL_POLICY], [1, 0, 2]), agent.injected['uniform'],
      temperature=temperature, uniform_log_density=-A * np.log(2.0), bounds=_bounds(agent),
      importance_sample=False)
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)


def test_clip_diff_range_must_be_ordered():
  with pytest.raises(ValueError, match=r'cql_clip_diff_min \(1.0\) must be <= '):
    fx.make_agent(cql_clip_diff_min=1.0, cql_clip_diff_max=0.0)


@pytest.mark.parametrize('per_dimension', [False, True])
def test_uniform_log_density_with_per_dimension_bounds(per_dimension):
  """tf_agents' formula counts per-dimension bounds A times; the fix does not."""
  rng = np.random.default_rng(3)
  specs = fx.make_specs(action_min=np.array([-1.0, -2.0], np.float32),
                        action_max=np.array([1.0, 2.0], np.float32))
  agent = _agent(rng, *specs, per_dimension_uniform_log_density=per_dimension)
  agent.injected['uniform'] = rng.uniform(-0.9, 0.9, size=(B, N, A)) * [1, 2]
  agent.injected[cql._SEED_CQL_POLICY] = (
      rng.uniform(-0.9, 0.9, size=(N, B, A)) * [1, 2])
  batch = fx.random_batch(rng, B)
  log_volume = np.log(2.0) + np.log(4.0)  # log of the action box's volume
  density = -log_volume if per_dimension else -A * log_volume
  got = agent.cql_loss(*fx.transition_parts(agent, batch)[:2])
  want = ref.cql_loss(
      _critics(agent), fx.layers(agent._actor_network), batch[0], batch[1],
      np.transpose(agent.injected[cql._SEED_CQL_POLICY], [1, 0, 2]),
      agent.injected['uniform'], temperature=1.0, uniform_log_density=density,
      bounds=_bounds(agent))
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('per_dimension,bounds,warns', [
    (False, ([-1.0, -2.0], [1.0, 2.0]), True),   # tf_agents' formula, array bounds
    (True, ([-1.0, -2.0], [1.0, 2.0]), False),
    (False, (-1.0, 1.0), False)])                 # scalar bounds: the formulas agree
def test_overcounted_uniform_density_is_warned_once(per_dimension, bounds, warns, caplog):
  caplog.set_level(logging.WARNING, logger='absl')
  specs = fx.make_specs(action_min=np.array(bounds[0], np.float32),
                        action_max=np.array(bounds[1], np.float32))
  fx.make_agent(cql.CqlSacAgent, *specs, per_dimension_uniform_log_density=per_dimension)
  lines = [r.getMessage() for r in caplog.records if 'log U(a)' in r.getMessage()]
  if not warns:
    assert lines == []
    return
  log_volume = np.log(2.0) + np.log(4.0)
  assert len(lines) == 1
  assert f'{-A * log_volume:.2f} nats' in lines[0]
  assert f'true value is {-log_volume:.2f}' in lines[0]
  assert 'per_dimension_uniform_log_density = True' in lines[0]


@pytest.mark.parametrize('bc', [True, False])
def test_actor_loss_matches_numpy(bc):
  rng = np.random.default_rng(4)
  agent = _agent(rng, num_bc_steps=1 if bc else 0)
  batch = fx.random_batch(rng, B)
  time_steps, actions, _ = fx.transition_parts(agent, batch)
  got = agent.actor_loss(time_steps, actions)
  want = ref.actor_loss(
      _critics(agent), fx.layers(agent._actor_network), batch[0], batch[1],
      agent.injected[cql._SEED_ACTOR], alpha=np.exp(0.3),
      behaviour_cloning=bc, bounds=_bounds(agent))
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)


_ACTOR_TERMS = {  # The agent's arguments, and the NumPy reference's given the injected noise.
    'bc': (dict(actor_bc_weight=0.4), lambda noise: dict(bc_weight=0.4)),
    'state_smoothing': (dict(actor_state_smoothing_weight=2.0, actor_state_smoothing_epsilon=0.3,
                             actor_state_smoothing_samples=3),
                        lambda noise: dict(smoothing=(2.0, 0.3, noise))),
}


@pytest.mark.parametrize('term', sorted(_ACTOR_TERMS))
@pytest.mark.parametrize('num_bc_steps', [0, 1])
def test_actor_regularizer_matches_numpy(term, num_bc_steps):
  """After the warm-up, not in it: actor_bc_weight adds β·mean|min Q|·mean (ā − a_data)²;
  actor_state_smoothing_weight adds β_s·mean|min Q|·mean_B max_j mean_A (ā(s + δ_j) − ā(s))²,
  δ_j = ε·σ_B·u_j (3 perturbations u_j injected)."""
  rng = np.random.default_rng(14)
  agent_kwargs, reference_kwargs = _ACTOR_TERMS[term]
  agent = _agent(rng, num_bc_steps=num_bc_steps, **agent_kwargs)
  batch = fx.random_batch(rng, B)
  noise = rng.uniform(-1.0, 1.0, size=(3,) + batch[0].shape)
  agent.injected = dict(agent.injected, state_perturbation=noise)
  time_steps, actions, _ = fx.transition_parts(agent, batch)
  got = agent.actor_loss(time_steps, actions)
  kwargs = dict(alpha=np.exp(0.3), behaviour_cloning=bool(num_bc_steps),
                bounds=_bounds(agent))
  args = (_critics(agent), fx.layers(agent._actor_network), batch[0], batch[1],
          agent.injected[cql._SEED_ACTOR])
  want = ref.actor_loss(*args, **reference_kwargs(noise), **kwargs)
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)
  if not num_bc_steps:  # The term is really there: it differs from the plain loss.
    assert abs(want - ref.actor_loss(*args, **kwargs)) > 1e-3


def test_sac_alpha_loss_matches_numpy():
  rng = np.random.default_rng(5)
  agent = _agent(rng)
  batch = fx.random_batch(rng, B)
  got = agent.alpha_loss(fx.transition_parts(agent, batch)[0])
  want = ref.sac_alpha_loss(
      fx.layers(agent._actor_network), batch[0], agent.injected[cql._SEED_ALPHA],
      log_alpha=0.3, target_entropy=-A / 2.0, bounds=_bounds(agent))
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)


def test_lagrange_step_matches_numpy():
  """One train step: loss −α'(gap − τ) and Adam's first step of size lr on log α'."""
  rng = np.random.default_rng(6)
  lr, tau, clip = 0.05, 10.0, (-1.0, 3.0)
  agent = _agent(rng, use_lagrange_cql_alpha=True, cql_alpha=5.0,
                 cql_alpha_learning_rate=lr, cql_tau=tau,
                 log_cql_alpha_clipping=clip)
  batch = fx.random_batch(rng, B)
  gap = ref.cql_loss(
      _critics(agent), fx.layers(agent._actor_network), batch[0], batch[1],
      np.transpose(agent.injected[cql._SEED_CQL_POLICY], [1, 0, 2]),
      agent.injected['uniform'], temperature=1.0,
      uniform_log_density=-A * np.log(2.0), bounds=_bounds(agent))
  extra = agent.train(fx.as_trajectory(batch)).extra
  np.testing.assert_allclose(extra.cql_loss.numpy(), gap, rtol=RTOL)
  np.testing.assert_allclose(extra.cql_alpha.numpy(), 5.0, rtol=RTOL)
  np.testing.assert_allclose(extra.cql_alpha_loss.numpy(),
                             ref.lagrange_loss(np.log(5.0), gap, tau, clip),
                             rtol=RTOL)
  # d/dlogα' of −α'(gap − τ) has the sign of τ − gap; Adam's first step is lr.
  expected = np.log(5.0) - lr * np.sign(tau - gap)
  np.testing.assert_allclose(agent._log_cql_alpha.numpy(), expected, rtol=RTOL)


def test_total_loss_is_critic_objective_plus_actor_and_alpha():
  rng = np.random.default_rng(7)
  agent = _agent(rng, cql_alpha=3.0)
  info = agent.loss(fx.as_trajectory(fx.random_batch(rng, B)))
  e = info.extra
  np.testing.assert_allclose(
      info.loss.numpy(),
      (e.critic_loss + 3.0 * e.cql_loss + e.actor_loss + e.alpha_loss).numpy(),
      rtol=RTOL)


def test_behaviour_cloning_switches_exactly_at_num_bc_steps():
  rng = np.random.default_rng(8)
  agent = _agent(rng, num_bc_steps=3)
  batch = fx.random_batch(rng, B)
  time_steps, actions, _ = fx.transition_parts(agent, batch)
  for step, bc in ((0, True), (2, True), (3, False), (10, False)):
    agent.train_step_counter.assign(step)
    want = ref.actor_loss(
        _critics(agent), fx.layers(agent._actor_network), batch[0], batch[1],
        agent.injected[cql._SEED_ACTOR], alpha=np.exp(0.3),
        behaviour_cloning=bc, bounds=_bounds(agent))
    np.testing.assert_allclose(agent.actor_loss(time_steps, actions).numpy(),
                               want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('critic', CRITICS)
@pytest.mark.parametrize('entropy_term', [False, True])
def test_max_target_backup_matches_numpy(entropy_term, critic):
  """max_target_backup: M = 3 actions a'_j ~ π(·|s'), max_j min_k Q̄_k(s', a'_j), and the
  log π of that argmax sample in the entropy term (CORL)."""
  rng = np.random.default_rng(9)
  tf.keras.utils.set_random_seed(9)  # Critic weights independent of earlier tests.
  time_step_spec, action_spec = fx.make_specs()
  agent = _agent(rng, time_step_spec, action_spec, max_target_backup=True,
                 max_target_num_samples=3, include_critic_entropy_term=entropy_term,
                 critic_network=fx.make_critic(critic, time_step_spec, action_spec))
  agent.injected[cql._SEED_TD_NEXT_ACTION] = rng.uniform(-0.9, 0.9, size=(3, B, A))
  _perturb_targets(agent, rng)
  batch = fx.random_batch(rng, B)
  batch = batch[:3] + (np.ones(B),) + batch[4:]  # No terminals: every state's backup counts.
  got = agent.critic_loss(*fx.transition_parts(agent, batch), gamma=0.9)
  kwargs = dict(gamma=0.9, reward_scale=1.0, noise_std=0.0, alpha=np.exp(0.3),
                entropy_term=entropy_term, bounds=_bounds(agent))
  args = (_critics(agent), _critics(agent, targets=True), fx.layers(agent._actor_network),
          batch)
  next_actions = np.transpose(agent.injected[cql._SEED_TD_NEXT_ACTION], [1, 0, 2])
  want = ref.td_loss(*args, next_actions, np.zeros(B), **kwargs)
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)
  # The argmax differs between states, so taking any one sample would change the loss.
  for j in range(3):
    assert abs(want - ref.td_loss(*args, next_actions[:, j], np.zeros(B), **kwargs)) > 1e-4


@pytest.mark.parametrize('num_critics', [3, 5])
def test_critic_ensemble_matches_numpy(num_critics):
  """C critics: TD loss Σ_k over C with min over C targets, CQL gap averaged over C, actor
  min over C; one train step moves every target by Polyak τ towards its critic."""
  rng = np.random.default_rng(10)
  agent = _agent(rng, num_critics=num_critics, target_update_tau=0.25)
  _perturb_targets(agent, rng)
  batch = fx.random_batch(rng, B)
  time_steps, actions, next_time_steps = fx.transition_parts(agent, batch)
  critics, targets = _critics(agent), _critics(agent, targets=True)
  assert len(critics) == len(targets) == num_critics
  assert len({c[0][0].tobytes() for c in critics}) == num_critics  # Distinct weights.
  actor = fx.layers(agent._actor_network)
  bounds = _bounds(agent)
  np.testing.assert_allclose(
      agent.critic_loss(time_steps, actions, next_time_steps, gamma=0.9).numpy(),
      ref.td_loss(critics, targets, actor, batch, agent.injected[cql._SEED_TD_NEXT_ACTION],
                  np.zeros(B), gamma=0.9, reward_scale=1.0, noise_std=0.0, alpha=0.0,
                  entropy_term=False, bounds=bounds), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(
      agent.cql_loss(time_steps, actions).numpy(),
      ref.cql_loss(critics, actor, batch[0], batch[1],
                   np.transpose(agent.injected[cql._SEED_CQL_POLICY], [1, 0, 2]),
                   agent.injected['uniform'], temperature=1.0,
                   uniform_log_density=-A * np.log(2.0), bounds=bounds),
      rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(
      agent.actor_loss(time_steps, actions).numpy(),
      ref.actor_loss(critics, actor, batch[0], batch[1], agent.injected[cql._SEED_ACTOR],
                     alpha=np.exp(0.3), behaviour_cloning=False, bounds=bounds),
      rtol=RTOL, atol=ATOL)
  agent.train(fx.as_trajectory(batch))
  for k, (critic, target, old) in enumerate(zip(
      _critics(agent), _critics(agent, targets=True), targets)):
    for (w, b), (tw, tb), (ow, ob) in zip(critic, target, old):
      np.testing.assert_allclose(tw, 0.75 * ow + 0.25 * w, rtol=RTOL, atol=ATOL)
      np.testing.assert_allclose(tb, 0.75 * ob + 0.25 * b, rtol=RTOL, atol=ATOL)
    assert not np.allclose(critic[0][0], critics[k][0][0])  # Every critic was trained.


def test_corl_lagrange_maps_onto_cql_tau():
  """CORL's (and JaxCQL's) Lagrange, per critic α'·c·(gap_k − target) with α' = exp(1.0), is
  ours with cql_alpha = c·α' and cql_tau = target (configs/corl/antmaze.gin): the same α'
  loss, and twice our critic objective is CORL's qf_loss up to a constant (2α'c·target)."""
  rng = np.random.default_rng(11)
  c, target, alpha_prime = 5.0, 0.8, np.exp(1.0)
  agent = _agent(rng, use_lagrange_cql_alpha=True, cql_alpha=c * alpha_prime, cql_tau=target)
  batch = fx.random_batch(rng, B)
  extra = agent.loss(fx.as_trajectory(batch)).extra
  actor = fx.layers(agent._actor_network)
  samples = (batch[0], batch[1], np.transpose(agent.injected[cql._SEED_CQL_POLICY], [1, 0, 2]),
             agent.injected['uniform'])
  kwargs = dict(temperature=1.0, uniform_log_density=-A * np.log(2.0), bounds=_bounds(agent))
  gaps = [ref.cql_loss([critic], actor, *samples, **kwargs) for critic in _critics(agent)]
  mses = [ref.td_loss([critic], _critics(agent, targets=True), actor, batch,
                      agent.injected[cql._SEED_TD_NEXT_ACTION], np.zeros(B), gamma=1.0,
                      reward_scale=1.0, noise_std=0.0, alpha=0.0, entropy_term=False,
                      bounds=_bounds(agent)) for critic in _critics(agent)]
  terms = [alpha_prime * c * (gap - target) for gap in gaps]
  corl_qf_loss = sum(mses) + sum(terms)
  corl_alpha_prime_loss = -sum(terms) / 2.0
  np.testing.assert_allclose(extra.cql_alpha_loss.numpy(), corl_alpha_prime_loss, rtol=RTOL)
  ours = extra.critic_loss.numpy() + extra.cql_alpha.numpy() * extra.cql_loss.numpy()
  np.testing.assert_allclose(2.0 * ours, corl_qf_loss + 2.0 * alpha_prime * c * target,
                             rtol=RTOL)
