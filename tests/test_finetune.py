"""Online fine-tuning in `cql_sac_train_eval` (cql_sac.finetune) on the real Hopper and AntMaze.

Datasets and helpers as in tests/test_train_eval.py: random-policy data recorded in the real
simulators, the quickstart config with tiny networks.
"""

import os
import re

import gin
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step

from cql_sac import finetune
from cql_sac import learner as learner_lib
from cql_sac import train_eval
from cql_sac.datasets import online_episodes
from cql_sac.summaries import read_scalars
from tests.test_train_eval import REPO
from tests.test_train_eval import kill_when
from tests.test_train_eval import run_binary
from tests.test_train_eval import small_train_eval
from tests.test_train_eval import snapshot
from tests.test_train_eval import train_command


@pytest.fixture(autouse=True)
def clean_gin():
  """Each test starts and ends with no gin bindings."""
  gin.clear_config()
  yield
  gin.clear_config()


def _online_env_steps(root_dir):
  """Env steps of the complete online episodes on disk."""
  steps = online_episodes.read_episodes(os.path.join(root_dir, 'online_episodes'))
  return 0 if steps is None else steps.num_steps - steps.num_episodes


@pytest.mark.slow
def test_offline_then_online_cal_ql_resumes_after_sigkill(dataset_dir, tmp_path):
  """200 offline steps, then 600 online env steps at UTD 1 with Cal-QL; killed in the online
  phase and rerun: the train step and env steps continue to 800 and 600, every episode and
  checkpoint written before the kill is kept unchanged, evaluation runs at the switch."""
  root_dir = str(tmp_path / 'run')
  checkpoint_dir = os.path.join(root_dir, 'train', 'checkpoints')
  episodes_dir = os.path.join(root_dir, 'online_episodes')
  command = train_command(
      root_dir, dataset_dir, 'train_eval.agent_class=@CalQlAgent',
      'train_eval.checkpoint_interval=100', 'train_eval.max_checkpoints_to_keep=100',
      'train_eval.eval_interval=200', 'train_eval.summary_interval=50',
      num_steps=200) + ['--online_env_steps=600', '--learner_iterations_per_call=100']

  def online_checkpoint_and_three_episodes():
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    online = [p for p in (state.all_model_checkpoint_paths if state else [])
              if int(p.rsplit('-', 1)[1]) > 200]
    return online and len(online_episodes.episode_directories(episodes_dir)) >= 3

  kill_when(command, tmp_path, online_checkpoint_and_three_episodes)
  episodes_before = snapshot(episodes_dir)
  checkpoints_before = snapshot(checkpoint_dir)
  steps_before = _online_env_steps(root_dir)
  assert 0 < steps_before < 600

  result = run_binary(command, cwd=tmp_path, timeout=600)
  assert result.returncode == 0, result.stderr[-5000:]
  reloaded = re.search(r'Online phase resumed: (\d+) episodes, (\d+) env steps',
                       result.stderr)
  assert reloaded and int(reloaded.group(2)) >= steps_before
  assert 'Trained 800 steps' in result.stdout
  after = snapshot(episodes_dir)
  assert all(after.get(path) == digest for path, digest in episodes_before.items()
             if not path.startswith('.tmp-'))
  assert all(snapshot(checkpoint_dir).get(path) == digest
             for path, digest in checkpoints_before.items() if path != 'checkpoint')
  assert _online_env_steps(root_dir) == 600
  assert tf.train.get_checkpoint_state(checkpoint_dir).model_checkpoint_path.endswith(
      'ckpt-800')

  online = read_scalars(os.path.join(root_dir, 'online'))
  env_steps = [value for _, value in online['online/env_steps']]
  assert env_steps[-1] == 600 and env_steps == sorted(env_steps)
  for tag in ('online/episode_return', 'online/d4rl_normalized_score',
              'online/episode_length', 'online/online_share_of_batch'):
    assert tag in online, sorted(online)
  assert all(share == 0.5 for _, share in online['online/online_share_of_batch'])
  fraction = online['online/fraction_q_below_return_to_go']
  assert [step for step, _ in fraction] == [200] and 0.0 <= fraction[0][1] <= 1.0
  evals = [step for step, _ in read_scalars(os.path.join(root_dir, 'eval'))[
      'Metrics/AverageReturn']]
  assert 200 in evals and evals[-1] == 800  # At the switch and at the end.
  bound_rate = read_scalars(os.path.join(root_dir, 'train'))['cal_ql/bound_rate']
  assert max(step for step, _ in bound_rate) > 200  # Calibration on online (the authors').


@pytest.mark.slow
def test_cal_ql_antmaze_recipe_fine_tunes_in_the_real_antmaze(antmaze_dataset_dir, tmp_path):
  """configs/cal_ql/antmaze.gin as shipped but for the budget: a few hundred offline steps,
  then online steps in the real AntMaze (umaze), success and regret logged."""
  train_eval.parse_gin_config([os.path.join(REPO, 'configs', 'cal_ql', 'antmaze.gin')], [])
  root_dir = str(tmp_path / 'run')
  result = train_eval.train_eval(
      root_dir=root_dir, env_name='antmaze-umaze-v2', dataset_name=antmaze_dataset_dir,
      num_gradient_updates=200, online_env_steps=300, batch_size=32, eval_interval=0,
      eval_episodes=1, learner_iterations_per_call=100, seed=0)
  assert result.train_steps == 500
  online = read_scalars(os.path.join(root_dir, 'online'))
  assert [value for _, value in online['online/env_steps']][-1] == 300
  for tag in ('online/success', 'online/regret'):
    assert all(0.0 <= value <= 1.0 for _, value in online[tag]), tag
  assert 0.0 <= result.eval_metrics['d4rl_normalized_score'] <= 100.0  # Success rate, %.


@pytest.mark.parametrize('overrides, message', [
    (dict(online_env_steps=-1), r'train_eval.online_env_steps must be an integer >= 0'),
    (dict(updates_per_env_step=0), r'train_eval.updates_per_env_step must be an integer >= 1'),
    (dict(mixing_ratio=1.5), r'train_eval.mixing_ratio is the share of dataset items.*\[0, 1\]'),
    (dict(cql_alpha_online=1.0, use_lagrange_cql_alpha=True),
     r'cql_alpha_online=1.0 sets a fixed CQL weight'),
    (dict(sample_in_loop=True), r'Online fine-tuning adds transitions to Reverb tables'),
    (dict(cosine_decay_actor_learning_rate=True),
     r'cosine_decay_actor_learning_rate decays the actor\'s learning rate to 0'),
    (dict(cosine_decay_critic_learning_rate=True),
     r'cosine_decay_critic_learning_rate decays the critics\' learning rate to 0'),
    (dict(mixing_ratio=None, replay_server_address='localhost:1'),
     r'mixing_ratio = None adds online transitions to the dataset'),
    (dict(env_name='walker2d-random-v2'),
     r'was recorded in hopper-random-v2, not in --env_name=walker2d-random-v2'),
])
def test_bad_online_input_fails_before_touching_root_dir(tmp_path, dataset_dir, overrides,
                                                         message):
  root_dir = str(tmp_path / 'run')
  with pytest.raises(train_eval.ConfigError, match=message):
    small_train_eval(root_dir, dataset_dir, **{'online_env_steps': 100, **overrides})
  assert not os.path.exists(root_dir)


@pytest.mark.parametrize('name, expected', [
    ('finetune/mujoco', {'online_env_steps': 250000, 'reward_scale_factor': 0.1,
                         'mixing_ratio': 0.5}),
    ('cal_ql/mujoco', {'online_env_steps': 250000, 'reward_scale_factor': 0.1,
                       'calibration_online': True}),
    ('finetune/antmaze', {'online_env_steps': 1000000, 'cql_tau': 0.8,
                          'online_eval_interval': 2000}),
    ('cal_ql/antmaze', {'online_env_steps': 1000000, 'cql_tau': 0.8,
                        'cal_ql_sparse_failure_reward': 0.0}),
    ('quickstart_finetune', {'online_env_steps': 3000, 'batch_size': 64,
                             'reward_scale_factor': 0.1}),
])
def test_finetune_configs_resolve_their_includes(tmp_path, monkeypatch, name, expected):
  monkeypatch.chdir(tmp_path)
  train_eval.parse_gin_config([os.path.join(REPO, 'configs', f'{name}.gin')], [])
  for parameter, value in expected.items():
    assert gin.query_parameter(f'train_eval.{parameter}') == value, parameter
  if name.startswith('cal_ql') or name == 'quickstart_finetune':
    assert gin.query_parameter('train_eval.agent_class').selector == 'CalQlAgent'


def test_stack_exactly_draws_only_what_it_trains_on():
  batches = iter([{'x': tf.fill([2], float(i))} for i in range(10)])
  stacked = learner_lib.stack_exactly(batches, 5, max_steps=100)
  assert stacked['x'].shape == (8, 2)  # Padded to the next power of two.
  np.testing.assert_array_equal(stacked['x'][:, 0], [0, 1, 2, 3, 4, 4, 4, 4])
  assert float(next(batches)['x'][0]) == 5  # Nothing drawn beyond the 5 batches.
  assert learner_lib.stack_exactly(batches, 3, max_steps=3)['x'].shape == (3, 2)
  with pytest.raises(ValueError, match=r'num_steps must be in \[1, 3\]'):
    learner_lib.stack_exactly(batches, 4, max_steps=3)


def test_fraction_q_below_return_to_go_counts_state_critic_pairs():
  """Against the critics evaluated by hand at the same policy samples (same TF seed)."""
  from tests.agents import agent_fixtures  # pylint: disable=import-outside-toplevel
  agent = agent_fixtures.make_agent()
  rng = np.random.default_rng(0)
  observations = rng.normal(size=(50, agent_fixtures.OBS_DIM)).astype(np.float32)
  tf.random.set_seed(7)
  actions = agent.collect_policy.action(
      time_step.restart(tf.constant(observations), batch_size=50)).action
  q = np.stack([critic((observations, actions))[0].numpy() for critic in agent.critics])
  returns = (np.median(q, axis=0) + rng.normal(scale=0.01, size=50)).astype(np.float32)
  expected = np.mean(q < returns)
  assert 0.3 < expected < 0.7
  tf.random.set_seed(7)
  assert finetune.fraction_q_below_return_to_go(agent, observations, returns) == expected
  assert 0.3 < finetune.fraction_q_below_return_to_go(agent, observations, returns,
                                                      batch_size=16) < 0.7
  assert finetune.fraction_q_below_return_to_go(
      agent, observations, np.full(50, -np.inf, np.float32)) == 0.0
  assert finetune.fraction_q_below_return_to_go(
      agent, observations, np.full(50, np.inf, np.float32)) == 1.0
