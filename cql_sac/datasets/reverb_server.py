"""cql_sac_reverb_server: a Reverb server process holding a whole offline dataset.

  cql_sac_reverb_server --port=8000 --dataset_name=d4rl_mujoco_hopper/v2-medium
  # trainer: build_replay(None, server_address='localhost:8000')

The process loads the episodes, writes every transition to its table (see
`cql_sac.datasets.replay`), prints a line with the port and the item count, and serves until killed.
Apply --reward_shift/--action_clipping here: the trainer's transforms do not reach this process.
"""

from absl import app
from absl import flags

from cql_sac.datasets import loading
from cql_sac.datasets import replay

_PORT = flags.DEFINE_integer('port', None, 'Port to serve on.', required=True)
_DATASET_NAME = flags.DEFINE_string(
    'dataset_name', None, 'TFDS name or dataset directory (see load_episodes).', required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory.')
_DATA_TAKE = flags.DEFINE_integer('data_take', None, 'Keep only the first N episodes.')
_REWARD_SHIFT = flags.DEFINE_float('reward_shift', 0.0, 'Added to every dataset reward.')
_ACTION_CLIPPING = flags.DEFINE_list(
    'action_clipping', None, 'min,max to clip every dataset action to.')
_PAD_END_OF_EPISODES = flags.DEFINE_bool(
    'pad_end_of_episodes', True, 'Whether one-step episodes give a padded item.')


def serve(argv=None) -> None:
  """Loads the dataset, fills the table and serves forever (body of `main`)."""
  del argv
  clipping = (tuple(float(x) for x in _ACTION_CLIPPING.value)
              if _ACTION_CLIPPING.value else None)
  if clipping is not None and len(clipping) != 2:
    raise app.UsageError('--action_clipping takes two numbers: min,max.')
  episodes = loading.load_episodes(_DATASET_NAME.value, _DATA_DIR.value, _DATA_TAKE.value)
  server_replay = replay.build_replay(
      episodes, reward_shift=_REWARD_SHIFT.value, action_clipping=clipping,
      pad_end_of_episodes=_PAD_END_OF_EPISODES.value, port=_PORT.value)
  print(f'Reverb server ready on port {_PORT.value} with {server_replay.num_items} items.',
        flush=True)
  server_replay.server.wait()


def main(argv=None) -> None:
  """Entry point of the console script `cql_sac_reverb_server`."""
  app.run(serve, argv=argv)


if __name__ == '__main__':
  main()
