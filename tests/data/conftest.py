"""Shared fixture: one small Hopper dataset recorded from the real simulator."""

import pytest

from cql_sac import envs
from cql_sac.recording import collect
from tests.data import helpers


@pytest.fixture(scope='session')
def hopper_dataset(tmp_path_factory):
  """(dataset directory, recorded transitions) of a random Hopper run."""
  env = envs.load_env(helpers.ENV_NAME, max_episode_steps=helpers.TIME_LIMIT)
  policy = helpers.RecordingPolicy(env.time_step_spec(), env.action_spec())
  path = collect.write_dataset(helpers.ENV_NAME, policy, helpers.NUM_STEPS,
                               str(tmp_path_factory.mktemp('hopper') / 'rlds'), seed=helpers.SEED,
                               max_episode_steps=helpers.TIME_LIMIT)
  return path, helpers.replay_in_simulator(policy.actions)
