"""The D4RL task registry: dataset names, TFDS names, simulators, time limits, score constants.

Every D4RL locomotion task (hopper, halfcheetah, walker2d, ant) and AntMaze task is listed with

* its TFDS/RLDS dataset name (the `d4rl_mujoco_*` and `d4rl_antmaze` builders of
  tensorflow-datasets 4.9, `tensorflow_datasets/d4rl/`),
* the gymnasium environment that simulates it with the same observation and action spaces
  (`cql_sac.envs.load_env` builds it; the differences from the original mujoco-py environments are
  documented there),
* D4RL's episode time limit (`d4rl/gym_mujoco/__init__.py` and `d4rl/locomotion/__init__.py`:
  1000 steps, AntMaze umaze 700),
* D4RL's reference returns for the normalized score (`d4rl/infos.py` at commit 0ace16de;
  see ../shared/reference/d4rl_reference.md section 1).

Names follow D4RL: `<task>-<dataset>-v<version>`. The locomotion datasets are random, medium,
medium-replay, medium-expert and expert for v0, v1 and v2, plus full-replay for v1 and v2
(D4RL has no full-replay-v0). D4RL's medium-replay-v0 is the TFDS config `v0-mixed`.
"""

import dataclasses
import difflib
from typing import Dict, List, Union

import numpy as np

from cql_sac import minari_tasks


@dataclasses.dataclass(frozen=True)
class D4rlDataset:
  """One D4RL task: its dataset and the simulator to evaluate on.

  Attributes:
    env_name: D4RL name, e.g. 'hopper-medium-v2', 'antmaze-umaze-diverse-v0'.
    tfds_name: TFDS dataset name for `tfds.load(name, split='train')`, e.g.
      'd4rl_mujoco_hopper/v2-medium', 'd4rl_antmaze/umaze-diverse-v0'.
    gym_env_id: gymnasium (or gymnasium-robotics) environment id that `cql_sac.envs.load_env`
      makes for this task, e.g. 'Hopper-v4', 'AntMaze_UMaze-v4'.
    max_episode_steps: D4RL's episode time limit in environment steps.
    ref_min_score: D4RL's reference return of a random policy (normalized score 0).
    ref_max_score: D4RL's reference return of an expert (normalized score 100).
    is_antmaze: True for AntMaze tasks (sparse 0/1 goal reward, 29-dim observation).
    observation_dim: length of the float32 observation vector (hopper 11, halfcheetah 17,
      walker2d 17, ant 111, antmaze 29; TFDS builders' `obs_len`).
    action_dim: length of the float32 action vector, each component in [-1, 1].
    maze: for AntMaze, the D4RL maze size ('umaze', 'medium' or 'large'); '' otherwise.
  """
  env_name: str
  tfds_name: str
  gym_env_id: str
  max_episode_steps: int
  ref_min_score: float
  ref_max_score: float
  is_antmaze: bool
  observation_dim: int
  action_dim: int
  maze: str = ''


# (gymnasium id, observation dim, action dim, REF_MIN_SCORE, REF_MAX_SCORE) per locomotion task.
# The v4 environments keep the mujoco-py era dynamics and rewards; see cql_sac/envs.py.
_LOCOMOTION = {
    'hopper': ('Hopper-v4', 11, 3, -20.272305, 3234.3),
    'halfcheetah': ('HalfCheetah-v4', 17, 6, -280.178953, 12135.0),
    'walker2d': ('Walker2d-v4', 17, 6, 1.629008, 4592.3),
    'ant': ('Ant-v4', 111, 8, -325.6, 3879.7),
}
_LOCOMOTION_DATASETS = {
    # D4RL dataset name -> {version: TFDS config name}
    'random': {'v0': 'v0-random', 'v1': 'v1-random', 'v2': 'v2-random'},
    'medium': {'v0': 'v0-medium', 'v1': 'v1-medium', 'v2': 'v2-medium'},
    'medium-replay': {'v0': 'v0-mixed', 'v1': 'v1-medium-replay', 'v2': 'v2-medium-replay'},
    'medium-expert': {'v0': 'v0-medium-expert', 'v1': 'v1-medium-expert',
                      'v2': 'v2-medium-expert'},
    'expert': {'v0': 'v0-expert', 'v1': 'v1-expert', 'v2': 'v2-expert'},
    'full-replay': {'v1': 'v1-full-replay', 'v2': 'v2-full-replay'},
}
# AntMaze dataset -> (maze, gymnasium-robotics id, time limit).
_ANTMAZE = {
    'umaze': ('umaze', 'AntMaze_UMaze-v4', 700),
    'umaze-diverse': ('umaze', 'AntMaze_UMaze-v4', 700),
    'medium-play': ('medium', 'AntMaze_Medium-v4', 1000),
    'medium-diverse': ('medium', 'AntMaze_Medium-v4', 1000),
    'large-play': ('large', 'AntMaze_Large-v4', 1000),
    'large-diverse': ('large', 'AntMaze_Large-v4', 1000),
}
_LOCOMOTION_TIME_LIMIT = 1000


def _build_registry() -> Dict[str, D4rlDataset]:
  """Returns every known task keyed by its D4RL name."""
  registry = {}
  for task, (gym_id, obs_dim, act_dim, ref_min, ref_max) in _LOCOMOTION.items():
    for dataset, configs in _LOCOMOTION_DATASETS.items():
      for version, config in configs.items():
        name = f'{task}-{dataset}-{version}'
        registry[name] = D4rlDataset(
            env_name=name, tfds_name=f'd4rl_mujoco_{task}/{config}', gym_env_id=gym_id,
            max_episode_steps=_LOCOMOTION_TIME_LIMIT, ref_min_score=ref_min,
            ref_max_score=ref_max, is_antmaze=False, observation_dim=obs_dim,
            action_dim=act_dim)
  for dataset, (maze, gym_id, time_limit) in _ANTMAZE.items():
    for version in ('v0', 'v2'):
      name = f'antmaze-{dataset}-{version}'
      registry[name] = D4rlDataset(
          env_name=name, tfds_name=f'd4rl_antmaze/{dataset}-{version}', gym_env_id=gym_id,
          max_episode_steps=time_limit, ref_min_score=0.0, ref_max_score=1.0,
          is_antmaze=True, observation_dim=29, action_dim=8, maze=maze)
  return registry


_REGISTRY = _build_registry()


def all_env_names() -> List[str]:
  """Returns every D4RL name this registry knows, sorted.

  Returns:
    A list of names such as 'antmaze-large-diverse-v2' and 'walker2d-random-v0'.
  """
  return sorted(_REGISTRY)


def unknown_name_error(kind: str, name: str, known: List[str]) -> ValueError:
  """Builds the ValueError for an unknown name, listing the closest known names.

  Args:
    kind: what was looked up, e.g. 'D4RL environment'.
    name: the name that was not found.
    known: all valid names.

  Returns:
    A ValueError whose message names the closest matches (difflib) and how to list all names.
  """
  close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
  hint = f' Closest known names: {", ".join(close)}.' if close else ''
  return ValueError(
      f'Unknown {kind} {name!r}.{hint} Use one of the names returned by '
      'cql_sac.tasks.all_env_names().')


def get_dataset_info(env_name: str) -> D4rlDataset:
  """Looks up a D4RL task by name, or reads a Minari task's metadata.

  Args:
    env_name: D4RL name such as 'hopper-medium-v2' (case-sensitive, as D4RL spells it), or a
      Minari task name ('minari:<dataset_id>' or a dataset directory, `cql_sac.minari_tasks`).

  Returns:
    The task's `D4rlDataset` record. For a Minari task: tfds_name '', gym_env_id and
    max_episode_steps of its evaluation environment, the metadata's reference scores (NaN when
    absent, so that normalized scores are NaN), is_antmaze False (its observations are not
    D4RL's AntMaze layout).

  Raises:
    ValueError: if the name is unknown (the message lists the closest known names) or a Minari
      dataset is missing or unreadable.
  """
  if minari_tasks.is_minari_name(env_name):
    task = minari_tasks.read_task(env_name)
    return D4rlDataset(
        env_name=env_name, tfds_name='', gym_env_id=task.env_id,
        max_episode_steps=task.max_episode_steps,
        ref_min_score=_or_nan(task.ref_min_score), ref_max_score=_or_nan(task.ref_max_score),
        is_antmaze=False, observation_dim=task.observation_dim, action_dim=task.action_dim)
  try:
    return _REGISTRY[env_name]
  except KeyError:
    raise unknown_name_error('D4RL environment', env_name, all_env_names()) from None


def _or_nan(value) -> float:
  return float('nan') if value is None else float(value)


def d4rl_normalized_score(
    env_name: str, returns: Union[float, np.ndarray]) -> Union[float, np.ndarray]:
  """D4RL normalized score: 100 * (R - REF_MIN) / (REF_MAX - REF_MIN).

  0 is the return of a random policy and 100 that of D4RL's expert; for AntMaze (REF_MIN 0,
  REF_MAX 1) it is 100 times the success rate. Source: `d4rl.infos` REF_MIN_SCORE/REF_MAX_SCORE;
  for a Minari task its metadata's ref_min_score/ref_max_score (NaN scores without them).

  Args:
    env_name: D4RL name, e.g. 'halfcheetah-medium-v2', or a Minari task name.
    returns: undiscounted episode return(s) in the environment's reward units, a float or an
      array of any shape.

  Returns:
    The normalized score(s): a float for a scalar input, else a float64 array of the same shape.

  Raises:
    ValueError: if `env_name` is unknown or its Minari dataset unreadable.
  """
  info = get_dataset_info(env_name)
  scores = 100.0 * (np.asarray(returns, dtype=np.float64) - info.ref_min_score) / (
      info.ref_max_score - info.ref_min_score)
  return float(scores) if scores.ndim == 0 else scores
