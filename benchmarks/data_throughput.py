"""Data-path throughput: batches of 256 transitions per second from each replay, and memory.

Builds a HalfCheetah-shaped dataset (observation float32 [17], action float32 [6]; 1000 episodes
of 1000 transitions = 1M transitions, like halfcheetah-medium-v2) in memory, then measures
(a) the in-process Reverb replay, (b) a Reverb server in a separate process reached over gRPC,
(c) the in-memory tf.data sampler. Prints the figures; it is not a test.

  .venv/bin/python benchmarks/data_throughput.py [--num_episodes=1000] [--num_batches=300]
"""

import multiprocessing
import os
import resource
import socket
import time

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

from cql_sac.datasets import replay
from cql_sac.datasets import steps as steps_lib

_NUM_EPISODES = flags.DEFINE_integer('num_episodes', 1000, 'Episodes of 1000 transitions.')
_NUM_BATCHES = flags.DEFINE_integer('num_batches', 300, 'Batches timed per replay.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 256, 'Transitions per batch.')
_EPISODE_LENGTH = 1000
_OBSERVATION_DIM, _ACTION_DIM = 17, 6


def halfcheetah_shaped_steps(num_episodes: int, seed: int = 0,
                             observation_dim: int = _OBSERVATION_DIM,
                             action_dim: int = _ACTION_DIM) -> steps_lib.EpisodeSteps:
  """Random steps shaped like halfcheetah-medium-v2: time-limit episodes of 1000 transitions.

  Args:
    num_episodes: episodes of 1000 transitions (1001 steps) each.
    seed: NumPy seed.
    observation_dim, action_dim: the shapes (HalfCheetah's 17 and 6 by default).

  Returns:
    float32 observations N(0, 1), actions U(-1, 1), rewards N(0, 1); discount 1, no terminals.
  """
  rng = np.random.default_rng(seed)
  steps_per_episode = _EPISODE_LENGTH + 1
  n = num_episodes * steps_per_episode
  position = np.arange(n) % steps_per_episode
  return steps_lib.EpisodeSteps(
      observation=rng.standard_normal((n, observation_dim), np.float32),
      action=rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
      reward=rng.standard_normal(n, np.float32),
      discount=np.ones(n, np.float32),
      is_first=position == 0,
      is_last=position == _EPISODE_LENGTH,
      is_terminal=np.zeros(n, bool),
      episode_index=np.arange(n) // steps_per_episode,
      num_episodes=num_episodes)


def _rss_mib() -> float:
  """Current resident memory of this process in MiB (Linux /proc)."""
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def _batches_per_second(dataset: tf.data.Dataset, num_batches: int) -> float:
  iterator = iter(dataset)
  for _ in range(20):  # Warm up the pipeline and its prefetch buffer.
    next(iterator)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  return num_batches / (time.perf_counter() - start)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _serve(num_episodes: int, port: int, ready) -> None:
  """Separate process: hold the dataset in a Reverb server until terminated."""
  server_replay = replay.build_replay(halfcheetah_shaped_steps(num_episodes), port=port)
  ready.set()
  server_replay.server.wait()


def run(unused_argv) -> None:
  """Measures and prints the figures."""
  batch, num_batches = _BATCH_SIZE.value, _NUM_BATCHES.value
  rss0 = _rss_mib()
  steps = halfcheetah_shaped_steps(_NUM_EPISODES.value)
  array_mib = sum(getattr(steps, f).nbytes for f in steps_lib.RLDS_STEP_FIELDS) / 2**20
  print(f'dataset: {steps.num_steps} steps, {_NUM_EPISODES.value * _EPISODE_LENGTH} '
        f'transitions, {array_mib:.0f} MiB as numpy columns')

  rss1 = _rss_mib()
  start = time.perf_counter()
  in_process = replay.build_replay(steps)
  print(f'(a) in-process Reverb: filled {in_process.num_items} items in '
        f'{time.perf_counter() - start:.0f} s, +{_rss_mib() - rss1:.0f} MiB resident')
  print(f'    {_batches_per_second(in_process.as_dataset(batch), num_batches):.0f} batches/s '
        f'of {batch}')
  parallel = in_process.as_dataset(batch, num_parallel_calls=2)
  print(f'    num_parallel_calls=2: {_batches_per_second(parallel, num_batches):.0f} batches/s')
  in_process.close()

  port = _free_port()
  context = multiprocessing.get_context('spawn')
  ready = context.Event()
  process = context.Process(target=_serve, args=(_NUM_EPISODES.value, port, ready))
  process.start()
  try:
    ready.wait()
    remote = replay.build_replay(None, server_address=f'localhost:{port}')
    parallel = remote.as_dataset(batch, num_parallel_calls=2)
    print(f'(b) separate Reverb server: {remote.num_items} items, '
          f'{_batches_per_second(remote.as_dataset(batch), num_batches):.0f} batches/s; '
          f'num_parallel_calls=2: {_batches_per_second(parallel, num_batches):.0f} batches/s')
  finally:
    process.terminate()
    process.join()

  rss2 = _rss_mib()
  in_memory = replay.build_in_memory_replay(steps)
  print(f'(c) in-memory tf.data: {in_memory.num_items} items, +{_rss_mib() - rss2:.0f} MiB '
        f'resident, {_batches_per_second(in_memory.as_dataset(batch), num_batches):.0f} '
        'batches/s')
  print(f'process resident memory: {_rss_mib():.0f} MiB (started at {rss0:.0f} MiB), peak '
        f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB')


if __name__ == '__main__':
  app.run(run)
