"""One run per output directory: an OS lock on `<root_dir>/run.lock` held for the whole run.

`RunLock` takes an exclusive `fcntl.flock` on the lock file without waiting, before the run
writes anything else into `root_dir`, and writes the holder's host, pid, program and start
time into the file. A second run on the same `root_dir` (on this host, or on another host of
a file system with working flock, such as NFSv4 or Lustre) is refused with a one-line
`RunDirectoryInUse` naming the holder. The OS drops the lock when the holding process ends,
however it ends (kill -9 included), so a killed run never blocks the next one. A run removes
the lock file when it ends (one killed leaves it, unlocked, to be taken over); a run that
opened the file just before it was removed sees that the path no longer names the file it
locked, and opens it anew.

The lock is re-entrant within a process: `train_eval` holds it for the whole run and
`cql_sac.finetune` takes it again for its own writes at no cost. A run that fails before it
wrote anything removes the `root_dir` it created, so that bad input leaves no trace.
"""

import fcntl
import functools
import inspect
import json
import os
import socket
import threading
import time
from typing import Callable, Dict

LOCK_FILE = 'run.lock'

# {real path of a root_dir: times this process holds its lock}; flock locks belong to an open
# file, so a second open in the same process would refuse the process itself.
_HELD: Dict[str, int] = {}
_HELD_GUARD = threading.Lock()


class RunDirectoryError(RuntimeError):
  """`root_dir` cannot be used for a run; the message says why and what to do."""


class RunDirectoryInUse(RunDirectoryError):
  """Another process holds the lock of `root_dir`."""


class RunLock:
  """Context manager holding the exclusive lock of one run's output directory.

  Args:
    root_dir: The run's output directory; created (with parents) if missing.
    program: Name of the program taking the lock, shown to a refused second run
      (e.g. 'cql_sac_train_eval').

  Raises (on entering):
    RunDirectoryInUse: If another process holds the lock: "<root_dir> is in use by
      <program> (host <host>, pid <pid>, since <UTC time>)...", one line.
    RunDirectoryError: If `root_dir` or its lock file cannot be created.

  On leaving, the lock file is removed, then unlocked; if the block raised and `root_dir`
  was created by this lock and is left empty, it is removed too.
  """

  def __init__(self, root_dir: str, program: str):
    self._root_dir = root_dir
    self._program = program
    self._key = os.path.realpath(root_dir)
    self._file = None
    self._created = False

  def __enter__(self) -> 'RunLock':
    with _HELD_GUARD:
      if _HELD.get(self._key):
        _HELD[self._key] += 1
        return self
      self._acquire()
      _HELD[self._key] = 1
    return self

  def __exit__(self, exc_type, exc, traceback) -> None:
    with _HELD_GUARD:
      _HELD[self._key] -= 1
      if _HELD[self._key]:
        return
      del _HELD[self._key]
      self._release(failed=exc_type is not None)

  def _acquire(self) -> None:
    self._created = not os.path.isdir(self._root_dir)
    path = os.path.join(self._root_dir, LOCK_FILE)
    while True:
      try:
        os.makedirs(self._root_dir, exist_ok=True)
        lock_file = open(path, 'a+', encoding='utf-8')  # pylint: disable=consider-using-with
      except OSError as e:
        raise RunDirectoryError(f'--root_dir={self._root_dir} is not a writable directory '
                                f'({e}). Pass a directory you can write to.') from e
      try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        lock_file.seek(0)
        holder = lock_file.read()
        lock_file.close()
        raise RunDirectoryInUse(
            f'--root_dir={self._root_dir} is in use by {_describe_holder(holder)}; two runs '
            f'would mix their checkpoints. Wait for it to end (or stop it), or pass another '
            f'--root_dir. Lock file: {path}.') from e
      if _same_file(lock_file, path):
        break
      lock_file.close()  # Removed by the run that held it meanwhile: open the new one.
    self._file = lock_file
    self._file.seek(0)
    self._file.truncate()
    json.dump({'program': self._program, 'host': socket.gethostname(), 'pid': os.getpid(),
               'since': time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, self._file)
    self._file.flush()

  def _release(self, failed: bool) -> None:
    os.remove(self._file.name)  # Still locked: whoever opened it meanwhile opens anew.
    if failed and self._created and not os.listdir(self._root_dir):
      os.rmdir(self._root_dir)
    fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()
    self._file = None


def _same_file(opened, path: str) -> bool:
  """Whether `path` still names the file `opened` (False if it was removed or replaced)."""
  try:
    return os.path.samestat(os.fstat(opened.fileno()), os.stat(path))
  except FileNotFoundError:
    return False


def holding_run_lock(program: str) -> Callable[[Callable], Callable]:
  """Decorator: the function runs holding the `RunLock` of its `root_dir` argument.

  Args:
    program: Name shown to a refused second run (see `RunLock`).

  Returns:
    A decorator for functions with a `root_dir` parameter; the wrapped function raises
    what `RunLock` raises on entering.
  """
  def decorate(function: Callable) -> Callable:
    signature = inspect.signature(function)

    @functools.wraps(function)
    def locked(*args, **kwargs):
      root_dir = signature.bind(*args, **kwargs).arguments['root_dir']
      with RunLock(root_dir, program):
        return function(*args, **kwargs)
    return locked
  return decorate


def _describe_holder(contents: str) -> str:
  """'<program> (host <host>, pid <pid>, since <time>)' from a lock file's JSON contents."""
  try:
    holder = json.loads(contents)
    return (f'{holder["program"]} (host {holder["host"]}, pid {holder["pid"]}, since '
            f'{holder["since"]})')
  except (ValueError, KeyError, TypeError):
    return 'another process (it has not written its host and pid yet)'
