"""Evaluation policies beyond TF-Agents' greedy one, and their export.

`QFilteredPolicy` is JRL's Q-filtered evaluation actor (google-research
jrl/agents/cql/networks.py@4c429948, `build_q_filtered_actor`; `eval_with_q_filter`,
`num_eval_samples` in jrl/agents/cql/config.py): per observation it draws K actions from
the policy and K uniformly within the action bounds, scores each with the minimum over the
critics, and executes the best one.
"""

import os
from typing import Optional, Sequence

import tensorflow as tf
from tf_agents.policies import policy_saver
from tf_agents.policies import tf_policy
from tf_agents.train import interval_trigger
from tf_agents.train import triggers
from tf_agents.trajectories import policy_step

from cql_sac.checkpoints import save_policy_checkpoint
from cql_sac.critic_network import q_at_action_sets

# Under <root_dir>/policies, beside TF-Agents' greedy_policy and checkpoints/.
Q_FILTERED_POLICY_DIR = 'q_filtered_policy'
Q_FILTERED_CHECKPOINT_DIR = 'q_filtered_checkpoints'
# The greedy policy of the Polyak-averaged actor (`CqlSacAgent.actor_ema_tau`).
EMA_POLICY_DIR = 'ema_greedy_policy'
EMA_CHECKPOINT_DIR = 'ema_checkpoints'


class QFilteredPolicy(tf_policy.TFPolicy):
  """Executes argmax_j min_k Q_k(s, a_j) over K policy samples and K uniform actions.

  Stateless and stochastic (the candidates are random draws); `distribution()` is not
  defined, so wrap nothing around it that needs one. A `PolicySaver` export carries the
  actor and the critics' variables.

  Args:
    policy: The actor's `TFPolicy` (e.g. `agent.policy`); its action distribution
      [B] gives the K policy samples. Its specs become this policy's.
    critics: Sequence of critic networks, each Q(s, a) → [B] (`agent`'s online critics).
    num_eval_samples: K >= 1, policy samples per state (JRL's `num_eval_samples`, 10).
    with_uniform: Also K uniform candidates within the action spec (JRL's default).
    name: Module name.

  Raises:
    ValueError: If `num_eval_samples < 1` or `critics` is empty.
  """

  def __init__(self, policy: tf_policy.TFPolicy, critics: Sequence[tf.Module],
               num_eval_samples: int = 10, with_uniform: bool = True,
               name: Optional[str] = None):
    if isinstance(num_eval_samples, bool) or not isinstance(num_eval_samples, int) or (
        num_eval_samples < 1):
      raise ValueError(f'num_eval_samples must be an integer >= 1, got {num_eval_samples!r}: '
                       'it is the number of policy samples the Q-filter chooses among.')
    if not critics:
      raise ValueError('QFilteredPolicy needs at least one critic.')
    super().__init__(policy.time_step_spec, policy.action_spec, policy_state_spec=(),
                     name=name)
    self._wrapped_policy = policy
    self._critics = tuple(critics)
    self._num_eval_samples = num_eval_samples
    self._with_uniform = with_uniform

  def _variables(self):
    return self._wrapped_policy.variables() + [
        v for critic in self._critics for v in critic.variables]

  def candidates(self, time_step, seed=None) -> tf.Tensor:
    """The candidate actions, float32 [B, K or 2K, A]: policy samples, then uniform ones."""
    distribution = self._wrapped_policy.distribution(time_step).action
    k = self._num_eval_samples
    samples = tf.transpose(distribution.sample(k, seed=seed), [1, 0, 2])  # [B, K, A]
    if not self._with_uniform:
      return samples
    spec = self.action_spec
    uniform = tf.random.uniform(tf.shape(samples), spec.minimum, spec.maximum, spec.dtype)
    return tf.concat([samples, uniform], axis=1)

  def _action(self, time_step, policy_state, seed=None):
    """The candidate with the largest min-over-critics Q, float32 [B, A]."""
    candidates = self.candidates(time_step, seed)
    q = tf.reduce_min(tf.stack(q_at_action_sets(self._critics, time_step, candidates)),
                      axis=0)  # [B, M]
    action = tf.gather(candidates, tf.argmax(q, axis=1), axis=1, batch_dims=1)
    return policy_step.PolicyStep(action, policy_state, ())


class PolicyExportTrigger(interval_trigger.IntervalTrigger):
  """Exports a policy beside TF-Agents' own, as its `PolicySavedModelTrigger` does.

  On construction it writes the SavedModel `<policies_dir>/<saved_model_name>` (once: an
  existing one is kept, as on resume); when triggered it writes a variable checkpoint
  `<policies_dir>/<checkpoint_name>/policy_checkpoint_<step>`, which
  `cql_sac.eval.load_policy` loads into it. Used for the Q-filtered policy
  (`Q_FILTERED_POLICY_DIR`) and the Polyak-averaged actor's greedy policy (`EMA_POLICY_DIR`).

  Args:
    policies_dir: `<root_dir>/policies`.
    policy: The `TFPolicy` to export.
    train_step: int64 train step variable (saved with the policy).
    interval: Train steps between checkpoints.
    saved_model_name: Directory name of the SavedModel under `policies_dir`.
    checkpoint_name: Directory name of the variable checkpoints under `policies_dir`.
  """

  def __init__(self, policies_dir: str, policy: tf_policy.TFPolicy, train_step: tf.Variable,
               interval: int, saved_model_name: str, checkpoint_name: str):
    self._saver = policy_saver.PolicySaver(policy, train_step=train_step)
    self._train_step = train_step
    self._checkpoint_dir = os.path.join(policies_dir, checkpoint_name)
    saved_model_dir = os.path.join(policies_dir, saved_model_name)
    if not tf.io.gfile.exists(os.path.join(saved_model_dir, 'policy_specs.pbtxt')):
      self._saver.save(saved_model_dir)
    super().__init__(interval, self._save_checkpoint)

  def _save_checkpoint(self) -> None:
    step = int(self._train_step.numpy())
    save_policy_checkpoint(self._saver.save_checkpoint,
                           os.path.join(self._checkpoint_dir, f'policy_checkpoint_{step:010d}'))


class AtomicPolicySavedModelTrigger(triggers.PolicySavedModelTrigger):
  """TF-Agents' `PolicySavedModelTrigger` whose policy checkpoints appear whole or not at all.

  Its `_save_fn` (tf_agents/train/triggers.py of tf-agents 0.19.0) writes
  `<saved_model_dir>/checkpoints/policy_checkpoint_<step>` in place, so that a run killed
  or out of space during the write leaves a partial folder that `cql_sac_eval` would load
  as the newest. This one writes it through `cql_sac.checkpoints.save_policy_checkpoint`
  (a temporary name, then a rename; `CheckpointWriteError` naming the folder when the
  write fails). Same arguments as `PolicySavedModelTrigger` (no `metadata_metrics`).
  """

  def _save_fn(self) -> None:
    self._agent.post_process_policy()
    step = int(self._train_step.numpy())
    save_policy_checkpoint(self._raw_policy_saver.save_checkpoint,
                           os.path.join(self._checkpoint_dir, f'policy_checkpoint_{step:010d}'))
