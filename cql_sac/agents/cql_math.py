"""The CQL and Cal-QL equations as small pure functions of tensors.

`CqlSacAgent` (and through it `CalQlAgent`) draws the samples and evaluates the networks;
these functions turn the resulting Q values and log-densities into the per-state CQL gap,
the TD target and the Lagrange loss. None of them holds state or draws random numbers.

Sources: Kumar et al. 2020, "Conservative Q-Learning for Offline Reinforcement Learning"
(NeurIPS): eq. 4 (CQL(H)), Appendix F (the importance-sampled log-sum-exp), eq. 24 (the
Lagrange step); Nakamoto et al. 2023, "Cal-QL" (NeurIPS), eq. 5 (the return-to-go bound);
Haarnoja et al. 2018 (the soft TD target); CORL algorithms/offline/cql.py@eeeeef2 (the gap
clip, the next-state samples, the max backup, the raw sum without importance sampling).

Notation: B = batch size, N = samples per state, M = next-state samples of the max backup,
A = action dimension, T = softmax temperature, α = SAC temperature, α' = CQL weight,
τ = Lagrange threshold. Tensors are float32 unless said otherwise.
"""

import functools
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf


def minimum(values: Sequence[tf.Tensor]) -> tf.Tensor:
  """Elementwise minimum over same-shape tensors: min_k Q_k over an ensemble of critics.

  Args:
    values: One tensor per critic, all of one shape (e.g. [B] or [B, M]).

  Returns:
    A tensor of that shape.
  """
  return functools.reduce(tf.minimum, values)


def bounded_below(q_lower_bound: tf.Tensor,
                  *q_sets: Optional[tf.Tensor]) -> Tuple[Optional[tf.Tensor], ...]:
  """Cal-QL's bound (Nakamoto et al. 2023, eq. 5): max(Q(s, a), G(s)) per sampled action.

  Args:
    q_lower_bound: [B], G(s), the return-to-go of each state (−inf: no bound).
    *q_sets: [B, N] Q values of N sampled actions per state, or None (passed through).

  Returns:
    One [B, N] tensor (or None) per element of `q_sets`, in order.
  """
  return tuple(None if q is None else tf.maximum(q, q_lower_bound[..., None])
               for q in q_sets)


def cql_gap(q_data: tf.Tensor, q_policy: tf.Tensor, q_uniform: tf.Tensor,
            policy_log_probs: tf.Tensor, uniform_log_density: float, temperature,
            q_next_policy: Optional[tf.Tensor] = None,
            next_policy_log_probs: Optional[tf.Tensor] = None,
            importance_sample: bool = True,
            q_lower_bound: Optional[tf.Tensor] = None,
            clip_diff: Tuple[float, float] = (-np.inf, np.inf),
            data_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Per-state CQL(H) gap of one critic (Kumar et al. 2020, eq. 4 with Appendix F).

    lse(s) = (1/T)·log[ Σ_j exp(T·Q(s,a^π_j) − log π(a^π_j|s))
                        + Σ_j exp(T·Q(s,a^u_j) − log U(a^u_j)) ]
    gap(s) = clip(lse(s) − w(s)·Q(s, a_data), clip_diff)

  w(s) = 1 unless `data_weight` is given. COMBO (Yu et al. 2021, section 4.1) pushes Q down at
  every state of a batch that mixes dataset and model-rollout states but up only at the
  dataset's (s, a): with w = 1/f on the dataset rows (f their share of the batch) and 0 on the
  model rows, the batch mean of the gap is E_batch[lse(s)] − E_dataset[Q(s, a)].

  As in tf_agents and the authors' code there is no −log(2N) term, so the gap is offset
  by log(2N)/T from a normalized importance-sampling estimate. With `q_next_policy`, the
  sum also runs over exp(T·Q(s,a'_j) − log π(a'_j|s')), a'_j ~ π(·|s') (CORL, JaxCQL).
  Without `importance_sample` no log-density is subtracted and T·Q(s, a_data) joins the
  sum (CORL's `cql_importance_sample=False`). With `q_lower_bound` G(s) (Cal-QL, eq. 5)
  the policy samples' Q (and the next-state samples') become max(Q, G(s)) before the
  density correction and the temperature; uniform and dataset Q values are never bounded.
  States may have more outer dimensions than B (recurrent agents: [B, T] states, [B, T, N]
  samples); the sum runs over the last axis.

  Args:
    q_data: [B], Q at the dataset actions.
    q_policy: [B, N], Q at a ~ π(·|s).
    q_uniform: [B, N], Q at a ~ Uniform(action box).
    policy_log_probs: [B, N], log π(a|s) of the policy samples, nats.
    uniform_log_density: log U(a) of the uniform proposal (`uniform_log_density`), nats.
    temperature: T > 0 (a float or a scalar tensor or variable).
    q_next_policy: [B, N], Q at s of a' ~ π(·|s'), or None.
    next_policy_log_probs: [B, N], log π(a'|s') of those, or None.
    importance_sample: Whether each term is corrected by its log-density.
    q_lower_bound: [B], Cal-QL's G(s), or None for no bound.
    clip_diff: (min, max) of each state's gap (CORL's `cql_clip_diff_min/max`).
    data_weight: [B], w(s), or None (w = 1).

  Returns:
    [B], the gap of each state, in the units of Q.
  """
  if q_lower_bound is not None:
    q_policy, q_next_policy = bounded_below(q_lower_bound, q_policy, q_next_policy)
  temperature = tf.cast(temperature, tf.float32)
  if importance_sample:
    terms = [temperature * q_policy - policy_log_probs,
             temperature * q_uniform - uniform_log_density]
    if q_next_policy is not None:
      terms.append(temperature * q_next_policy - next_policy_log_probs)
  else:
    terms = [temperature * q for q in (q_policy, q_uniform, q_data[..., None], q_next_policy)
             if q is not None]
  pushed_up = q_data if data_weight is None else data_weight * q_data
  gap = tf.reduce_logsumexp(tf.concat(terms, axis=-1), axis=-1) / temperature - pushed_up
  if np.isfinite(clip_diff).any():
    gap = tf.clip_by_value(gap, *clip_diff)
  return gap


def soft_td_target(rewards: tf.Tensor, discounts: tf.Tensor, next_q: tf.Tensor,
                   next_log_probs: tf.Tensor, alpha: tf.Tensor, gamma,
                   reward_scale_factor, include_entropy: bool) -> tf.Tensor:
  """The soft Bellman target (Haarnoja et al. 2018, eq. 3; CQL's backup, Kumar et al. 2020):

    y = reward_scale_factor·r + γ·d·[Q̄(s', a') − α·log π(a'|s')]

  with the entropy term only if `include_entropy` (False is CQL's "deterministic backup").

  Args:
    rewards: [B], r (with any reward noise already added), environment reward units.
    discounts: [B], d (0 at a terminal state).
    next_q: [B], Q̄(s', a'): min over the target critics at the next action.
    next_log_probs: [B], log π(a'|s'), nats.
    alpha: Scalar, the SAC temperature α.
    gamma: The discount γ.
    reward_scale_factor: Multiplies r.
    include_entropy: Whether −α·log π(a'|s') is part of the target.

  Returns:
    [B], y with its gradient stopped.
  """
  if include_entropy:
    next_q -= alpha * next_log_probs
  return tf.stop_gradient(reward_scale_factor * rewards + gamma * discounts * next_q)


def max_backup(q: tf.Tensor, log_probs: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """The max backup's next value (CORL's and JaxCQL's `cql_max_target_backup`):

    max_j min_k Q̄_k(s', a'_j), and log π(a'_j*|s') of the maximizing sample j*.

  Args:
    q: [B, M] (or [B, T, M]), min_k Q̄_k(s', a'_j) of M samples a'_j ~ π(·|s') per next
      state.
    log_probs: [B, M] (or [B, T, M]), log π(a'_j|s') of those samples, nats.

  Returns:
    ([B] (or [B, T]) the maximum over j, the log-probability of each state's maximizing
    sample, same shape).
  """
  q = tf.convert_to_tensor(q)
  best = tf.argmax(q, axis=-1)
  outer = q.shape.rank - 1
  return (tf.gather(q, best, axis=outer, batch_dims=outer),
          tf.gather(log_probs, best, axis=outer, batch_dims=outer))


def cql_alpha_from_log(log_cql_alpha: tf.Tensor,
                       clipping: Optional[Tuple[float, float]] = None,
                       straight_through: bool = False) -> tf.Tensor:
  """α' = exp(clip(log α')) of the Lagrange variable (Kumar et al. 2020, eq. 24).

  Args:
    log_cql_alpha: Scalar, log α'.
    clipping: (min, max) of log α' when read, or None; the variable is never clipped.
    straight_through: Whether the clip passes the gradient through unchanged (so that
      log α' can return into the range); False: tf_agents' zero gradient outside it.

  Returns:
    Scalar α' > 0.
  """
  log_alpha = tf.convert_to_tensor(log_cql_alpha)
  if clipping is not None:
    clipped = tf.clip_by_value(log_alpha, *clipping)
    if straight_through:
      clipped = log_alpha + tf.stop_gradient(clipped - log_alpha)
    log_alpha = clipped
  return tf.exp(log_alpha)


def lagrange_loss(cql_alpha: tf.Tensor, cql_loss: tf.Tensor, tau) -> tf.Tensor:
  """The Lagrange step's loss for α' (Kumar et al. 2020, eq. 24):

    L(α') = −α'·(cql_loss − τ)

  Minimizing it over log α' raises α' while the gap exceeds τ and lowers it otherwise.

  Args:
    cql_alpha: Scalar α' (a function of log α', which receives the gradient).
    cql_loss: Scalar, this step's CQL gap; its gradient is stopped.
    tau: The threshold τ, in the units of Q (per replica: τ/R under R replicas).

  Returns:
    Scalar loss.
  """
  return -cql_alpha * (tf.stop_gradient(cql_loss) - tau)


def uniform_log_density(minimum, maximum, action_shape, per_dimension: bool) -> float:
  """log U(a) of the uniform proposal over the action box (a constant, nats).

  Args:
    minimum: The action spec's lower bound, a scalar or [A].
    maximum: Its upper bound, a scalar or [A].
    action_shape: The action shape, (A,).
    per_dimension: If True, −Σ_i log(max_i − min_i) over the A dimensions (correct for
      any bounds). If False, tf_agents' A·Σ(−log(max − min)) over the bound arrays as
      given, equal to the former only for scalar bounds.

  Returns:
    Python float.
  """
  minimum = np.asarray(minimum, np.float64)
  maximum = np.asarray(maximum, np.float64)
  if per_dimension:
    widths = np.broadcast_to(maximum - minimum, action_shape)
    return float(-np.sum(np.log(widths)))
  return float(np.sum(-np.log(maximum - minimum)) * action_shape[0])
