"""Calibrated Q-Learning (Cal-QL) agent: CQL whose policy-action Q values are bounded below
by the dataset's Monte-Carlo return-to-go.

Nakamoto et al. 2023, "Cal-QL: Calibrated Offline RL Pre-Training for Efficient Online
Fine-Tuning" (NeurIPS), eq. 5: inside the CQL log-sum-exp, Q(s, a) of every policy sample
a ~ π(·|s) (and, with `cql_next_state_samples`, a ~ π(·|s')) becomes max(Q(s, a), G(s))
before the density correction and the temperature; uniform and dataset actions are not
bounded. Sources: nakamotoo/Cal-QL@ac6eafe JaxCQL/conservative_sac.py l.205-307, and
corl-team/CORL@eeeeef2 algorithms/finetune/cal_ql.py `_q_loss` (../shared/reference/
calql_finetune.md, section 1).

G(s) comes with each item: experience is a `Trajectory` [B, 2] whose `policy_info` is
{'return_to_go': float32 [B, 2]} (the first step's value is the transition's G, in TD-target
units: `cql_sac.datasets.returns.returns_to_go`). Everything else is `CqlSacAgent`.
"""

from typing import NamedTuple

import gin
import numpy as np
import tensorflow as tf
from tf_agents.trajectories import trajectory

from cql_sac.agents.cql_sac_agent import CqlSacAgent
from cql_sac.agents.cql_sac_agent import CqlSacLossInfo

# The policy_info key of an item's return-to-go G(s) (`training_data_spec`); the replay
# (`cql_sac.datasets.transitions`) writes its items with it.
RETURN_TO_GO = 'return_to_go'


# `CqlSacLossInfo`'s fields (same meaning) plus Cal-QL's bound rate, all float32 scalars:
# bound_rate is the fraction of the policy samples' Q values (over samples, states and
# critics) below G(s) before the bound, i.e. lifted by it; 0 with calibration off.
CalQlLossInfo = NamedTuple(
    'CalQlLossInfo',
    [(name, tf.Tensor) for name in CqlSacLossInfo._fields] + [('bound_rate', tf.Tensor)])


@gin.configurable
class CalQlAgent(CqlSacAgent):
  """Cal-QL: `CqlSacAgent` with the return-to-go bound on policy-action Q values.

  Args:
    *args: `CqlSacAgent`'s arguments.
    calibration_enabled: Whether the bound is applied. A variable (`calibration_enabled`
      property): the authors keep it on online, CORL switches it off at the start of
      online fine-tuning (`set_calibration`).
    **kwargs: `CqlSacAgent`'s keyword arguments.

  Raises:
    ValueError: As `CqlSacAgent`; at train/loss time, for experience without
      `policy_info['return_to_go']`.
  """

  def __init__(self, *args, calibration_enabled: bool = True, **kwargs):
    super().__init__(*args, **kwargs)
    self._calibration_enabled = tf.Variable(bool(calibration_enabled), trainable=False,
                                            name='calibration_enabled')

  @property
  def training_data_spec(self) -> trajectory.Trajectory:
    """`collect_data_spec` with policy_info {'return_to_go': float32 []}: the items it trains on."""
    return self.collect_data_spec._replace(
        policy_info={RETURN_TO_GO: tf.TensorSpec([], tf.float32, name=RETURN_TO_GO)})

  @property
  def calibration_enabled(self) -> tf.Variable:
    """bool scalar variable: whether the return-to-go bound is applied."""
    return self._calibration_enabled

  def set_calibration(self, enabled: bool) -> None:
    """Turns the bound on or off (e.g. off online, as CORL)."""
    self._calibration_enabled.assign(enabled)

  def _transition_parts(self, experience):
    """As `CqlSacAgent`'s, with G(s) [B] (−inf while calibration is off) as the bound."""
    info = experience.policy_info if isinstance(experience, trajectory.Trajectory) else None
    if not isinstance(info, dict) or RETURN_TO_GO not in info:
      raise ValueError(
          'CalQlAgent needs each item\'s return-to-go: a Trajectory [B, 2] with policy_info '
          f'{{"{RETURN_TO_GO}": float32 [B, 2]}}, got policy_info {info!r}. Fill the replay '
          'with returns-to-go (cql_sac.datasets.returns.returns_to_go).')
    returns = tf.cast(info[RETURN_TO_GO][:, 0], tf.float32)
    time_steps, actions, next_time_steps, _ = super()._transition_parts(
        experience._replace(policy_info=()))
    bound = tf.where(self._calibration_enabled, returns,
                     tf.fill(tf.shape(returns), -np.inf))
    return time_steps, actions, next_time_steps, bound

  @staticmethod
  def _loss_info(critic, actor_loss, alpha_loss, cql_alpha_loss):
    """`CqlSacAgent`'s LossInfo with a `CalQlLossInfo` extra."""
    info = CqlSacAgent._loss_info(critic, actor_loss, alpha_loss, cql_alpha_loss)
    return info._replace(extra=CalQlLossInfo(*info.extra, bound_rate=critic.bound_rate))

  def write_loss_summaries(self, extra: CalQlLossInfo) -> None:
    """`CqlSacAgent`'s scalars plus cal_ql/bound_rate."""
    super().write_loss_summaries(extra)
    tf.compat.v2.summary.scalar('cal_ql/bound_rate', extra.bound_rate,
                                step=self.train_step_counter)
