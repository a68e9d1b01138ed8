"""Reads a Minari dataset (`cql_sac.minari_tasks`) with h5py into this project's RLDS steps.

`main_data.hdf5` holds one group `episode_<i>` per episode (i = 0, 1, ...; HDF5 lists them in
name order, so they are sorted by i here) with `observations` [T + 1, ...] (a group of one
array per key for a Dict space), `actions` [T, A], `rewards` [T], `terminations` [T] and
`truncations` [T] (bool), and `infos` (not read). This is the layout minari 0.5.3's
`HDF5Storage` writes (`minari/dataset/_storages/hdf5_storage.py`), checked against files it
wrote (tests/data/minari). Episode i becomes T + 1 RLDS steps:

* step t < T: o_t, a_t, r_t, discount 1, except discount 0 at t = T - 1 when the episode
  terminated (no bootstrap from a terminal state, as TFDS D4RL writes it);
* step T: the final observation o_T, is_last, is_terminal = terminations[T - 1] (a step that
  is both terminated and truncated counts as terminated); its action (zeros), reward (0) and
  discount (1) are not used. A truncated episode therefore bootstraps from o_T.

Goal Dict observations are flattened by `minari_tasks.flatten_goal_observation`; observations,
actions, rewards and discounts are float32, the dtype of `cql_sac.envs`' specs.
"""

import os
from typing import Optional

import h5py
import numpy as np

from cql_sac import minari_tasks
from cql_sac.datasets import steps as steps_lib


def evaluation_env_name(env_name: Optional[str], dataset_name: str) -> Optional[str]:
  """The environment to evaluate in: a Minari dataset's own, else `env_name`.

  Args:
    env_name: --env_name as given (None when not given).
    dataset_name: --dataset_name.

  Returns:
    For a Minari dataset, `dataset_name` (the Minari task name, whose environment
    `cql_sac.envs.load_env` builds from the metadata); otherwise `env_name`.

  Raises:
    ValueError: for a Minari dataset and an `env_name` other than the dataset name or its
      environment's gymnasium id; or a missing or unreadable Minari dataset.
  """
  if not minari_tasks.is_minari_name(dataset_name):
    return env_name
  task = minari_tasks.read_task(dataset_name)
  if env_name not in (None, dataset_name, task.env_id):
    raise ValueError(
        f'--env_name={env_name} differs from {task.env_id}, the environment Minari dataset '
        f'{dataset_name} was recorded for (its metadata.json). Fix: drop --env_name; the '
        'evaluation environment comes from the dataset.')
  return dataset_name


def _damaged(path: str, dataset_id: str, problem: str) -> ValueError:
  return ValueError(f'Minari dataset file {path} is damaged or truncated: {problem}. Fix: '
                    f'download it again (minari download --force {dataset_id}).')


def _episode_index(name: str) -> int:
  prefix = 'episode_'
  return int(name[len(prefix):]) if name.startswith(prefix) and name[len(prefix):].isdigit() else -1


def _read_episode(group: h5py.Group, task: minari_tasks.MinariTask, index: int) -> dict:
  """The RLDS step columns of one episode group (module docstring)."""
  observations = group['observations']
  if task.observation_keys:
    observation = minari_tasks.flatten_goal_observation(
        {key: observations[key][()] for key in task.observation_keys})
  else:
    observation = observations[()]
  actions = group['actions'][()]
  rewards = group['rewards'][()].reshape(-1)
  terminations = group['terminations'][()].astype(bool).reshape(-1)
  truncations = group['truncations'][()].astype(bool).reshape(-1)
  num_transitions = len(rewards)
  lengths = {'observations': len(observation) - 1, 'actions': len(actions),
             'terminations': len(terminations), 'truncations': len(truncations)}
  if set(lengths.values()) != {num_transitions}:
    raise ValueError(
        f'Minari dataset file {task.data_file}: episode_{index} has {num_transitions} rewards '
        f'but lengths {lengths} (observations one more than the rest). Fix: write each episode '
        'with T + 1 observations and T actions, rewards, terminations and truncations.')
  if terminations[:-1].any() or truncations[:-1].any():
    raise ValueError(
        f'Minari dataset file {task.data_file}: episode_{index} is terminated or truncated '
        'before its last step. Fix: split it into episodes that end there.')
  terminal = bool(num_transitions and terminations[-1])
  discount = np.ones(num_transitions + 1, np.float32)
  if terminal:
    discount[num_transitions - 1] = 0.0
  flags = np.zeros(num_transitions + 1, bool)
  return {
      'observation': observation.astype(np.float32),
      'action': np.concatenate([actions.reshape(num_transitions, -1),
                                np.zeros((1, task.action_dim))]).astype(np.float32),
      'reward': np.append(rewards, 0.0).astype(np.float32),
      'discount': discount,
      'is_first': np.concatenate([[True], flags[1:]]),
      'is_last': np.concatenate([flags[:-1], [True]]),
      'is_terminal': np.concatenate([flags[:-1], [terminal]]),
  }


def read_minari_steps(dataset_name: str, take: Optional[int] = None) -> steps_lib.EpisodeSteps:
  """Reads every episode of a Minari dataset into `EpisodeSteps` (module docstring).

  Args:
    dataset_name: a Minari task name: 'minari:<dataset_id>' or a dataset directory.
    take: keep only the first `take` episodes; None keeps all.

  Returns:
    `EpisodeSteps` with N = sum over episodes of (T + 1) steps: observation float32
    [N, obs_dim], action float32 [N, A], reward and discount float32 [N], RLDS flags.

  Raises:
    ValueError: for a missing dataset, unreadable metadata, a data file that is missing,
      damaged or truncated (naming the file), an episode whose arrays' lengths disagree or that
      ends before its last step, or `take` < 1.
  """
  if take is not None and take <= 0:
    raise ValueError(f'take counts episodes and must be positive, got {take}.')
  task = minari_tasks.read_task(dataset_name)
  path = task.data_file
  if not os.path.isfile(path):
    raise ValueError(f'Minari dataset {dataset_name} has no data file {path}. Fix: download '
                     f'it again (minari download --force {task.dataset_id}).')
  episodes = []
  try:
    with h5py.File(path, 'r') as f:
      indices = sorted(i for i in map(_episode_index, f.keys()) if i >= 0)
      for index in indices[:take]:
        episodes.append(_read_episode(f[f'episode_{index}'], task, index))
  except (OSError, KeyError, RuntimeError) as error:
    raise _damaged(path, task.dataset_id, str(error).splitlines()[0]) from error
  columns = {field: np.concatenate([episode[field] for episode in episodes])
             if episodes else np.zeros((0,)) for field in steps_lib.RLDS_STEP_FIELDS}
  episode_index = np.concatenate(
      [np.full(len(episode['reward']), i, np.int64) for i, episode in enumerate(episodes)]
      or [np.zeros(0, np.int64)])
  return steps_lib.EpisodeSteps(episode_index=episode_index, num_episodes=len(episodes),
                                **columns)
