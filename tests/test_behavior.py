"""cql_sac_make_behavior on a tiny budget writes the three datasets with their provenance."""

import json
import os

import pytest

from cql_sac import envs
from cql_sac.datasets import loading
from cql_sac.recording import make_behavior
from cql_sac.datasets import validation
from cql_sac.datasets import writing


@pytest.mark.slow
def test_tiny_budget_writes_three_datasets(tmp_path):
  result = make_behavior.make_behavior_datasets(
      'hopper', str(tmp_path), max_env_steps=120, target_return=1e9, initial_collect_steps=60,
      eval_interval=30, eval_episodes=1, medium_steps=50, random_steps=40,
      hidden_layers=(8,), batch_size=8, max_episode_steps=20, seed=1)

  assert result.policy_env_steps in (90, 120)  # Best of the two evaluations; target unmet.
  assert 0 < result.policy_train_steps <= result.policy_env_steps - 60
  assert os.path.isdir(os.path.join(tmp_path, 'policies', 'medium'))
  expected_steps = {'medium': 50, 'random': 40, 'medium-replay': result.policy_env_steps}
  for kind, path in result.dataset_dirs.items():
    assert path == os.path.join(tmp_path, f'hopper-{kind}-v2')
    with open(os.path.join(path, writing.METADATA_FILE)) as f:
      metadata = json.load(f)
    env = envs.load_env(f'hopper-{kind}-v2')
    stats = validation.validate_episodes(loading.load_episodes(path), path,
                                         env.observation_spec(), env.action_spec())
    num_transitions = stats.num_transitions
    # The replay dataset drops the last logged step, whose next observation is unknown.
    assert expected_steps[kind] - num_transitions in ((0,) if kind != 'medium-replay' else (0, 1))
    if kind != 'random':
      assert metadata['behavior_policy_return'] == result.policy_return
      assert metadata['behavior_policy_env_steps'] == result.policy_env_steps
      assert metadata['behavior_seed'] == 1
