"""The resolved configuration of a run, kept in `<root_dir>/config/` and checked on resume.

Each record is a pair of files, `run-000.json` and `run-000.gin`, numbered in order:
the JSON holds `train_eval`'s arguments as the run got them (after gin and the command-line
flags), the other gin bindings (of the agent, the networks, the learner), the package
version, the command line, and the dataset's identity (its path and a fingerprint: the
sizes of its files and the SHA-256 of its metadata files, cheap to compute for any size);
the .gin file is gin's text of the configuration.

A run resumed from a checkpoint must have the same configuration as the newest record,
but for the arguments in `RESUMABLE_CHANGES` (how long it trains, how often it evaluates,
saves and logs, where its servers are), which a resume may change. A changed configuration
is refused in one line listing the differing bindings unless the run is started with
`--allow_config_change`; then the new configuration is recorded beside the old ones
(`run-001.*`, ...). A run with no checkpoint to resume from records a changed configuration
the same way, without asking.
"""

import glob
import hashlib
import json
import os
import sys
from types import SimpleNamespace
from typing import Dict, List, Optional

from absl import logging
import gin
import tensorflow as tf
import tensorflow_datasets as tfds

import cql_sac
from cql_sac import minari_tasks
from cql_sac.config_checks import ConfigError
from cql_sac.files import write_file_atomically

CONFIG_DIR = 'config'
_METADATA_SUFFIXES = ('.json', '.txt', '.pbtxt')

# `train_eval` arguments that change how long a run goes, how it is watched and where its
# helpers run, not what it learns: a resume may change them. The dataset is compared by
# its fingerprint, not by its path or name.
RESUMABLE_CHANGES = frozenset({
    'root_dir', 'dataset_name', 'data_dir', 'num_gradient_updates', 'online_env_steps',
    'eval_interval', 'online_eval_interval', 'eval_episodes', 'summary_interval',
    'policy_save_interval', 'checkpoint_interval', 'max_checkpoints_to_keep',
    'learner_iterations_per_call', 'data_prefetch', 'reverb_port', 'replay_server_address',
    'use_gpu', 'tpu', 'debug_summaries', 'summarize_grads_and_vars', 'allow_config_change'})


class ConfigRecord:
  """The run's configuration, checked against the newest record in `<root_dir>/config/`.

  Build it while holding the run's lock (`cql_sac.run_lock.RunLock`), once the dataset was
  read (its files are fingerprinted) and the checkpoint to resume from is known; call
  `write` once the agent and learner are built (so that a run refused for another reason
  writes no record), before training.

  Args:
    config: `train_eval`'s arguments by name (with `allow_config_change`).
    resuming: Whether a checkpoint will be restored.
    defaults: `train_eval`'s argument defaults by name. An argument the newest record lacks
      (one added to `train_eval` after the run was recorded) counts as unchanged while it
      has its default, so that a run recorded by an older version resumes.

  Raises:
    ConfigError: On resume, if the configuration differs from the newest record outside
      `RESUMABLE_CHANGES` and `config.allow_config_change` is False: one line listing the
      differing bindings ('<binding>: <old> -> <new>'); nothing is written.
  """

  def __init__(self, config: SimpleNamespace, resuming: bool,
               defaults: Optional[Dict[str, object]] = None):
    self._config_dir = os.path.join(config.root_dir, CONFIG_DIR)
    self._record = _record(config)
    self._defaults = {name: _text(value) for name, value in (defaults or {}).items()}
    self._number = None  # Of the record to write; None: the newest one is the same.
    self._changes = []
    records = sorted(glob.glob(os.path.join(self._config_dir, 'run-*.json')))
    if records:
      with open(records[-1], encoding='utf-8') as f:
        self._changes = _differences(json.load(f), self._record, self._defaults)
      if self._changes and resuming and not config.allow_config_change:
        raise ConfigError(
            f'--root_dir={config.root_dir} holds a run with another configuration '
            f'({"; ".join(self._changes)}; recorded in {records[-1]}). Resume with the same '
            'configuration, pass --allow_config_change to continue with this one (it is '
            'recorded beside the old one), or pass another --root_dir.')
    if not records or self._changes:
      self._number = len(records)
    self._resuming = resuming

  def write(self) -> None:
    """Writes run-<n>.json and .gin unless the newest record is the same configuration."""
    if self._number is None:
      return
    path = _write(self._config_dir, self._number, self._record)
    if self._changes and self._resuming:
      logging.warning('Resuming with a changed configuration (%s), recorded in %s.',
                      '; '.join(self._changes), path)


def _write(config_dir: str, number: int, record: Dict[str, object]) -> str:
  """Writes run-<number>.json and .gin (each to a temporary name, then renamed)."""
  os.makedirs(config_dir, exist_ok=True)
  path = os.path.join(config_dir, f'run-{number:03d}')
  for suffix, text in (('.json', json.dumps(record, indent=1, sort_keys=True)),
                       ('.gin', gin.config_str())):
    write_file_atomically(path + suffix, text)
  return path + '.json'


def _record(config: SimpleNamespace) -> Dict[str, object]:
  """What `ConfigRecord` writes: see the module docstring."""
  return {
      'cql_sac_version': cql_sac.__version__,
      'command': sys.argv,
      'train_eval': {name: _text(value) for name, value in sorted(vars(config).items())},
      'gin_bindings': {name: value for name, value in _gin_bindings().items()
                       if not name.split('/')[-1].startswith('train_eval.')},
      'dataset': dataset_identity(config.dataset_name, config.data_dir),
  }


def _differences(previous: Dict[str, object], record: Dict[str, object],
                 defaults: Dict[str, str]) -> List[str]:
  """'<binding>: <old> -> <new>' for each compared binding that differs; a `train_eval`
  argument missing from `previous` is compared with its default (`defaults`, as text)."""
  changes = []
  for section, skip in (('train_eval', RESUMABLE_CHANGES), ('gin_bindings', frozenset())):
    old, new = previous.get(section, {}), record[section]
    if section == 'train_eval':
      old = {**{name: defaults[name] for name in new if name in defaults}, **old}
    for name in sorted(set(old) | set(new)):
      if name not in skip and old.get(name) != new.get(name):
        prefix = 'train_eval.' if section == 'train_eval' else ''
        changes.append(f'{prefix}{name}: {old.get(name, "unset")} -> {new.get(name, "unset")}')
  old_data, new_data = previous.get('dataset', {}), record['dataset']
  if old_data.get('fingerprint') != new_data['fingerprint']:
    changes.append(f'dataset: {old_data.get("path")} ({old_data.get("fingerprint")}) -> '
                   f'{new_data["path"]} ({new_data["fingerprint"]})')
  return changes


def _text(value) -> str:
  """A stable text of an argument: classes by import path, the rest by repr."""
  if isinstance(value, type):
    return f'{value.__module__}.{value.__qualname__}'
  return repr(value)


def _gin_bindings() -> Dict[str, str]:
  """{'[scope/]configurable.parameter': value text} of gin's current bindings."""
  bindings, name = {}, None
  for line in gin.config_str().splitlines():
    if not line.strip() or line.startswith('#'):
      continue
    if not line[0].isspace() and ' = ' in line:
      name, value = line.split(' = ', 1)
      bindings[name] = value.strip()
    elif name is not None:  # A value gin wrapped over several lines.
      bindings[name] += ' ' + line.strip()
  return bindings


def dataset_identity(dataset_name: str, data_dir: Optional[str]) -> Dict[str, object]:
  """The dataset's path and a fingerprint of its files, cheap for any dataset size.

  Args:
    dataset_name: A directory written by this project, a TFDS name, or a Minari dataset
      ('minari:<dataset_id>' or its directory).
    data_dir: TFDS data directory of a TFDS name.

  Returns:
    {'name', 'path' (the directory read; None if TFDS cannot say), 'files' ({relative path:
    size in bytes}), 'fingerprint' (16 hex digits of SHA-256 over those sizes and the
    contents of the metadata files: *.json, *.txt, *.pbtxt)}.
  """
  try:
    if minari_tasks.is_minari_name(dataset_name):
      path = minari_tasks.dataset_directory(dataset_name)
    elif tf.io.gfile.isdir(dataset_name):
      path = dataset_name
    else:
      path = tfds.builder(dataset_name, data_dir=data_dir).data_dir
  except Exception:  # pylint: disable=broad-except  # Identity by name only then.
    path = None
  files, digest = {}, hashlib.sha256(dataset_name.encode() if path is None else b'')
  if path is not None:
    path = os.path.abspath(path)
    for parent, _, names in sorted(os.walk(path)):
      for name in sorted(names):
        full = os.path.join(parent, name)
        relative = os.path.relpath(full, path)
        files[relative] = os.path.getsize(full)
        digest.update(f'{relative}:{files[relative]}\n'.encode())
        if name.endswith(_METADATA_SUFFIXES):
          with open(full, 'rb') as f:
            digest.update(hashlib.sha256(f.read()).digest())
  return {'name': dataset_name, 'path': path, 'files': files,
          'fingerprint': digest.hexdigest()[:16]}
