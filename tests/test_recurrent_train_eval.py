"""train_eval with recurrent networks on the velocity-hidden task, and the options it refuses.

The run trains from sequences of the Reverb replay, evaluates and exports a recurrent policy
(cql_sac_eval carries its state through the episodes), and resumes from its checkpoint.
"""
import os

import gin
import numpy as np
import pytest

from cql_sac import envs
from cql_sac import eval as cql_eval
from cql_sac import train_eval
from tests.test_train_eval import ENV_NAME
from tests.test_train_eval import small_train_eval

RECURRENT = ['make_networks.lstm_size = (8,)']


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.slow
def test_recurrent_run_on_hidden_velocities_trains_exports_resumes(tmp_path, dataset_dir):
  gin.parse_config(RECURRENT)
  root_dir = str(tmp_path / 'run')
  common = dict(train_sequence_length=6, velocities_hidden=True, learner_iterations_per_call=20,
                policy_save_interval=20, checkpoint_interval=20, eval_interval=20)
  first = small_train_eval(root_dir, dataset_dir, num_gradient_updates=20, **common)
  assert first.train_steps == 20 and np.isfinite(first.eval_metrics['AverageReturn'])
  resumed = small_train_eval(root_dir, dataset_dir, num_gradient_updates=40, **common)
  assert resumed.train_steps == 40
  policies_dir = os.path.join(root_dir, 'policies')
  policy = cql_eval.load_policy(policies_dir)
  assert policy.policy_state_spec, 'the exported policy is recurrent'
  assert policy.time_step_spec.observation.shape == (envs.position_dims(ENV_NAME),)
  evaluated = cql_eval.evaluate(policies_dir, ENV_NAME, 1, seed=0, velocities_hidden=True)
  assert evaluated.train_step == 40 and np.isfinite(evaluated.mean_return)


@pytest.mark.parametrize('bindings, overrides, message', [
    ([], dict(train_sequence_length=5), r'train_sequence_length = 5 needs recurrent networks'),
    (RECURRENT, {}, r'set train_eval.train_sequence_length'),
    (RECURRENT, dict(train_sequence_length=5, sample_in_loop=True),
     r'train_eval.sample_in_loop does not work with recurrent networks'),
    (RECURRENT, dict(train_sequence_length=5, eval_with_q_filter=True),
     r'eval_with_q_filter does not work with recurrent networks'),
    (RECURRENT + ["make_networks.compute_dtype = 'bfloat16'"], dict(train_sequence_length=5),
     r"make_networks.compute_dtype = 'bfloat16' is for feed-forward networks"),
    ([], dict(env_name='ant-medium-v2', velocities_hidden=True),
     r'velocities_hidden: ant-medium-v2 has no velocity-hidden variant'),
])
def test_recurrent_options_fail_before_touching_root_dir(tmp_path, dataset_dir, bindings,
                                                         overrides, message):
  gin.parse_config(bindings)
  root_dir = tmp_path / 'new_run'
  with pytest.raises(train_eval.ConfigError, match=message):
    small_train_eval(str(root_dir), dataset_dir, **overrides)
  assert not root_dir.exists()


def test_positions_only_matches_the_wrapped_environment():
  env = envs.load_env(ENV_NAME, seed=3)
  hidden = envs.load_env(ENV_NAME, seed=3, velocities_hidden=True)
  full, cut = env.reset(), hidden.reset()
  action = np.full(env.action_spec().shape, 0.3, np.float32)
  for _ in range(5):
    np.testing.assert_array_equal(envs.positions_only(full.observation, ENV_NAME),
                                  cut.observation)
    full, cut = env.step(action), hidden.step(action)
  qpos = env.gym.unwrapped.data.qpos
  np.testing.assert_allclose(cut.observation, qpos[1:], rtol=1e-6)  # Hopper: qpos[1:], 5.
