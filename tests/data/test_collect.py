"""Recording a saved TF-Agents policy and the cql_sac_make_dataset command line."""

import pytest
from tf_agents.policies import policy_saver
from tf_agents.policies import random_tf_policy
from tf_agents.specs import tensor_spec

from cql_sac import envs
from cql_sac.datasets import loading
from cql_sac.recording import make_dataset
from cql_sac.datasets import validation


def test_saved_model_policy_dataset_validates(tmp_path):
  env = envs.load_env('hopper-medium-v2')
  policy = random_tf_policy.RandomTFPolicy(tensor_spec.from_spec(env.time_step_spec()),
                                           tensor_spec.from_spec(env.action_spec()))
  policy_dir = str(tmp_path / 'policy')
  policy_saver.PolicySaver(policy, batch_size=None).save(policy_dir)
  output_dir = str(tmp_path / 'rlds')
  with pytest.raises(SystemExit) as exit_info:  # absl's app.run exits when main returns.
    make_dataset.main(['cql_sac_make_dataset', '--env_name=hopper-medium-v2',
                       f'--policy={policy_dir}', '--num_steps=40',
                       f'--output_dir={output_dir}', '--max_episode_steps=15'])
  assert not exit_info.value.code
  stats = validation.validate_episodes(loading.load_episodes(output_dir), output_dir,
                                       env.observation_spec(), env.action_spec())
  assert stats.num_transitions == 40
