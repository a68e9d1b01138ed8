"""Statistical parity with tf_agents' CqlSacAgent (the oracle).

Both agents get the same network weights and the same batch. Each loss term is
a random variable (policy, uniform and reward-noise draws); its mean over
M draws must agree between the two agents within 5 standard errors of the
difference of the two sample means (a false-failure rate below 1e-6 per term).
tf_agents' draws come from TF's global generator, ours from stateless seeds;
we vary our agent's random_seed between draws.
"""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.agents.cql import cql_sac_agent as reference

from tests.agents import agent_fixtures as fx

DRAWS = 100
BATCH = 32
Z = 5.0
KWARGS = dict(cql_alpha=2.0, num_cql_samples=4, include_critic_entropy_term=True,
              use_lagrange_cql_alpha=True, log_cql_alpha_clipping=(-1.0, 0.5),
              reward_noise_variance=0.3, gamma=0.9, reward_scale_factor=2.0,
              softmax_temperature=2.0, initial_log_alpha=0.2, num_bc_steps=0)


@pytest.fixture(scope='module')
def agents():
  time_step_spec, action_spec = fx.make_specs()
  ours = fx.make_agent(**KWARGS)
  actor, critic = fx.make_networks(time_step_spec, action_spec)
  args = dict(KWARGS)
  args.update(train_step_counter=tf.Variable(0, dtype=tf.int64))
  theirs = reference.CqlSacAgent(
      time_step_spec, action_spec, critic_network=critic, actor_network=actor,
      actor_optimizer=tf.keras.optimizers.Adam(1e-3),
      critic_optimizer=tf.keras.optimizers.Adam(1e-3),
      alpha_optimizer=tf.keras.optimizers.Adam(1e-3), **args)
  theirs.initialize()
  for name in ('_actor_network', '_critic_network_1', '_critic_network_2',
               '_target_critic_network_1', '_target_critic_network_2'):
    for source, target in zip(getattr(ours, name).variables,
                              getattr(theirs, name).variables):
      target.assign(source)
  # Targets differ from the online critics, as after some training.
  rng = np.random.default_rng(0)
  for agent_net in ('_target_critic_network_1', '_target_critic_network_2'):
    for a, b in zip(getattr(ours, agent_net).variables,
                    getattr(theirs, agent_net).variables):
      a.assign_add(0.1 * rng.normal(size=a.shape).astype(np.float32))
      b.assign(a)
  batch = fx.random_batch(rng, BATCH)
  return ours, theirs, fx.transition_parts(ours, batch)


def _means(ours, ours_fn, theirs_fn):
  values_ours, values_theirs = [], []
  for draw in range(DRAWS):
    ours._random_seed.assign(1000 + draw)
    values_ours.append(float(ours_fn()))
    values_theirs.append(float(theirs_fn()))
  return np.array(values_ours), np.array(values_theirs)


def _assert_same_mean(values_ours, values_theirs):
  diff = values_ours.mean() - values_theirs.mean()
  stderr = np.sqrt(values_ours.var() / DRAWS + values_theirs.var() / DRAWS)
  assert abs(diff) <= Z * stderr + 1e-6, (
      f'means {values_ours.mean():.6f} vs {values_theirs.mean():.6f}, '
      f'difference {diff:.2e} > {Z} x stderr {stderr:.2e}')


@pytest.mark.slow
def test_td_loss_mean_matches_tf_agents(agents):
  ours, theirs, (time_steps, actions, next_time_steps) = agents
  args = (time_steps, actions, next_time_steps)
  kwargs = dict(td_errors_loss_fn=tf.math.squared_difference, gamma=0.9,
                reward_scale_factor=2.0)
  _assert_same_mean(*_means(
      ours, lambda: ours.critic_loss(*args, **kwargs),
      lambda: theirs._critic_loss_with_optional_entropy_term(*args, **kwargs)))


@pytest.mark.slow
def test_cql_loss_mean_matches_tf_agents(agents):
  ours, theirs, (time_steps, actions, _) = agents
  _assert_same_mean(*_means(ours, lambda: ours.cql_loss(time_steps, actions),
                            lambda: theirs._cql_loss(time_steps, actions)))


@pytest.mark.slow
def test_actor_loss_mean_matches_tf_agents(agents):
  ours, theirs, (time_steps, actions, _) = agents
  _assert_same_mean(*_means(ours, lambda: ours.actor_loss(time_steps, actions),
                            lambda: theirs.actor_loss(time_steps, actions)))


@pytest.mark.slow
def test_sac_alpha_loss_mean_matches_tf_agents(agents):
  ours, theirs, (time_steps, _, _) = agents
  _assert_same_mean(*_means(ours, lambda: ours.alpha_loss(time_steps),
                            lambda: theirs.alpha_loss(time_steps)))


@pytest.mark.slow
def test_lagrange_alpha_matches_tf_agents(agents):
  ours, theirs, _ = agents
  np.testing.assert_allclose(ours._get_cql_alpha().numpy(),
                             theirs._get_cql_alpha().numpy(), rtol=1e-6)
  np.testing.assert_allclose(ours._get_cql_alpha().numpy(), np.exp(0.5),
                             rtol=1e-6)
