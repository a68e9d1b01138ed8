"""COMBO agent: CQL whose Q values are pushed down at the states of rollouts in a learned
dynamics model and up only at the dataset's transitions.

Yu et al. 2021, "COMBO: Conservative Offline Model-Based Policy Optimization" (NeurIPS),
section 4.1, conservative policy evaluation: each batch mixes a share f of dataset
transitions (d) with model-rollout transitions of the current policy (d_model); the TD
loss and the actor and α losses run on the whole batch (d_f = f·d + (1 − f)·d_model), the
CQL(H) log-sum-exp is taken at every state of the batch, and Q(s, a) is pushed up only at
the dataset's (s, a):

    critic objective = L_TD(d_f) + α'·(E_{s ~ d_f}[lse(s)] − E_{(s, a) ~ d}[Q(s, a)]).

The batch's first round(f·B) items are the dataset's and the rest the model's
(`cql_sac.datasets.replay.mixed_dataset` orders them so; `cql_sac.model_rollouts` writes
the model's). Everything else is `CqlSacAgent`.
"""

import gin
import tensorflow as tf

from cql_sac.agents.cql_sac_agent import CqlSacAgent


def num_dataset_items(batch_size: int, real_ratio: float) -> int:
  """round(f·B), the dataset items of a mixed batch, as `mixed_dataset` counts them."""
  return int(round(real_ratio * batch_size))


@gin.configurable
class ComboAgent(CqlSacAgent):
  """COMBO: `CqlSacAgent` trained on batches of dataset and model-rollout transitions.

  Args:
    *args: `CqlSacAgent`'s arguments.
    real_ratio: f in (0, 1], the share of dataset transitions in each batch (COMBO's f);
      1 is `CqlSacAgent`.
    **kwargs: `CqlSacAgent`'s keyword arguments.

  Raises:
    ValueError: As `CqlSacAgent`; for f outside (0, 1], recurrent networks (sequences are
      not model rollouts), or more than one replica (each replica would see only part of
      the batch's order); at train time (tf.errors.InvalidArgumentError), for a batch whose
      f·B rounds to 0 items.
  """

  def __init__(self, *args, real_ratio: float = 0.5, **kwargs):
    if not 0.0 < real_ratio <= 1.0:
      raise ValueError(f'ComboAgent.real_ratio is the share of dataset transitions in a batch, '
                       f'in (0, 1]; got {real_ratio}.')
    super().__init__(*args, **kwargs)
    if self.trains_on_sequences:
      raise ValueError('ComboAgent trains on transitions; recurrent networks train on '
                       'sequences, which model rollouts do not give. Use feed-forward networks.')
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
      raise ValueError('ComboAgent needs the whole batch on one replica (its first f·B items '
                       'are the dataset\'s); build it under a one-device strategy.')
    self._real_ratio = float(real_ratio)

  @property
  def real_ratio(self) -> float:
    """f, the share of dataset transitions in each batch."""
    return self._real_ratio

  def _dataset_action_weight(self, q_data) -> tf.Tensor:
    """float32 [B]: B/round(f·B) on the first round(f·B) rows (the dataset's), 0 after.

    Raises:
      tf.errors.InvalidArgumentError: If round(f·B) is 0 (no dataset row).
    """
    batch_size = tf.shape(q_data)[0]
    # tf.round, like Python's round, rounds halves to even: `num_dataset_items` in graph.
    num_real = tf.cast(tf.round(self._real_ratio * tf.cast(batch_size, tf.float64)), tf.int32)
    tf.debugging.assert_positive(
        num_real, message=f'A batch with real_ratio {self._real_ratio} holds no dataset '
        'transition; raise the batch size or real_ratio.')
    rows = tf.range(batch_size)
    scale = tf.cast(batch_size, tf.float32) / tf.cast(tf.maximum(num_real, 1), tf.float32)
    return tf.where(rows < num_real, scale, 0.0)
