"""Writes RLDS datasets in TFDS format with envlogger's TFDS backend.

The files have the step features and dtypes of TFDS `d4rl_mujoco_*` (observation float32
[obs_dim], action float32 [A], reward float32, discount float32, is_first, is_last, is_terminal),
so `cql_sac.datasets.loading.load_episodes(<directory>)` reads them exactly like a D4RL download.
envlogger turns dm_env time steps into RLDS steps (`envlogger.backends.rlds_utils.to_rlds_step`):
step t holds o_t, the action taken at o_t, the reward and discount that followed, and an
episode's last step holds its final observation with is_terminal = (discount == 0).
"""

import json
import os
from typing import Any, Dict, Optional

import dm_env
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from envlogger import step_data
from envlogger.backends import tfds_backend_writer

DATASET_NAME = 'cql_sac_rlds'
DATASET_VERSION = '1.0.0'
METADATA_FILE = 'cql_sac_metadata.json'


class RldsWriter:
  """Records episodes step by step into an RLDS/TFDS dataset directory.

  Usage: `begin_episode(o_0)`, then `add_step(a_t, reward, discount, o_{t+1}, step_type)` per
  environment step, ending each episode with a LAST step; `close()` writes the metadata.
  """

  def __init__(self, output_dir: str, observation_dim: int, action_dim: int,
               metadata: Dict[str, Any], max_episodes_per_file: int = 1000):
    """Opens a new dataset in `output_dir`.

    Args:
      output_dir: directory to create the dataset in; must not already hold one.
      observation_dim: observation length (float32 vector).
      action_dim: action length (float32 vector).
      metadata: JSON-serializable record of how the data was made (env, policy, seed, source);
        stored in the dataset's TFDS metadata and in `cql_sac_metadata.json`.
      max_episodes_per_file: episodes per TFRecord shard.

    Raises:
      ValueError: if `output_dir` already holds a dataset.
    """
    if tf.io.gfile.exists(os.path.join(output_dir, 'dataset_info.json')):
      raise ValueError(f'{output_dir!r} already holds a dataset. Fix: choose a new --output_dir '
                       'or delete the old one.')
    tf.io.gfile.makedirs(output_dir)
    config = tfds.rlds.rlds_base.DatasetConfig(
        name=DATASET_NAME,
        overall_description=json.dumps(metadata, sort_keys=True),
        observation_info=tfds.features.Tensor(shape=(observation_dim,), dtype=np.float32),
        action_info=tfds.features.Tensor(shape=(action_dim,), dtype=np.float32),
        reward_info=np.float32,
        discount_info=np.float32)
    self._output_dir = output_dir
    self._metadata = metadata
    self._zero_action = np.zeros(action_dim, np.float32)
    self._backend = tfds_backend_writer.TFDSBackendWriter(
        data_directory=output_dir, ds_config=config, max_episodes_per_file=max_episodes_per_file,
        version=DATASET_VERSION, store_ds_metadata=True, metadata=metadata)
    self._num_steps = 0

  def begin_episode(self, observation: np.ndarray) -> None:
    """Starts an episode at its first observation o_0."""
    timestep = dm_env.restart(np.asarray(observation, np.float32))
    self._backend.record_step(step_data.StepData(timestep, self._zero_action),
                              is_new_episode=True)

  def add_step(self, action: np.ndarray, reward: float, discount: float,
               next_observation: np.ndarray, is_last: bool) -> None:
    """Records one environment step: `action` at the previous observation and its outcome.

    Args:
      action: float32 [A], the action taken at the previous observation.
      reward: reward that followed.
      discount: 0 if `next_observation` is terminal, else 1.
      next_observation: float32 [obs_dim], the observation that followed.
      is_last: True if the episode ends at `next_observation` (terminal or time limit).
    """
    timestep = dm_env.TimeStep(
        step_type=dm_env.StepType.LAST if is_last else dm_env.StepType.MID,
        reward=np.float32(reward), discount=np.float32(discount),
        observation=np.asarray(next_observation, np.float32))
    self._backend.record_step(step_data.StepData(timestep, np.asarray(action, np.float32)),
                              is_new_episode=False)
    self._num_steps += 1

  def close(self, extra_metadata: Optional[Dict[str, Any]] = None) -> str:
    """Writes the last episode and the metadata.

    Args:
      extra_metadata: facts known only at the end (e.g. counts), added to
        `cql_sac_metadata.json`.

    Returns:
      The dataset directory, for `load_episodes`.
    """
    backend, self._backend = self._backend, None
    backend.close()
    # envlogger's writer closes itself again in __del__; let that happen now, not at exit.
    del backend
    with tf.io.gfile.GFile(os.path.join(self._output_dir, METADATA_FILE), 'w') as f:
      json.dump({**self._metadata, **(extra_metadata or {}), 'num_env_steps': self._num_steps},
                f, indent=2, sort_keys=True)
    return self._output_dir
