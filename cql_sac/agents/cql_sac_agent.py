"""Conservative Q-Learning (CQL-SAC) agent for continuous control.

Implements CQL(H) of Kumar et al. 2020, "Conservative Q-Learning for Offline
Reinforcement Learning" (NeurIPS), on top of TF-Agents' `SacAgent` (Haarnoja et
al. 2018): the soft actor-critic losses plus the conservative regularizer of eq. 4,
estimated with the importance-sampled log-sum-exp of Appendix F, and the
Lagrange (dual gradient descent) variant of eq. 24 for the regularizer's weight.

The constructor takes the same arguments, in the same order and with the same
defaults, as `tf_agents.agents.cql.cql_sac_agent.CqlSacAgent` (tf-agents 0.19.0),
and `LossInfo.extra` is a `CqlSacLossInfo` with the same field names, so existing
gin files and TensorBoard dashboards carry over. Known defects of that reference
are fixed behind explicit arguments whose defaults keep its behaviour
(`per_dimension_uniform_log_density`, `reward_noise_is_variance`,
`log_cql_alpha_straight_through`); `agent.loss()` works (it raises `TypeError` in
the reference), and the CQL term is averaged over the global batch, so a
`MirroredStrategy` with R replicas no longer over-weights it R times.

The equations themselves (the per-state gap, the TD target, the max backup, the
Lagrange loss) are pure functions in `cql_sac.agents.cql_math`; the constructor's
argument checks are `cql_sac.agents.argument_checks`. This class draws the samples,
evaluates the networks and orders the optimizer steps.

Notation used in the docstrings: B = batch size, N = `num_cql_samples`,
A = action dimension, T = `softmax_temperature`, α = SAC temperature
`exp(log_alpha)`, α' = CQL weight (`cql_alpha`), Q1/Q2 the online critics,
Q̄1/Q̄2 their target copies.

Randomness: every draw (next-state actions for the TD target, CQL policy and
uniform samples, actor and α-loss samples, reward noise, the state-smoothing
perturbations) is a stateless draw seeded by (`random_seed`, train step, replica id,
purpose). A run is therefore reproducible, resumes with the same stream after a checkpoint
restore, and a fused multi-step learner draws exactly what single `train()` calls draw.
"""

from typing import NamedTuple, Optional, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.sac import sac_agent
from tf_agents.policies import actor_policy
from tf_agents.utils import common
from tf_agents.utils import object_identity

from cql_sac.agents import cql_math
from cql_sac.agents.argument_checks import check_cql_sac_arguments
from cql_sac.agents.argument_checks import check_state_smoothing_arguments
from cql_sac.critic_network import q_at_action_sets
from cql_sac.critic_network import q_values


class CqlSacLossInfo(NamedTuple):
  """Per-step loss terms of `CqlSacAgent`, the `extra` of its `LossInfo`.

  Field names and meanings match tf_agents' `CqlSacLossInfo`. All are float32
  scalars.

  Attributes:
    critic_loss: TD (Bellman) loss of both critics times `critic_loss_weight`.
    actor_loss: Actor loss times `actor_loss_weight` (BC loss during warm-up).
    alpha_loss: SAC temperature loss times `alpha_loss_weight`.
    cql_loss: Unweighted CQL gap, E_s[logsumexp_a Q(s,a)] − E_D[Q(s,a)], averaged
      over the critics (Kumar et al. 2020, eq. 4 with Appendix F).
    cql_alpha: The CQL weight α' used in this step's critic objective.
    cql_alpha_loss: Lagrange loss −α'·(cql_loss − cql_tau) (eq. 24); 0 without
      Lagrange.
  """
  critic_loss: tf.Tensor
  actor_loss: tf.Tensor
  alpha_loss: tf.Tensor
  cql_loss: tf.Tensor
  cql_alpha: tf.Tensor
  cql_alpha_loss: tf.Tensor


class CqlSamples(NamedTuple):
  """Actions at which the CQL log-sum-exp is estimated (Appendix F).

  Attributes:
    policy_actions: float32 [B, N, A], a ~ π(·|s) for each state of the batch.
    policy_log_probs: float32 [B, N], log π(a|s) of those actions (tanh-squashed
      density including the Jacobian, summed over A).
    uniform_actions: float32 [B, N, A], a ~ Uniform(action_spec bounds).
    next_policy_actions: float32 [B, N, A], a' ~ π(·|s') of each transition's next
      state (scored at s), or None unless `cql_next_state_samples`.
    next_policy_log_probs: float32 [B, N], log π(a'|s') of those, or None.
  """
  policy_actions: tf.Tensor
  policy_log_probs: tf.Tensor
  uniform_actions: tf.Tensor
  next_policy_actions: Optional[tf.Tensor] = None
  next_policy_log_probs: Optional[tf.Tensor] = None


class _CriticTerms(NamedTuple):
  """Critic-step quantities shared by `_train` and `_loss` (scalars float32)."""
  objective: tf.Tensor  # What the critic optimizer minimizes.
  critic_loss: tf.Tensor  # critic_loss_weight · L_TD.
  cql_loss: tf.Tensor
  cql_alpha: tf.Tensor
  # Fraction of policy-sample Q values below their lower bound (None without a bound).
  bound_rate: Optional[tf.Tensor] = None


# Purposes folded into the stateless seed, one per independent random draw.
_SEED_TD_NEXT_ACTION = 1
_SEED_CQL_POLICY = 2
_SEED_CQL_UNIFORM = 3
_SEED_ACTOR = 4
_SEED_ALPHA = 5
_SEED_REWARD_NOISE = 6
_SEED_REPLAY = 7
_SEED_CQL_NEXT_POLICY = 8
_SEED_STATE_SMOOTHING = 9


@gin.configurable
class CqlSacAgent(sac_agent.SacAgent):
  """A CQL(H) agent: SAC with the conservative critic regularizer.

  One `train()` step, in this order (the order of tf_agents' CqlSacAgent):
    1. Critic: minimize `critic_loss_weight·L_TD + α'·cql_loss` over Q1 and Q2
       (only `α'·cql_loss` in `bc_debug_mode`).
    2. Actor: minimize `actor_loss_weight · actor_loss` with the updated critics;
       behaviour cloning for the first `num_bc_steps` steps.
    3. SAC α: minimize `alpha_loss_weight · alpha_loss` (inherited from SacAgent).
    4. Lagrange α' (if `use_lagrange_cql_alpha`): minimize
       −α'·(cql_loss − cql_tau) over `log_cql_alpha`, with the cql_loss of step 1.
    5. Summaries, `train_step_counter += 1`, Polyak update of the target critics.
  With `actor_ema_tau`, step 2 ends with the Polyak update of the averaged actor.

  Experience is a `Trajectory` with outer dims [B, 2] (or a `Transition` [B]),
  as for `SacAgent`. With a recurrent critic (e.g. `CriticRnnNetwork`, and then
  `ActorDistributionRnnNetwork` or a feed-forward actor) the agent trains on sequences,
  as tf_agents' CqlSacAgent (`train_sequence_length` None): experience [B, T], the
  networks unrolled from their zero state, every term per time step. Transitions that
  start at an episode's LAST step (s, s' in different episodes) are masked out of the
  TD, CQL and actor terms; TD and actor terms are summed over time and averaged over the
  batch, the CQL gap averaged over the valid steps (tf_agents' reductions).

  Extension points (tf_agents' names, signatures and meaning; `train()` calls an
  override): `_cql_loss`, `_critic_loss_with_optional_entropy_term`, `actor_loss`,
  `_actions_and_log_probs`, `_sample_and_transpose_actions_and_log_probs`,
  `_get_cql_alpha`, `_apply_gradients` (SacAgent's).
  """

  def __init__(
      self,
      time_step_spec,
      action_spec,
      critic_network,
      actor_network,
      actor_optimizer,
      critic_optimizer,
      alpha_optimizer,
      cql_alpha,
      num_cql_samples: int,
      include_critic_entropy_term: bool,
      use_lagrange_cql_alpha: bool,
      cql_alpha_learning_rate=1e-4,
      cql_tau=10.0,
      random_seed: Optional[int] = None,
      reward_noise_variance=0.0,
      num_bc_steps: int = 0,
      actor_loss_weight=1.0,
      critic_loss_weight=0.5,
      alpha_loss_weight=1.0,
      actor_policy_ctor=actor_policy.ActorPolicy,
      critic_network_2=None,
      target_critic_network=None,
      target_critic_network_2=None,
      target_update_tau=1.0,
      target_update_period=1,
      td_errors_loss_fn=tf.math.squared_difference,
      gamma=1.0,
      reward_scale_factor=1.0,
      initial_log_alpha=0.0,
      use_log_alpha_in_alpha_loss: bool = True,
      target_entropy=None,
      gradient_clipping=None,
      log_cql_alpha_clipping: Optional[Tuple[float, float]] = None,
      softmax_temperature=1.0,
      bc_debug_mode: bool = False,
      debug_summaries: bool = False,
      summarize_grads_and_vars: bool = False,
      train_step_counter: Optional[tf.Variable] = None,
      name: Optional[str] = None,
      per_dimension_uniform_log_density: bool = False,
      reward_noise_is_variance: bool = False,
      log_cql_alpha_straight_through: bool = False,
      cql_clip_diff_min: float = -np.inf,
      cql_clip_diff_max: float = np.inf,
      cql_next_state_samples: bool = False,
      cql_importance_sample: bool = True,
      max_target_backup: bool = False,
      max_target_num_samples: Optional[int] = None,
      num_critics: int = 2,
      actor_ema_tau: Optional[float] = None,
      actor_bc_weight: float = 0.0,
      actor_state_smoothing_weight: float = 0.0,
      actor_state_smoothing_epsilon: float = 0.05,
      actor_state_smoothing_samples: int = 10,
  ):
    """Creates the agent.

    Args:
      time_step_spec: `TimeStep` spec of the environment/dataset.
      action_spec: A single float `BoundedTensorSpec` of rank 1, shape [A].
      critic_network: Network mapping (observation [B, ...], action [B, A]) to
        Q [B]. Copied for the second critic and the targets. A recurrent critic
        (`CriticRnnNetwork`: [B, T] → [B, T]) makes the agent train on sequences.
      actor_network: Network mapping observations to an action distribution
        (e.g. `ActorDistributionNetwork` with `TanhNormalProjectionNetwork`, or
        `ActorDistributionRnnNetwork` with a recurrent critic).
      actor_optimizer: Optimizer for the actor variables.
      critic_optimizer: Optimizer for the union of Q1 and Q2 variables.
      alpha_optimizer: Optimizer for the SAC `log_alpha`.
      cql_alpha: CQL weight α'. A float or a `tf.Variable` (re-read every step)
        without Lagrange; the initial value (> 0) of α' with Lagrange.
      num_cql_samples: N, the number of policy samples and of uniform samples
        per state in the log-sum-exp (2N in all). Integer >= 1.
      include_critic_entropy_term: If True the TD target includes −α·log π(a'|s')
        (standard SAC); if False it does not (CQL's "deterministic backup").
      use_lagrange_cql_alpha: Learn α' by dual gradient descent (eq. 24).
      cql_alpha_learning_rate: Learning rate of the Adam optimizer for
        `log_cql_alpha` (Lagrange only).
      cql_tau: Lagrange threshold τ on `cql_loss` (Lagrange only), in the units
        of Q (reward units times the horizon).
      random_seed: Seed of every random draw of the agent. If None, a seed is
        drawn from TF's global generator (so `tf.random.set_seed` applies).
      reward_noise_variance: If > 0, Gaussian noise is added to the dataset
        reward in the TD target. As in tf_agents the value is used as the
        noise's standard deviation unless `reward_noise_is_variance=True`.
      num_bc_steps: For train steps 0..num_bc_steps−1 the actor loss is
        α·log π(a|s) − log π(a_data|s) (behaviour cloning warm-up).
      actor_loss_weight: Multiplies the actor loss.
      critic_loss_weight: Multiplies the TD loss only (not the CQL term).
      alpha_loss_weight: Multiplies the SAC α loss.
      actor_policy_ctor: Policy class wrapping `actor_network`.
      critic_network_2: Second critic; a copy of `critic_network` if None.
      target_critic_network: Target of critic 1; a copy if None.
      target_critic_network_2: Target of critic 2; a copy if None.
      target_update_tau: Polyak factor τ: w̄ ← (1−τ)·w̄ + τ·w.
      target_update_period: Update the targets every this many train steps.
      td_errors_loss_fn: Elementwise TD loss, f(y, Q) -> [B].
      gamma: Discount γ (the reference's default is 1.0).
      reward_scale_factor: Multiplies the (noisy) reward in the TD target.
      initial_log_alpha: Initial SAC log α.
      use_log_alpha_in_alpha_loss: α loss uses log α (True) or α (False).
      target_entropy: SAC target entropy; −A/2 if None (SacAgent's default).
      gradient_clipping: Per-variable gradient-norm clip for every optimizer.
      log_cql_alpha_clipping: (min, max) clip of log α' when it is read
        (Lagrange only). The variable itself is not clipped.
      softmax_temperature: T > 0. Q is multiplied by T inside the log-sum-exp
        and the result divided by T.
      bc_debug_mode: Train the critic on α'·cql_loss only (TD loss reported but
        not optimized); cql_loss should fall towards its minimum.
      debug_summaries: Write the extra summaries (Q at policy, uniform and data
        actions; SAC's critic, actor and α tensor summaries; the share of saturated
        greedy action components, `actor_loss/greedy_action_saturation`, and the
        actor's gradient norm, `actor_loss/gradient_global_norm`).
      summarize_grads_and_vars: Write gradient and variable summaries.
      train_step_counter: int64 variable incremented once per `train()`.
      name: Name of the `tf.Module`.
      per_dimension_uniform_log_density: Fix for per-dimension action bounds.
        If True, log Uniform(a) = −Σ_i log(max_i − min_i) over the A dimensions.
        If False (tf_agents' formula), A·Σ(−log(max − min)) over the spec's
        bound array, which is correct only when the bounds are scalars.
      reward_noise_is_variance: If True, the noise standard deviation is
        sqrt(reward_noise_variance), as the name says; False keeps tf_agents'
        use of the value as the standard deviation.
      log_cql_alpha_straight_through: If True, the clip of log α' passes the
        gradient straight through, so the Lagrange variable can return into the
        clip range; False keeps tf_agents' zero gradient outside the range.
      cql_clip_diff_min: Lower clip of each state's gap, lse(s) − Q(s, a_data),
        before the batch mean (CORL's `cql_clip_diff_min`, algorithms/offline/
        cql.py@eeeeef2; its AntMaze recipe uses −200). The clipped gap is also
        what the Lagrange step compares with `cql_tau`. −inf: no clip.
      cql_clip_diff_max: Upper clip of each state's gap (CORL's
        `cql_clip_diff_max`). +inf: no clip.
      cql_next_state_samples: Also draw N actions a' ~ π(·|s') at each
        transition's next state and score them at s with their own density,
        T·Q(s, a') − log π(a'|s'), so the log-sum-exp runs over 3N terms
        (CORL's, JaxCQL's and Acme's CQL; CORL algorithms/offline/cql.py@eeeeef2,
        `cql_next_actions`). False: tf_agents' 2N terms.
      cql_importance_sample: True: each sampled action's term is corrected
        by its log-density (T·Q − log p, tf_agents and the paper's App. F).
        False: CORL's `cql_importance_sample=False` (algorithms/offline/
        cql.py@eeeeef2): raw T·Q over the uniform, dataset, (next-state) and
        policy actions, 2N+1 (3N+1) terms, no density correction.
      max_target_backup: TD target from M actions a'_j ~ π(·|s') per next state:
        y = reward_scale·r + γ·d·[max_j min_k Q̄_k(s', a'_j) − α·log π(a'_j*|s')],
        j* the argmax, the entropy term only with `include_critic_entropy_term`
        (CORL's and JaxCQL's `cql_max_target_backup`, algorithms/offline/
        cql.py@eeeeef2; their AntMaze recipes). False: one a' ~ π(·|s').
      max_target_num_samples: M, integer >= 1; None uses `num_cql_samples`
        (CORL and JaxCQL use `cql_n_actions`). Only with `max_target_backup`.
      num_critics: C >= 2 online critics, each with its target copy. Critics 3..C
        are fresh copies of `critic_network` (`CriticNetwork3`, ...). The TD
        target and the actor use min_k over all C (target) critics; the TD loss
        sums f(y, Q_k) over the C critics (times `critic_loss_weight`); the CQL
        term is each critic's gap averaged over the C critics, so each critic's
        CQL weight relative to its TD weight is α'/(C·critic_loss_weight).
        JRL's ensemble (google-research jrl/agents/cql/learning.py@1d4d2f1a:
        TD = C·mean MSE, CQL = cql_alpha·mean over batch and critics) is
        `critic_loss_weight=1` with the same `cql_alpha`. 2: SacAgent's twins.
      actor_ema_tau: If set, τ_π in (0, 1]: after every actor step a Polyak-averaged
        copy of the actor is updated, w_ema ← (1−τ_π)·w_ema + τ_π·w (an exponential
        moving average over about 1/τ_π steps; Polyak & Juditsky 1992), starting from
        the initial actor. `ema_policy` acts with it; training never reads it. None:
        no copy (tf_agents' behaviour).
      actor_bc_weight: β >= 0. After the BC warm-up the actor also minimizes
        β·sg(mean_B |min_k Q_k(s, a)|)·mean_A (ā(s) − a_data)², ā(s) the greedy action
        (the mode of π(·|s)): TD3+BC's behaviour-cloning term (Fujimoto & Gu 2021, eq. 3,
        λ = α_TD3BC / mean|Q|, so β = 1/α_TD3BC; their α_TD3BC 2.5 is β 0.4) added to
        SAC's actor loss, in Q's units. 0: no term (tf_agents' behaviour).
      actor_state_smoothing_weight: β_s >= 0. After the BC warm-up the actor also
        minimizes β_s·sg(mean_B |min_k Q_k(s, a)|)·E_B[max_j mean_A (ā(s + δ_j) − ā(s))²]:
        the greedy action is asked to change little when the state moves by
        δ_j = ε·sg(σ_B)·u_j, u_j ~ U[−1, 1]^O, j = 1..M, σ_B the per-dimension standard
        deviation of the batch's observations (so ε is in the data's units whatever the
        observation's scale). The policy-smoothing term of RORL (Yang et al. 2022,
        "RORL: Robust Offline RL via Conservative Smoothing", eq. 6: the worst of sampled
        perturbations within an ℓ∞ ball), on the greedy action rather than the
        distribution, and scaled as `actor_bc_weight`. Feed-forward actors with one
        rank-1 observation only. 0: no term (tf_agents' behaviour).
      actor_state_smoothing_epsilon: ε > 0, the perturbation's half-width in batch
        standard deviations.
      actor_state_smoothing_samples: M >= 1 perturbations per state; the term takes
        the largest distance over them.

    Raises:
      ValueError: If the action spec is not a single float `BoundedTensorSpec`
        of rank 1, if `num_cql_samples < 1`, `softmax_temperature <= 0`,
        `cql_alpha <= 0` with `use_lagrange_cql_alpha`, if
        `log_cql_alpha_clipping` is not (min, max) with min <= max, if
        `cql_clip_diff_min > cql_clip_diff_max`, `num_critics < 2`,
        `max_target_num_samples < 1`, `actor_ema_tau` outside (0, 1],
        `actor_bc_weight < 0`, `actor_state_smoothing_weight < 0`,
        `actor_state_smoothing_epsilon <= 0`, `actor_state_smoothing_samples < 1`,
        if the actor is recurrent (non-empty `state_spec`) and the critic is not,
        or if `actor_state_smoothing_weight > 0` with a recurrent actor or critic or
        an observation that is not one rank-1 tensor.
    """
    check_cql_sac_arguments(
        action_spec, critic_network, actor_network, cql_alpha, num_cql_samples,
        use_lagrange_cql_alpha, softmax_temperature, log_cql_alpha_clipping,
        cql_clip_diff_min, cql_clip_diff_max, max_target_num_samples, num_critics,
        actor_ema_tau, actor_bc_weight)
    state_smoothing = check_state_smoothing_arguments(
        time_step_spec, critic_network, actor_network, actor_state_smoothing_weight,
        actor_state_smoothing_epsilon, actor_state_smoothing_samples)

    super().__init__(
        time_step_spec, action_spec, critic_network, actor_network, actor_optimizer,
        critic_optimizer, alpha_optimizer, actor_loss_weight=actor_loss_weight,
        critic_loss_weight=critic_loss_weight, alpha_loss_weight=alpha_loss_weight,
        actor_policy_ctor=actor_policy_ctor, critic_network_2=critic_network_2,
        target_critic_network=target_critic_network,
        target_critic_network_2=target_critic_network_2, target_update_tau=target_update_tau,
        target_update_period=target_update_period, td_errors_loss_fn=td_errors_loss_fn,
        gamma=gamma, reward_scale_factor=reward_scale_factor,
        initial_log_alpha=initial_log_alpha,
        use_log_alpha_in_alpha_loss=use_log_alpha_in_alpha_loss,
        target_entropy=target_entropy, gradient_clipping=gradient_clipping,
        debug_summaries=debug_summaries, summarize_grads_and_vars=summarize_grads_and_vars,
        train_step_counter=train_step_counter, name=name)
    # Sequences exactly when SacAgent keeps the time dimension (a recurrent critic).
    self._sequences = bool(tf.nest.flatten(critic_network.state_spec))
    self._recurrent_actor = actor_network is not None and bool(
        tf.nest.flatten(actor_network.state_spec))
    self._set_cql_alpha(cql_alpha, use_lagrange_cql_alpha, cql_tau, cql_alpha_learning_rate)
    self._num_cql_samples = int(num_cql_samples)
    self._include_critic_entropy_term = include_critic_entropy_term
    self._reward_noise_variance = reward_noise_variance
    self._reward_noise_is_variance = reward_noise_is_variance
    self._num_bc_steps = num_bc_steps
    self._log_cql_alpha_clipping = log_cql_alpha_clipping
    self._log_cql_alpha_straight_through = log_cql_alpha_straight_through
    self._softmax_temperature = softmax_temperature
    self._cql_clip_diff = (float(cql_clip_diff_min), float(cql_clip_diff_max))
    self._cql_next_state_samples = bool(cql_next_state_samples)
    self._cql_importance_sample = bool(cql_importance_sample)
    self._max_target_backup = bool(max_target_backup)
    self._max_target_num_samples = int(max_target_num_samples or num_cql_samples)
    self._extra_critic_networks, self._extra_target_critic_networks = (
        self._make_extra_critics(critic_network, num_critics))
    if num_critics > 2:
      self._update_target = common.Periodically(
          self._update_all_targets, target_update_period, 'update_targets')
    self._bc_debug_mode = bc_debug_mode
    self._actor_ema_tau = actor_ema_tau
    self._actor_bc_weight = float(actor_bc_weight)
    self._state_smoothing = state_smoothing
    self._ema_actor_network, self._ema_policy = self._make_ema_actor(actor_policy_ctor)
    self._uniform_log_density = cql_math.uniform_log_density(
        action_spec.minimum, action_spec.maximum, action_spec.shape,
        per_dimension_uniform_log_density)
    _warn_if_density_overcounts(action_spec, self._uniform_log_density)
    if random_seed is None:  # Drawn from TF's global generator (tf.random.set_seed).
      random_seed = tf.random.uniform([], maxval=2**31 - 1, dtype=tf.int64)
    self._random_seed = tf.Variable(tf.cast(random_seed, tf.int64), trainable=False,
                                    dtype=tf.int64, name='random_seed')

  def _set_cql_alpha(self, cql_alpha, use_lagrange: bool, cql_tau, learning_rate) -> None:
    """α' as given, or (Lagrange) the variable log α' with its threshold τ and optimizer."""
    self._use_lagrange_cql_alpha = use_lagrange
    if not use_lagrange:
      self._cql_alpha = cql_alpha
      return
    self._log_cql_alpha = tf.Variable(
        tf.math.log(tf.cast(tf.convert_to_tensor(cql_alpha), tf.float32)),
        trainable=True, name='log_cql_alpha')
    self._cql_tau = cql_tau
    self._cql_alpha_optimizer = tf.keras.optimizers.Adam(learning_rate=learning_rate)

  # ---------------------------------------------------------------------------
  # The critic ensemble.

  def _make_extra_critics(self, critic_network, num_critics: int):
    """Critics 3..C and their targets: copies of `critic_network`, variables created."""
    critic_spec = (self.time_step_spec.observation, self.action_spec)
    critics, targets = [], []
    for k in range(3, num_critics + 1):
      critic = critic_network.copy(name=f'CriticNetwork{k}')
      critic.create_variables(critic_spec)
      critics.append(critic)
      targets.append(common.maybe_copy_target_network_with_checks(
          critic, None, input_spec=critic_spec, name=f'TargetCriticNetwork{k}'))
    return critics, targets

  @property
  def critics(self) -> Tuple:
    """The C online critics, Q1 and Q2 first."""
    return (self._critic_network_1, self._critic_network_2,
            *self._extra_critic_networks)

  @property
  def target_critics(self) -> Tuple:
    """The C target critics, in the order of `critics`."""
    return (self._target_critic_network_1, self._target_critic_network_2,
            *self._extra_target_critic_networks)

  def _update_all_targets(self):
    """Polyak update w̄ ← (1−τ)·w̄ + τ·w of every target critic (C > 2).

    As SacAgent's updater, variables critic 2 shares with critic 1 are updated once.
    """
    pairs = [(self._critic_network_1.variables, self._target_critic_network_1.variables),
             (common.deduped_network_variables(self._critic_network_2,
                                               self._critic_network_1),
              common.deduped_network_variables(self._target_critic_network_2,
                                               self._target_critic_network_1))]
    pairs += [(critic.variables, target.variables) for critic, target in zip(
        self._extra_critic_networks, self._extra_target_critic_networks)]
    return tf.group([common.soft_variables_update(
        source, target, self._target_update_tau, tau_non_trainable=1.0)
                     for source, target in pairs])

  def _initialize(self):
    """Copies every online critic into its target (SacAgent's, for all C), the actor
    into its average."""
    super()._initialize()
    for critic, target in zip(self._extra_critic_networks,
                              self._extra_target_critic_networks):
      common.soft_variables_update(critic.variables, target.variables, tau=1.0)
    if self._ema_actor_network is not None:
      common.soft_variables_update(self._actor_network.variables,
                                   self._ema_actor_network.variables, tau=1.0)

  # ---------------------------------------------------------------------------
  # The Polyak-averaged actor.

  def _make_ema_actor(self, actor_policy_ctor):
    """(EMA actor network, its policy), or (None, None) without `actor_ema_tau`."""
    if self._actor_ema_tau is None:
      return None, None
    network = self._actor_network.copy(name='EmaActorNetwork')
    network.create_variables(self.time_step_spec.observation)
    policy = actor_policy_ctor(time_step_spec=self.time_step_spec,
                               action_spec=self.action_spec, actor_network=network,
                               training=False)
    return network, policy

  @property
  def ema_policy(self):
    """The stochastic policy of the Polyak-averaged actor (`actor_ema_tau`), or None.

    Wrap it in `GreedyPolicy` for evaluation; its variables are checkpointed with the
    agent.
    """
    return self._ema_policy

  @property
  def actor_variables(self) -> Tuple[tf.Variable, ...]:
    """The trained actor's variables, then the averaged actor's (`actor_ema_tau`), if any:
    what `cql_sac.policy_rollback` restores."""
    ema = () if self._ema_actor_network is None else self._ema_actor_network.variables
    return tuple(self._actor_network.variables) + tuple(ema)

  def reset_ema_actor(self) -> None:
    """w_ema ← w: the averaged actor (`actor_ema_tau`) takes the trained actor's weights, from
    which it averages on (`cql_sac.policy_rollback` when the trained actor rates higher).

    Raises:
      ValueError: If the agent has no averaged actor (`actor_ema_tau` None).
    """
    if self._ema_actor_network is None:
      raise ValueError('reset_ema_actor needs an averaged actor; set actor_ema_tau.')
    common.soft_variables_update(self._actor_network.variables,
                                 self._ema_actor_network.variables, tau=1.0,
                                 tau_non_trainable=1.0)

  def _update_ema_actor(self):
    """w_ema ← (1−τ_π)·w_ema + τ_π·w over the actor's variables (no-op without EMA)."""
    if self._ema_actor_network is None:
      return tf.no_op()
    return common.soft_variables_update(self._actor_network.variables,
                                        self._ema_actor_network.variables,
                                        self._actor_ema_tau, tau_non_trainable=1.0)

  # ---------------------------------------------------------------------------
  # Random draws: the seam through which tests inject fixed samples.

  def _seed(self, purpose: int) -> tf.Tensor:
    """Stateless seed, int32 [2], for one draw of this train step.

    Depends on the agent's `random_seed`, `train_step_counter`, the replica id
    under a `tf.distribute` strategy, and `purpose`.
    """
    replica_id = tf.distribute.get_replica_context()
    replica_id = (replica_id.replica_id_in_sync_group
                  if replica_id is not None else 0)
    seed = tf.stack([tf.cast(self._random_seed, tf.int32),
                     tf.cast(self.train_step_counter, tf.int32)])
    seed = tf.random.experimental.stateless_fold_in(seed, replica_id)
    return tf.random.experimental.stateless_fold_in(seed, purpose)

  def replay_seed(self) -> tf.Tensor:
    """Stateless seed, int32 [2], of this train step's replay batch.

    For sampling inside a compiled training loop (`FusedLearner.train_on_replay`): call it
    before the step's `train`, so that the batch of step t depends only on `random_seed` and
    t (the same batches whatever K, and after a resume).
    """
    return self._seed(_SEED_REPLAY)

  def _sample_actions(self, distribution, sample_shape, purpose: int):
    """Draws reparameterized actions from a policy distribution.

    Args:
      distribution: The policy's action distribution, batch shape [B].
      sample_shape: `()` for one action per state, `(N,)` for N.
      purpose: One of the `_SEED_*` constants.

    Returns:
      float32 actions of shape sample_shape + [B, A].
    """
    # N as an int, as tf_agents passes it: the same draws, and distributions that only
    # take `sample(n)` (tf_agents' test mocks) work too.
    count = sample_shape[0] if len(sample_shape) == 1 else sample_shape
    return distribution.sample(count, seed=self._seed(purpose))

  def _sample_uniform_actions(self, shape) -> tf.Tensor:
    """Draws float32 actions of `shape` [..., A] uniformly within the spec."""
    return tf.random.stateless_uniform(
        shape, seed=self._seed(_SEED_CQL_UNIFORM),
        minval=self._action_spec.minimum, maxval=self._action_spec.maximum,
        dtype=self._action_spec.dtype)

  def _sample_reward_noise(self, shape) -> tf.Tensor:
    """Draws float32 N(0, 1) noise of `shape` [B] for the TD-target reward."""
    return tf.random.stateless_normal(shape, seed=self._seed(_SEED_REWARD_NOISE))

  def _sample_state_perturbations(self, shape) -> tf.Tensor:
    """Draws float32 U[−1, 1] noise of `shape` [M, B, O] for the state smoothing term."""
    return tf.random.stateless_uniform(shape, seed=self._seed(_SEED_STATE_SMOOTHING),
                                       minval=-1.0, maxval=1.0)

  def _actions_and_log_probs(self, time_steps, training=False,
                             purpose: int = _SEED_ALPHA):
    """Samples a ~ π(·|s) and log π(a|s); overrides SacAgent's (seeded draws).

    Args:
      time_steps: `TimeStep` with outer dim [B].
      training: Use the training-mode policy (actor loss) if True.
      purpose: Seed purpose; the inherited `alpha_loss` uses the default.

    Returns:
      (actions float32 [B, A], log_probs float32 [B]).
    """
    distribution = self._action_distribution(time_steps, training)
    actions = self._sample_actions(distribution, (), purpose)
    return actions, common.log_probability(distribution, actions,
                                           self.action_spec)

  def _action_distribution(self, time_steps, training: bool):
    """The policy's action distribution at `time_steps` (batch shape [B], or [B, T]).

    A recurrent actor starts each sequence from its zero state (tf_agents' agent).
    """
    policy = self._train_policy if training else self._policy
    policy_state = ()
    if self._recurrent_actor:
      policy_state = policy.get_initial_state(tf.shape(time_steps.step_type)[0])
    return policy.distribution(time_steps, policy_state=policy_state).action

  @property
  def trains_on_sequences(self) -> bool:
    """Whether `train()` takes sequences [B, T] (a recurrent critic) or pairs [B, 2]."""
    return self._sequences

  def _valid_steps(self, time_steps) -> Optional[tf.Tensor]:
    """float32 [B, T], 0 where a transition starts at an episode's LAST step; None [B]."""
    if not self._sequences:
      return None
    return tf.cast(~time_steps.is_last(), tf.float32)

  # ---------------------------------------------------------------------------
  # Loss terms.

  def sample_cql_actions(self, time_steps, next_time_steps=None) -> CqlSamples:
    """Draws the N policy and N uniform actions per state (Appendix F).

    The policy is used in inference mode (training=False); no gradient reaches
    the actor through these samples because only critic variables are trained
    on the CQL term. With `cql_next_state_samples`, N more policy actions are
    drawn at `next_time_steps`.

    Args:
      time_steps: `TimeStep` with outer dim [B].
      next_time_steps: `TimeStep` [B] of the next states; needed only with
        `cql_next_state_samples`.

    Returns:
      `CqlSamples` with [B, N, A] actions and [B, N] log-probabilities.

    Raises:
      ValueError: With `cql_next_state_samples` and no `next_time_steps`.
    """
    n = self._num_cql_samples
    policy_actions, log_probs = self._policy_samples(time_steps, _SEED_CQL_POLICY)
    outer_shape = tf.shape(log_probs)[:-1]  # [B], or [B, T] for sequences.
    action_dim = self._action_spec.shape[-1]
    uniform_actions = self._sample_uniform_actions(
        tf.concat([outer_shape, [n, action_dim]], axis=0))
    next_actions = next_log_probs = None
    if self._cql_next_state_samples:
      if next_time_steps is None:
        raise ValueError('cql_next_state_samples=True needs the next states: pass '
                         'next_time_steps to sample_cql_actions (and cql_loss).')
      next_actions, next_log_probs = self._policy_samples(
          next_time_steps, _SEED_CQL_NEXT_POLICY)
    return CqlSamples(policy_actions, log_probs, uniform_actions, next_actions,
                      next_log_probs)

  def _policy_samples(self, time_steps, purpose: int):
    """N actions ~ π(·|s) per state, [B, N, A], and their log π, [B, N] (inference mode)."""
    return self._sample_and_transpose_actions_and_log_probs(
        time_steps, self._num_cql_samples, training=False, purpose=purpose)

  def _sample_and_transpose_actions_and_log_probs(self, time_steps, num_action_samples: int,
                                                  training: bool = False,
                                                  purpose: int = _SEED_CQL_POLICY):
    """Extension point (tf_agents' name and meaning): K actions ~ π(·|s) per state.

    `sample_cql_actions` draws the CQL policy samples (and the next-state ones)
    through this method, so a subclass that overrides it changes the proposal.

    Args:
      time_steps: `TimeStep` [B].
      num_action_samples: K, a Python int.
      training: Use the training-mode policy.
      purpose: Seed purpose (this class's stateless draws).

    Returns:
      (actions float32 [B, K, A], log π float32 [B, K]); [B, T, K, A] and [B, T, K]
      for sequences.
    """
    distribution = self._action_distribution(time_steps, training)
    actions = self._sample_actions(distribution, (num_action_samples,), purpose)
    log_probs = common.log_probability(distribution, actions, self.action_spec)  # [K, B]
    return _samples_last(actions, event_rank=1), _samples_last(log_probs, event_rank=0)

  def _q_at_data_and_samples(self, time_steps, actions, samples: CqlSamples,
                             training: bool):
    """Evaluates every critic at dataset and sampled actions, one call each.

    Each critic sees the 2N+1 actions of every state (dataset action, N policy
    samples, N uniform samples) in one call (`critic_network.q_at_action_sets`). With
    `cql_next_state_samples` the N next-state policy samples follow (3N+1
    actions per state).

    Returns:
      For each of the C critics: (q_data [B], q_policy [B, N], q_uniform [B, N],
      q_next_policy [B, N] or None), float32 ([B, T, ...] for sequences).
    """
    n = self._num_cql_samples
    sampled = [samples.policy_actions, samples.uniform_actions]
    if samples.next_policy_actions is not None:
      sampled.append(samples.next_policy_actions)
    action_sets = tf.concat([actions[..., None, :]] + sampled, axis=-2)  # [B, 1+kN, A]
    q_sets = q_at_action_sets(self.critics, time_steps, action_sets, training)
    return [(q[..., 0], q[..., 1:n + 1], q[..., n + 1:2 * n + 1],
             q[..., 2 * n + 1:] if len(sampled) == 3 else None) for q in q_sets]

  def _cql_gap(self, q_data, q_policy, q_uniform, samples: CqlSamples,
               q_next_policy=None, q_lower_bound=None):
    """Per-state CQL(H) gap of one critic with this agent's settings (`cql_math.cql_gap`).

    Args:
      q_data: float32 [B], Q at dataset actions.
      q_policy: float32 [B, N], Q at policy samples.
      q_uniform: float32 [B, N], Q at uniform samples.
      samples: the `CqlSamples` (their log-probabilities).
      q_next_policy: float32 [B, N], Q at the next-state policy samples, or None.
      q_lower_bound: float32 [B], Cal-QL's G(s), or None for no bound.

    Returns:
      float32 [B].
    """
    return cql_math.cql_gap(
        q_data, q_policy, q_uniform, samples.policy_log_probs, self._uniform_log_density,
        self._softmax_temperature, q_next_policy, samples.next_policy_log_probs,
        self._cql_importance_sample, q_lower_bound, self._cql_clip_diff,
        self._dataset_action_weight(q_data))

  def _dataset_action_weight(self, q_data) -> Optional[tf.Tensor]:
    """Extension point: w(s), float32 [B], the weight of Q(s, a_data) in each state's gap
    (`cql_math.cql_gap`); None (every row is a dataset transition, w = 1).

    `ComboAgent` returns 1/f on the dataset rows and 0 on the model-rollout rows.
    """
    del q_data
    return None

  def _cql_loss_from_gaps(self, gaps, valid=None):
    """Mean of the C critics' gaps ([B] each) over critics and the global batch.

    Sequences ([B, T] gaps, `valid` [B, T]): the mean over the valid steps of the
    replica's batch, divided by the number of replicas (as the feed-forward mean).
    """
    gap = tf.add_n(gaps) / float(len(gaps))
    if valid is None:
      return common.aggregate_losses(per_example_loss=gap).total_loss
    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return (tf.reduce_sum(valid * gap) / tf.maximum(tf.reduce_sum(valid), 1.0)
            / num_replicas)

  def cql_loss(self, time_steps, actions, training: bool = False,
               samples: Optional[CqlSamples] = None,
               next_time_steps=None, q_lower_bound=None) -> tf.Tensor:
    """Computes the CQL regularizer (unweighted) for a batch.

    Args:
      time_steps: `TimeStep` with outer dim [B] (the states s).
      actions: float32 [B, A], the dataset actions.
      training: Passed to the critics.
      samples: Optional `CqlSamples`; drawn with `sample_cql_actions` if None.
      next_time_steps: `TimeStep` [B] of the next states (needed only with
        `cql_next_state_samples` and no `samples`).
      q_lower_bound: Optional float32 [B], Cal-QL's bound on the policy samples' Q.

    Returns:
      float32 scalar: (1/C)·Σ_k E_B[lse_k(s) − Q_k(s, a_data)] over the C critics.
    """
    if samples is None:
      samples = self.sample_cql_actions(time_steps, next_time_steps)
    gaps = [self._cql_gap(q_data, q_policy, q_uniform, samples, q_next, q_lower_bound)
            for q_data, q_policy, q_uniform, q_next in self._q_at_data_and_samples(
                time_steps, actions, samples, training)]
    return self._cql_loss_from_gaps(gaps, self._valid_steps(time_steps))

  # ---------------------------------------------------------------------------
  # tf_agents' extension points. A subclass written for tf_agents' CqlSacAgent
  # overrides these; `train()` and `loss()` then call the override instead of the
  # fused critic step (one forward pass per critic for TD and CQL terms).

  def _cql_loss(self, time_steps, actions, training: bool = False) -> tf.Tensor:
    """Extension point: the CQL regularizer, tf_agents' signature and meaning.

    Thin wrapper over `cql_loss` (this agent's settings: next-state samples need
    `cql_loss(..., next_time_steps=...)` and raise here). Override it to train
    another regularizer (e.g. CQL(R)); the critic objective is then
    `critic_loss_weight·L_TD + α'·_cql_loss(...)`.

    Args:
      time_steps: `TimeStep` [B] (or [B, T] with recurrent networks).
      actions: float32 [B, A] (or [B, T, A]) dataset actions.
      training: Passed to the critics at the dataset actions.

    Returns:
      float32 scalar, the unweighted CQL gap.
    """
    return self.cql_loss(time_steps, actions, training=training)

  def _critic_loss_with_optional_entropy_term(
      self, time_steps, actions, next_time_steps, td_errors_loss_fn,
      gamma=1.0, reward_scale_factor=1.0, weights=None, training: bool = False):
    """Extension point: the TD loss, tf_agents' signature and meaning.

    Thin wrapper over `critic_loss`: E_B[Σ_k f(y, Q_k(s, a))] with the entropy term
    in y only with `include_critic_entropy_term`, not multiplied by
    `critic_loss_weight`. Override it to train another TD loss.

    Args:
      time_steps: `TimeStep` [B] (or [B, T]) (s).
      actions: float32 [B, A] (or [B, T, A]) dataset actions.
      next_time_steps: `TimeStep` of s' (reward r, discount d), shaped as `time_steps`.
      td_errors_loss_fn: Elementwise loss f(y, Q).
      gamma: Discount γ.
      reward_scale_factor: Reward multiplier.
      weights: Optional per-example weights [B] or scalar.
      training: Passed to the online critics.

    Returns:
      float32 scalar.
    """
    return self.critic_loss(time_steps, actions, next_time_steps, td_errors_loss_fn,
                            gamma, reward_scale_factor, weights, training)

  def _overrides_tf_agents_hooks(self) -> bool:
    """Whether a subclass overrides `_cql_loss` or `_critic_loss_with_optional_entropy_term`."""
    return any(getattr(type(self), name) is not getattr(CqlSacAgent, name)
               for name in ('_cql_loss', '_critic_loss_with_optional_entropy_term'))

  def _critic_terms_from_hooks(self, time_steps, actions, next_time_steps, weights,
                               training: bool) -> _CriticTerms:
    """The critic objective from the (overridden) tf_agents hooks, as tf_agents' `_train`."""
    critic_loss = self._critic_loss_weight * self._critic_loss_with_optional_entropy_term(
        time_steps, actions, next_time_steps, td_errors_loss_fn=self._td_errors_loss_fn,
        gamma=self._gamma, reward_scale_factor=self._reward_scale_factor, weights=weights,
        training=training)
    return self._critic_objective(critic_loss,
                                  self._cql_loss(time_steps, actions, training=training))

  def _critic_objective(self, critic_loss, cql_loss, bound_rate=None) -> _CriticTerms:
    """critic_loss + α'·cql_loss (α'·cql_loss alone in `bc_debug_mode`), both checked finite."""
    cql_alpha = self._get_cql_alpha()
    objective = cql_alpha * cql_loss
    if not self._bc_debug_mode:
      objective += critic_loss
    _check_finite(critic_loss, 'critic_loss')
    _check_finite(cql_loss, 'cql_loss')
    return _CriticTerms(objective, critic_loss, cql_loss, cql_alpha, bound_rate)

  def _td_targets(self, next_time_steps, gamma, reward_scale_factor):
    """Soft Bellman targets y [B] (stop-gradient), float32.

      y = reward_scale·(r + ε) + γ·d·[min_k Q̄_k(s', a') − α·log π(a'|s')]

    with a' ~ π(·|s') and k over the C target critics, the entropy term only if
    `include_critic_entropy_term`, and ε ~ N(0, σ²) only if
    `reward_noise_variance` > 0 (σ per `reward_noise_is_variance`). With
    `max_target_backup`, a' is the argmax over M samples (`_max_backup`).
    """
    if self._max_target_backup:
      target_q, next_log_pis = self._max_backup(next_time_steps)
    else:
      next_actions, next_log_pis = self._actions_and_log_probs(
          next_time_steps, training=False, purpose=_SEED_TD_NEXT_ACTION)
      target_q = cql_math.minimum([
          q_values(critic, next_time_steps.observation, next_actions,
                    next_time_steps.step_type, training=False)
          for critic in self.target_critics])
    rewards = next_time_steps.reward
    noise = self._reward_noise_variance
    if isinstance(noise, tf.Variable) or noise > 0:
      stddev = tf.cast(noise, tf.float32)
      if self._reward_noise_is_variance:
        stddev = tf.sqrt(stddev)
      rewards = rewards + stddev * self._sample_reward_noise(tf.shape(rewards))
    return cql_math.soft_td_target(
        rewards, next_time_steps.discount, target_q, next_log_pis, tf.exp(self._log_alpha),
        gamma, reward_scale_factor, self._include_critic_entropy_term)

  def _max_backup(self, next_time_steps):
    """max_j min_k Q̄_k(s', a'_j) over M samples a'_j ~ π(·|s'), and log π(a'_j*|s').

    CORL's `cql_max_target_backup` (algorithms/offline/cql.py@eeeeef2).

    Returns:
      (target_q float32 [B], log π of each state's argmax sample float32 [B]).
    """
    distribution = self._action_distribution(next_time_steps, training=False)
    actions = self._sample_actions(distribution, (self._max_target_num_samples,),
                                   _SEED_TD_NEXT_ACTION)  # [M, B, A]
    log_pis = _samples_last(common.log_probability(distribution, actions, self.action_spec),
                            event_rank=0)  # [B, M]
    q = cql_math.minimum(q_at_action_sets(
        self.target_critics, next_time_steps, _samples_last(actions, event_rank=1),
        training=False))  # [B, M]
    return cql_math.max_backup(q, log_pis)

  def _td_loss(self, q_list, td_targets, td_errors_loss_fn, weights, valid=None):
    """L_TD = E_B[Σ_k f(y, Q_k)] over the C critics + critic regularization, scalar.

    Sequences ([B, T], `valid` [B, T]): E_B[Σ_t valid·Σ_k f(y, Q_k)].
    """
    per_example = tf.add_n([td_errors_loss_fn(td_targets, q) for q in q_list])
    if valid is not None:
      per_example = tf.reduce_sum(valid * per_example, axis=1)
    if self._debug_summaries:
      step = self.train_step_counter
      common.generate_tensor_summaries(
          'td_errors', tf.concat([td_targets - q for q in q_list], 0), step)
      common.generate_tensor_summaries('td_targets', td_targets, step)
      for k, q in enumerate(q_list, start=1):
        common.generate_tensor_summaries(f'pred_td_targets{k}', q, step)
    return common.aggregate_losses(
        per_example_loss=per_example, sample_weight=weights,
        regularization_loss=[loss for critic in self.critics
                             for loss in critic.losses]).total_loss

  def critic_loss(self, time_steps, actions, next_time_steps,
                  td_errors_loss_fn=tf.math.squared_difference, gamma=1.0,
                  reward_scale_factor=1.0, weights=None, training=False):
    """Computes the TD (Bellman) loss of the critics, without CQL.

    Same signature and meaning as `SacAgent.critic_loss` (not multiplied by
    `critic_loss_weight`), with this agent's entropy switch and reward noise.

    Args:
      time_steps: `TimeStep` [B] (s).
      actions: float32 [B, A] dataset actions.
      next_time_steps: `TimeStep` [B] (s', reward r, discount d).
      td_errors_loss_fn: Elementwise loss f(y, Q).
      gamma: Discount.
      reward_scale_factor: Reward multiplier.
      weights: Optional per-example weights [B] or scalar.
      training: Passed to the online critics.

    Returns:
      float32 scalar E_B[Σ_k f(y, Q_k(s,a))] over the C critics.
    """
    td_targets = self._td_targets(next_time_steps, gamma, reward_scale_factor)
    q_list = [q_values(critic, time_steps.observation, actions,
                       time_steps.step_type, training)
              for critic in self.critics]
    return self._td_loss(q_list, td_targets, td_errors_loss_fn, weights,
                         self._valid_steps(time_steps))

  def _critic_terms(self, time_steps, actions, next_time_steps, weights,
                    training: bool, q_lower_bound=None) -> _CriticTerms:
    """The critic objective of one step, with one forward pass per critic.

    A subclass that overrides tf_agents' hooks gets them instead
    (`_critic_terms_from_hooks`; Cal-QL's bound is then not applied).
    """
    if self._overrides_tf_agents_hooks():
      return self._critic_terms_from_hooks(time_steps, actions, next_time_steps, weights,
                                           training)
    td_targets = self._td_targets(next_time_steps, self._gamma,
                                  self._reward_scale_factor)
    samples = self.sample_cql_actions(time_steps, next_time_steps)
    q_data, gaps, below = [], [], []
    for i, (q, q_policy, q_uniform, q_next) in enumerate(self._q_at_data_and_samples(
        time_steps, actions, samples, training), start=1):
      q_data.append(q)
      gaps.append(self._cql_gap(q, q_policy, q_uniform, samples, q_next, q_lower_bound))
      if q_lower_bound is not None:
        below += [tf.cast(sampled < q_lower_bound[:, None], tf.float32)
                  for sampled in (q_policy, q_next) if sampled is not None]
      if self._debug_summaries:
        with tf.name_scope('cql_loss'):
          step = self.train_step_counter
          tf.compat.v2.summary.scalar(f'q_estimates{i}',
                                      tf.reduce_mean(q_policy), step=step)
          tf.compat.v2.summary.scalar(f'q_uniform{i}',
                                      tf.reduce_mean(q_uniform), step=step)
          tf.compat.v2.summary.scalar(f'q_original{i}', tf.reduce_mean(q),
                                      step=step)
    valid = self._valid_steps(time_steps)
    critic_loss = self._critic_loss_weight * self._td_loss(
        q_data, td_targets, self._td_errors_loss_fn, weights, valid)
    bound_rate = tf.reduce_mean(tf.stack(below)) if below else None
    return self._critic_objective(critic_loss, self._cql_loss_from_gaps(gaps, valid),
                                  bound_rate)

  def actor_loss(self, time_steps, actions, weights=None, training=True):
    """Computes the actor loss, with behaviour cloning during warm-up.

      BC (train step < num_bc_steps): E_B[α·log π(a|s) − log π(a_data|s)]
      otherwise (SAC):                E_B[α·log π(a|s) − min_k Q_k(s, a)]
                                  + β·sg(E_B|min_k Q_k(s, a)|)·E_B[mean_A (ā(s) − a_data)²]
                                  + β_s·sg(E_B|min_k Q_k(s, a)|)
                                        ·E_B[max_j mean_A (ā(s + δ_j) − ā(s))²]

    with a ~ π(·|s) reparameterized, ā(s) the greedy action (the mode), α and the
    critics held fixed (CQL paper Appendix F, "policy_eval_start"; Haarnoja et al.
    2018, eq. 7); the β term only with `actor_bc_weight` β > 0 (TD3+BC, Fujimoto & Gu
    2021, eq. 3), the β_s term only with `actor_state_smoothing_weight` β_s > 0 (RORL,
    Yang et al. 2022, eq. 6; δ_j as in the constructor's docstring).

    Args:
      time_steps: `TimeStep` [B].
      actions: float32 [B, A] dataset actions (used by the BC loss).
      weights: Optional per-example weights.
      training: Use the training-mode policy.

    Returns:
      float32 scalar (not multiplied by `actor_loss_weight`).
    """
    with tf.name_scope('actor_loss'):
      distribution = self._action_distribution(time_steps, training)
      sampled_actions = self._sample_actions(distribution, (), _SEED_ACTOR)
      log_pi = common.log_probability(distribution, sampled_actions,
                                      self.action_spec)

      def min_q():
        return cql_math.minimum([
            q_values(critic, time_steps.observation, sampled_actions,
                      time_steps.step_type, training=False)
            for critic in self.critics])

      def data_log_prob():
        return common.log_probability(distribution, actions, self.action_spec)

      valid = self._valid_steps(time_steps)

      def regularized_q():
        q = min_q()
        if self._actor_bc_weight > 0:
          q -= self._actor_bc_penalty(q, distribution.mode(), actions, valid)
        if self._state_smoothing[0] > 0:
          q -= self._actor_state_smoothing_penalty(q, time_steps, distribution.mode(),
                                                   training)
        return q

      if self._num_bc_steps > 0:
        target = tf.cond(self.train_step_counter < self._num_bc_steps,
                         data_log_prob, regularized_q)
      else:
        target = regularized_q()
      per_example = tf.exp(self._log_alpha) * log_pi - target
      if valid is not None:  # Sequences: summed over the valid steps.
        per_example = tf.reduce_sum(valid * per_example, axis=1)
      loss = common.aggregate_losses(
          per_example_loss=per_example, sample_weight=weights,
          regularization_loss=self._actor_network.losses).total_loss
      self._actor_loss_debug_summaries(loss, sampled_actions, log_pi, target,
                                       time_steps)
      if self._debug_summaries:
        tf.compat.v2.summary.scalar(
            'greedy_action_saturation',
            saturated_fraction(distribution.mode(), self.action_spec),
            step=self.train_step_counter)
      return loss

  def _actor_bc_penalty(self, q, greedy_actions, actions, valid):
    """β·sg(mean|q|)·mean_A (ā − a_data)² per example ([B] or [B, T]), float32.

    Args:
      q: float32 [B] (or [B, T]) min_k Q_k at the sampled actions; only its mean
        magnitude over the (valid) examples is used, without gradient.
      greedy_actions: float32 [B, A] (or [B, T, A]) modes of π(·|s).
      actions: float32, the dataset actions, shaped as `greedy_actions`.
      valid: float32 [B, T] mask of the valid steps, or None (every example counts).
    """
    magnitude = tf.abs(q)
    if valid is None:
      scale = tf.reduce_mean(magnitude)
    else:
      scale = tf.reduce_sum(valid * magnitude) / tf.maximum(tf.reduce_sum(valid), 1.0)
    squared_error = tf.reduce_mean(tf.math.squared_difference(greedy_actions, actions), -1)
    penalty = self._actor_bc_weight * tf.stop_gradient(scale) * squared_error
    if self._debug_summaries:
      tf.compat.v2.summary.scalar('actor_bc_penalty', tf.reduce_mean(penalty),
                                  step=self.train_step_counter)
    return penalty

  def _actor_state_smoothing_penalty(self, q, time_steps, greedy_actions, training):
    """β_s·sg(mean|q|)·max_j mean_A (ā(s + δ_j) − ā(s))² per example, float32 [B].

    Args:
      q: float32 [B] min_k Q_k at the sampled actions; only its mean magnitude is used,
        without gradient.
      time_steps: `TimeStep` [B] whose observation is float32 [B, O].
      greedy_actions: float32 [B, A], ā(s), the modes of π(·|s) (with gradient).
      training: Use the training-mode policy at the perturbed states.
    """
    weight, epsilon, num_samples = self._state_smoothing
    observations = time_steps.observation
    batch_size = tf.shape(observations)[0]
    scale = epsilon * tf.stop_gradient(tf.math.reduce_std(observations, axis=0))  # [O]
    noise = self._sample_state_perturbations(
        tf.stack([num_samples, batch_size, tf.shape(observations)[1]]))
    perturbed = tf.reshape(observations[None] + noise * scale,
                           [num_samples * batch_size, -1])
    tile = lambda x: tf.tile(x, [num_samples])
    perturbed_steps = time_steps._replace(
        observation=perturbed, step_type=tile(time_steps.step_type),
        reward=tile(time_steps.reward), discount=tile(time_steps.discount))
    moved = self._action_distribution(perturbed_steps, training).mode()
    moved = tf.reshape(moved, [num_samples, batch_size, -1])
    distance = tf.reduce_max(
        tf.reduce_mean(tf.math.squared_difference(moved, greedy_actions[None]), -1), 0)
    penalty = weight * tf.stop_gradient(tf.reduce_mean(tf.abs(q))) * distance
    if self._debug_summaries:
      tf.compat.v2.summary.scalar('actor_state_smoothing_penalty', tf.reduce_mean(penalty),
                                  step=self.train_step_counter)
    return penalty

  def _get_cql_alpha(self) -> tf.Tensor:
    """α' as a float32 scalar: exp(clip(log_cql_alpha)) with Lagrange."""
    if not self._use_lagrange_cql_alpha:
      return tf.cast(tf.convert_to_tensor(self._cql_alpha), tf.float32)
    return cql_math.cql_alpha_from_log(self._log_cql_alpha, self._log_cql_alpha_clipping,
                                       self._log_cql_alpha_straight_through)

  def cql_alpha_loss(self, cql_loss) -> tf.Tensor:
    """Lagrange loss for α' (Kumar et al. 2020, eq. 24), float32 scalar.

      L(α') = −α'·(cql_loss − τ)

    Minimizing it over log α' raises α' while the gap exceeds τ and lowers it
    otherwise. Under a strategy with R replicas each replica's `cql_loss` is its
    1/R share of the global mean, so τ is split the same way.

    Args:
      cql_loss: float32 scalar, the (stopped) CQL gap of this step.

    Returns:
      float32 scalar; gradients flow only into `log_cql_alpha`.

    Raises:
      ValueError: If the agent was built without `use_lagrange_cql_alpha`.
    """
    if not self._use_lagrange_cql_alpha:
      raise ValueError('cql_alpha_loss needs use_lagrange_cql_alpha=True.')
    num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    tau = tf.cast(self._cql_tau, tf.float32) / num_replicas
    return cql_math.lagrange_loss(self._get_cql_alpha(), cql_loss, tau)

  # ---------------------------------------------------------------------------
  # Training.

  def _train(self, experience, weights):
    """One CQL-SAC update (see the class docstring for the order).

    Args:
      experience: `Trajectory` [B, 2, ...] or `Transition` [B, ...].
      weights: Optional per-example weights [B] or scalar.

    Returns:
      `LossInfo(loss=critic objective + actor_loss + alpha_loss,
      extra=CqlSacLossInfo)`.

    Raises:
      tf.errors.InvalidArgumentError: If a loss is NaN or inf (names the loss).
    """
    time_steps, actions, next_time_steps, q_lower_bound = self._transition_parts(experience)

    critic_variables = list(object_identity.ObjectIdentitySet(
        [v for critic in self.critics for v in critic.trainable_variables]))
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(critic_variables)
      critic = self._critic_terms(time_steps, actions, next_time_steps,
                                  weights, training=True, q_lower_bound=q_lower_bound)
    self._apply_gradients(tape.gradient(critic.objective, critic_variables),
                          critic_variables, self._critic_optimizer)

    actor_variables = self._actor_network.trainable_variables
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(actor_variables)
      actor_loss = self._actor_loss_weight * self.actor_loss(
          time_steps, actions, weights=weights, training=True)
    _check_finite(actor_loss, 'actor_loss')
    actor_gradients = tape.gradient(actor_loss, actor_variables)
    if self._debug_summaries:
      tf.compat.v2.summary.scalar('actor_loss/gradient_global_norm',
                                  tf.linalg.global_norm(actor_gradients),
                                  step=self.train_step_counter)
    self._apply_gradients(actor_gradients, actor_variables, self._actor_optimizer)
    self._update_ema_actor()

    alpha_variables = [self._log_alpha]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(alpha_variables)
      alpha_loss = self._alpha_loss_weight * self.alpha_loss(
          time_steps, weights=weights, training=False)
    _check_finite(alpha_loss, 'alpha_loss')
    self._apply_gradients(tape.gradient(alpha_loss, alpha_variables),
                          alpha_variables, self._alpha_optimizer)

    cql_alpha_loss = tf.constant(0.0)
    if self._use_lagrange_cql_alpha:
      cql_alpha_variables = [self._log_cql_alpha]
      with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(cql_alpha_variables)
        cql_alpha_loss = self.cql_alpha_loss(critic.cql_loss)
      self._apply_gradients(tape.gradient(cql_alpha_loss, cql_alpha_variables),
                            cql_alpha_variables, self._cql_alpha_optimizer)

    loss_info = self._loss_info(critic, actor_loss, alpha_loss, cql_alpha_loss)
    self.write_loss_summaries(loss_info.extra)
    self.train_step_counter.assign_add(1)
    self._update_target()
    return loss_info

  def _loss(self, experience, weights=None, training: bool = False, **kwargs):
    """All loss terms of `_train` without applying any update.

    Fixes tf_agents' `CqlSacAgent.loss()`, which raises `TypeError` (and would
    omit the CQL term). Draws the same samples `train()` would at this step.

    Args:
      experience: `Trajectory` [B, 2, ...] or `Transition` [B, ...].
      weights: Optional per-example weights.
      training: Passed to the networks.
      **kwargs: Ignored (accepted for TFAgent.loss compatibility).

    Returns:
      `LossInfo` with the same fields as `train()`.
    """
    del kwargs
    time_steps, actions, next_time_steps, q_lower_bound = self._transition_parts(experience)
    critic = self._critic_terms(time_steps, actions, next_time_steps, weights,
                                training, q_lower_bound)
    actor_loss = self._actor_loss_weight * self.actor_loss(
        time_steps, actions, weights=weights, training=training)
    alpha_loss = self._alpha_loss_weight * self.alpha_loss(
        time_steps, weights=weights, training=False)
    cql_alpha_loss = (self.cql_alpha_loss(critic.cql_loss)
                      if self._use_lagrange_cql_alpha else tf.constant(0.0))
    return self._loss_info(critic, actor_loss, alpha_loss, cql_alpha_loss)

  def _transition_parts(self, experience):
    """(time_steps [B], actions [B, A], next_time_steps [B], q_lower_bound) of a batch.

    The bound is None here; `CalQlAgent` returns the batch's returns-to-go.
    """
    time_steps, policy_steps, next_time_steps = self._as_transition(experience)
    return time_steps, policy_steps.action, next_time_steps, None

  @staticmethod
  def _loss_info(critic: _CriticTerms, actor_loss, alpha_loss,
                 cql_alpha_loss) -> tf_agent.LossInfo:
    """Packs the step's losses; the total excludes `cql_alpha_loss`."""
    return tf_agent.LossInfo(
        loss=critic.objective + actor_loss + alpha_loss,
        extra=CqlSacLossInfo(
            critic_loss=critic.critic_loss, actor_loss=actor_loss,
            alpha_loss=alpha_loss, cql_loss=critic.cql_loss,
            cql_alpha=critic.cql_alpha, cql_alpha_loss=cql_alpha_loss))

  def write_loss_summaries(self, extra: CqlSacLossInfo) -> None:
    """Writes one step's losses with tf_agents' CqlSacAgent TensorBoard tags.

    Scalars Losses/{critic_loss, actor_loss, alpha_loss, cql_loss,
    cql_alpha_loss (Lagrange only)}, cql_alpha and sac_alpha, at step
    `train_step_counter`, under the caller's default summary writer.

    Args:
      extra: The step's `CqlSacLossInfo` (float32 scalars).
    """
    step = self.train_step_counter
    with tf.name_scope('Losses'):
      for name in ('critic_loss', 'actor_loss', 'alpha_loss', 'cql_loss'):
        tf.compat.v2.summary.scalar(name, getattr(extra, name), step=step)
      if self._use_lagrange_cql_alpha:
        tf.compat.v2.summary.scalar('cql_alpha_loss', extra.cql_alpha_loss,
                                    step=step)
    tf.compat.v2.summary.scalar('cql_alpha', extra.cql_alpha, step=step)
    tf.compat.v2.summary.scalar('sac_alpha', tf.exp(self._log_alpha),
                                step=step)


def saturated_fraction(actions: tf.Tensor, action_spec, margin: float = 0.01) -> tf.Tensor:
  """Share of action components within `margin` of the action bounds (tanh saturation).

  Args:
    actions: float32 [B, A] actions inside the spec's bounds.
    action_spec: The rank-1 bounded action spec, shape [A].
    margin: Distance to a bound, as a fraction of the half-range, that counts as
      saturated (0.01: |a| > 0.99 for bounds ±1).

  Returns:
    float32 scalar in [0, 1].
  """
  low = tf.constant(action_spec.minimum, tf.float32)
  high = tf.constant(action_spec.maximum, tf.float32)
  half_range = (high - low) / 2.0
  distance = tf.abs(actions - (high + low) / 2.0) / half_range  # 1 at a bound.
  return tf.reduce_mean(tf.cast(distance > 1.0 - margin, tf.float32))


def _samples_last(samples: tf.Tensor, event_rank: int) -> tf.Tensor:
  """Moves the sample axis of a draw, [K, *outer, *event], behind the outer axes.

  Actions [K, B, A] → [B, K, A] (event_rank 1), log-probabilities [K, B] → [B, K]
  (event_rank 0); with sequences [K, B, T, A] → [B, T, K, A].
  """
  rank = samples.shape.rank
  outer = list(range(1, rank - event_rank))
  return tf.transpose(samples, outer + [0] + list(range(rank - event_rank, rank)))


def _check_finite(loss: tf.Tensor, name: str) -> None:
  """Raises InvalidArgumentError naming `name` if `loss` is NaN or inf."""
  tf.debugging.check_numerics(
      loss, f'CqlSacAgent: {name} is NaN or inf. Check the dataset for NaN/inf '
      'rewards or observations, lower the learning rates, or normalize inputs.')


def _warn_if_density_overcounts(action_spec, uniform_log_density: float) -> None:
  """Logs one warning when tf_agents' log U(a) differs from the box's true log-density.

  tf_agents' formula (`per_dimension_uniform_log_density = False`) is A times too
  large for per-dimension bound arrays: −A²·log 2 nats instead of −A·log 2 for
  [−1, 1]^A. The uniform samples then dominate the log-sum-exp and the policy's
  own actions go nearly unpenalized (benchmarks/results/diagnosis_medium_replay.md,
  session 14). The default stays tf_agents' for parity, so this only warns.

  Args:
    action_spec: The agent's `BoundedTensorSpec`, shape (A,).
    uniform_log_density: log U(a) the agent uses, nats.
  """
  true_density = cql_math.uniform_log_density(
      action_spec.minimum, action_spec.maximum, action_spec.shape, per_dimension=True)
  if abs(uniform_log_density - true_density) > 1e-6:
    logging.warning(
        'CqlSacAgent: log U(a) of the CQL uniform samples is %.2f nats with '
        'tf_agents\' formula for these per-dimension action bounds, but the action '
        'box\'s true value is %.2f (CORL, JaxCQL); bind '
        'CqlSacAgent.per_dimension_uniform_log_density = True unless you need '
        'tf_agents parity.', uniform_log_density, true_density)
