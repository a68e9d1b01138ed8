"""Fused learner: K CQL-SAC train steps inside one compiled call.

Per-step dispatch (Python, `tf.function` call, iterator hand-off) dominates a
CQL step on a GPU and costs several milliseconds on a CPU. Like Acme's
`num_sgd_steps_per_step`, `FusedLearner` takes K batches at once, stacked along
a leading axis ([K, B, 2, ...]), and runs K full `CqlSacAgent` updates in one
`tf.while_loop`, optionally compiled with XLA. Each iteration is exactly one
`agent.train()` step (same math, same order, same stateless random draws,
since those are seeded by the step counter), so K fused steps equal K separate
`train()` calls.

Without XLA the agent writes its summaries inside the loop, gated per step by
the caller's `tf.summary.record_if`. XLA cannot compile summary ops, so with
`jit_compile` none are written inside; `write_summaries` writes the last step's.
Sampling inside the loop (`train_on_replay`): the whole dataset is an
argument of the compiled call (`InMemoryReplay.tensors`), and each of the K
steps draws its own batch with `sample_uniform`, seeded by the agent's
`replay_seed()` (random seed and train step), so no batch crosses from the
host per step and step t trains on the same batch whatever K is.

`CqlLearner` puts the fused loop inside TF-Agents' `Learner` (checkpoints,
triggers, summary writer), as the training binary uses it.
"""

from typing import Optional

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.trajectories import trajectory
from tf_agents.train import learner as tf_agents_learner

from cql_sac import checkpoints
from cql_sac.agents import cql_sac_agent
from cql_sac.datasets import replay as replay_lib


@gin.configurable
class FusedLearner(tf.Module):
  """Runs `steps_per_call` agent updates per call on stacked batches.

  Args:
    agent: An initialized `CqlSacAgent`: cql_sac's, or tf_agents' own (the
      reference row of `benchmarks.quality`; stacked batches only, since
      `train_on_replay` needs cql_sac's `replay_seed`).
    steps_per_call: K, the number of train steps per call (>= 1).
    jit_compile: Compile the K-step loop with XLA.
    strategy: Optional `tf.distribute.Strategy` (e.g. `MirroredStrategy`).
      The agent must have been built under its scope; each call then takes a
      distributed value of per-replica [K, B/R, ...] batches (see
      `distribute_stacked`) and the CQL term keeps its single-replica weight
      (the agent averages every loss over the global batch).

  Raises:
    ValueError: If `steps_per_call < 1`, or `jit_compile` with several
      replicas.
  """

  def __init__(self, agent: cql_sac_agent.CqlSacAgent, steps_per_call: int = 1,
               jit_compile: bool = False,
               strategy: Optional[tf.distribute.Strategy] = None):
    super().__init__(name='FusedLearner')
    if steps_per_call < 1:
      raise ValueError(
          f'steps_per_call must be >= 1, got {steps_per_call}. It is the '
          'number of train steps run inside one compiled call.')
    self._agent = agent
    self.steps_per_call = int(steps_per_call)
    self.jit_compile = jit_compile
    self._strategy = strategy or tf.distribute.get_strategy()
    if jit_compile and self._strategy.num_replicas_in_sync > 1:
      raise ValueError(
          'jit_compile=True is supported with a single replica only; use '
          'jit_compile=False with a multi-replica strategy.')
    self.stacked_train_steps = tf.function(self._stacked_train_steps_fn, autograph=False,
                                           jit_compile=jit_compile)
    self.sampled_train_steps = tf.function(self._sampled_train_steps_fn, autograph=False,
                                           jit_compile=jit_compile)

  def _stacked_train_steps_fn(self, experience, num_steps):
    """`num_steps` agent updates on `experience` [K, B, 2, ...]; LossInfo [num_steps]."""
    return self._train_loop(
        lambda i, replica_experience: tf.nest.map_structure(
            lambda x: tf.gather(x, i), replica_experience),
        experience, num_steps)

  def _sampled_train_steps_fn(self, tensors, batch_size, num_steps):
    """`num_steps` agent updates, each on a batch sampled from `tensors`; LossInfo."""
    return self._train_loop(
        lambda i, tensors: replay_lib.sample_uniform(tensors, batch_size,
                                                     self._agent.replay_seed()),
        tensors, num_steps)

  def _train_loop(self, batch_fn, experience, num_steps):
    """`num_steps` agent updates on `batch_fn(i, experience)`; LossInfo [num_steps].

    With several replicas the loop runs in cross-replica context and each
    iteration is one `strategy.run` of a single agent step (a while loop may
    not contain the optimizers' cross-replica gradient sums).
    """
    arrays = tf.nest.map_structure(
        lambda _: tf.TensorArray(tf.float32, size=num_steps),
        self._loss_structure())

    def step(i, replica_experience):
      batch = batch_fn(i, replica_experience)
      with tf.name_scope(''):  # Keep summary names free of 'while/'.
        info = self._agent._train(batch, weights=None)  # pylint: disable=protected-access
      # tf_agents' CqlSacAgent returns its own CqlSacLossInfo type (same fields); CalQlAgent's
      # extra fields are in its TensorBoard summaries, not in the loop's loss arrays.
      info = tf_agent.LossInfo(info.loss, cql_sac_agent.CqlSacLossInfo(
          *[getattr(info.extra, name) for name in cql_sac_agent.CqlSacLossInfo._fields]))
      return tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), info)

    def body(i, arrays):
      if self._strategy.num_replicas_in_sync > 1:
        per_replica = self._strategy.run(step, args=(i, experience))
        # Each replica's losses are its share of the global-batch mean;
        # cql_alpha is the same value on every replica.
        info = self._strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                                     axis=None)
        info = info._replace(extra=info.extra._replace(
            cql_alpha=info.extra.cql_alpha
            / self._strategy.num_replicas_in_sync))
      else:
        info = step(i, experience)
      return i + 1, tf.nest.map_structure(lambda a, x: a.write(i, x), arrays,
                                          info)

    _, arrays = tf.while_loop(lambda i, _: i < num_steps, body,
                              (tf.constant(0), arrays))
    return tf.nest.map_structure(lambda a: a.stack(), arrays)

  @property
  def agent(self) -> cql_sac_agent.CqlSacAgent:
    """The agent this learner trains."""
    return self._agent

  @staticmethod
  def _loss_structure():
    zero = tf.constant(0.0)
    return tf_agent.LossInfo(
        loss=zero, extra=cql_sac_agent.CqlSacLossInfo(*([zero] * 6)))

  def train(self, experience, num_steps=None) -> tf_agent.LossInfo:
    """Runs train steps on the first `num_steps` of K stacked batches.

    Args:
      experience: `Trajectory` with outer dims [K, B, 2] (K may differ from
        `steps_per_call`), or, with a multi-replica strategy, a distributed
        value of per-replica [K, B/R, 2] trajectories.
      num_steps: Steps to run, 1 <= num_steps <= K; K if None. A tensor, so
        calls with different counts share one compiled loop.

    Returns:
      `LossInfo` whose fields (and `CqlSacLossInfo` fields) are float32
      [num_steps], one entry per step.
    """
    if num_steps is None:
      num_steps = tf.shape(tf.nest.flatten(
          self._strategy.experimental_local_results(experience))[0])[0]
    return self._call(self.stacked_train_steps, experience, num_steps=num_steps)

  def train_on_replay(self, replay: replay_lib.InMemoryReplay, batch_size: int,
                      num_steps: int) -> tf_agent.LossInfo:
    """Runs `num_steps` train steps, sampling each batch inside the compiled loop.

    Step t's batch is `sample_uniform(replay.tensors, batch_size, agent.replay_seed())` at
    train step t: uniform over the dataset's items with replacement, as the Reverb table
    samples, and the same batches whatever K and across a resume (on one backend).

    Args:
      replay: The `InMemoryReplay` holding the dataset.
      batch_size: B, items per step.
      num_steps: Steps to run (>= 1), e.g. `steps_per_call`.

    Returns:
      `LossInfo` whose fields are float32 [num_steps], as `train`.

    Raises:
      ValueError: With a multi-replica strategy (each replica would need its own share of
        the sampled batch; use the Reverb replay there).
    """
    if self._strategy.num_replicas_in_sync > 1:
      raise ValueError(
          'Sampling inside the loop runs on a single replica; with several replicas use the '
          'Reverb replay (train_eval.sample_in_loop = False).')
    return self._call(self.sampled_train_steps, replay.tensors, batch_size,
                      num_steps=num_steps)

  def _call(self, train_steps, *args, num_steps):
    """Calls one of the compiled loops; no summaries inside an XLA one."""
    num_steps = tf.cast(num_steps, tf.int32)
    if self.jit_compile:
      with tf.summary.record_if(False):
        return train_steps(*args, num_steps)
    return train_steps(*args, num_steps)

  def run(self, iterator) -> tf_agent.LossInfo:
    """Takes one [K, B, 2, ...] element from `iterator` and trains on it.

    Args:
      iterator: Iterator over K-stacked experience, e.g. from
        `stack_batches(dataset, steps_per_call)`.

    Returns:
      Per-step `LossInfo` as in `train`.
    """
    return self.train(next(iterator))

  def write_summaries(self, loss_info: tf_agent.LossInfo) -> None:
    """Writes the last step's losses with the agent's TensorBoard tags.

    For the XLA path, which writes none inside its loop.

    Args:
      loss_info: The per-step `LossInfo` returned by `train`/`run`.
    """
    extra = tf.nest.map_structure(lambda x: x[-1], loss_info.extra)
    self._agent.write_loss_summaries(extra)


def stack_batches(dataset: tf.data.Dataset, steps_per_call: int,
                  prefetch: int = 2) -> tf.data.Dataset:
  """Groups consecutive [B, 2, ...] batches into [K, B, 2, ...] elements.

  Args:
    dataset: Yields `Trajectory` batches or (Trajectory, info) pairs.
    steps_per_call: K.
    prefetch: Elements to prefetch (each holds K batches).

  Returns:
    A dataset of `Trajectory` with outer dims [K, B, 2].
  """
  if isinstance(dataset.element_spec, tuple) and not hasattr(
      dataset.element_spec, 'observation'):
    dataset = dataset.map(lambda experience, _: experience)
  return dataset.batch(steps_per_call, drop_remainder=True).prefetch(prefetch)


def stack_exactly(batches, num_steps: int, max_steps: int) -> trajectory.Trajectory:
  """Stacks the next `num_steps` batches of an iterator, padded to a power of two.

  For calls of varying length (online fine-tuning trains a number of steps that depends on
  each episode): none of `batches` is drawn in vain, and padding the leading axis to the
  next power of two (at most `max_steps`) with copies of the last batch keeps the number of
  shapes the compiled loop is traced for at log2(max_steps) + 1. `FusedLearner.train`
  with `num_steps` never trains on the padding.

  Args:
    batches: Iterator of `Trajectory` batches [B, 2].
    num_steps: Batches to take, 1 <= num_steps <= max_steps.
    max_steps: K, the most steps per call.

  Returns:
    `Trajectory` [P, B, 2] with P = min(2^ceil(log2 num_steps), max_steps) >= num_steps.

  Raises:
    ValueError: If `num_steps` is not in [1, max_steps].
  """
  if not 1 <= num_steps <= max_steps:
    raise ValueError(f'num_steps must be in [1, {max_steps}], got {num_steps}.')
  taken = [next(batches) for _ in range(num_steps)]
  padded = min(1 << (num_steps - 1).bit_length(), max_steps)
  taken += taken[-1:] * (padded - num_steps)
  return tf.nest.map_structure(lambda *fields: tf.stack(fields), *taken)


def iterations_until_next_stop(step: int, final_step: int, steps_per_call: int,
                               eval_interval: int) -> int:
  """Train steps for the next call: it stops at each evaluation and at `final_step`.

  Args:
    step: Current train step.
    final_step: Train step to reach (> step).
    steps_per_call: Most steps per call.
    eval_interval: Evaluations happen at its multiples; <= 0 for none.

  Returns:
    The number of train steps (>= 1) to run next.
  """
  stop = final_step
  if eval_interval > 0:
    stop = min(stop, (step // eval_interval + 1) * eval_interval)
  return max(1, min(steps_per_call, stop - step))


def distribute_stacked(strategy: tf.distribute.Strategy, experience):
  """Splits K-stacked experience [K, B, ...] along B across the replicas.

  Args:
    strategy: The strategy the agent was built under (R replicas).
    experience: `Trajectory` with outer dims [K, B, 2]; B divisible by R.

  Returns:
    A distributed value whose replica r holds [K, B/R, 2] (rows r·B/R ...).

  Raises:
    ValueError: If B is not divisible by the number of replicas.
  """
  replicas = strategy.num_replicas_in_sync
  batch_size = tf.nest.flatten(experience)[0].shape[1]
  if batch_size % replicas:
    raise ValueError(
        f'The batch size {batch_size} must be divisible by the number of '
        f'replicas {replicas}; change batch_size.')
  shard = batch_size // replicas

  def replica_value(context):
    start = context.replica_id_in_sync_group * shard
    return tf.nest.map_structure(lambda x: x[:, start:start + shard],
                                 experience)

  return strategy.experimental_distribute_values_from_function(replica_value)


@gin.configurable
class CqlLearner(tf_agents_learner.Learner):
  """TF-Agents' `Learner` whose training loop is a `FusedLearner`.

  Checkpoints (agent, optimizers, SAC and Lagrange temperatures, train step),
  triggers and the train/ summary writer are TF-Agents' own; `run(iterations)`
  takes one element of K = `steps_per_call` stacked batches and runs its first
  `iterations` (<= K) steps in one compiled call. Summaries follow the
  Learner's `summary_interval` (every step that is a multiple of it), except
  with `jit_compile`, where the last step of each call is written.

  Args:
    root_dir: Output directory (train/ and train/checkpoints/ under it).
    train_step: The agent's `train_step_counter` (int64 variable).
    agent: A `CqlSacAgent` built under `strategy`'s scope.
    experience_dataset_fn: Returns a dataset of (Trajectory [B, 2], info)
      batches, e.g. `Replay.as_dataset`; None with `replay`.
    steps_per_call: K; `train_eval.learner_iterations_per_call`.
    jit_compile: Compile the K-step loop with XLA (single replica only).
    strategy: Distribution strategy; the default one if None.
    replay: An `InMemoryReplay` to sample inside the compiled loop
      (`FusedLearner.train_on_replay`) instead of `experience_dataset_fn`.
    batch_size: B of the batches sampled from `replay`.
    **learner_kwargs: Passed to `tf_agents.train.learner.Learner` (triggers,
      checkpoint_interval, summary_interval, max_checkpoints_to_keep, ...).

  Raises:
    ValueError: Unless exactly one of `experience_dataset_fn` and `replay` is
      given (`replay` with a `batch_size`).
    cql_sac.checkpoints.CheckpointWriteError: From a checkpoint save (a trigger
      of `run`) that cannot write, e.g. on a full disk; earlier checkpoints are
      kept.
  """

  def __init__(self, root_dir, train_step, agent, experience_dataset_fn=None,
               steps_per_call: int = 1, jit_compile: bool = False,
               strategy: Optional[tf.distribute.Strategy] = None,
               replay: Optional[replay_lib.InMemoryReplay] = None,
               batch_size: Optional[int] = None, **learner_kwargs):
    if (experience_dataset_fn is None) == (replay is None) or (
        replay is not None and not batch_size):
      raise ValueError('CqlLearner needs either experience_dataset_fn or replay with a '
                       'batch_size, not both.')
    super().__init__(root_dir, train_step, agent, experience_dataset_fn=None,
                     strategy=strategy, **learner_kwargs)
    self._fused = FusedLearner(agent, steps_per_call, jit_compile,
                               self.strategy)
    checkpointer = self._checkpointer  # Its save: one clear line when the disk is full.
    checkpointer.save = checkpoints.reporting_write_errors(
        checkpointer.manager.directory)(checkpointer.save)
    self._replay, self._batch_size = replay, batch_size
    # Learner.run hands this iterator to `_train`.
    self._experience_iterator = None if replay is not None else iter(
        stack_batches(experience_dataset_fn(), steps_per_call))

  def _train(self, iterations, iterator, parallel_iterations):
    """Overrides the Learner's per-step loop; returns the last step's losses."""
    del parallel_iterations  # One compiled loop runs all the steps.
    if self._replay is not None:
      losses = self._fused.train_on_replay(self._replay, self._batch_size, iterations)
    else:
      experience = next(iterator)
      if self.strategy.num_replicas_in_sync > 1:
        experience = distribute_stacked(self.strategy, experience)
      losses = self._fused.train(experience, num_steps=iterations)
    if self._fused.jit_compile:
      with tf.summary.record_if(True):
        self._fused.write_summaries(losses)
    return tf.nest.map_structure(lambda x: x[-1], losses)
