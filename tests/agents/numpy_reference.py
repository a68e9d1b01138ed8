"""Independent NumPy (float64) computation of the CQL-SAC loss terms.

Written from the equations, not from the agent's code: Kumar et al. 2020 eq. 4
and Appendix F (CQL(H) with importance-sampled log-sum-exp), eq. 24 (Lagrange),
Haarnoja et al. 2018 (SAC TD target, actor and temperature losses). It only
reads network weights (lists of (kernel, bias) arrays).
"""
import numpy as np


def mlp(x, layers):
  """ReLU MLP with a linear last layer. layers: [(W [in, out], b [out]), ...]."""
  for kernel, bias in layers[:-1]:
    x = np.maximum(x @ kernel + bias, 0.0)
  kernel, bias = layers[-1]
  return x @ kernel + bias


def q_value(critic_layers, observations, actions):
  """Q(s, a) [...] of a concat-input critic; observations [..., O], actions [..., A]."""
  return mlp(np.concatenate([observations, actions], axis=-1), critic_layers)[..., 0]


def log_normal(x, loc, scale):
  return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


def policy_log_prob(actor_layers, observations, actions, minimum, maximum):
  """log π(a|s) of a tanh-squashed diagonal Gaussian policy, summed over A.

  The actor outputs [means, log_stds] (std = exp); actions = c + m·tanh(u) with
  c = (max+min)/2, m = (max−min)/2. Change of variables: log π(a) = log N(u) −
  Σ log(m·(1 − tanh²u)).
  """
  out = mlp(observations, actor_layers)
  action_dim = actions.shape[-1]
  loc, log_std = out[..., :action_dim], out[..., action_dim:]
  center, half_range = (maximum + minimum) / 2.0, (maximum - minimum) / 2.0
  squashed = (actions - center) / half_range
  u = np.arctanh(squashed)
  return np.sum(log_normal(u, loc, np.exp(log_std))
                - np.log(half_range * (1.0 - squashed ** 2)), axis=-1)


def td_loss(critics, target_critics, actor_layers, batch, next_actions, noise,
            *, gamma, reward_scale, noise_std, alpha, entropy_term, bounds):
  """E_B[Σ_k (y − Q_k)²] with y = s·(r + σε) + γd(min_k Q̄_k(s',a') − α log π(a'|s')).

  next_actions [B, A]: one a' per state. [B, M, A]: the max backup, a' the sample
  with the largest min_k Q̄_k(s', a'_j), its own log π in the entropy term.
  """
  s, a, r, d, s2 = batch
  if next_actions.ndim == 3:
    tiled = np.repeat(s2[:, None, :], next_actions.shape[1], axis=1)
    q_all = np.min([q_value(c, tiled, next_actions) for c in target_critics], axis=0)
    best = np.argmax(q_all, axis=1)
    next_actions = next_actions[np.arange(len(best)), best]
  q_target = np.min([q_value(c, s2, next_actions) for c in target_critics], axis=0)
  if entropy_term:
    q_target = q_target - alpha * policy_log_prob(actor_layers, s2, next_actions, *bounds)
  y = reward_scale * (r + noise_std * noise) + gamma * d * q_target
  return np.mean(sum((y - q_value(c, s, a)) ** 2 for c in critics))


def cql_loss(critics, actor_layers, observations, actions, policy_actions,
             uniform_actions, *, temperature, uniform_log_density, bounds,
             clip_diff=(-np.inf, np.inf), next_observations=None,
             next_policy_actions=None, importance_sample=True, lower_bound=None,
             data_weight=None):
  """(1/C) Σ_k E_B[clip((1/T)·logsumexp_j(T·Q_k − log p) − w·Q_k(s, a_data), clip_diff)].

  data_weight [B] (COMBO): w per state; 1 without it.

  With next_policy_actions [B, N, A] (a' ~ π(·|s')), their terms T·Q_k(s, a') −
  log π(a'|s') join the sum (3N terms). importance_sample=False: raw T·Q_k at the
  uniform, data, next-state and policy actions, no log-densities (CORL). lower_bound [B]
  (Cal-QL): the policy and next-state samples' Q become max(Q, G(s)) before the log-density.

  policy_actions, uniform_actions: [B, N, A] (policy samples first, then
  uniform ones; log p is log π for the former and the uniform log-density
  for the latter).
  """
  n = policy_actions.shape[1]
  tiled = np.repeat(observations[:, None, :], n, axis=1)
  log_pi = policy_log_prob(actor_layers, tiled, policy_actions, *bounds)
  bound = (lambda q: q) if lower_bound is None else (
      lambda q: np.maximum(q, np.asarray(lower_bound, np.float64)[:, None]))
  gaps = []
  for critic in critics:
    q_data = q_value(critic, observations, actions)
    if importance_sample:
      terms = [temperature * bound(q_value(critic, tiled, policy_actions)) - log_pi,
               temperature * q_value(critic, tiled, uniform_actions) - uniform_log_density]
    else:
      terms = [temperature * q_value(critic, tiled, a)
               for a in (uniform_actions, policy_actions)] + [temperature * q_data[:, None]]
    if next_policy_actions is not None:
      next_tiled = np.repeat(next_observations[:, None, :], n, axis=1)
      log_density = (policy_log_prob(actor_layers, next_tiled, next_policy_actions, *bounds)
                     if importance_sample else 0.0)
      terms.append(temperature * bound(q_value(critic, tiled, next_policy_actions))
                   - log_density)
    terms = np.concatenate(terms, axis=1)
    peak = terms.max(axis=1, keepdims=True)
    lse = (peak[:, 0] + np.log(np.exp(terms - peak).sum(axis=1))) / temperature
    weight = 1.0 if data_weight is None else np.asarray(data_weight, np.float64)
    gaps.append(np.clip(lse - weight * q_data, *clip_diff))
  return np.mean(np.mean(gaps, axis=0))


def actor_loss(critics, actor_layers, observations, data_actions, sampled_actions,
               *, alpha, behaviour_cloning, bounds, bc_weight=0.0, smoothing=None):
  """E_B[α log π(a|s) − target], target = min_k Q_k(s,a) or log π(a_data|s) (BC).

  With bc_weight β, TD3+BC's term (Fujimoto & Gu 2021, eq. 3) is added outside BC:
  β·mean_B|min_k Q_k|·mean_B mean_A (ā(s) − a_data)², ā(s) = c + m·tanh(loc(s)).
  With smoothing = (β_s, ε, u [M, B, O]), RORL's policy-smoothing term is added outside BC:
  β_s·mean_B|min_k Q_k|·mean_B max_j mean_A (ā(s + ε·σ·u_j) − ā(s))², σ the batch's
  per-dimension (population) standard deviation of s.
  """
  log_pi = policy_log_prob(actor_layers, observations, sampled_actions, *bounds)
  if behaviour_cloning:
    return np.mean(alpha * log_pi
                   - policy_log_prob(actor_layers, observations, data_actions, *bounds))
  q = np.min([q_value(c, observations, sampled_actions) for c in critics], axis=0)
  minimum, maximum = bounds
  loc = mlp(observations, actor_layers)[..., :data_actions.shape[-1]]
  greedy = (maximum + minimum) / 2.0 + (maximum - minimum) / 2.0 * np.tanh(loc)
  penalty = bc_weight * np.mean(np.abs(q)) * np.mean((greedy - data_actions) ** 2)
  if smoothing is not None:
    weight, epsilon, noise = smoothing
    moved_loc = mlp(observations + epsilon * observations.std(0) * noise,
                    actor_layers)[..., :data_actions.shape[-1]]
    moved = (maximum + minimum) / 2.0 + (maximum - minimum) / 2.0 * np.tanh(moved_loc)
    distance = np.max(np.mean((moved - greedy) ** 2, axis=-1), axis=0)
    penalty += weight * np.mean(np.abs(q)) * np.mean(distance)
  return np.mean(alpha * log_pi - q) + penalty


def sac_alpha_loss(actor_layers, observations, sampled_actions, *, log_alpha,
                   target_entropy, bounds):
  """E_B[log α · (−log π(a|s) − target entropy)] (use_log_alpha_in_alpha_loss)."""
  log_pi = policy_log_prob(actor_layers, observations, sampled_actions, *bounds)
  return np.mean(log_alpha * (-log_pi - target_entropy))


def lagrange_loss(log_cql_alpha, cql_gap, tau, clip=None):
  """−α'·(gap − τ), α' = exp(clip(log α'))."""
  if clip is not None:
    log_cql_alpha = np.clip(log_cql_alpha, *clip)
  return -np.exp(log_cql_alpha) * (cql_gap - tau)
