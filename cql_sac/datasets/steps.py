"""RLDS episodes read into flat numpy columns, the form validation and replay work on.

An RLDS dataset is a `tf.data.Dataset` of episodes, each with a `steps` dataset. Step t holds the
observation o_t, the action a_t taken at o_t, the reward r_t and discount d_t that followed it,
and the flags is_first, is_last, is_terminal (https://github.com/google-research/rlds). The last
step of an episode (is_last) holds only an observation; its action and reward are not used.
"""

import dataclasses

import numpy as np
import rlds
import tensorflow as tf

RLDS_STEP_FIELDS = (rlds.OBSERVATION, rlds.ACTION, rlds.REWARD, rlds.DISCOUNT,
                    rlds.IS_FIRST, rlds.IS_LAST, rlds.IS_TERMINAL)
_READ_BATCH_STEPS = 16384


@dataclasses.dataclass(frozen=True)
class EpisodeSteps:
  """Every step of an RLDS dataset, episodes concatenated in dataset order.

  N is the total number of steps. Arrays keep the dataset's dtypes (float32 for D4RL).

  Attributes:
    observation: [N, obs_dim] observations o_t.
    action: [N, A] actions a_t.
    reward: [N] rewards r_t (environment units).
    discount: [N] discounts d_t in [0, 1].
    is_first: [N] bool, True on each episode's first step.
    is_last: [N] bool, True on each episode's last step.
    is_terminal: [N] bool, True on a last step that is a terminal state.
    episode_index: [N] int64, position of the step's episode in the dataset (0, 1, ...),
      non-decreasing; taken from the episode structure, not from the flags.
    num_episodes: number of episodes, including episodes with no steps.
  """
  observation: np.ndarray
  action: np.ndarray
  reward: np.ndarray
  discount: np.ndarray
  is_first: np.ndarray
  is_last: np.ndarray
  is_terminal: np.ndarray
  episode_index: np.ndarray
  num_episodes: int

  @property
  def num_steps(self) -> int:
    """Total number of steps N."""
    return int(self.reward.shape[0])

  def episode_bounds(self) -> np.ndarray:
    """Returns int64 [E', 2] (start, end) step ranges of the episodes that have steps."""
    if self.num_steps == 0:
      return np.zeros((0, 2), np.int64)
    starts = np.flatnonzero(np.diff(self.episode_index, prepend=-1) != 0)
    ends = np.append(starts[1:], self.num_steps)
    return np.stack([starts, ends], axis=1).astype(np.int64)


def check_rlds_fields(element_spec, dataset_name: str) -> None:
  """Checks that an episode dataset's element_spec has RLDS `steps` with the fields we use.

  Args:
    element_spec: `episodes.element_spec` of an RLDS episode dataset.
    dataset_name: name used in the error message.

  Raises:
    ValueError: naming the dataset, the missing field(s) and the fix.
  """
  if not isinstance(element_spec, dict) or rlds.STEPS not in element_spec:
    found = list(element_spec) if isinstance(element_spec, dict) else element_spec
    raise ValueError(
        f'Dataset {dataset_name!r}: field {rlds.STEPS!r} is missing from all episodes (found '
        f'{found}). Fix: pass an RLDS episode dataset, e.g. from '
        'cql_sac.datasets.loading.load_episodes.')
  step_spec = element_spec[rlds.STEPS].element_spec
  missing = [f for f in RLDS_STEP_FIELDS if f not in step_spec]
  if missing:
    raise ValueError(
        f'Dataset {dataset_name!r}: step field(s) {missing} are missing from all steps (found '
        f'{sorted(step_spec)}). Fix: write the dataset with every RLDS step field '
        f'{list(RLDS_STEP_FIELDS)}, e.g. with cql_sac_make_dataset.')


def read_episode_steps(episodes: tf.data.Dataset, dataset_name: str) -> EpisodeSteps:
  """Reads all steps of an RLDS episode dataset into numpy (one pass over the data).

  Args:
    episodes: RLDS episodes (`tf.data.Dataset` of dicts with a `steps` dataset).
    dataset_name: name used in error messages.

  Returns:
    The dataset's `EpisodeSteps`.

  Raises:
    ValueError: if the RLDS fields are missing (see `check_rlds_fields`).
  """
  check_rlds_fields(episodes.element_spec, dataset_name)
  step_spec = episodes.element_spec[rlds.STEPS].element_spec

  def with_episode_index(index, episode):
    return episode[rlds.STEPS].map(
        lambda step: ({f: step[f] for f in RLDS_STEP_FIELDS}, index))

  batches = (episodes.enumerate().flat_map(with_episode_index)
             .batch(_READ_BATCH_STEPS).prefetch(2).as_numpy_iterator())
  columns = {f: [] for f in RLDS_STEP_FIELDS}
  indices = []
  for fields, index in batches:
    for f in RLDS_STEP_FIELDS:
      columns[f].append(fields[f])
    indices.append(index)

  def concat(parts, spec):
    if parts:
      return np.concatenate(parts)
    return np.zeros((0,) + tuple(spec.shape), spec.dtype.as_numpy_dtype)

  arrays = {f: concat(columns[f], step_spec[f]) for f in RLDS_STEP_FIELDS}
  return EpisodeSteps(episode_index=concat(indices, tf.TensorSpec([], tf.int64)),
                      num_episodes=_count_episodes(episodes), **arrays)


def _count_episodes(episodes: tf.data.Dataset) -> int:
  """Number of episodes: the dataset's cardinality when known (TFDS), else one more pass."""
  cardinality = int(episodes.cardinality())
  if cardinality >= 0:
    return cardinality
  return int(episodes.reduce(np.int64(0), lambda count, _: count + 1))
