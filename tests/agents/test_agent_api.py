"""Constructor validation, error messages, and the fixed reference defects."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

from cql_sac.agents import cql_sac_agent as cql
from tests.agents import agent_fixtures as fx


@pytest.mark.parametrize('kwargs,message', [
    (dict(num_cql_samples=0), r'num_cql_samples must be an integer >= 1, got 0'),
    (dict(num_cql_samples=2.5), r'num_cql_samples must be an integer >= 1, got 2.5'),
    (dict(softmax_temperature=0.0), r'softmax_temperature must be > 0, got 0.0'),
    (dict(softmax_temperature=-1.0), r'softmax_temperature must be > 0, got -1.0'),
    (dict(use_lagrange_cql_alpha=True, cql_alpha=0.0),
     r'cql_alpha must be > 0, got 0.0.*use_lagrange_cql_alpha=True'),
    (dict(use_lagrange_cql_alpha=True, cql_alpha=-2.0),
     r'cql_alpha must be > 0, got -2.0'),
    (dict(log_cql_alpha_clipping=(3.0, 1.0)), r'log_cql_alpha_clipping must be'),
    (dict(num_critics=1), r'num_critics must be an integer >= 2, got 1'),
    (dict(num_critics=3.0), r'num_critics must be an integer >= 2, got 3.0'),
    (dict(max_target_backup=True, max_target_num_samples=0),
     r'max_target_num_samples must be an integer >= 1, got 0'),
    (dict(actor_ema_tau=0.0), r'actor_ema_tau must be None or in \(0, 1\], got 0.0'),
    (dict(actor_ema_tau=1.5), r'actor_ema_tau must be None or in \(0, 1\], got 1.5'),
    (dict(actor_bc_weight=-0.1), r'actor_bc_weight must be a number >= 0, got -0.1'),
    (dict(actor_bc_weight=True), r'actor_bc_weight must be a number >= 0, got True'),
    (dict(actor_state_smoothing_weight=-1.0),
     r'actor_state_smoothing_weight must be a number >= 0, got -1.0'),
    (dict(actor_state_smoothing_epsilon=0.0),
     r'actor_state_smoothing_epsilon must be > 0, got 0.0'),
    (dict(actor_state_smoothing_samples=0),
     r'actor_state_smoothing_samples must be an integer >= 1, got 0'),
])
def test_bad_arguments_raise_value_error(kwargs, message):
  with pytest.raises(ValueError, match=message):
    fx.make_agent(**kwargs)


def test_cql_alpha_zero_is_allowed_without_lagrange():
  fx.make_agent(cql_alpha=0.0)


@pytest.mark.parametrize('action_spec,message', [
    (tensor_spec.TensorSpec([2], tf.float32), r'action_spec must be bounded'),
    (tensor_spec.BoundedTensorSpec([], tf.int32, 0, 3), r'float dtype'),
    (tensor_spec.BoundedTensorSpec([2, 2], tf.float32, -1, 1), r'rank 1'),
    ((tensor_spec.BoundedTensorSpec([1], tf.float32, -1, 1),) * 2,
     r'single BoundedTensorSpec, got 2 specs'),
])
def test_bad_action_spec_raises_value_error(action_spec, message):
  time_step_spec, good_spec = fx.make_specs()
  actor, critic = fx.make_networks(time_step_spec, good_spec)
  with pytest.raises(ValueError, match=message):
    cql.CqlSacAgent(time_step_spec, action_spec, critic, actor, None, None,
                    None, cql_alpha=1.0, num_cql_samples=2,
                    include_critic_entropy_term=False,
                    use_lagrange_cql_alpha=False)


def test_constructor_matches_tf_agents_signature():
  """Same names, order and defaults as tf-agents' CqlSacAgent; new ones last, with
  defaults that keep tf_agents' behaviour."""
  import inspect
  from tf_agents.agents.cql import cql_sac_agent as reference
  ours = list(inspect.signature(cql.CqlSacAgent.__init__).parameters.values())
  theirs = list(
      inspect.signature(reference.CqlSacAgent.__init__).parameters.values())
  assert len(theirs) == 40  # self + 39 arguments
  assert [(p.name, p.default) for p in ours[:len(theirs)]] == [
      (p.name, p.default) for p in theirs]
  assert [p.name for p in ours[len(theirs):]] == [
      'per_dimension_uniform_log_density', 'reward_noise_is_variance',
      'log_cql_alpha_straight_through', 'cql_clip_diff_min', 'cql_clip_diff_max',
      'cql_next_state_samples', 'cql_importance_sample', 'max_target_backup',
      'max_target_num_samples', 'num_critics', 'actor_ema_tau', 'actor_bc_weight',
      'actor_state_smoothing_weight', 'actor_state_smoothing_epsilon',
      'actor_state_smoothing_samples']
  assert [p.default for p in ours[len(theirs):]] == [False] * 3 + [
      -np.inf, np.inf, False, True, False, None, 2, None, 0.0, 0.0, 0.05, 10]


def test_loss_returns_cql_losses_without_training():
  """tf_agents' agent.loss() raises TypeError; ours returns the step's losses."""
  rng = np.random.default_rng(0)
  agent = fx.make_agent(use_lagrange_cql_alpha=True, cql_alpha=1.0)
  experience = fx.as_trajectory(fx.random_batch(rng, 16))
  before = [v.numpy() for v in agent.variables]
  info = agent.loss(experience)
  assert isinstance(info.extra, cql.CqlSacLossInfo)
  for old, new in zip(before, agent.variables):
    np.testing.assert_array_equal(old, new.numpy())
  assert agent.train_step_counter.numpy() == 0
  # train() at the same step draws the same samples, so the critic-side terms
  # (computed before any update) are identical.
  trained = agent.train(experience).extra
  for field in ('critic_loss', 'cql_loss', 'cql_alpha', 'cql_alpha_loss'):
    np.testing.assert_allclose(getattr(trained, field).numpy(),
                               getattr(info.extra, field).numpy(), rtol=1e-6)
  assert info.extra.cql_alpha_loss.numpy() != 0.0


@pytest.mark.parametrize('straight_through', [False, True])
def test_lagrange_variable_outside_clip_range(straight_through):
  """Outside the clip range tf_agents' log α' gets zero gradient and sticks;
  with the straight-through fix it moves back by Adam's step (lr)."""
  rng = np.random.default_rng(1)
  lr = 0.1
  agent = fx.make_agent(use_lagrange_cql_alpha=True, cql_alpha=5.0,
                        cql_tau=1e6, cql_alpha_learning_rate=lr,
                        log_cql_alpha_clipping=(-1.0, 0.0),
                        log_cql_alpha_straight_through=straight_through)
  start = agent._log_cql_alpha.numpy()
  assert start > 0.0  # log 5 is above the clip range
  extra = agent.train(fx.as_trajectory(fx.random_batch(rng, 16))).extra
  np.testing.assert_allclose(extra.cql_alpha.numpy(), 1.0, rtol=1e-6)  # e^0
  moved = agent._log_cql_alpha.numpy() - start
  if straight_through:
    np.testing.assert_allclose(moved, -lr, rtol=1e-4)  # gap << τ: α' falls
  else:
    assert moved == 0.0


@pytest.mark.parametrize('field,corrupt', [
    ('critic_loss', lambda t: t._replace(reward=t.reward * np.nan)),
    ('critic_loss', lambda t: t._replace(observation=t.observation * np.inf)),
])
def test_nan_in_loss_raises_error_naming_the_loss(field, corrupt):
  rng = np.random.default_rng(2)
  agent = fx.make_agent()
  experience = corrupt(fx.as_trajectory(fx.random_batch(rng, 8)))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=f'CqlSacAgent: {field} is NaN or inf'):
    agent.train(experience)


def test_training_is_reproducible_from_random_seed():
  """Same weights and random_seed give bit-identical training."""
  rng = np.random.default_rng(3)
  experience = fx.as_trajectory(fx.random_batch(rng, 16))
  agents = [fx.make_agent(random_seed=11) for _ in range(2)]
  for source, target in zip(agents[0].variables, agents[1].variables):
    target.assign(source)
  losses = [[a.train(experience).loss.numpy() for _ in range(3)] for a in agents]
  assert losses[0] == losses[1]
  other = fx.make_agent(random_seed=12)
  for source, target in zip(agents[1].variables, other.variables):
    target.assign(source)
  other._random_seed.assign(12)
  assert agents[1].train(experience).loss.numpy() != other.train(
      experience).loss.numpy()


def test_averaged_actor_follows_the_polyak_recursion():
  """After each step w_ema = (1 − τ)·w_ema + τ·w, from the initial actor; training is
  otherwise unchanged (same losses as an agent without the average)."""
  tau = 0.25
  rng = np.random.default_rng(4)
  experiences = [fx.as_trajectory(fx.random_batch(rng, 16)) for _ in range(3)]
  agent, plain = fx.make_agent(actor_ema_tau=tau), fx.make_agent()
  assert plain.ema_policy is None
  actor = agent._actor_network.trainable_variables
  for source, target in zip(agent._actor_network.variables, plain._actor_network.variables):
    target.assign(source)
  for source, target in zip(agent.critics + agent.target_critics,
                            plain.critics + plain.target_critics):
    for s, t in zip(source.variables, target.variables):
      t.assign(s)
  expected = [v.numpy().astype(np.float64) for v in actor]  # Starts at the actor.
  ema = agent.ema_policy.variables()
  assert len(ema) == len(actor)
  for average, variable in zip(ema, actor):
    np.testing.assert_array_equal(average.numpy(), variable.numpy())
  for experience in experiences:
    assert agent.train(experience).loss.numpy() == plain.train(experience).loss.numpy()
    expected = [(1 - tau) * e + tau * v.numpy() for e, v in zip(expected, actor)]
  for value, variable in zip(expected, ema):
    np.testing.assert_allclose(variable.numpy(), value, rtol=1e-6, atol=1e-7)
  assert not np.allclose(ema[0].numpy(), actor[0].numpy())


def test_debug_summaries_report_action_saturation_and_actor_gradient_norm(tmp_path):
  """The two diagnosis scalars against an independent computation on the same step: the
  share of greedy action components beyond 0.99 of the bounds, and the actor gradient's
  global norm (the step's draws are seeded by the step, so a tape before train() sees the
  same samples)."""
  from cql_sac.summaries import read_scalars  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(5)
  experience = fx.as_trajectory(fx.random_batch(rng, 32))
  agent = fx.make_agent(debug_summaries=True)
  for v in agent._actor_network.trainable_variables:  # Push some greedy actions to ±1.
    v.assign(v * 4.0)
  time_steps, policy_steps, _ = agent._as_transition(experience)
  with tf.GradientTape() as tape:
    loss = agent.actor_loss(time_steps, policy_steps.action, training=True)
  expected_norm = tf.linalg.global_norm(
      tape.gradient(loss, agent._actor_network.trainable_variables)).numpy()
  mode = agent.policy.distribution(time_steps).action.mode().numpy()
  expected_share = np.mean(np.abs(mode) > 0.99)
  assert 0.0 < expected_share < 1.0
  writer = tf.summary.create_file_writer(str(tmp_path))
  with writer.as_default(), tf.summary.record_if(True):
    agent.train(experience)
  writer.flush()
  scalars = read_scalars(str(tmp_path))
  assert scalars['actor_loss/greedy_action_saturation'] == [(0, pytest.approx(expected_share))]
  assert scalars['actor_loss/gradient_global_norm'][0][1] == pytest.approx(expected_norm,
                                                                            rel=1e-4)
