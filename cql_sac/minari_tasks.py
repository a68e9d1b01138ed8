"""Minari datasets as tasks: where a dataset lives, the environment it evaluates in, its scores.

Minari (Farama's successor of D4RL) keeps dataset `<namespace>/<name>-v<k>` in
`<root>/<namespace>/<name>-v<k>/data/` as `metadata.json` and `main_data.hdf5`, with root
`$MINARI_DATASETS_PATH` or `~/.minari/datasets` (minari 0.5.3,
`minari/storage/datasets_root_dir.py` and `minari/dataset/minari_storage.py`). metadata.json
holds `env_spec` and, when the evaluation environment differs (D4RL's AntMaze: fixed goal),
`eval_env_spec` (gymnasium `EnvSpec.to_json()` strings), the observation and action spaces
(gymnasium space JSON), `total_episodes`, `total_steps` and, when the author computed them,
`ref_min_score` / `ref_max_score`.

A Minari task name is `minari:<dataset_id>` (e.g. 'minari:mujoco/hopper/medium-v0'), resolved
under the root, or the path of a dataset directory (the one holding `data/`). The task's
environment is the metadata's `eval_env_spec`, else its `env_spec`. Dict observations of goal
environments (PointMaze, AntMaze: `observation`, `achieved_goal`, `desired_goal`) become one
vector [achieved_goal, observation, desired_goal]: position first, as the D4RL AntMaze path of
`cql_sac.envs` lays out [x, y, observation], then the goal, which Minari's mazes vary.
"""

import dataclasses
import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

MINARI_PREFIX = 'minari:'
METADATA_FILE = 'metadata.json'
MAIN_DATA_FILE = 'main_data.hdf5'
GOAL_OBSERVATION_KEYS = ('achieved_goal', 'observation', 'desired_goal')


@dataclasses.dataclass(frozen=True)
class MinariTask:
  """A Minari dataset's facts from its metadata.json.

  Attributes:
    name: the task name as given ('minari:<id>' or a directory).
    directory: the dataset directory (holding data/metadata.json and data/main_data.hdf5).
    dataset_id: the metadata's `dataset_id`, e.g. 'mujoco/hopper/medium-v0'.
    env_spec_json: the gymnasium EnvSpec JSON of the evaluation environment (`eval_env_spec`,
      else `env_spec`).
    env_id: its gymnasium id, e.g. 'Hopper-v5'.
    max_episode_steps: its time limit in steps.
    observation_keys: for a Dict observation, `GOAL_OBSERVATION_KEYS`; () for a Box.
    observation_dim: length of the flattened observation vector.
    action_dim: length of the action vector.
    ref_min_score: the metadata's reference return for normalized score 0, or None.
    ref_max_score: the metadata's reference return for normalized score 100, or None.
  """
  name: str
  directory: str
  dataset_id: str
  env_spec_json: str
  env_id: str
  max_episode_steps: int
  observation_keys: Tuple[str, ...]
  observation_dim: int
  action_dim: int
  ref_min_score: Optional[float]
  ref_max_score: Optional[float]

  @property
  def data_file(self) -> str:
    """Path of the dataset's main_data.hdf5."""
    return os.path.join(self.directory, 'data', MAIN_DATA_FILE)


def datasets_root() -> str:
  """Minari's datasets root: `$MINARI_DATASETS_PATH`, else `~/.minari/datasets`."""
  return os.environ.get('MINARI_DATASETS_PATH') or os.path.join(
      os.path.expanduser('~'), '.minari', 'datasets')


def _metadata_path(directory: str) -> str:
  return os.path.join(directory, 'data', METADATA_FILE)


def is_minari_name(name: Optional[str]) -> bool:
  """Whether `name` is 'minari:<dataset_id>' or a directory holding data/metadata.json."""
  return bool(name) and (name.startswith(MINARI_PREFIX)
                         or os.path.isfile(_metadata_path(name)))


def dataset_directory(name: str) -> str:
  """The directory of Minari task `name`.

  Raises:
    ValueError: if the dataset is not there; the message names the place and the fix.
  """
  if name.startswith(MINARI_PREFIX):
    dataset_id = name[len(MINARI_PREFIX):]
    directory = os.path.join(datasets_root(), dataset_id)
    if not os.path.isfile(_metadata_path(directory)):
      raise ValueError(
          f'Minari dataset {dataset_id!r} is not in {datasets_root()} (no '
          f'{_metadata_path(directory)}). Fix: run `minari download {dataset_id}`, set '
          'MINARI_DATASETS_PATH to the root holding it, or pass the dataset directory.')
    return directory
  return name


def _space_dims(space_json: str, field: str, metadata_path: str) -> Tuple[Tuple[str, ...], int]:
  """(Dict keys or (), flattened length) of a gymnasium space serialized by minari."""
  space = json.loads(space_json)
  if space.get('type') == 'Box':
    return (), int(np.prod(space['shape']))
  subspaces = space.get('subspaces', {})
  if (space.get('type') == 'Dict' and sorted(subspaces) == sorted(GOAL_OBSERVATION_KEYS)
      and all(sub.get('type') == 'Box' for sub in subspaces.values())):
    return GOAL_OBSERVATION_KEYS, sum(int(np.prod(sub['shape'])) for sub in subspaces.values())
  raise ValueError(
      f'{metadata_path}: {field} is a {space.get("type")} space with keys {sorted(subspaces)}; '
      f'cql_sac trains on Box spaces and on Dict({list(GOAL_OBSERVATION_KEYS)}) of Boxes. Fix: '
      'use a Minari dataset with such spaces (MuJoCo locomotion, AntMaze, PointMaze, Adroit).')


def read_task(name: str) -> MinariTask:
  """Reads Minari task `name`'s metadata.json.

  Args:
    name: 'minari:<dataset_id>' or a dataset directory.

  Returns:
    The `MinariTask`.

  Raises:
    ValueError: if the dataset is missing, its metadata.json is not JSON or lacks a field, or
      a space is neither a Box nor a goal Dict of Boxes.
  """
  directory = dataset_directory(name)
  path = _metadata_path(directory)
  try:
    with open(path) as f:
      metadata: Dict[str, Any] = json.load(f)
    spec_json = metadata.get('eval_env_spec') or metadata['env_spec']
    spec = json.loads(spec_json)
    observation_keys, observation_dim = _space_dims(
        metadata['observation_space'], 'observation_space', path)
    action_keys, action_dim = _space_dims(metadata['action_space'], 'action_space', path)
    if action_keys:
      raise ValueError(f'{path}: action_space is a Dict; cql_sac needs a Box action space.')
    return MinariTask(
        name=name, directory=directory, dataset_id=metadata.get('dataset_id', name),
        env_spec_json=spec_json, env_id=spec['id'],
        max_episode_steps=int(spec['max_episode_steps']), observation_keys=observation_keys,
        observation_dim=observation_dim, action_dim=action_dim,
        ref_min_score=metadata.get('ref_min_score'), ref_max_score=metadata.get('ref_max_score'))
  except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
    raise ValueError(f'Cannot read Minari metadata {path}: {type(error).__name__}: {error}. Fix: '
                     f'download the dataset again (minari download --force <id>).') from error


def flatten_goal_observation(observation: Mapping[str, np.ndarray]) -> np.ndarray:
  """[achieved_goal, observation, desired_goal] concatenated on the last axis.

  Args:
    observation: dict with the `GOAL_OBSERVATION_KEYS`, arrays [..., d_key] (one step or a
      stack of steps).

  Returns:
    Array [..., d_achieved + d_observation + d_desired] of the inputs' common dtype.
  """
  return np.concatenate([np.asarray(observation[key]) for key in GOAL_OBSERVATION_KEYS],
                        axis=-1)
