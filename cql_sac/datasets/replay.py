"""Replay holding a whole offline dataset: a Reverb table (default) or in-memory tensors.

Reverb: one table, `max_size` = the number of items (so nothing is ever removed; TF-Agents' CQL
example sized it 100 with a FIFO remover and kept only the last 100 items, study section 3.3),
uniform sampling with replacement, items of 2 consecutive steps of an episode (the items
TF-Agents' `ReverbAddTrajectoryObserver` writes, see `_write_items`) read with Reverb's
`TrajectoryDataset`. The server runs in this process, or in another one (`cql_sac_reverb_server`) that the trainer reaches by address.
Each step is stored as two float32 columns, the observation and the rest of the step packed
into one vector (`_PACKED_FIELDS`): Reverb and tf.data spend their time per sampled item and
per column, so two columns instead of a `Trajectory`'s six cut the CPU time of a batch of 256,
unpacking included, from 8.7 to 6.5 ms (2 cores, 20,000 items); `as_dataset` unpacks whole
batches back into `Trajectory`s. For Cal-QL a third column holds each step's return-to-go
(`policy_info['return_to_go']`). Tables written by TF-Agents' `ReverbAddTrajectoryObserver`
(online collection, `cql_sac_make_behavior`) keep its `Trajectory` signature and are read as is.

In memory: the same items (`cql_sac.datasets.transitions`) as tensors (`ReplayTensors`), sampled
uniformly with stateless `tf.random` draws (`sample_uniform`), either inside a `tf.data` pipeline
(`InMemoryReplay.as_dataset`) or inside the fused learner's compiled K-step loop
(`FusedLearner.train_on_replay`, `train_eval.sample_in_loop`), where no batch crosses from the
host at each step; faster, but local to the process and held in its (device) memory.
"""

from typing import NamedTuple, Optional, Tuple, Union

import numpy as np
import reverb
import tensorflow as tf
from absl import logging
from tf_agents.trajectories import trajectory

from cql_sac.agents import combo_agent
from cql_sac.datasets import steps as steps_lib
from cql_sac.datasets import transitions
from cql_sac.datasets import validation

TABLE_NAME = 'uniform_table'
ONLINE_TABLE_NAME = 'online_table'  # Online fine-tuning's transitions (`build_online_replay`).
SEQUENCE_LENGTH = 2
_SERVER_TIMEOUT_S = 60
_CHUNK_STEPS = 32
# Items written between flushes (each leaves at most twice as many unconfirmed): keeps the
# writer under the pending-item count at which Reverb logs "The number of pending items is
# alarmingly high" (seen from ~50 pending items) over and over while a table is filled; costs
# ~20% more fill time (20,000 items: 4.3-4.8 s vs 3.5 s, loaded 2 cores).
_FLUSH_ITEMS = 16
# The fields of a step after its observation, in the order of the packed column: the action
# ([A] values), then one value each. step_type values (0, 1, 2) are exact in float32.
_PACKED_FIELDS = ('action', 'reward', 'discount', 'step_type', 'next_step_type')
_PACKED_SCALARS = len(_PACKED_FIELDS) - 1

Episodes = Union[tf.data.Dataset, steps_lib.EpisodeSteps]


class Replay:
  """Samples batches of 2-step items (L-step with `build_replay(sequence_length=L)`) from a
  Reverb table that holds the whole dataset.

  Attributes:
    data_spec: `Trajectory` of TensorSpecs of one step (no outer dims): step_type and
      next_step_type int32 [], observation float32 [obs_dim], action float32 [A],
      policy_info (), reward float32 [], discount float32 [].
    num_items: number of items (transitions) in the table; None for a table still being
      filled (online collection).
    server: the in-process `reverb.Server`, or None when connected to another process.
  """

  def __init__(self, data_spec: trajectory.Trajectory, num_items: Optional[int],
               server: Optional[reverb.Server] = None, server_address: Optional[str] = None,
               *, packed: bool, table_name: str = TABLE_NAME):
    """Connects to the table; use `build_replay` instead of calling this directly.

    Args:
      data_spec: the step spec.
      num_items: items in the table (None while it is being filled).
      server: in-process server holding the table (exclusive with `server_address`).
      server_address: 'host:port' of a server holding the table.
      packed: whether the table has the packed signature (`packed_signature`, the dataset
        tables `build_replay` fills) rather than `data_spec` with an outer time dimension
        (the `Trajectory` items TF-Agents' `ReverbAddTrajectoryObserver` writes).
      table_name: the table's name (`TABLE_NAME`, or `ONLINE_TABLE_NAME`).
    """
    self.data_spec = data_spec
    self.num_items = num_items
    self.server = server
    self._server_address = server_address or f'localhost:{server.port}'
    self._packed = packed
    self._table_name = table_name

  def add(self, traj_steps: transitions.TrajectorySteps) -> None:
    """Writes the items of `traj_steps` (e.g. a finished online episode) into the table.

    Args:
      traj_steps: items whose steps match `data_spec` (policy_info included).

    Raises:
      ValueError: for a table served by another process, one without room for the items
        (it would drop the oldest), or steps of another spec.
    """
    if self.server is None or not self._packed:
      raise ValueError('Only a packed table of this process takes new items; build it with '
                       'build_replay or build_online_replay.')
    traj = traj_steps.trajectory
    shapes = [np.shape(traj.observation)[1:], np.shape(traj.action)[1:]]
    expected = [tuple(self.data_spec.observation.shape), tuple(self.data_spec.action.shape)]
    if shapes != expected or _has_return_to_go(traj) != _has_return_to_go(self.data_spec):
      raise ValueError(f'Items of observation and action shapes {shapes} (return-to-go: '
                       f'{_has_return_to_go(traj)}) do not fit the table\'s {self.data_spec}.')
    info = self.server.localhost_client().server_info()[self._table_name]
    if info.current_size + traj_steps.num_items > info.max_size:
      raise ValueError(f'The Reverb table {self._table_name!r} holds {info.current_size} of '
                       f'at most {info.max_size} items; {traj_steps.num_items} more do not fit.')
    _write_items(traj_steps, self.server, self._table_name)
    self.num_items = (self.num_items or 0) + traj_steps.num_items

  def as_dataset(self, batch_size: int, prefetch: int = tf.data.AUTOTUNE,
                 num_parallel_calls: Optional[int] = None) -> tf.data.Dataset:
    """An endless dataset of uniformly sampled batches (with replacement).

    Reads the table with `reverb.TrajectoryDataset` and batches in tf.data: about 3.5x the
    batches/s of TF-Agents' `ReverbReplayBuffer.as_dataset` on the same table (235 vs 69
    batches of 256 per second on 2 loaded CPU cores), which maps every item separately.

    Args:
      batch_size: items per batch, B.
      prefetch: batches to prefetch (`tf.data.AUTOTUNE` to tune).
      num_parallel_calls: Reverb sampling streams to interleave (None: one).

    Returns:
      `tf.data.Dataset` of (Trajectory with outer dims [B, L], `reverb.SampleInfo` [B]), L
      the table's item length (2, or `build_replay`'s `sequence_length`).
    """
    def stream(_):
      items = reverb.TrajectoryDataset.from_table_signature(
          self._server_address, self._table_name,
          max_in_flight_samples_per_worker=2 * batch_size)
      return items.batch(batch_size, drop_remainder=True)

    if num_parallel_calls:
      batches = tf.data.Dataset.range(num_parallel_calls).interleave(
          stream, cycle_length=num_parallel_calls, num_parallel_calls=num_parallel_calls,
          deterministic=False)
    else:
      batches = stream(0)
    def to_trajectory(sample):
      data = unpack_steps(sample.data, self.data_spec) if self._packed else sample.data
      return data, sample.info

    return batches.map(to_trajectory).prefetch(prefetch)

  def close(self) -> None:
    """Stops the in-process server (the other process's server keeps running)."""
    if self.server is not None:
      server, self.server = self.server, None
      server.stop()
      del server  # Let Reverb's __del__ (a second stop) run now rather than at exit.


class ReplayTensors(NamedTuple):
  """A whole dataset's replay items as tensors: what `sample_uniform` draws batches from.

  Attributes:
    trajectory: `Trajectory` of tensors with outer dim [M] (`TrajectorySteps.trajectory`:
      the dataset's steps and any padding steps).
    items: int32 [num_items, 2], the step indices of each item (`TrajectorySteps.items`);
      int32 because XLA gathers with 32-bit indices, which bounds a dataset at 2**31 steps.
  """
  trajectory: trajectory.Trajectory
  items: tf.Tensor


def sample_uniform(tensors: ReplayTensors, batch_size: int, seed) -> trajectory.Trajectory:
  """Draws `batch_size` items uniformly with replacement: the distribution of the Reverb table.

  Graph- and XLA-friendly (one stateless draw and two gathers), so it runs inside a compiled
  training loop as well as in a `tf.data` map.

  Args:
    tensors: the dataset's `ReplayTensors`.
    batch_size: B.
    seed: int32 [2] stateless seed; the same seed gives the same batch (on one backend: XLA
      and TensorFlow's kernels turn a seed into different, equally uniform, indices).

  Returns:
    `Trajectory` with outer dims [B, 2].
  """
  indices = _uniform_indices(tf.shape(tensors.items, out_type=tf.int32)[0], batch_size, seed)
  return transitions.gather_items(tensors.trajectory, tensors.items, indices)


def _uniform_indices(num_items, batch_size: int, seed) -> tf.Tensor:
  """int32 [batch_size] item indices, uniform over [0, num_items), from a stateless seed."""
  return tf.random.stateless_uniform([batch_size], seed=seed, maxval=num_items, dtype=tf.int32)


class InMemoryReplay:
  """The same items as `Replay`, held as tensors and sampled with stateless `tf.random` draws.

  Attributes:
    data_spec: as `Replay.data_spec`.
    num_items: number of items.
    trajectory_steps: the `TrajectorySteps` (numpy) the items index into.
    tensors: the same as `ReplayTensors` (on the default device), for `sample_uniform` inside
      a compiled loop (`FusedLearner.train_on_replay`).
  """

  def __init__(self, trajectory_steps: transitions.TrajectorySteps,
               data_spec: trajectory.Trajectory):
    """Holds `trajectory_steps`; use `build_in_memory_replay` instead of calling this directly.

    Raises:
      ValueError: if the dataset has 2**31 steps or more (the int32 item indices).
    """
    num_steps = len(trajectory_steps.trajectory.step_type)
    if num_steps >= 2**31:
      raise ValueError(f'The in-memory replay holds at most 2**31 - 1 steps, got {num_steps}. '
                       'Fix: use the Reverb replay (train_eval.sample_in_loop = False).')
    self.data_spec = data_spec
    self.num_items = trajectory_steps.num_items
    self.trajectory_steps = trajectory_steps
    self.tensors = ReplayTensors(
        tf.nest.map_structure(tf.convert_to_tensor, trajectory_steps.trajectory),
        tf.convert_to_tensor(trajectory_steps.items.astype(np.int32)))

  def as_dataset(self, batch_size: int, prefetch: int = tf.data.AUTOTUNE,
                 seed: int = 0) -> tf.data.Dataset:
    """An endless dataset of uniformly sampled batches (with replacement), reproducible by seed.

    Args:
      batch_size: items per batch, B.
      prefetch: batches to prefetch.
      seed: seed of the stateless sampler; batch k uses the seed pair (seed, k).

    Returns:
      `tf.data.Dataset` of (Trajectory with outer dims [B, 2], int32 item indices [B]).
    """
    def sample(batch_index):
      batch_seed = tf.stack([tf.constant(seed, tf.int64), batch_index])
      indices = _uniform_indices(self.num_items, batch_size, batch_seed)
      return transitions.gather_items(*self.tensors, indices), indices

    return tf.data.Dataset.counter().map(sample).prefetch(prefetch)

  def close(self) -> None:
    """Nothing to release; present for interface parity with `Replay`."""


def packed_signature(data_spec: trajectory.Trajectory,
                     sequence_length: int = SEQUENCE_LENGTH) -> dict:
  """The Reverb table signature of items of packed steps.

  Args:
    data_spec: the step spec (`Replay.data_spec`): float32 observation [O] and action [A],
      float32 reward and discount [], int32 step types [].
    sequence_length: L, steps per item (2: transitions; more: sequences for recurrent
      networks).

  Returns:
    {'observation': float32 TensorSpec [L, O], 'packed': float32 TensorSpec [L, A + 4]}, the
    second holding action, reward, discount, step_type, next_step_type (`_PACKED_FIELDS`),
    and 'return_to_go' float32 [L] when the spec's policy_info has it (Cal-QL).

  Raises:
    ValueError: if the spec's observation, action, reward or discount is not float32 or the
      observation or action is not rank 1 (the packing would not be exact).
  """
  for field, rank in (('observation', 1), ('action', 1), ('reward', 0), ('discount', 0)):
    spec = getattr(data_spec, field)
    if spec.dtype != tf.float32 or spec.shape.rank != rank:
      raise ValueError(
          f'The Reverb replay packs float32 rank-{rank} {field}s, got {spec}. Fix: cast the '
          'dataset to float32 and flatten dict observations (cql_sac.datasets.loading does both '
          'for D4RL datasets).')
  width = data_spec.action.shape[0] + _PACKED_SCALARS
  signature = {
      'observation': tf.TensorSpec([sequence_length] + data_spec.observation.shape.as_list(),
                                   tf.float32, name='observation'),
      'packed': tf.TensorSpec([sequence_length, width], tf.float32, name='packed')}
  if _has_return_to_go(data_spec):
    signature[transitions.RETURN_TO_GO] = tf.TensorSpec(
        [sequence_length], tf.float32, name=transitions.RETURN_TO_GO)
  return signature


def _has_return_to_go(traj) -> bool:
  """Whether a Trajectory (spec or values) carries policy_info['return_to_go']."""
  return isinstance(traj.policy_info, dict) and transitions.RETURN_TO_GO in traj.policy_info


def _packed_steps(traj: trajectory.Trajectory) -> np.ndarray:
  """float32 [M, A + 4]: each step's `_PACKED_FIELDS` side by side (numpy)."""
  return np.concatenate(
      [np.asarray(traj.action, np.float32).reshape(len(traj.action), -1)]
      + [np.asarray(getattr(traj, field), np.float32)[:, None] for field in _PACKED_FIELDS[1:]],
      axis=1)


def _data_spec_of_packed_signature(signature) -> Optional[trajectory.Trajectory]:
  """The step spec whose `packed_signature` is `signature`, or None if there is none."""
  try:
    observation_shape = signature['observation'].shape[1:]
    action_dim = signature['packed'].shape[-1] - _PACKED_SCALARS
  except (TypeError, KeyError, IndexError, AttributeError):
    return None
  spec = transitions.data_spec(
      tf.TensorSpec(observation_shape, tf.float32, name='observation'),
      tf.TensorSpec([action_dim], tf.float32, name='action'),
      tf.TensorSpec([], tf.float32, name='reward'),
      with_return_to_go=transitions.RETURN_TO_GO in signature)
  return spec if packed_signature(spec) == signature else None


def unpack_steps(data: dict, data_spec: trajectory.Trajectory) -> trajectory.Trajectory:
  """Rebuilds `Trajectory`s from packed items (the inverse of the writer's packing).

  Args:
    data: {'observation': float32 [..., O], 'packed': float32 [..., A + 4]} (and
      'return_to_go' [...]), e.g. a batch [B, 2, ...] sampled from a packed table.
    data_spec: the step spec.

  Returns:
    `Trajectory` with the same outer dims and `data_spec`'s dtypes (exact: every value was
    stored as float32 or, for step types, as a small integer).
  """
  action_dim = data_spec.action.shape[0]
  packed = data['packed']
  scalars = tf.unstack(packed[..., action_dim:], num=_PACKED_SCALARS, axis=-1)
  fields = dict(zip(_PACKED_FIELDS[1:], scalars), action=packed[..., :action_dim],
                observation=data['observation'])
  info = ({transitions.RETURN_TO_GO: data[transitions.RETURN_TO_GO]}
          if _has_return_to_go(data_spec) else ())
  return data_spec._replace(
      policy_info=info,
      **{name: tf.cast(value, getattr(data_spec, name).dtype) for name, value in fields.items()})


def _trajectory_steps(episodes: Episodes, reward_shift: float,
                      action_clipping: transitions.ActionClipping,
                      pad_end_of_episodes: bool, returns_to_go: Optional[np.ndarray] = None
                      ) -> Tuple[transitions.TrajectorySteps, trajectory.Trajectory]:
  steps = validation.as_episode_steps(episodes, 'replay data')
  return (transitions.to_trajectory_steps(steps, reward_shift, action_clipping,
                                          pad_end_of_episodes, returns_to_go),
          transitions.steps_data_spec(steps, with_return_to_go=returns_to_go is not None))


def build_in_memory_replay(episodes: Episodes, *, reward_shift: float = 0.0,
                           action_clipping: transitions.ActionClipping = None,
                           pad_end_of_episodes: bool = True,
                           returns_to_go: Optional[np.ndarray] = None) -> InMemoryReplay:
  """Builds the in-memory replay of a validated dataset; arguments as in `build_replay`."""
  traj_steps, spec = _trajectory_steps(episodes, reward_shift, action_clipping,
                                       pad_end_of_episodes, returns_to_go)
  return InMemoryReplay(traj_steps, spec)


def sequence_item_count(items: np.ndarray, sequence_length: int) -> int:
  """Items of L = `sequence_length` consecutive steps of one episode that `items` allow.

  Args:
    items: int [num_items, 2], the 2-step items (`TrajectorySteps.items`), in dataset order.
    sequence_length: L >= 2.

  Returns:
    Σ over episodes of max(0, steps − L + 1), the windows with stride 1 (`num_items` for L=2).
  """
  if not len(items):
    return 0
  starts = np.flatnonzero(np.append(True, items[1:, 0] != items[:-1, 1]))
  pairs = np.diff(np.append(starts, len(items)))  # 2-step items per episode.
  return int(np.maximum(pairs + 2 - sequence_length, 0).sum())


def _write_items(traj_steps: transitions.TrajectorySteps, server: reverb.Server,
                 table_name: str = TABLE_NAME,
                 sequence_length: int = SEQUENCE_LENGTH) -> None:
  """Writes every item of `traj_steps` with a Reverb TrajectoryWriter, episode by episode.

  This writes the items TF-Agents' `ReverbAddTrajectoryObserver(sequence_length=2)` writes (one
  item per pair of consecutive steps of an episode; a one-step episode followed by its padding
  step), with each step packed into two columns (`packed_signature`), and lets Reverb chunk up
  to `_CHUNK_STEPS` steps together. The observer keeps only 3 steps alive, so Reverb stored
  its six-column items in chunks of <= 3 steps at about 4 KB per item (4 GB for 1M); with the
  two packed columns the chunk length matters little (100,000 items, chunks of 2 vs 32 steps:
  194 vs 225 MiB, 9.2 vs 10.4 s to fill, 5.4-6.1 vs 5.7-6.4 ms CPU per batch of 256, one run
  each on the shared 2-core machine).

  With `sequence_length` L > 2, each item is L consecutive steps of one episode, stride 1
  (`ReverbAddTrajectoryObserver(sequence_length=L, stride_length=1)`); an episode shorter
  than L gives none.
  """
  client = reverb.Client(f'localhost:{server.port}')
  observations = np.asarray(traj_steps.trajectory.observation, np.float32)
  packed = _packed_steps(traj_steps.trajectory)
  columns = {'observation': observations, 'packed': packed}
  if _has_return_to_go(traj_steps.trajectory):
    columns[transitions.RETURN_TO_GO] = traj_steps.trajectory.policy_info[
        transitions.RETURN_TO_GO]
  step = lambda i: {name: column[i] for name, column in columns.items()}
  # The writer keeps only its last num_keep_alive_refs steps addressable: at least L of them.
  with client.trajectory_writer(
      num_keep_alive_refs=max(_CHUNK_STEPS, sequence_length)) as writer:
    previous, num_items, episode_steps = None, 0, 0
    for first, second in traj_steps.items:
      if previous is None or first != previous:
        if previous is not None:
          writer.end_episode()  # No item links the previous step to this one.
        writer.append(step(first))
        episode_steps = 1
      writer.append(step(second))
      previous, episode_steps = second, episode_steps + 1
      if episode_steps < sequence_length:
        continue
      history = tf.nest.map_structure(lambda column: column[-sequence_length:],
                                      writer.history)
      writer.create_item(table_name, priority=1.0, trajectory=history)
      num_items += 1
      if num_items % _FLUSH_ITEMS == 0:
        writer.flush(block_until_num_items=2 * _FLUSH_ITEMS)
    writer.end_episode()


def _start_server(traj_steps: transitions.TrajectorySteps, data_spec: trajectory.Trajectory,
                  port: Optional[int], extra_capacity: int = 0,
                  sequence_length: int = SEQUENCE_LENGTH) -> Tuple[reverb.Server, int]:
  """Starts a server whose table holds every item (and `extra_capacity` more), fills it;
  returns it and its number of items."""
  num_items = sequence_item_count(traj_steps.items, sequence_length)
  if num_items == 0:
    raise ValueError(f'The dataset has no item of {sequence_length} steps within an episode. '
                     'Fix: use a dataset with longer episodes, pad_end_of_episodes=True, or '
                     'a shorter train_eval.train_sequence_length.')
  table = reverb.Table(
      name=TABLE_NAME,
      sampler=reverb.selectors.Uniform(),
      remover=reverb.selectors.Fifo(),  # Never used: max_size holds every item.
      max_size=num_items + extra_capacity,
      rate_limiter=reverb.rate_limiters.MinSize(1),
      signature=packed_signature(data_spec, sequence_length))
  server = reverb.Server([table], port=port)
  _write_items(traj_steps, server, sequence_length=sequence_length)
  size = server.localhost_client().server_info()[TABLE_NAME].current_size
  if size != num_items:
    server.stop()
    raise RuntimeError(f'Reverb table holds {size} items, expected {num_items}.')
  logging.info('Reverb table %r on port %d holds %d items.', TABLE_NAME, server.port, size)
  return server, num_items


def _connect(server_address: str, timeout_s: int = _SERVER_TIMEOUT_S) -> Replay:
  """Reads spec and size of the table served at `server_address`."""
  try:
    info = reverb.Client(server_address).server_info(timeout=timeout_s)[TABLE_NAME]
  except (reverb.errors.DeadlineExceededError, KeyError, RuntimeError) as error:
    raise ValueError(
        f'No Reverb table {TABLE_NAME!r} at {server_address!r}: {error}. Fix: start '
        'cql_sac_reverb_server --port=<port> --dataset_name=... and pass localhost:<port> (or '
        'host:port) as the server address.') from error
  spec = _data_spec_of_packed_signature(info.signature)
  if spec is None:
    raise ValueError(
        f'The Reverb table {TABLE_NAME!r} at {server_address!r} does not hold packed dataset '
        f'steps (its signature is {info.signature}). Fix: serve the dataset with '
        'cql_sac_reverb_server of this version of cql-sac.')
  return Replay(spec, int(info.current_size), server_address=server_address, packed=True)


def build_replay(episodes: Optional[Episodes], *, reward_shift: float = 0.0,
                 action_clipping: transitions.ActionClipping = None,
                 pad_end_of_episodes: bool = True, server_address: Optional[str] = None,
                 port: Optional[int] = None,
                 returns_to_go: Optional[np.ndarray] = None,
                 extra_capacity: int = 0,
                 sequence_length: int = SEQUENCE_LENGTH) -> Replay:
  """Builds the Reverb replay holding every transition of a (validated) dataset.

  Args:
    episodes: RLDS episodes (`tf.data.Dataset`) or `EpisodeSteps` read from them; validate them
      first with `validate_episodes`. Ignored (may be None) with `server_address`.
    reward_shift: added to every dataset reward.
    action_clipping: (min, max) applied to every dataset action, or None.
    pad_end_of_episodes: whether one-step episodes give a padded item
      (`cql_sac.datasets.transitions`).
    server_address: 'host:port' of a running `cql_sac_reverb_server`; None starts a server in
      this process. The other process applies its own reward_shift/action_clipping.
    port: port of the in-process server; None picks a free one.
    returns_to_go: optional float [N], each dataset step's return-to-go
      (`cql_sac.datasets.returns`): items then carry policy_info['return_to_go'] (Cal-QL), as a
      third Reverb column.
    extra_capacity: room for this many more items (`Replay.add`): online fine-tuning's
      transitions in the same table (`train_eval.mixing_ratio = None`).
    sequence_length: L, steps per item: 2 (transitions) or more (sequences within an
      episode, stride 1, for recurrent networks; `sequence_item_count`).

  Returns:
    A `Replay` whose `num_items` equals the dataset's transitions (`DatasetStats.num_transitions`
    plus its one-step episodes when padded), or with L > 2 its windows of L steps.

  Raises:
    ValueError: if the dataset has no transition, or no table is served at `server_address`.
  """
  if server_address is not None:
    return _connect(server_address)
  traj_steps, spec = _trajectory_steps(episodes, reward_shift, action_clipping,
                                       pad_end_of_episodes, returns_to_go)
  server, num_items = _start_server(traj_steps, spec, port, extra_capacity, sequence_length)
  return Replay(spec, num_items, server=server, packed=True)


def build_online_replay(data_spec: trajectory.Trajectory, capacity: int,
                        port: Optional[int] = None) -> Replay:
  """Starts an empty Reverb table for online transitions, filled with `Replay.add`.

  The same packed items and uniform sampling as the dataset's table; sampling waits until
  the table holds an item (`MinSize(1)`), as CORL's online buffer is sampled from its first
  transition on.

  Args:
    data_spec: the step spec of the dataset's replay (`Replay.data_spec`).
    capacity: most items it holds, >= 1 (online fine-tuning: `online_env_steps`, one item
      per environment step).
    port: port of its in-process server; None picks a free one.

  Returns:
    A `Replay` of table `ONLINE_TABLE_NAME` with `num_items` 0.

  Raises:
    ValueError: if `capacity < 1`.
  """
  if capacity < 1:
    raise ValueError(f'The online table needs a capacity of at least 1 item, got {capacity}.')
  table = reverb.Table(
      name=ONLINE_TABLE_NAME, sampler=reverb.selectors.Uniform(),
      remover=reverb.selectors.Fifo(), max_size=capacity,
      rate_limiter=reverb.rate_limiters.MinSize(1), signature=packed_signature(data_spec))
  server = reverb.Server([table], port=port)
  return Replay(data_spec, 0, server=server, packed=True, table_name=ONLINE_TABLE_NAME)


def mixed_dataset(offline: Replay, online: Optional[Replay], batch_size: int,
                  mixing_ratio: Optional[float],
                  prefetch: int = tf.data.AUTOTUNE) -> tf.data.Dataset:
  """Batches of round(mixing_ratio·B) offline items and the rest online, concatenated.

  CORL (algorithms/finetune/cal_ql.py, corl-team/CORL@eeeeef2) and the Cal-QL authors
  (nakamotoo/Cal-QL@ac6eafe, `mixing_ratio` 0.5) draw each batch this way: a fixed number of
  items uniformly from each table, with replacement.

  Args:
    offline: the dataset's replay.
    online: the online replay (`build_online_replay`), or COMBO's model transitions
      (`cql_sac.model_rollouts.ModelReplay`); None samples only `offline` (one table
      holding both, `build_replay(extra_capacity=...)`).
    batch_size: B.
    mixing_ratio: the share of offline items in [0, 1]; None with `online` None.
    prefetch: batches to prefetch.

  Returns:
    `tf.data.Dataset` of `Trajectory` batches [B, 2]: offline items first.

  Raises:
    ValueError: if `mixing_ratio` is not in [0, 1], or is None with an online table.
  """
  if (online is None) != (mixing_ratio is None) or (
      mixing_ratio is not None and not 0.0 <= mixing_ratio <= 1.0):
    raise ValueError(f'mixing_ratio is the share of offline items in a batch, in [0, 1] with '
                     f'an online table and None without; got {mixing_ratio}.')
  num_offline = (batch_size if online is None
                 else combo_agent.num_dataset_items(batch_size, mixing_ratio))
  parts = [replay.as_dataset(size, prefetch).map(lambda traj, _: traj)
           for replay, size in ((offline, num_offline), (online, batch_size - num_offline))
           if size > 0]
  if len(parts) == 1:
    return parts[0]
  return tf.data.Dataset.zip(tuple(parts)).map(
      lambda first, second: tf.nest.map_structure(
          lambda a, b: tf.concat([a, b], axis=0), first, second)).prefetch(prefetch)

