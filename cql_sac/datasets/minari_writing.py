"""Writes recorded episodes as a Minari dataset (h5py), the format minari 0.5 loads.

The layout is the one `cql_sac.datasets.minari` reads and minari 0.5.3's `HDF5Storage` writes:
`<output_dir>/data/main_data.hdf5` with groups `episode_<i>` (attrs `id`, `total_steps`;
`observations` float32 [T + 1, obs_dim], `actions` float32 [T, A], `rewards` float32 [T],
`terminations` and `truncations` bool [T], an empty `infos` group) and
`<output_dir>/data/metadata.json` with the keys `minari.load_dataset` reads: `dataset_id`,
`minari_version` (the layout's version, "0.5.3"), `data_format` "hdf5", `total_episodes`,
`total_steps`, the observation and action spaces (minari's space JSON), `env_spec` (gymnasium
EnvSpec JSON of the recording environment), `ref_min_score`/`ref_max_score` when known, and
this project's provenance under `cql_sac`. Checked with the real minari in
tests/data/test_minari.py (skipped without it) and tests/data/minari/README.md.

`minari.load_dataset(<dataset_id>)` finds the dataset at `$MINARI_DATASETS_PATH/<dataset_id>`;
write it there (the default dataset_id is `output_dir` relative to that root when it lies
under it) or copy it there.
"""

import json
import os
import re
from typing import Any, Dict, Optional, Tuple

import h5py
import numpy as np

from cql_sac import minari_tasks
from cql_sac.envs import GymnasiumEnvironment

MINARI_LAYOUT_VERSION = '0.5.3'  # The minari release whose layout this writes.
_DATASET_ID = re.compile(r'^([\w.-]+/)*[\w.-]+-v\d+$')


def default_dataset_id(output_dir: str) -> str:
  """`output_dir` relative to Minari's root when under it, else 'cql_sac/<basename>[-v0]'."""
  relative = os.path.relpath(os.path.abspath(output_dir),
                             os.path.abspath(minari_tasks.datasets_root()))
  if not relative.startswith('..') and _DATASET_ID.match(relative):
    return relative
  name = os.path.basename(os.path.normpath(output_dir))
  return f'cql_sac/{name}' if re.search(r'-v\d+$', name) else f'cql_sac/{name}-v0'


def _box_json(low: np.ndarray, high: np.ndarray, dtype: str) -> str:
  """A Box space in minari's serialization (`minari/serialization.py`)."""
  return json.dumps({'type': 'Box', 'dtype': dtype, 'shape': list(low.shape),
                     'low': low.tolist(), 'high': high.tolist()})


class MinariWriter:
  """Records episodes step by step into a Minari dataset directory.

  Same calls as `cql_sac.datasets.writing.RldsWriter`: `begin_episode(o_0)`, then
  `add_step(a_t, reward, discount, o_{t+1}, is_last)` per environment step; `close()` writes
  the last episode and metadata.json. An episode ending with discount 0 is terminated, one
  ending otherwise is truncated.
  """

  def __init__(self, output_dir: str, env: GymnasiumEnvironment, metadata: Dict[str, Any],
               dataset_id: Optional[str] = None,
               reference_scores: Optional[Tuple[float, float]] = None):
    """Opens a new dataset in `output_dir`.

    Args:
      output_dir: the dataset directory (data/ goes in it); must not already hold a dataset.
      env: the recording environment: its gymnasium spec (id, time limit, kwargs) becomes
        `env_spec`, its float32 observation spec and bounded action spec the spaces.
      metadata: JSON-serializable record of how the data was made, stored as `cql_sac`.
      dataset_id: Minari id ('<namespace>/<name>-v<k>'); None for `default_dataset_id`.
      reference_scores: (ref_min_score, ref_max_score) of the normalized score, or None.

    Raises:
      ValueError: if `output_dir` already holds a dataset or `dataset_id` is not a Minari id.
    """
    self._data_dir = os.path.join(output_dir, 'data')
    if os.path.exists(os.path.join(self._data_dir, minari_tasks.METADATA_FILE)):
      raise ValueError(f'{output_dir!r} already holds a Minari dataset. Fix: choose a new '
                       '--output_dir or delete the old one.')
    dataset_id = dataset_id or default_dataset_id(output_dir)
    if not _DATASET_ID.match(dataset_id):
      raise ValueError(f'Minari dataset id {dataset_id!r} is not <namespace>/<name>-v<k>. Fix: '
                       'pass e.g. cql_sac/hopper-random-v0.')
    observation_shape = env.observation_spec().shape
    action_spec = env.action_spec()
    self._metadata = {
        'dataset_id': dataset_id, 'minari_version': MINARI_LAYOUT_VERSION,
        'data_format': 'hdf5', 'env_spec': env.gym.spec.to_json(),
        'observation_space': _box_json(np.full(observation_shape, -np.inf),
                                       np.full(observation_shape, np.inf), 'float32'),
        'action_space': _box_json(
            np.broadcast_to(action_spec.minimum, action_spec.shape).astype(np.float32),
            np.broadcast_to(action_spec.maximum, action_spec.shape).astype(np.float32),
            'float32'),
        'algorithm_name': str(metadata.get('policy', metadata.get('source', 'cql_sac'))),
        'author': ['cql_sac'], 'cql_sac': metadata,
    }
    if reference_scores is not None:
      self._metadata['ref_min_score'], self._metadata['ref_max_score'] = map(
          float, reference_scores)
    self._action_dim = int(np.prod(action_spec.shape))
    os.makedirs(self._data_dir, exist_ok=True)
    self._file = h5py.File(os.path.join(self._data_dir, minari_tasks.MAIN_DATA_FILE), 'w')
    self._num_episodes = self._num_steps = 0
    self._episode = None

  def begin_episode(self, observation: np.ndarray) -> None:
    """Starts an episode at its first observation o_0 (float32 [obs_dim])."""
    self._episode = {'observations': [np.asarray(observation, np.float32)], 'actions': [],
                     'rewards': [], 'terminations': [], 'truncations': []}

  def add_step(self, action: np.ndarray, reward: float, discount: float,
               next_observation: np.ndarray, is_last: bool) -> None:
    """Records one environment step, as `writing.RldsWriter.add_step` (same arguments).

    A step with `is_last` ends the episode: terminated when `discount` is 0, else truncated.
    """
    episode = self._episode
    episode['actions'].append(np.asarray(action, np.float32).reshape(self._action_dim))
    episode['rewards'].append(np.float32(reward))
    episode['observations'].append(np.asarray(next_observation, np.float32))
    terminated = bool(is_last) and float(discount) == 0.0
    episode['terminations'].append(terminated)
    episode['truncations'].append(bool(is_last) and not terminated)
    if is_last:
      self._write_episode()

  def _write_episode(self) -> None:
    episode, self._episode = self._episode, None
    group = self._file.create_group(f'episode_{self._num_episodes}')
    num_steps = len(episode['rewards'])
    group.attrs['id'] = self._num_episodes
    group.attrs['total_steps'] = num_steps
    dtypes = {'observations': np.float32, 'actions': np.float32, 'rewards': np.float32,
              'terminations': bool, 'truncations': bool}
    for key, dtype in dtypes.items():
      values = np.asarray(episode[key], dtype)
      if key == 'actions':
        values = values.reshape(num_steps, self._action_dim)
      group.create_dataset(key, data=values)
    group.create_group('infos')
    self._num_episodes += 1
    self._num_steps += num_steps

  def close(self, extra_metadata: Optional[Dict[str, Any]] = None) -> str:
    """Writes an unfinished episode (as truncated) and metadata.json.

    Args:
      extra_metadata: facts known only at the end, added to the `cql_sac` record.

    Returns:
      The dataset directory (`output_dir`), which `--dataset_name` accepts.
    """
    if self._episode is not None and self._episode['rewards']:
      self._episode['truncations'][-1] = not self._episode['terminations'][-1]
      self._write_episode()
    self._file.close()
    path = os.path.join(self._data_dir, minari_tasks.MAIN_DATA_FILE)
    metadata = {**self._metadata, 'total_episodes': self._num_episodes,
                'total_steps': self._num_steps,
                'dataset_size': round(os.path.getsize(path) / 1e6, 1),
                'cql_sac': {**self._metadata['cql_sac'], **(extra_metadata or {})}}
    with open(os.path.join(self._data_dir, minari_tasks.METADATA_FILE), 'w') as f:
      json.dump(metadata, f)
    return os.path.dirname(self._data_dir)
