"""Converts a D4RL HDF5 file (the files D4RL downloads) into this project's RLDS form.

D4RL files hold flat arrays over all transitions: observations [N, obs_dim], actions [N, A],
rewards [N] or [N, 1], terminals [N], timeouts [N], and in v2 also next_observations [N, obs_dim].
An episode ends at a terminal or a timeout; the file's last transitions form a final episode
cut like a timeout. Conversion:

* terminal ending: the transition into the terminal state gets discount 0; its next observation is
  next_observations[i] when stored, else zeros (never bootstrapped from, as in TFDS D4RL).
* timeout ending with next_observations: the last transition keeps discount 1 and its recorded
  next observation (TFDS 4.9's D4RL builder uses the *file's* last next_observation here).
* timeout ending without next_observations: the next observation is unknown, so the last
  transition is dropped and its observation becomes the episode's final step, as in TFDS D4RL;
  an episode left with a single observation has no transition and is skipped (counted in the
  metadata as `skipped_single_observation_episodes` and logged).
"""

import os
from typing import Dict

import h5py
import numpy as np
from absl import logging

import cql_sac
from cql_sac import tasks
from cql_sac.datasets import writing

_REQUIRED_KEYS = ('observations', 'actions', 'rewards', 'terminals', 'timeouts')


def read_d4rl_hdf5(path: str) -> Dict[str, np.ndarray]:
  """Reads the transition arrays of a D4RL HDF5 file with h5py.

  Args:
    path: the .hdf5 file.

  Returns:
    Dict with observations, actions, rewards (flattened to [N]), terminals and timeouts (bool),
    and next_observations when the file has them.

  Raises:
    ValueError: if the file is missing, cannot be read (truncated or damaged: naming the
      array being read), lacks a required key, or the arrays' lengths differ.
  """
  if not os.path.exists(path):
    raise ValueError(f'HDF5 file {path!r} does not exist. Fix: check --from_hdf5.')
  reading = 'the file'
  try:
    with h5py.File(path, 'r') as f:
      missing = [key for key in _REQUIRED_KEYS if key not in f]
      if missing:
        raise ValueError(f'HDF5 file {path!r} lacks key(s) {missing} (has {sorted(f)}). Fix: '
                         f'pass a D4RL dataset file with {list(_REQUIRED_KEYS)}.')
      arrays = {}
      for key in _REQUIRED_KEYS + ('next_observations',):
        if key in f:
          reading = f'array {key!r}'
          arrays[key] = f[key][()]
  except OSError as e:  # h5py: a truncated file fails to open, a damaged block to read.
    raise ValueError(
        f'HDF5 file {path!r} is damaged or incomplete (reading {reading}: '
        f'{str(e).splitlines()[0]}). '
        'Fix: download it again (D4RL fetches it into ~/.d4rl/datasets; delete the file '
        'there first) and rerun the conversion.') from e
  arrays['rewards'] = arrays['rewards'].reshape(-1)
  arrays['terminals'] = arrays['terminals'].astype(bool)
  arrays['timeouts'] = arrays['timeouts'].astype(bool)
  lengths = {key: len(value) for key, value in arrays.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f'HDF5 file {path!r}: arrays have different lengths {lengths}. Fix: pass '
                     'an unmodified D4RL file.')
  return arrays


def convert_hdf5(hdf5_path: str, env_name: str, output_dir: str) -> str:
  """Writes the transitions of a D4RL HDF5 file as an RLDS dataset (see module docstring).

  Args:
    hdf5_path: D4RL .hdf5 file (float32 or float64 arrays; written as float32).
    env_name: the D4RL name the file belongs to, e.g. 'hopper-medium-v2'; its observation and
      action sizes must match the file.
    output_dir: new directory for the dataset.

  Returns:
    `output_dir`, which `load_episodes` accepts as dataset_name.

  Raises:
    ValueError: for an unknown env_name, a malformed file, sizes that do not match env_name, or
      an output_dir that already holds a dataset.
  """
  info = tasks.get_dataset_info(env_name)
  data = read_d4rl_hdf5(hdf5_path)
  for key, dim in (('observations', info.observation_dim), ('actions', info.action_dim)):
    if data[key].shape[1:] != (dim,):
      raise ValueError(f'HDF5 file {hdf5_path!r}: {key} have shape {data[key].shape[1:]}, '
                       f'{env_name} needs ({dim},). Fix: pass --env_name of the file\'s task.')
  has_next = 'next_observations' in data
  ends = np.flatnonzero(data['terminals'] | data['timeouts'])
  if not len(ends) or ends[-1] != len(data['rewards']) - 1:
    ends = np.append(ends, len(data['rewards']) - 1)
  metadata = {
      'created_by': 'cql_sac_make_dataset', 'cql_sac_version': cql_sac.__version__,
      'source': 'hdf5', 'hdf5_path': os.path.abspath(hdf5_path), 'env_name': env_name,
      'has_next_observations': has_next, 'num_hdf5_transitions': int(len(data['rewards'])),
  }
  skipped = 0
  writer = writing.RldsWriter(output_dir, info.observation_dim, info.action_dim, metadata)
  start = 0
  for end in ends:
    terminal = bool(data['terminals'][end])
    last = end if (terminal or has_next) else end - 1
    if last < start:
      skipped += 1
    else:
      _write_episode(writer, data, start, last, terminal)
    start = end + 1
  if skipped:
    logging.warning('%s: skipped %d episodes with a single observation and no transition.',
                    hdf5_path, skipped)
  return writer.close({'skipped_single_observation_episodes': skipped})


def _write_episode(writer: writing.RldsWriter, data, start: int, last: int,
                   terminal: bool) -> None:
  """Writes transitions start..last; the episode ends at the next observation of `last`."""
  observations = data['observations']
  writer.begin_episode(observations[start])
  for i in range(start, last + 1):
    if 'next_observations' in data:
      next_observation = data['next_observations'][i]
    elif i < last or not terminal:
      next_observation = observations[i + 1]
    else:
      next_observation = np.zeros_like(observations[i])
    is_last = i == last
    discount = 0.0 if (is_last and terminal) else 1.0
    writer.add_step(data['actions'][i], data['rewards'][i], discount, next_observation, is_last)
