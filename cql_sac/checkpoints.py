"""Checkpoint files that are never lost: damaged ones set aside, writes that fail in one line.

TensorFlow's `CheckpointManager` (which TF-Agents' `Checkpointer` wraps) already writes a
checkpoint in reader-safe order: the data and index files first, then the `checkpoint` state
file, rewritten atomically (temporary name, then rename); a run killed during a save leaves
the state file naming the previous checkpoint (tests/test_reliability.py kills a run inside
the save). What can still happen is a file damaged afterwards (a disk or copy error, a
truncated transfer): `set_aside_damaged_checkpoints` reads the listed checkpoints newest
first and moves the unreadable newest ones to `<checkpoint_dir>/damaged/`, so that training
resumes from the newest readable one.

Policy variable checkpoints (policies/*checkpoints/policy_checkpoint_<step>) are written
under a temporary name that the readers' glob does not match, then renamed
(`save_policy_checkpoint`). A write that fails (a full disk, a quota, a read-only mount)
raises `CheckpointWriteError` naming the directory; what was written before is kept.
"""

import contextlib
import errno
import os
import shutil
import time
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional

from google.protobuf import text_format
import tensorflow as tf

from cql_sac.files import write_file_atomically

DAMAGED_DIR = 'damaged'
_TEMPORARY_PREFIX = '.partial-'


class CheckpointWriteError(RuntimeError):
  """A checkpoint or policy could not be written; the message names the directory."""


class CheckpointsUnreadable(ValueError):
  """No checkpoint listed in a checkpoint directory can be read; nothing was changed."""


class SetAside(NamedTuple):
  """What `set_aside_damaged_checkpoints` did.

  Attributes:
    resume_from: Prefix of the newest readable checkpoint (e.g. '.../ckpt-2000'), or None
      when the directory lists no checkpoint.
    moved: {prefix: why it cannot be read} of each checkpoint moved to `damaged_dir`.
    damaged_dir: Where the damaged checkpoints' files now are.
  """
  resume_from: Optional[str]
  moved: Dict[str, str]
  damaged_dir: str


def read_error(prefix: str) -> Optional[str]:
  """Why the checkpoint at `prefix` cannot be read (every tensor is read), or None.

  Args:
    prefix: A checkpoint prefix, e.g. '<dir>/ckpt-300'.

  Returns:
    '<exception type>: <first line of its message>', or None if all of it reads.
  """
  try:
    reader = tf.train.load_checkpoint(prefix)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  except Exception as e:  # pylint: disable=broad-except  # TF raises several kinds here.
    return f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
  return None


def set_aside_damaged_checkpoints(checkpoint_dir: str) -> SetAside:
  """Moves the newest unreadable checkpoints of `checkpoint_dir` to its damaged/ folder.

  Reads the checkpoints the `checkpoint` state file lists, newest first, until one reads;
  the files of each unreadable one are moved (never deleted) to `<checkpoint_dir>/damaged/`
  (`damaged/<unix time>/` if a file of that name is already there), and the state file is
  rewritten to list the rest, so that TF-Agents' `Checkpointer` restores the newest
  readable one. Older checkpoints are not read.

  Args:
    checkpoint_dir: A `tf.train.CheckpointManager` directory (train/checkpoints).

  Returns:
    `SetAside`.

  Raises:
    CheckpointsUnreadable: If the state file cannot be read, or no listed checkpoint can;
      the message names the files; nothing was moved.
  """
  damaged_dir = os.path.join(checkpoint_dir, DAMAGED_DIR)
  try:
    state = tf.train.get_checkpoint_state(checkpoint_dir)
  except Exception as e:  # pylint: disable=broad-except  # A text-format parse error.
    raise CheckpointsUnreadable(
        f'The checkpoint state file {os.path.join(checkpoint_dir, "checkpoint")} cannot be '
        f'read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}).') from e
  if state is None or not state.model_checkpoint_path:
    return SetAside(None, {}, damaged_dir)
  listed = list(state.all_model_checkpoint_paths)
  if not listed or listed[-1] != state.model_checkpoint_path:
    listed.append(state.model_checkpoint_path)
  moved = {}
  for prefix in reversed(listed):
    error = read_error(prefix)
    if error is None:
      break
    moved[prefix] = error
  else:
    files = _files(listed)
    raise CheckpointsUnreadable(
        f'No checkpoint under {checkpoint_dir} can be read (the newest, {listed[-1]}: '
        f'{moved[listed[-1]]}). Its files: {", ".join(files) or "none"}.')
  if moved:
    kept = listed[:len(listed) - len(moved)]
    _move_files(moved, damaged_dir)
    _write_state(checkpoint_dir, state, kept)
  return SetAside(listed[len(listed) - len(moved) - 1], moved, damaged_dir)


def _move_files(prefixes, damaged_dir: str) -> None:
  """Moves every file of each checkpoint prefix into `damaged_dir` (renames, same disk)."""
  files = _files(prefixes)
  if any(os.path.exists(os.path.join(damaged_dir, os.path.basename(f))) for f in files):
    damaged_dir = os.path.join(damaged_dir, str(int(time.time())))
  os.makedirs(damaged_dir, exist_ok=True)
  for f in files:
    os.replace(f, os.path.join(damaged_dir, os.path.basename(f)))


def _write_state(checkpoint_dir: str, state, kept: List[str]) -> None:
  """Rewrites the `checkpoint` state file to list only `kept` (oldest first), atomically.

  The format is TensorFlow's `CheckpointState` text proto with paths relative to the
  directory, as `tf.train.CheckpointManager` writes it.
  """
  timestamps = list(state.all_model_checkpoint_timestamps)
  state.model_checkpoint_path = os.path.basename(kept[-1])
  del state.all_model_checkpoint_paths[:]
  state.all_model_checkpoint_paths.extend(os.path.basename(p) for p in kept)
  del state.all_model_checkpoint_timestamps[:]
  if len(timestamps) >= len(kept):
    state.all_model_checkpoint_timestamps.extend(timestamps[:len(kept)])
  path = os.path.join(checkpoint_dir, 'checkpoint')
  write_file_atomically(path, text_format.MessageToString(state))


def _files(prefixes) -> List[str]:
  """The files of the given checkpoint prefixes ('<prefix>.index', '<prefix>.data-*'), sorted."""
  return sorted(f for prefix in prefixes for f in tf.io.gfile.glob(prefix + '.*'))


def save_policy_checkpoint(save_checkpoint: Callable[[str], None], export_dir: str) -> None:
  """Writes a policy checkpoint into `export_dir` as a reader sees it: whole or not at all.

  `save_checkpoint(path)` (TF-Agents' `PolicySaver.save_checkpoint`) writes into
  '<parent>/.partial-<name>', which `cql_sac_eval`'s glob of 'policy_checkpoint_*' does not
  match; the folder is renamed to `export_dir` once complete. A partial folder left by an
  earlier failed or killed write of the same name is replaced.

  Args:
    save_checkpoint: Writes a policy checkpoint into the directory it is given.
    export_dir: The final directory, e.g. '<root_dir>/policies/checkpoints/
      policy_checkpoint_0000001000'.

  Raises:
    CheckpointWriteError: If writing or renaming fails (`reporting_write_errors`).
  """
  parent, name = os.path.split(export_dir)
  partial = os.path.join(parent, _TEMPORARY_PREFIX + name)
  with reporting_write_errors(parent):
    if os.path.exists(partial):
      shutil.rmtree(partial)
    save_checkpoint(partial)
    if os.path.exists(export_dir):  # Written again after a resume: the newer one wins.
      shutil.rmtree(export_dir)
    os.replace(partial, export_dir)


@contextlib.contextmanager
def reporting_write_errors(directory: str) -> Iterator[None]:
  """Turns a failed write inside the block into one clear line (also usable as a decorator).

  Args:
    directory: The directory being written, named in the message.

  Raises:
    CheckpointWriteError: For an `OSError` or TensorFlow `OpError` raised inside: "Cannot
      write to <directory> (<reason>). What was written before is kept: free space (or
      check permissions) and rerun the same command to resume from the last checkpoint."
  """
  try:
    yield
  except (OSError, tf.errors.OpError) as e:
    reason = (os.strerror(e.errno) if isinstance(e, OSError) and e.errno
              else str(e).splitlines()[0] if str(e) else type(e).__name__)
    if isinstance(e, tf.errors.OpError) and os.strerror(errno.ENOSPC) in str(e):
      reason = os.strerror(errno.ENOSPC)
    raise CheckpointWriteError(
        f'Cannot write to {directory} ({reason}). What was written before is kept: free '
        'space (or check permissions) and rerun the same command to resume from the last '
        'checkpoint.') from e
