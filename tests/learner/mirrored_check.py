"""Runs one- and two-replica learners on the same global batch; prints JSON.

Run as a separate process (`python -m tests.learner.mirrored_check`): the two
logical CPU devices must be configured before TensorFlow initializes.
"""
import json

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices('CPU')[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # pylint: disable=g-import-not-at-top

from cql_sac import learner as learner_lib
from cql_sac.agents import cql_sac_agent
from tests.agents import agent_fixtures as fx

K, GLOBAL_BATCH, N = 3, 16, 4


class PerExampleSamplesAgent(cql_sac_agent.CqlSacAgent):
  """Samples that depend only on each example, not on the replica's batch.

  Policy samples are the distribution's mode shifted by 0.1·j for sample j;
  uniform samples and reward noise are fixed per sample index. So splitting a
  batch across replicas leaves every example's samples unchanged.
  """

  def _sample_actions(self, distribution, sample_shape, purpose):
    mode = distribution.mode()
    if not sample_shape:
      return mode
    offsets = 0.1 * tf.range(sample_shape[0], dtype=tf.float32)
    return tf.clip_by_value(mode[None] + offsets[:, None, None], -0.95, 0.95)

  def _sample_uniform_actions(self, shape):
    grid = tf.linspace(-0.9, 0.9, shape[1] * shape[2])
    return tf.broadcast_to(tf.reshape(grid, [1, shape[1], shape[2]]), shape)

  def _sample_reward_noise(self, shape):
    return tf.zeros(shape)


def make_agent(strategy):
  with strategy.scope():
    return fx.make_agent(
        PerExampleSamplesAgent, num_cql_samples=N, use_lagrange_cql_alpha=True,
        cql_alpha=1.0, cql_tau=1.0, cql_alpha_learning_rate=0.05,
        target_update_tau=0.1,
        train_step_counter=tf.Variable(
            0, dtype=tf.int64,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA))


def main():
  one = tf.distribute.OneDeviceStrategy('/cpu:0')
  two = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  agents = [make_agent(one), make_agent(two)]
  for source, target in zip(agents[0].variables, agents[1].variables):
    target.assign(source)
  rng = np.random.default_rng(0)
  batches = [fx.as_trajectory(fx.random_batch(rng, GLOBAL_BATCH)) for _ in range(K)]
  stacked = tf.nest.map_structure(lambda *x: tf.stack(x), *batches)

  single = learner_lib.FusedLearner(agents[0], K, strategy=one).train(stacked)
  mirrored_learner = learner_lib.FusedLearner(agents[1], K, strategy=two)
  mirrored = mirrored_learner.train(
      learner_lib.distribute_stacked(two, stacked))

  # Largest |a - b| - 1e-5·|a| over all variables (assert_allclose's rtol term).
  variable_excess = max(
      float(np.max(np.abs(a.numpy() - b.numpy()) - 1e-5 * np.abs(a.numpy())))
      for a, b in zip(agents[0].variables, agents[1].variables))
  loss_diff = {
      field: float(np.max(np.abs(getattr(single.extra, field).numpy()
                                 - getattr(mirrored.extra, field).numpy())))
      for field in single.extra._fields}
  print(json.dumps({'replicas': two.num_replicas_in_sync,
                    'max_variable_difference_beyond_rtol': variable_excess,
                    'max_loss_difference': loss_diff,
                    'cql_loss_single': single.extra.cql_loss.numpy().tolist()}))


if __name__ == '__main__':
  main()
