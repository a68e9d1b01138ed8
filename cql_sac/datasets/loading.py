"""Loads RLDS episode datasets: TFDS catalog datasets (D4RL) or directories this project wrote.

TF-Agents' CQL example calls `rlds.load`, which the rlds package does not have (tensorflow/agents
issue 848); the catalog path here is `tfds.load(name, split='train')`, which returns the episodes
rather than a dict of splits.
"""

import json
import os
from typing import Optional

import rlds
import tensorflow as tf
import tensorflow_datasets as tfds

from cql_sac import minari_tasks
from cql_sac import tasks
from cql_sac.datasets import minari
from cql_sac.datasets import steps
from cql_sac.datasets import writing

# Step fields cast to float32 on load: D4RL v1 medium-replay/full-replay (TFDS configs
# 'v1-medium-replay', 'v1-full-replay') and some v0 sets store them as float64; float32 is the
# dtype of every other D4RL dataset and of the environments' specs (cql_sac.envs).
_FLOAT_FIELDS = (rlds.OBSERVATION, rlds.ACTION, rlds.REWARD, rlds.DISCOUNT)


def _is_dataset_directory(path: str) -> bool:
  return tf.io.gfile.exists(os.path.join(path, 'dataset_info.json'))


def _open(dataset_name: str, data_dir: Optional[str]) -> tf.data.Dataset:
  if tf.io.gfile.isdir(dataset_name):
    if not _is_dataset_directory(dataset_name):
      raise ValueError(
          f'Directory {dataset_name!r} holds no TFDS dataset (no dataset_info.json). Fix: pass '
          'the directory cql_sac_make_dataset printed (it contains dataset_info.json), or a '
          'TFDS name such as d4rl_mujoco_hopper/v2-medium.')
    return tfds.builder_from_directory(dataset_name).as_dataset(split='train')
  if os.path.isabs(dataset_name) or dataset_name.startswith(('.', '~')):
    raise ValueError(f'Dataset directory {dataset_name!r} does not exist. Fix: check the path '
                     '(cql_sac_make_dataset prints the directory it wrote).')
  try:
    return tfds.load(dataset_name, split='train', data_dir=data_dir)
  except (tfds.core.registered.DatasetNotFoundError, ValueError, AssertionError) as error:
    raise ValueError(
        f'Cannot load dataset {dataset_name!r} from data_dir={data_dir!r}: {error}. Fix: use a '
        'TFDS name such as d4rl_mujoco_hopper/v2-medium (cql_sac.tasks.get_dataset_info('
        'env_name).tfds_name), download it first if this machine has no internet (tfds build '
        'on a connected machine, then copy data_dir), or pass a directory written by '
        'cql_sac_make_dataset.') from error


def _cast_floats_to_float32(episode):
  def cast(step):
    return {key: (tf.cast(value, tf.float32)
                  if key in _FLOAT_FIELDS and value.dtype == tf.float64 else value)
            for key, value in step.items()}
  return {**episode, rlds.STEPS: episode[rlds.STEPS].map(cast)}


def load_episodes(dataset_name: str, data_dir: Optional[str] = None,
                  take: Optional[int] = None) -> tf.data.Dataset:
  """Loads the 'train' split of an RLDS dataset as a dataset of episodes.

  Args:
    dataset_name: a TFDS name, e.g. 'd4rl_mujoco_hopper/v2-medium' or
      'd4rl_antmaze/medium-play-v0:1.1.1' (loaded with `tfds.load(name, split='train',
      data_dir=data_dir)`), or a directory holding a TFDS dataset written by this project
      (`tfds.builder_from_directory`; `data_dir` is then ignored).
    data_dir: TFDS data directory for catalog names; None uses TFDS's default
      (~/tensorflow_datasets).
    take: keep only the first `take` EPISODES (not steps); None keeps all.

  Returns:
    A `tf.data.Dataset` of RLDS episodes: dicts whose 'steps' entry is a dataset of step dicts
    (observation, action, reward, discount, is_first, is_last, is_terminal, and whatever else the
    dataset stores). float64 observation/action/reward/discount are cast to float32.

  Raises:
    ValueError: if the name is neither a known/prepared TFDS dataset nor a dataset directory,
      or `take` is not positive; the message says how to fix it.
  """
  if take is not None and take <= 0:
    raise ValueError(f'take counts episodes and must be positive, got {take}.')
  episodes = _open(dataset_name, data_dir)
  if rlds.STEPS in episodes.element_spec:
    episodes = episodes.map(_cast_floats_to_float32)
  if take is not None:
    episodes = episodes.take(take)
  return episodes


def load_episode_steps(dataset_name: str, data_dir: Optional[str] = None,
                       take: Optional[int] = None) -> steps.EpisodeSteps:
  """Reads a whole dataset into memory: a Minari dataset or an RLDS one (`load_episodes`).

  Args:
    dataset_name: 'minari:<dataset_id>' or a Minari dataset directory
      (`cql_sac.datasets.minari`), else as `load_episodes`.
    data_dir: as `load_episodes` (unused for Minari datasets).
    take: keep only the first `take` episodes; None keeps all.

  Returns:
    The dataset's `EpisodeSteps`.

  Raises:
    ValueError: as `load_episodes`, `steps.read_episode_steps` or
      `minari.read_minari_steps`; the message says how to fix it.
  """
  if minari_tasks.is_minari_name(dataset_name):
    return minari.read_minari_steps(dataset_name, take=take)
  return steps.read_episode_steps(load_episodes(dataset_name, data_dir=data_dir, take=take),
                                  dataset_name)


def recorded_env_name(dataset_name: str) -> Optional[str]:
  """The D4RL environment a dataset was recorded in, when the dataset says so.

  Args:
    dataset_name: as `load_episodes`: a directory written by this project (its
      `cql_sac_metadata.json` names `env_name`) or a TFDS D4RL name such as
      'd4rl_mujoco_hopper/v2-medium' (optionally with ':version'), looked up in
      `cql_sac.tasks`'s registry; or a Minari dataset.

  Returns:
    The D4RL environment name, the Minari task name (`dataset_name` itself) for a Minari
    dataset, or None if the dataset does not say (another TFDS dataset, a directory without
    the metadata file).
  """
  if minari_tasks.is_minari_name(dataset_name):
    return dataset_name
  metadata_path = os.path.join(dataset_name, writing.METADATA_FILE)
  if tf.io.gfile.exists(metadata_path):
    with tf.io.gfile.GFile(metadata_path) as f:
      return json.load(f).get('env_name')
  name = dataset_name.split(':')[0]
  for env_name in tasks.all_env_names():
    if tasks.get_dataset_info(env_name).tfds_name == name:
      return env_name
  return None
