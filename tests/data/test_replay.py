"""Reverb replay holds every transition, samples uniformly, and matches the in-memory sampler."""

import subprocess
import sys

import numpy as np
import pytest
import reverb
import tensorflow as tf
from scipy import stats
from tf_agents.specs import tensor_spec

from cql_sac.datasets import loading
from cql_sac.datasets import replay
from cql_sac.datasets import steps as steps_lib
from tests.data import helpers

BATCH = 256


def _item_key(traj, b):
  """Bytes identifying the item at batch position b of a [B, 2] Trajectory."""
  return b''.join(np.asarray(field[b]).tobytes() for field in tf.nest.flatten(traj))


def _sample(dataset, num_batches):
  """(item bytes per sample, sampler key per sample) for num_batches batches."""
  items, keys = [], []
  for traj, info in dataset.take(num_batches).as_numpy_iterator():
    items += [_item_key(traj, b) for b in range(BATCH)]
    # Reverb gives each item's key [B]; the in-memory sampler its index [B].
    keys.append(info.key if hasattr(info, 'key') else info)
  return items, np.concatenate(keys)


def _all_items(in_memory):
  everything = replay.transitions.gather_items(
      in_memory.trajectory_steps.trajectory, in_memory.trajectory_steps.items,
      np.arange(in_memory.num_items))
  everything = tf.nest.map_structure(np.asarray, everything)
  return [_item_key(everything, b) for b in range(in_memory.num_items)]


@pytest.fixture(scope='module')
def hopper_steps(hopper_dataset):
  path, _ = hopper_dataset
  return path, steps_lib.read_episode_steps(loading.load_episodes(path), path)


def _assert_uniform(keys, num_items):
  counts = np.unique(keys, return_counts=True)[1]
  assert len(counts) == num_items  # Every item was drawn at least once.
  # Two such tests per run: at 1e-5 a uniform sampler fails one run in 50,000, while one
  # drawing a third of the items at 1.5x the rate, or a tenth at 2x, gives p < 1e-11 at these
  # ~26 draws per item (20 simulated runs of each).
  assert stats.chisquare(counts).pvalue > 1e-5


def test_reverb_holds_every_transition_and_samples_uniformly(hopper_steps):
  _, steps = hopper_steps
  in_process = replay.build_replay(steps)
  in_memory = replay.build_in_memory_replay(steps)
  try:
    size = reverb.Client(f'localhost:{in_process.server.port}').server_info()[
        replay.TABLE_NAME].current_size
    assert size == in_process.num_items == in_memory.num_items == helpers.NUM_STEPS
    items, keys = _sample(in_process.as_dataset(BATCH), 30)  # ~26 draws per item.
    _assert_uniform(keys, in_process.num_items)
    assert set(items) == set(_all_items(in_memory))
    _, indices = _sample(in_memory.as_dataset(BATCH), 30)
    _assert_uniform(indices, in_memory.num_items)
  finally:
    in_process.close()


def test_separate_server_serves_the_same_items(hopper_steps):
  path, steps = hopper_steps
  port = reverb.server.portpicker.pick_unused_port()
  process = subprocess.Popen(
      [sys.executable, '-m', 'cql_sac.datasets.reverb_server', f'--port={port}',
       f'--dataset_name={path}'], stdout=subprocess.PIPE, text=True)
  try:
    assert 'ready' in process.stdout.readline()
    remote = replay.build_replay(None, server_address=f'localhost:{port}')
    in_memory = replay.build_in_memory_replay(steps)
    assert remote.num_items == in_memory.num_items
    assert remote.data_spec == in_memory.data_spec
    items, _ = _sample(remote.as_dataset(BATCH), 30)
    assert set(items) == set(_all_items(in_memory))
  finally:
    process.terminate()
    process.wait()


def test_items_carry_their_steps_return_to_go(hopper_steps):
  """With returns-to-go (Cal-QL), Reverb and in-memory items carry each step's G as
  policy_info['return_to_go'] ([B, 2]), next to the same observations and rewards."""
  _, steps = hopper_steps
  returns = np.arange(steps.num_steps, dtype=np.float32) * 0.5 - 7.0  # G identifies the step.
  in_process = replay.build_replay(steps, returns_to_go=returns)
  in_memory = replay.build_in_memory_replay(steps, returns_to_go=returns)
  try:
    assert in_process.data_spec == in_memory.data_spec
    assert set(in_process.data_spec.policy_info) == {'return_to_go'}
    for dataset in (in_process.as_dataset(BATCH), in_memory.as_dataset(BATCH)):
      traj, _ = next(dataset.as_numpy_iterator())
      got = traj.policy_info['return_to_go']
      step = ((got + 7.0) / 0.5).round().astype(int)  # The steps these items hold.
      np.testing.assert_array_equal(step[:, 1], step[:, 0] + 1)
      np.testing.assert_array_equal(traj.observation, steps.observation[step])
      np.testing.assert_allclose(traj.reward, steps.reward[step])
    plain = replay.build_in_memory_replay(steps)
    assert plain.data_spec.policy_info == ()
  finally:
    in_process.close()


def test_unreachable_server_raises_with_the_fix():
  port = reverb.server.portpicker.pick_unused_port()
  with pytest.raises(ValueError, match='cql_sac_reverb_server'):
    replay._connect(f'localhost:{port}', timeout_s=1)  # pylint: disable=protected-access


def test_reward_shift_and_action_clipping_touch_dataset_steps_only(hopper_steps):
  _, steps = hopper_steps
  shifted = replay.build_in_memory_replay(steps, reward_shift=-1.5,
                                          action_clipping=(-0.2, 0.3)).trajectory_steps.trajectory
  np.testing.assert_allclose(shifted.reward, steps.reward - 1.5)
  np.testing.assert_array_equal(shifted.action, np.clip(steps.action, -0.2, 0.3))
  np.testing.assert_array_equal(shifted.observation, steps.observation)


def _one_step_episodes():
  """Episodes of 1, 3 and 1 steps (toy 2-dim observations, 1-dim actions)."""
  lengths = [1, 3, 1]
  n = sum(lengths)
  episode_index = np.repeat(np.arange(3), lengths)
  first = np.diff(episode_index, prepend=-1) != 0
  last = np.append(first[1:], True)
  return steps_lib.EpisodeSteps(
      observation=np.arange(2 * n, dtype=np.float32).reshape(n, 2) + 1,
      action=np.full((n, 1), 0.5, np.float32), reward=np.arange(n, dtype=np.float32),
      discount=np.ones(n, np.float32), is_first=first, is_last=last,
      is_terminal=np.zeros(n, bool), episode_index=episode_index, num_episodes=3)


@pytest.mark.parametrize('pad', [True, False])
def test_one_step_episodes(pad):
  steps = _one_step_episodes()
  in_memory = replay.build_in_memory_replay(steps, pad_end_of_episodes=pad)
  in_process = replay.build_replay(steps, pad_end_of_episodes=pad)
  try:
    assert in_memory.num_items == in_process.num_items == (4 if pad else 2)
    items, _ = _sample(in_process.as_dataset(BATCH), 2)
    assert set(items) == set(_all_items(in_memory))
    traj = in_memory.trajectory_steps.trajectory
    for first, second in in_memory.trajectory_steps.items:
      if first in (0, 4):  # The one-step episodes: padded, never bootstrapped.
        assert traj.discount[first] == 0 and not traj.observation[second].any()
      else:
        assert traj.discount[first] == 1 and second == first + 1
  finally:
    in_process.close()


def test_packed_signature_rejects_steps_it_cannot_pack_exactly():
  spec = replay.transitions.data_spec(tf.TensorSpec([3], tf.float64),
                                      tf.TensorSpec([2], tf.float32), tf.TensorSpec([], tf.float32))
  with pytest.raises(ValueError, match='packs float32 rank-1 observations.*Fix: cast'):
    replay.packed_signature(spec)


def test_connecting_to_a_table_of_unpacked_trajectories_raises_with_the_fix():
  spec = replay.transitions.data_spec(tf.TensorSpec([3], tf.float32),
                                      tf.TensorSpec([2], tf.float32), tf.TensorSpec([], tf.float32))
  table = reverb.Table(replay.TABLE_NAME, reverb.selectors.Uniform(), reverb.selectors.Fifo(),
                       10, reverb.rate_limiters.MinSize(1),
                       signature=tensor_spec.add_outer_dim(spec, 2))
  server = reverb.Server([table])
  try:
    with pytest.raises(ValueError, match='does not hold packed dataset steps.*cql_sac_reverb_server'):
      replay._connect(f'localhost:{server.port}', timeout_s=5)  # pylint: disable=protected-access
  finally:
    server.stop()


@pytest.mark.parametrize('chunk_steps', [32, 3])
def test_sequence_items_are_every_window_of_consecutive_steps_within_an_episode(
    hopper_steps, monkeypatch, chunk_steps):
  """With 3 steps kept addressable by the writer, fewer than L = 5 (L = 40 vs 32 once failed)."""
  monkeypatch.setattr(replay, '_CHUNK_STEPS', chunk_steps)
  _, steps = hopper_steps
  length = 5
  traj_steps = replay.build_in_memory_replay(steps).trajectory_steps
  bounds = steps.episode_bounds()
  windows = [np.arange(start, start + length) for begin, end in bounds
             for start in range(begin, end - length + 1)]
  assert replay.sequence_item_count(traj_steps.items, length) == len(windows)
  traj = tf.nest.map_structure(np.asarray, traj_steps.trajectory)
  want = set()
  for window in windows:
    item = tf.nest.map_structure(lambda field, w=window: field[w][None], traj)
    want.add(_item_key(item, 0))
  sequences = replay.build_replay(steps, sequence_length=length)
  try:
    assert sequences.num_items == len(windows)
    got = set()
    for batch, _ in sequences.as_dataset(BATCH).take(20).as_numpy_iterator():
      assert batch.step_type.shape == (BATCH, length)
      got.update(_item_key(batch, b) for b in range(BATCH))
    assert got <= want and len(got) > 0.9 * len(want)
  finally:
    sequences.close()
