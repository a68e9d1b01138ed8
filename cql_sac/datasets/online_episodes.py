"""Online fine-tuning's episodes: recorded from the driver, kept on disk as RLDS, read back.

Each finished online episode is written to its own RLDS/TFDS dataset directory
`<directory>/episode_<index:06d>` by `cql_sac.datasets.writing.RldsWriter` (the layout of the
project's datasets: step t holds o_t, a_t and the reward and discount that followed; the last
step holds the final observation), first under a `.tmp-` name and then renamed, so a
directory with the final name is always complete: a kill during the write leaves only a
`.tmp-` directory, which the next write of that index replaces. Together the directories are
one RLDS dataset (`read_episodes`, `tfds.builder_from_directories`), which users can load as
data and which `cql_sac.finetune` reloads on resume.
"""

import os
import re
import shutil
from typing import Any, Dict, List, Optional

from absl import logging
import numpy as np
import tensorflow_datasets as tfds
from tf_agents.trajectories import time_step as ts

from cql_sac.datasets import steps as steps_lib
from cql_sac.datasets import writing

_EPISODE_DIR = 'episode_{:06d}'
_EPISODE_PATTERN = re.compile(r'episode_(\d{6})$')
_TMP_PREFIX = '.tmp-'


class EpisodeRecorder:
  """A TF-Agents transition observer that records one episode's steps in RLDS layout.

  Pass it to `py_driver.PyDriver(transition_observers=[recorder],
  end_episode_on_boundary=False)`; after the driver's episode, `finish()` returns the
  episode. A boundary transition (from a LAST time step) is ignored.
  """

  def __init__(self):
    self._reset()

  def _reset(self) -> None:
    """Forgets the recorded steps."""
    self._observations: List[np.ndarray] = []
    self._actions: List[np.ndarray] = []
    self._rewards: List[float] = []
    self._discounts: List[float] = []
    self._ended = False

  def __call__(self, transition) -> None:
    """Records (time_step, policy_step, next_time_step) with unbatched numpy values."""
    time_step, policy_step, next_time_step = transition
    if time_step.is_last():
      return
    if not self._observations:
      self._observations.append(np.asarray(time_step.observation, np.float32))
    self._actions.append(np.asarray(policy_step.action, np.float32))
    self._rewards.append(float(next_time_step.reward))
    self._discounts.append(float(next_time_step.discount))
    self._observations.append(np.asarray(next_time_step.observation, np.float32))
    self._ended = bool(next_time_step.step_type == ts.StepType.LAST)

  @property
  def num_transitions(self) -> int:
    """Environment steps recorded so far."""
    return len(self._actions)

  def finish(self) -> steps_lib.EpisodeSteps:
    """The recorded episode as `EpisodeSteps` (n transitions: n + 1 steps), then resets.

    An episode the driver stopped before the environment ended it (the online budget ran
    out) is marked like a time-limit end: is_last without is_terminal, as `write_dataset`
    marks the cut end of a dataset.

    Returns:
      `EpisodeSteps` of one episode, float32 arrays: observation [n + 1, O], action
      [n + 1, A] (zero on the last step), reward and discount [n + 1] (0 on the last step),
      the flags, episode_index 0.

    Raises:
      ValueError: if no transition was recorded.
    """
    n = self.num_transitions
    if n == 0:
      raise ValueError('No transition was recorded; run the driver for at least one step.')
    is_last = np.zeros(n + 1, bool)
    is_last[-1] = True
    is_first = np.zeros(n + 1, bool)
    is_first[0] = True
    terminal = self._ended and self._discounts[-1] == 0.0
    episode = steps_lib.EpisodeSteps(
        observation=np.stack(self._observations),
        action=np.stack(self._actions + [np.zeros_like(self._actions[0])]),
        reward=np.asarray(self._rewards + [0.0], np.float32),
        discount=np.asarray(self._discounts + [0.0], np.float32),
        is_first=is_first, is_last=is_last, is_terminal=is_last & terminal,
        episode_index=np.zeros(n + 1, np.int64), num_episodes=1)
    self._reset()
    return episode


def episode_directories(directory: str) -> List[str]:
  """The complete episode directories under `directory`, in episode order (none: [])."""
  if not os.path.isdir(directory):
    return []
  names = sorted(name for name in os.listdir(directory) if _EPISODE_PATTERN.match(name))
  return [os.path.join(directory, name) for name in names]


def write_episode(directory: str, index: int, episode: steps_lib.EpisodeSteps,
                  metadata: Dict[str, Any]) -> str:
  """Writes one episode as `<directory>/episode_<index>`, atomically (module docstring).

  Args:
    directory: the episodes' directory (created if missing).
    index: the episode's index, 0, 1, ...
    episode: one episode (`EpisodeRecorder.finish`).
    metadata: JSON-serializable facts (environment, train step, ...), kept in the dataset.

  Returns:
    The episode's directory.

  Raises:
    ValueError: if that episode directory already exists (it is never overwritten).
  """
  final = os.path.join(directory, _EPISODE_DIR.format(index))
  if os.path.exists(final):
    raise ValueError(f'{final} already exists; online episodes are never overwritten.')
  tmp = os.path.join(directory, _TMP_PREFIX + _EPISODE_DIR.format(index))
  if os.path.exists(tmp):  # Left by a kill during an earlier write of this episode.
    shutil.rmtree(tmp)
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)  # envlogger logs 5 INFO lines per dataset written.
  try:
    writer = writing.RldsWriter(tmp, episode.observation.shape[1], episode.action.shape[1],
                                {**metadata, 'online_episode_index': index})
    writer.begin_episode(episode.observation[0])
    n = episode.num_steps - 1
    for t in range(n):
      writer.add_step(episode.action[t], episode.reward[t], episode.discount[t],
                      episode.observation[t + 1], t == n - 1)
    writer.close()
  finally:
    logging.set_verbosity(verbosity)
  os.rename(tmp, final)
  return final


def read_episodes(directory: str) -> Optional[steps_lib.EpisodeSteps]:
  """Reads every complete episode under `directory` as one `EpisodeSteps` (None if none)."""
  paths = episode_directories(directory)
  if not paths:
    return None
  episodes = tfds.builder_from_directories(paths).as_dataset(split='train')
  return steps_lib.read_episode_steps(episodes, directory)
