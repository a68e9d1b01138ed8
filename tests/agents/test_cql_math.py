"""The pure CQL and Cal-QL functions (`cql_sac.agents.cql_math`) against NumPy, without an agent.

Each expected value is written from the equation in float64 (Kumar et al. 2020 eq. 4 and
Appendix F, eq. 24; Nakamoto et al. 2023 eq. 5; Haarnoja et al. 2018 eq. 3).
"""
import numpy as np
import pytest
import tensorflow as tf

from cql_sac.agents import cql_math

B, N, M = 6, 4, 5
RTOL, ATOL = 1e-5, 1e-5


def _arrays(seed, *shapes, scale=3.0):
  rng = np.random.default_rng(seed)
  return [(scale * rng.normal(size=shape)).astype(np.float32) for shape in shapes]


def _logsumexp(x):
  x = np.asarray(x, np.float64)
  peak = x.max(axis=1, keepdims=True)
  return peak[:, 0] + np.log(np.exp(x - peak).sum(axis=1))


@pytest.mark.parametrize('temperature', [1.0, 3.0])
@pytest.mark.parametrize('next_state', [False, True])
def test_importance_sampled_gap(temperature, next_state):
  """(1/T)·log Σ exp(T·Q − log p) over policy, uniform (and next-state) samples − Q(s, a_data)."""
  q_data, q_policy, q_uniform, log_pi, q_next, log_pi_next = _arrays(
      0, (B,), (B, N), (B, N), (B, N), (B, N), (B, N))
  log_u = -2.0 * np.log(2.0)
  terms = [temperature * q_policy - log_pi, temperature * q_uniform - log_u]
  if next_state:
    terms.append(temperature * q_next - log_pi_next)
  want = _logsumexp(np.concatenate(terms, axis=1)) / temperature - q_data
  got = cql_math.cql_gap(q_data, q_policy, q_uniform, log_pi, log_u, temperature,
                         q_next if next_state else None, log_pi_next if next_state else None)
  assert got.shape == (B,) and got.dtype == tf.float32
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)


def test_gap_without_importance_sampling_sums_raw_values_with_the_data_action():
  """CORL's cql_importance_sample=False: T·Q at uniform, policy, data (and next) actions."""
  q_data, q_policy, q_uniform, log_pi, q_next = _arrays(1, (B,), (B, N), (B, N), (B, N), (B, N))
  temperature = 2.0
  want = _logsumexp(temperature * np.concatenate(
      [q_policy, q_uniform, q_data[:, None], q_next], axis=1)) / temperature - q_data
  got = cql_math.cql_gap(q_data, q_policy, q_uniform, log_pi, 123.0, temperature,
                         q_next, log_pi, importance_sample=False)
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)


def test_gap_is_clipped_per_state():
  q_data, q_policy, q_uniform, log_pi = _arrays(2, (B,), (B, N), (B, N), (B, N))
  free = cql_math.cql_gap(q_data, q_policy, q_uniform, log_pi, 0.0, 1.0).numpy()
  low, high = np.quantile(free, [0.3, 0.7])
  got = cql_math.cql_gap(q_data, q_policy, q_uniform, log_pi, 0.0, 1.0,
                         clip_diff=(low, high))
  np.testing.assert_allclose(got.numpy(), np.clip(free, low, high), rtol=RTOL, atol=ATOL)
  assert np.any(free < low) and np.any(free > high)  # Both ends bind.


def test_cal_ql_bound_lifts_only_the_policy_samples():
  """Nakamoto et al. eq. 5: max(Q, G(s)) on policy and next-state samples, before log π."""
  q_data, q_policy, q_uniform, log_pi, q_next, bound = _arrays(
      3, (B,), (B, N), (B, N), (B, N), (B, N), (B,))
  bounded = lambda q: np.maximum(q, bound[:, None])
  want = _logsumexp(np.concatenate(
      [bounded(q_policy) - log_pi, q_uniform - 0.5, bounded(q_next) - log_pi], axis=1)) - q_data
  got = cql_math.cql_gap(q_data, q_policy, q_uniform, log_pi, 0.5, 1.0, q_next, log_pi,
                         q_lower_bound=bound)
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)
  assert np.any(q_policy < bound[:, None])  # The bound binds somewhere.
  policy, absent = cql_math.bounded_below(tf.constant(bound), q_policy, None)
  np.testing.assert_array_equal(policy.numpy(), bounded(q_policy))
  assert absent is None


@pytest.mark.parametrize('include_entropy', [False, True])
def test_soft_td_target(include_entropy):
  """y = s·r + γ·d·(Q̄(s', a') − α·log π(a'|s')), entropy term optional, gradient stopped."""
  rewards, next_q, log_pi = _arrays(4, (B,), (B,), (B,))
  discounts = np.array([1, 0, 1, 1, 0, 1], np.float32)
  alpha, gamma, scale = 0.7, 0.99, 2.5
  want = scale * rewards + gamma * discounts * (next_q - (alpha * log_pi if include_entropy
                                                          else 0.0))
  next_q = tf.constant(next_q)
  with tf.GradientTape() as tape:
    tape.watch(next_q)
    got = cql_math.soft_td_target(rewards, discounts, next_q, log_pi, tf.constant(alpha),
                                  gamma, scale, include_entropy)
  np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)
  assert tape.gradient(got, next_q) is None


def test_max_backup_takes_each_state_argmax_and_its_log_prob():
  q, log_pi = _arrays(5, (B, M), (B, M))
  best = np.argmax(q, axis=1)
  got_q, got_log_pi = cql_math.max_backup(q, log_pi)
  np.testing.assert_array_equal(got_q.numpy(), q[np.arange(B), best])
  np.testing.assert_array_equal(got_log_pi.numpy(), log_pi[np.arange(B), best])


def test_minimum_over_critics():
  values = _arrays(6, (B,), (B,), (B,))
  np.testing.assert_array_equal(cql_math.minimum(values).numpy(), np.min(values, axis=0))


@pytest.mark.parametrize('straight_through', [False, True])
def test_cql_alpha_from_log_clips_with_or_without_the_gradient(straight_through):
  """α' = exp(clip(log α')); outside the range the gradient is 0, or exp(clip) passed through."""
  log_alpha = tf.Variable(4.0)
  with tf.GradientTape() as tape:
    alpha = cql_math.cql_alpha_from_log(log_alpha, (-1.0, 3.0), straight_through)
  np.testing.assert_allclose(alpha.numpy(), np.exp(3.0), rtol=RTOL)
  want = np.exp(3.0) if straight_through else 0.0
  gradient = tape.gradient(alpha, log_alpha)
  np.testing.assert_allclose(0.0 if gradient is None else gradient.numpy(), want, rtol=RTOL)
  np.testing.assert_allclose(cql_math.cql_alpha_from_log(tf.constant(0.5)).numpy(),
                             np.exp(0.5), rtol=RTOL)


def test_lagrange_loss_value_and_gradient():
  """L = −α'·(gap − τ): dL/dlog α' = −α'·(gap − τ); no gradient reaches the gap."""
  log_alpha, gap, tau = tf.Variable(np.log(5.0), dtype=tf.float32), tf.Variable(12.0), 10.0
  with tf.GradientTape(persistent=True) as tape:
    loss = cql_math.lagrange_loss(tf.exp(log_alpha), gap, tau)
  np.testing.assert_allclose(loss.numpy(), -5.0 * (12.0 - tau), rtol=RTOL)
  np.testing.assert_allclose(tape.gradient(loss, log_alpha).numpy(), -5.0 * 2.0, rtol=RTOL)
  assert tape.gradient(loss, gap) is None


@pytest.mark.parametrize('per_dimension,want', [
    (True, -(np.log(2.0) + np.log(4.0))),
    (False, -2 * (np.log(2.0) + np.log(4.0)))])  # tf_agents' formula counts them A times.
def test_uniform_log_density(per_dimension, want):
  got = cql_math.uniform_log_density(np.array([-1.0, -2.0]), np.array([1.0, 2.0]), (2,),
                                     per_dimension)
  assert got == pytest.approx(want)
  scalar = cql_math.uniform_log_density(-1.0, 1.0, (3,), per_dimension)
  assert scalar == pytest.approx(-3 * np.log(2.0))  # Scalar bounds: both formulas agree.
