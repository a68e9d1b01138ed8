"""Model-rated policy rollback: keep the best policy a dynamics model has seen, and go back to
it when the actor falls away from it.

On mixed-quality data (Hopper medium-replay) the actor reaches good gaits and loses them within
one or two evaluations (benchmarks/results/diagnosis_medium_replay.md). `cql_sac_select`
picks a checkpoint after training; this does the same inside training, so that the run's last
policy, the one exported and evaluated, is the best-rated one within a tolerance:

* **Rating**: at every evaluation step, before the step's policies and checkpoint are saved,
  the evaluated policy (greedy; the averaged actor's with `CqlSacAgent.actor_ema_tau`) is
  rolled out in a dynamics model (`cql_sac.model_ope`: DOPE's model-based estimate, Fu et al.
  2021, section 5) from the dataset's initial states; its rating R is the mean undiscounted
  model return, in reward units. With COMBO the model is COMBO's own unless
  `RollbackConfig.model_seed` names another: on hopper-medium-replay COMBO's own model
  ranked the policies better than a second one fit apart (session 22,
  benchmarks/results/diagnosis_medium_replay.md).
  With `RollbackConfig.rate_trained_actor` the trained actor's greedy policy is rated too,
  R_t.
* **Incumbent**: the actor weights (trained and averaged) of the best rating so far, R*.
* **Rollback**: max(R, R_t) > R* + margin·|R*| makes the current weights the incumbent (when
  R_t > R, the averaged actor first takes the trained weights, so that the evaluated and
  exported policy is the rated one); else R < R* − tolerance·|R*| (the evaluated policy's
  own rating) assigns the incumbent's weights to the actor (and averaged actor), which goes on training from them; in between, nothing
  changes (at the last step too: a policy rated within the tolerance of the best is the one
  exported; ending on the incumbent instead cost HalfCheetah a seed, session 23). The
  critics, temperatures and optimizers are never touched.

The incumbent is checkpointed under root_dir/train/rollback at every rating, so a resumed run
keeps it. Off unless `RollbackConfig.tolerance` is set; offline training only.
"""

import dataclasses
import os
from typing import Callable, Optional, Sequence

from absl import logging
import gin
import numpy as np
import tensorflow as tf
from tf_agents.policies import tf_policy
from tf_agents.trajectories import time_step as ts

from cql_sac import checkpoints
from cql_sac.model_ope import ModelEstimator

# Under root_dir: the incumbent's checkpoint, and the rating model unless `model_dir`.
ROLLBACK_DIR = os.path.join('train', 'rollback')
MODEL_DIR = 'rating_model'


@gin.configurable
@dataclasses.dataclass(frozen=True)
class RollbackConfig:
  """Whether and how `train_eval` rolls the actor back (module docstring; gin-configurable).

  Attributes:
    tolerance: The relative drop of the model rating below the best one that restores the
      best weights, >= 0 (0.1: a rating under 90% of the best); None: no rollback.
    margin: The relative rise above the best rating that a policy needs to replace the
      incumbent, >= 0 (0.05: above 105% of the best); 0: any rise.
    rate_trained_actor: Rate the trained actor beside the averaged one (needs
      `CqlSacAgent.actor_ema_tau`) and keep the higher-rated of the two.
    model_seed: `ModelConfig.seed` of the rating model (the other settings are the bound
      `ModelConfig`'s); None: `ModelConfig.seed` itself, so that with COMBO its own model
      rates (read from its directory, not fit again).
    model_dir: Where the rating model is kept (fit there on first use, reused while the
      dataset and settings are the same; runs on one dataset may share one); None: COMBO's
      model directory when COMBO's own model rates, else
      root_dir/train/rollback/rating_model. COMBO's directory with another seed is refused.
  """
  tolerance: Optional[float] = None
  margin: float = 0.0
  rate_trained_actor: bool = False
  model_seed: Optional[int] = None
  model_dir: Optional[str] = None

  @property
  def enabled(self) -> bool:
    """Whether rollback is on."""
    return self.tolerance is not None

  def check(self) -> None:
    """Raises ValueError naming the first setting out of range."""
    if self.tolerance is not None and not 0.0 <= self.tolerance < float('inf'):
      raise ValueError(f'RollbackConfig.tolerance must be >= 0 (0.1 restores below 90% of the '
                       f'best rating) or None for no rollback, got {self.tolerance}.')
    if not 0.0 <= self.margin < float('inf'):
      raise ValueError(f'RollbackConfig.margin must be >= 0 (0.05: a new incumbent rates '
                       f'above 105% of the best), got {self.margin}.')


def greedy_action_fn(policy: tf_policy.TFPolicy) -> Callable[[np.ndarray], np.ndarray]:
  """μ(s) of a stateless TF policy as NumPy: float32 [B, O] → float32 [B, A] (its `action`
  at a MID step; a `GreedyPolicy` gives its mode)."""
  @tf.function(autograph=False)
  def act(observation):
    batch = tf.shape(observation)[0]
    time_step = ts.transition(observation, reward=tf.zeros([batch]),
                              discount=tf.ones([batch]))
    return policy.action(time_step).action
  return lambda observation: act(tf.constant(observation, tf.float32)).numpy()


class PolicyRollbackTrigger:
  """A learner trigger (`trigger(step)`) that rates the policy and rolls it back (module
  docstring). Put it before the policy and checkpoint triggers, so that what they save at a
  rating step is the weights it leaves.

  Args:
    estimator: The rating model and its rollouts (`model_ope.build_model_estimator`).
    act: The evaluated policy's μ, float32 [B, O] → float32 [B, A] (`greedy_action_fn`),
      acting with `variables`.
    variables: The actor's variables (`CqlSacAgent.actor_variables`), which a rollback
      assigns.
    checkpoint_dir: Where the incumbent is checkpointed (and restored from, if there).
    interval: Train steps between ratings, >= 1 (`train_eval.eval_interval`).
    final_step: The last offline step (rated, whatever the interval); none after it.
    tolerance: `RollbackConfig.tolerance`.
    margin: `RollbackConfig.margin`.
    trained_act: The trained actor's μ, rated beside `act` (`RollbackConfig.
      rate_trained_actor`); None: only `act` is rated.
    adopt_trained: Gives the evaluated policy the trained actor's weights
      (`CqlSacAgent.reset_ema_actor`); called when `trained_act` rates higher and replaces
      the incumbent. Required with `trained_act`.

  Raises:
    ValueError: If `interval` < 1, or `trained_act` comes without `adopt_trained`.
    cql_sac.checkpoints.CheckpointWriteError: From a call whose incumbent checkpoint cannot be
      written (e.g. a full disk).
  """

  def __init__(self, estimator: ModelEstimator, act: Callable[[np.ndarray], np.ndarray],
               variables: Sequence[tf.Variable], checkpoint_dir: str, interval: int,
               final_step: int, tolerance: float, margin: float = 0.0,
               trained_act: Optional[Callable[[np.ndarray], np.ndarray]] = None,
               adopt_trained: Optional[Callable[[], None]] = None):
    if interval < 1:
      raise ValueError(f'Policy rollback rates at evaluation steps; eval_interval must be '
                       f'>= 1, got {interval}.')
    if trained_act is not None and adopt_trained is None:
      raise ValueError('Rating the trained actor needs adopt_trained (the averaged actor '
                       'takes its weights when it rates higher).')
    self._estimator, self._act = estimator, act
    self._trained_act, self._adopt_trained = trained_act, adopt_trained
    self._variables = list(variables)
    self._interval, self._final_step = interval, final_step
    self._tolerance, self._margin = tolerance, margin
    self._incumbent = [tf.Variable(v, trainable=False) for v in self._variables]
    self.best_rating = tf.Variable(-np.inf, dtype=tf.float64, trainable=False)
    self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(incumbent=self._incumbent, best_rating=self.best_rating,
                                     best_step=self.best_step)
    self._manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=1)
    # A failed write (a full disk) raises CheckpointWriteError in one line, as the learner's.
    self._save = checkpoints.reporting_write_errors(checkpoint_dir)(self._manager.save)
    if self._manager.latest_checkpoint:
      checkpoint.read(self._manager.latest_checkpoint).assert_existing_objects_matched()
      logging.info('Policy rollback: incumbent of step %d (model return %.1f) restored.',
                   int(self.best_step.numpy()), float(self.best_rating.numpy()))

  def _rates_at(self, step: int) -> bool:
    """Whether `step` is a rating step: a multiple of the interval, or the final step."""
    return 0 < step <= self._final_step and (step % self._interval == 0
                                             or step == self._final_step)

  def _outcome(self, rating: float, trained_rating: float) -> str:
    """The rule (module docstring) for the step's ratings, before anything is assigned."""
    best = float(self.best_rating.numpy())
    if not np.isfinite(best) or max(rating, trained_rating) > best + self._margin * abs(best):
      return 'promoted' if trained_rating > rating else 'improved'
    if rating < best - self._tolerance * abs(best):
      return 'restored'
    return 'kept'

  def __call__(self, step: int, force_trigger: bool = False) -> Optional[str]:
    """At a rating step: rates the policy, updates the incumbent or restores it.

    Args:
      step: The train step reached.
      force_trigger: True from `train_eval`'s final save, which does nothing here (the final
        step was rated when the learner reached it).

    Returns:
      None off a rating step, else 'improved' (the evaluated policy is the new incumbent),
      'promoted' (the trained actor is, and the evaluated policy now acts as it), 'restored'
      or 'kept'.
    """
    step = int(step)
    if force_trigger or not self._rates_at(step):
      return None
    rating = self._estimator.rate(self._act).mean_return
    trained_rating = (-np.inf if self._trained_act is None
                      else self._estimator.rate(self._trained_act).mean_return)
    outcome = self._outcome(rating, trained_rating)
    if outcome in ('improved', 'promoted'):
      if outcome == 'promoted':
        self._adopt_trained()
      for saved, variable in zip(self._incumbent, self._variables):
        saved.assign(variable)
      self.best_rating.assign(max(rating, trained_rating))
      self.best_step.assign(step)
    elif outcome == 'restored':
      for saved, variable in zip(self._incumbent, self._variables):
        variable.assign(saved)
    self._save(checkpoint_number=step)
    logging.info('Policy rollback at step %d: model return %.1f (trained actor %.1f), best '
                 '%.1f (step %d): %s.', step, rating, trained_rating,
                 float(self.best_rating.numpy()), int(self.best_step.numpy()), outcome)
    with tf.summary.record_if(True):
      tf.summary.scalar('Rollback/model_return', rating, step=step)
      if self._trained_act is not None:
        tf.summary.scalar('Rollback/trained_actor_model_return', trained_rating, step=step)
      tf.summary.scalar('Rollback/best_model_return', self.best_rating, step=step)
      tf.summary.scalar('Rollback/restored', float(outcome == 'restored'), step=step)
    return outcome
