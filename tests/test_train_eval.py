"""End-to-end tests of cql_sac_train_eval and cql_sac_eval on data recorded in the real Hopper.

The binaries run as subprocesses (as a user runs them) with tiny networks; bad-input checks
call `train_eval` in-process. Together about 2-3 minutes on 2 CPU cores.
"""

import dataclasses
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.agents.cql import cql_sac_agent as tf_agents_cql
from tf_agents.trajectories import time_step as ts

from cql_sac import eval as cql_eval
from cql_sac.agents import cal_ql_agent
from cql_sac import learner as learner_lib
from cql_sac import policy_rollback
from cql_sac import train_eval
from cql_sac.recording.collect import write_dataset
from cql_sac.datasets.loading import load_episodes
from cql_sac.datasets.replay import build_replay
from cql_sac.summaries import read_scalars

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ENV_NAME = 'hopper-random-v2'
# Tiny networks on top of the quickstart config, so that a run takes seconds.
TINY = ['train_eval.actor_fc_layers=(16, 16)', 'train_eval.critic_joint_fc_layers=(16, 16)',
        'train_eval.batch_size=16', 'train_eval.num_cql_samples=2', 'train_eval.eval_episodes=2']
TRAIN_TAGS = ['Losses/critic_loss', 'Losses/actor_loss', 'Losses/alpha_loss', 'Losses/cql_loss',
              'Losses/cql_alpha_loss', 'cql_alpha', 'sac_alpha', 'RunTime/train_steps_per_sec']
EVAL_TAGS = ['Metrics/AverageReturn', 'Metrics/AverageEpisodeLength',
             'Metrics/d4rl_normalized_score']


def binary_command(module, *flags):
  """The command line running `python -m <module> <flags>`."""
  return [sys.executable, '-m', module, *flags]


def train_command(root_dir, dataset_dir, *bindings, num_steps):
  """cql_sac_train_eval on the test dataset with the quickstart config and tiny networks."""
  return binary_command(
      'cql_sac.train_eval', f'--root_dir={root_dir}', f'--env_name={ENV_NAME}',
      f'--dataset_name={dataset_dir}', f'--gin_file={REPO}/configs/quickstart.gin',
      f'--num_gradient_updates={num_steps}', '--seed=1',
      *[f'--gin_bindings={b}' for b in TINY], *[f'--gin_param={b}' for b in bindings])


def run_binary(command, cwd, **kwargs):
  """Runs a binary from `cwd` with the checkout importable; returns CompletedProcess."""
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)


def kill_when(command, cwd, ready, timeout_s=400):
  """Starts a binary, SIGKILLs it as soon as `ready()` holds; fails if it ended before."""
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + timeout_s
    while time.time() < deadline and process.poll() is None and not ready():
      time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
  finally:
    process.wait()
  assert process.returncode == -signal.SIGKILL, 'the run ended before it could be killed'


@pytest.fixture(scope='module')
def finished_run(dataset_dir, tmp_path_factory):
  """A 300-step run with evaluation every 150 steps and 200 steps per Learner call.

  Runs from a directory other than the checkout, so the config's include must resolve
  relative to the config file. CQL-Lagrange is on so every loss field is summarized.
  """
  work_dir = tmp_path_factory.mktemp('cwd')
  root_dir = str(work_dir / 'run')
  result = run_binary(
      train_command(root_dir, dataset_dir, 'train_eval.use_lagrange_cql_alpha=True',
                    'train_eval.eval_interval=150', 'train_eval.summary_interval=50',
                    'train_eval.checkpoint_interval=100', 'train_eval.policy_save_interval=100',
                    num_steps=300) + ['--learner_iterations_per_call=200'],
      cwd=work_dir, timeout=600)
  assert result.returncode == 0, result.stderr[-5000:]
  return root_dir, result


@pytest.mark.slow
def test_end_to_end_writes_train_and_eval_summaries(finished_run):
  root_dir, result = finished_run
  train = read_scalars(os.path.join(root_dir, 'train'))
  evals = read_scalars(os.path.join(root_dir, 'eval'))
  assert set(TRAIN_TAGS) <= set(train), sorted(train)
  assert set(EVAL_TAGS) <= set(evals), sorted(evals)
  assert not [tag for tag in train if tag.startswith('while/')]
  # Evaluation at step 0 and at each multiple of eval_interval (150), although the Learner
  # runs 200 steps per call, and summaries every summary_interval (50) steps.
  assert [step for step, _ in evals['Metrics/AverageReturn']] == [0, 150, 300]
  assert [step for step, _ in train['Losses/cql_loss']] == list(range(0, 300, 50))
  assert 'Final evaluation: mean return' in result.stdout
  assert 'D4RL normalized score' in result.stdout
  assert re.search(r'mean episode return \d+\.\d\d', result.stdout)
  assert re.search(r'step 300/300 \(100%\), [\d.]+ steps/s, ETA', result.stderr)


@pytest.mark.slow
def test_end_to_end_saves_checkpoints_and_policies(finished_run):
  root_dir, _ = finished_run
  state = tf.train.get_checkpoint_state(os.path.join(root_dir, 'train', 'checkpoints'))
  assert state.model_checkpoint_path.endswith('ckpt-300')
  variables = [name for name, _ in tf.train.list_variables(state.model_checkpoint_path)]
  for part in ('train_step', 'log_cql_alpha', '_log_alpha', '_critic_optimizer',
               '_actor_optimizer', '_alpha_optimizer', '_target_critic_network_1'):
    assert any(part in name for name in variables), (part, variables[:20])
  for policy in ('policy', 'greedy_policy', 'collect_policy'):
    assert os.path.exists(os.path.join(root_dir, 'policies', policy, 'saved_model.pb'))
  assert os.path.isdir(os.path.join(root_dir, 'policies', 'checkpoints',
                                    'policy_checkpoint_0000000300'))


@pytest.mark.slow
def test_cql_sac_eval_prints_return_std_and_score(finished_run, tmp_path):
  root_dir, _ = finished_run
  result = run_binary(binary_command('cql_sac.eval', f'--policy_dir={root_dir}/policies',
                                     f'--env_name={ENV_NAME}', '--num_episodes=2'),
                      cwd=tmp_path, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert '(train step 300)' in result.stdout
  for line in ('mean return: ', 'std return: ', 'normalized score: '):
    assert re.search(re.escape(line) + r'-?\d+\.\d\d', result.stdout), result.stdout


@pytest.mark.slow
def test_resume_after_sigkill_continues_the_step_count(dataset_dir, tmp_path):
  root_dir = str(tmp_path / 'run')
  checkpoint_dir = os.path.join(root_dir, 'train', 'checkpoints')
  command = train_command(root_dir, dataset_dir, 'train_eval.checkpoint_interval=100',
                          'train_eval.max_checkpoints_to_keep=100',
                          'train_eval.eval_interval=0', num_steps=1000)
  command.append('--learner_iterations_per_call=100')

  def two_checkpoints():
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    return state and len(state.all_model_checkpoint_paths) >= 2

  kill_when(command, tmp_path, two_checkpoints)
  state = tf.train.get_checkpoint_state(checkpoint_dir)
  listed = [int(p.rsplit('-', 1)[1]) for p in state.all_model_checkpoint_paths]
  files_before = set(os.listdir(checkpoint_dir))
  assert max(listed) < 1000

  result = run_binary(command, cwd=tmp_path, timeout=600)
  assert result.returncode == 0, result.stderr[-5000:]
  resumed_at = int(re.search(r'Resuming from the checkpoint at step (\d+)',
                             result.stderr).group(1))
  assert resumed_at >= max(listed)
  assert f'step {resumed_at + 100}/1000' in result.stderr
  assert 'Trained 1000 steps' in result.stdout
  assert files_before <= set(os.listdir(checkpoint_dir))  # No checkpoint file lost.
  final = tf.train.get_checkpoint_state(checkpoint_dir)
  assert final.model_checkpoint_path.endswith('ckpt-1000')
  steps = [step for step, _ in read_scalars(os.path.join(root_dir, 'train'))[
      'RunTime/train_steps_per_sec']]
  assert steps[-1] == 1000 and resumed_at + 100 in steps


# --- Bad input: an error naming the fix, before training, the root_dir left intact. ----------

def snapshot(directory):
  """{relative path: sha256} of every file under `directory`."""
  files = {}
  for parent, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(parent, name)
      with open(path, 'rb') as f:
        files[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return files


@pytest.fixture
def existing_root_dir(finished_run, tmp_path):
  """A copy of a finished run's root_dir."""
  root_dir = str(tmp_path / 'run')
  shutil.copytree(finished_run[0], root_dir)
  return root_dir


@pytest.fixture(autouse=True)
def clean_gin():
  """Each test starts and ends with no gin bindings."""
  gin.clear_config()
  yield
  gin.clear_config()


def small_train_eval(root_dir, dataset_dir, **overrides):
  """Calls train_eval in-process with the test's tiny settings."""
  kwargs = dict(root_dir=root_dir, env_name=ENV_NAME, dataset_name=dataset_dir,
                actor_fc_layers=(16, 16), critic_joint_fc_layers=(16, 16), batch_size=16,
                num_cql_samples=2, num_gradient_updates=310, eval_episodes=1)
  kwargs.update(overrides)
  return train_eval.train_eval(**kwargs)


@pytest.mark.parametrize('overrides, message', [
    (dict(env_name='hopper-mediumm-v2'), r'Unknown --env_name=hopper-mediumm-v2'),
    (dict(dataset_name='d4rl_mujoco_hopper_nonexistent/v2-medium'),
     r'Cannot load --dataset_name=d4rl_mujoco_hopper_nonexistent'),
    (dict(env_name='walker2d-random-v2'),
     r'does not fit --env_name=walker2d-random-v2.*observation'),
    (dict(sample_in_loop=True, replay_server_address='localhost:1'),
     r'sample_in_loop samples in this process.*--replay_server_address'),
    (dict(sample_in_loop=True, agent_class=tf_agents_cql.CqlSacAgent),
     r"sample_in_loop needs cql_sac's CqlSacAgent.*tf_agents.agents.cql.cql_sac_agent"),
])
@pytest.mark.slow
def test_bad_env_or_dataset_fails_before_touching_root_dir(
    existing_root_dir, dataset_dir, overrides, message):
  before = snapshot(existing_root_dir)
  with pytest.raises(train_eval.ConfigError, match=message):
    small_train_eval(existing_root_dir, dataset_dir, **overrides)
  assert snapshot(existing_root_dir) == before


@pytest.mark.parametrize('overrides, message', [
    (dict(batch_size=0), r'train_eval.batch_size must be an integer >= 1, got 0\. Set it'),
    (dict(softmax_temperature=-1.0), r'train_eval.softmax_temperature must be > 0, got -1.0'),
    (dict(critic_learning_rate=0.0), r'train_eval.critic_learning_rate must be > 0, got 0.0'),
    (dict(num_cql_samples=2.5), r'train_eval.num_cql_samples must be an integer >= 1, got 2.5'),
    (dict(data_take=0), r'train_eval.data_take must be None \(the whole dataset\) or an'),
    (dict(holdout_fraction=1.0), r'train_eval.holdout_fraction .* must be in \[0, 1\), got 1.0'),
    (dict(cql_alpha=-1.0), r'train_eval.cql_alpha must be >= 0, got -1.0'),
    (dict(reward_shift=float('nan')), r'train_eval.reward_shift must be a finite number'),
    (dict(learner_iterations_per_call=0), r'learner_iterations_per_call must be an integer >= 1'),
    (dict(eval_with_q_filter=True, num_eval_samples=0),
     r'train_eval.num_eval_samples must be an integer >= 1, got 0'),
    (dict(eval_with_q_filter=True, agent_class=tf_agents_cql.CqlSacAgent),
     r"eval_with_q_filter needs cql_sac's CqlSacAgent \(its critics\)"),
])
def test_numbers_out_of_range_fail_before_touching_root_dir(tmp_path, dataset_dir, overrides,
                                                            message):
  """Before: batch_size=0 failed inside Reverb after root_dir/policies and train/ existed."""
  root_dir = tmp_path / 'new_run'
  with pytest.raises(train_eval.ConfigError, match=message):
    small_train_eval(str(root_dir), dataset_dir, **overrides)
  assert not root_dir.exists()


def test_cosine_decay_of_a_learning_rate_follows_the_formula():
  """Update n (from 0) uses lr·(1 + cos(π·n / N)) / 2, held at 0 from update N on."""
  assert train_eval.learning_rate_schedule(3e-5, False, 100) == 3e-5
  optimizer = tf.keras.optimizers.Adam(
      learning_rate=train_eval.learning_rate_schedule(1e-3, True, 10))
  variable = tf.Variable([1.0])
  for step in range(13):
    optimizer.apply_gradients([(tf.constant([1.0]), variable)])  # The rate of update `step`:
    want = 1e-3 * (1 + np.cos(np.pi * min(step, 10) / 10)) / 2
    np.testing.assert_allclose(float(optimizer.learning_rate), want, rtol=1e-5, atol=1e-9)


def test_resuming_with_another_holdout_fails_before_touching_root_dir(tmp_path, dataset_dir):
  """A run that held out 20% of its episodes must not resume holding out 10%."""
  root_dir = tmp_path / 'run'
  root_dir.mkdir()
  (root_dir / 'run_record.json').write_text('{"holdout": {"fraction": 0.2, "seed": 1}}')
  before = snapshot(str(root_dir))
  with pytest.raises(train_eval.ConfigError, match=r'holding out a fraction 0.2 .* seed 1, '
                     r'not 0.1 with seed 1'):
    small_train_eval(str(root_dir), dataset_dir, holdout_fraction=0.1, seed=1)
  assert snapshot(str(root_dir)) == before


@pytest.mark.parametrize('bindings, message', [
    (['num_critics = 1'], r'CqlSacAgent: num_critics must be an integer >= 2, got 1'),
    (['cql_clip_diff_min = 1.0', 'cql_clip_diff_max = 0.0'],
     r'CqlSacAgent: cql_clip_diff_min \(1.0\) must be <= cql_clip_diff_max \(0.0\)'),
    (['max_target_backup = True', 'max_target_num_samples = 0'],
     r'max_target_num_samples must be an integer >= 1, got 0'),
])
@pytest.mark.slow
def test_agent_arguments_out_of_range_fail_before_touching_root_dir(
    existing_root_dir, dataset_dir, bindings, message):
  gin.parse_config([f'cql_sac.agents.cql_sac_agent.CqlSacAgent.{b}' for b in bindings])
  before = snapshot(existing_root_dir)
  with pytest.raises(train_eval.ConfigError, match=message):  # Not even the new config kept.
    small_train_eval(existing_root_dir, dataset_dir, allow_config_change=True)
  assert snapshot(existing_root_dir) == before


@pytest.mark.slow
def test_normalization_on_a_constant_observation_dimension(existing_root_dir, dataset_dir,
                                                           monkeypatch):
  """A dimension with std 0 is named; the run stops before writing."""
  read = train_eval.load_episode_steps

  def with_constant_dimension(*args, **kwargs):
    steps = read(*args, **kwargs)
    observation = steps.observation.copy()
    observation[:, 4] = 0.5
    return dataclasses.replace(steps, observation=observation)

  monkeypatch.setattr(train_eval, 'load_episode_steps', with_constant_dimension)
  before = snapshot(existing_root_dir)
  with pytest.raises(train_eval.ConfigError,
                     match=r'Observation dimension\(s\) \[4\] are constant over the dataset'):
    small_train_eval(existing_root_dir, dataset_dir, normalize_observations=True)
  assert snapshot(existing_root_dir) == before


@pytest.mark.slow
def test_q_filtered_policy_is_evaluated_exported_and_loaded(tmp_path, dataset_dir):
  """train_eval.eval_with_q_filter: evaluation and policies/q_filtered_policy with its
  checkpoints; cql_sac_eval's q_filter loads it at the last step."""
  root_dir = str(tmp_path / 'run')
  result = small_train_eval(root_dir, dataset_dir, num_gradient_updates=60,
                            policy_save_interval=30, eval_interval=0,
                            learner_iterations_per_call=30, eval_with_q_filter=True,
                            num_eval_samples=3)
  assert np.isfinite(result.eval_metrics['AverageReturn'])
  policies_dir = os.path.join(root_dir, 'policies')
  assert sorted(os.listdir(os.path.join(policies_dir, 'q_filtered_checkpoints'))) == [
      'policy_checkpoint_0000000030', 'policy_checkpoint_0000000060']
  evaluated = cql_eval.evaluate(policies_dir, ENV_NAME, 1, seed=0, q_filter=True)
  assert evaluated.train_step == 60 and np.isfinite(evaluated.mean_return)
  with pytest.raises(ValueError, match='No Q-filtered policy at'):
    cql_eval.load_policy(str(tmp_path), q_filter=True)


@pytest.mark.slow
def test_averaged_actor_is_evaluated_exported_and_loaded(tmp_path, dataset_dir):
  """CqlSacAgent.actor_ema_tau: eval/ scores the averaged actor, eval_raw_actor/ the trained
  one at the same steps; policies/ema_greedy_policy carries the averaged weights, which
  cql_sac_eval's ema loads (and refuses for a run without them)."""
  gin.parse_config(['cql_sac.agents.cql_sac_agent.CqlSacAgent.actor_ema_tau = 0.05'])
  root_dir = str(tmp_path / 'run')
  small_train_eval(root_dir, dataset_dir, num_gradient_updates=60, policy_save_interval=30,
                   eval_interval=30, learner_iterations_per_call=30, seed=1)
  tag = 'Metrics/AverageReturn'
  averaged = read_scalars(os.path.join(root_dir, 'eval'))[tag]
  trained = read_scalars(os.path.join(root_dir, train_eval.RAW_ACTOR_EVAL_DIR))[tag]
  assert [step for step, _ in averaged] == [step for step, _ in trained] == [0, 30, 60]
  assert averaged[0][1] == trained[0][1]  # Step 0: the average is the initial actor.
  policies_dir = os.path.join(root_dir, 'policies')
  assert sorted(os.listdir(os.path.join(policies_dir, 'ema_checkpoints'))) == [
      'policy_checkpoint_0000000030', 'policy_checkpoint_0000000060']
  time_step = ts.restart(np.linspace(-1, 1, 11, dtype=np.float32))
  actions = {name: cql_eval.load_policy(policies_dir, ema=ema).action(time_step).action
             for name, ema in (('averaged', True), ('trained', False))}
  assert not np.allclose(actions['averaged'], actions['trained'])
  evaluated = cql_eval.evaluate(policies_dir, ENV_NAME, 1, seed=0, ema=True)
  assert evaluated.train_step == 60 and np.isfinite(evaluated.mean_return)
  with pytest.raises(ValueError, match='No averaged-actor policy at'):
    cql_eval.load_policy(str(tmp_path), ema=True)


@pytest.mark.slow
def test_cal_ql_trains_on_the_datasets_returns_to_go(tmp_path, dataset_dir):
  """agent_class = CalQlAgent: the replay's items carry returns-to-go, the bound rate reaches
  TensorBoard; an external Reverb server (no returns) is refused before anything is written."""
  root_dir = str(tmp_path / 'run')
  result = small_train_eval(root_dir, dataset_dir, agent_class=cal_ql_agent.CalQlAgent,
                            num_gradient_updates=60, summary_interval=30, eval_interval=0,
                            learner_iterations_per_call=30)
  assert result.train_steps == 60
  bound_rate = read_scalars(os.path.join(root_dir, 'train'))['cal_ql/bound_rate']
  assert [step for step, _ in bound_rate] == [0, 30]  # Written before the step counts.
  assert all(0.0 <= rate <= 1.0 for _, rate in bound_rate)
  with pytest.raises(train_eval.ConfigError, match='CalQlAgent needs returns-to-go'):
    small_train_eval(str(tmp_path / 'other'), dataset_dir, agent_class=cal_ql_agent.CalQlAgent,
                     replay_server_address='localhost:1')
  assert not (tmp_path / 'other').exists()


@pytest.mark.slow
def test_corrupt_checkpoints_are_named_and_kept(existing_root_dir, dataset_dir):
  """None of the checkpoints can be read (one damaged newest one is set aside and the
  previous one resumed: tests/test_reliability.py)."""
  data_files = tf.io.gfile.glob(os.path.join(existing_root_dir, 'train', 'checkpoints',
                                             'ckpt-*.data-00000-of-00001'))
  assert len(data_files) >= 2
  for data_file in data_files:
    with open(data_file, 'r+b') as f:
      f.truncate(os.path.getsize(data_file) // 2)
  before = snapshot(existing_root_dir)
  with pytest.raises(train_eval.ConfigError) as error:
    small_train_eval(existing_root_dir, dataset_dir)
  assert 'ckpt-300.data-00000-of-00001' in str(error.value)
  assert '--root_dir' in str(error.value)
  assert snapshot(existing_root_dir) == before


@pytest.mark.slow
def test_a_finished_run_started_again_reports_its_last_evaluation(existing_root_dir,
                                                                  dataset_dir):
  """No new evaluation (whose episodes would differ) replaces the logged final one."""
  eval_dir = os.path.join(existing_root_dir, 'eval')
  logged = read_scalars(eval_dir)
  result = small_train_eval(existing_root_dir, dataset_dir, num_gradient_updates=300,
                            allow_config_change=True)  # Settings other than the CLI run's.
  assert result.train_steps == 300
  for name in ('AverageReturn', 'StdReturn', 'AverageEpisodeLength', 'd4rl_normalized_score'):
    assert result.eval_metrics[name] == logged[f'Metrics/{name}'][-1][1], name
  assert read_scalars(eval_dir) == logged


@pytest.mark.slow
def test_a_seed_fixes_the_untrained_policy(tmp_path, dataset_dir):
  """Same seed: the same step-0 evaluation; another seed: another untrained policy.

  That a seeded run with sampling inside the loop repeats its training is
  `test_sample_in_loop_resumes_exactly` (two runs from one seed, variable for variable).
  """
  def untrained_return(name, seed):
    root_dir = str(tmp_path / name)
    small_train_eval(root_dir, dataset_dir, seed=seed, num_gradient_updates=0)
    [(step, value)] = read_scalars(os.path.join(root_dir, 'eval'))['Metrics/AverageReturn']
    assert step == 0
    return value

  first = untrained_return('first', 3)
  assert untrained_return('again', 3) == first
  assert untrained_return('other', 4) != first


@pytest.mark.slow
def test_checkpoint_of_other_network_sizes(existing_root_dir, dataset_dir):
  before = snapshot(os.path.join(existing_root_dir, 'train', 'checkpoints'))
  with pytest.raises(train_eval.ConfigError, match='other network sizes.*another --root_dir'):
    small_train_eval(existing_root_dir, dataset_dir, critic_joint_fc_layers=(8, 8),
                     allow_config_change=True)
  assert snapshot(os.path.join(existing_root_dir, 'train', 'checkpoints')) == before


def test_external_reverb_server_with_other_specs(tmp_path, dataset_dir):
  walker_dir = write_dataset('walker2d-random-v2', 'random', 200, str(tmp_path / 'walker'))
  server = build_replay(load_episodes(walker_dir))  # Serves walker2d transitions.
  try:
    with pytest.raises(train_eval.ConfigError, match=r'serves observations and actions of '
                       r'shapes \[\(17,\), \(6,\)\].*needs \[\(11,\), \(3,\)\]'):
      small_train_eval(str(tmp_path / 'run'), dataset_dir,
                       replay_server_address=f'localhost:{server.server.port}')
  finally:
    server.close()


@pytest.mark.slow
def test_tf_agents_agent_trains_in_the_same_binary(tmp_path, dataset_dir):
  """The reference row of benchmarks.quality: tf_agents' own CqlSacAgent through
  train_eval (gin `train_eval.agent_class`), Reverb, the fused learner and evaluation."""
  gin.parse_config(
      'train_eval.agent_class = @tf_agents.agents.cql.cql_sac_agent.CqlSacAgent')
  root_dir = str(tmp_path / 'run')
  result = small_train_eval(root_dir, dataset_dir, num_gradient_updates=200,
                            learner_iterations_per_call=100)
  assert result.train_steps == 200 and 'AverageReturn' in result.eval_metrics
  losses = read_scalars(os.path.join(root_dir, 'train'))
  assert np.isfinite([v for _, v in losses['Losses/cql_loss']]).all()


def _checkpoint_values(root_dir):
  """{name: value} of every float variable (optimizer slots included) in the last checkpoint
  under root_dir/train/checkpoints."""
  reader = tf.train.load_checkpoint(os.path.join(root_dir, 'train', 'checkpoints'))
  values = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
  return {name: value for name, value in values.items()
          if isinstance(value, np.ndarray) and value.dtype.kind == 'f'}


@pytest.mark.slow
def test_sample_in_loop_resumes_exactly(tmp_path, dataset_dir):
  """With sampling inside the loop, batch t is seeded by t (and --seed seeds every
  initializer): 300 steps in one run equal 200 steps and a resumed run to 300, variable for
  variable."""
  settings = dict(sample_in_loop=True, eval_episodes=0, learner_iterations_per_call=100,
                  checkpoint_interval=100, seed=1)
  straight = str(tmp_path / 'straight')
  result = small_train_eval(straight, dataset_dir, num_gradient_updates=300, **settings)
  assert result.train_steps == 300
  resumed = str(tmp_path / 'resumed')
  small_train_eval(resumed, dataset_dir, num_gradient_updates=200, **settings)
  small_train_eval(resumed, dataset_dir, num_gradient_updates=300, **settings)
  expected, actual = _checkpoint_values(straight), _checkpoint_values(resumed)
  assert expected.keys() == actual.keys() and len(expected) > 10
  for name, value in expected.items():
    np.testing.assert_allclose(actual[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_unwritable_root_dir(tmp_path, dataset_dir):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  with pytest.raises(train_eval.ConfigError, match='not a writable directory'):
    small_train_eval(str(blocker / 'run'), dataset_dir)
  assert blocker.read_text() == 'not a directory'


def test_missing_gin_file():
  with pytest.raises(train_eval.ConfigError, match=r'--gin_file=configs/nope.gin not found'):
    train_eval.parse_gin_config(['configs/nope.gin'], [])


def test_unknown_gin_parameter_suggests_the_closest():
  with pytest.raises(train_eval.ConfigError, match=r"batchsize.*Did you mean: batch_size"):
    train_eval.parse_gin_config([], ['train_eval.batchsize = 64'])


@pytest.mark.parametrize('name, parameter, value, temperature, reward_scale', [
    ('mujoco_medium', 'cql_alpha', 5.0, 10.0, 0.1),
    ('mujoco_medium_expert', 'cql_alpha', 5.0, 10.0, 0.1),
    ('mujoco_medium_replay', 'num_cql_samples', 10, 1.0, 1.0),  # On corl/mujoco.gin.
    ('combo_medium_replay', 'cql_alpha', 1.0, 1.0, 1.0),  # On mujoco_medium_replay.gin.
    ('mujoco_recurrent', 'train_sequence_length', 10, 10.0, 0.1),
    ('antmaze', 'reward_shift', -0.5, None, None),
    ('quickstart', 'batch_size', 64, 50.0, 0.1)])
def test_configs_resolve_includes_from_any_directory(tmp_path, monkeypatch, name, parameter,
                                                     value, temperature, reward_scale):
  monkeypatch.chdir(tmp_path)
  train_eval.parse_gin_config([os.path.join(REPO, 'configs', f'{name}.gin')], [])
  assert gin.query_parameter(f'train_eval.{parameter}') == value
  if name != 'antmaze':  # Included (antmaze keeps the default temperature).
    assert gin.query_parameter('train_eval.reward_scale_factor') == reward_scale
    assert gin.query_parameter('train_eval.softmax_temperature') == temperature


def test_combo_config_rolls_the_policy_back():
  """configs/combo_medium_replay.gin turns policy rollback on, rated by COMBO's own model."""
  train_eval.parse_gin_config([os.path.join(REPO, 'configs', 'combo_medium_replay.gin')], [])
  assert gin.query_parameter('RollbackConfig.tolerance') == 0.1
  assert policy_rollback.RollbackConfig().model_seed is None


@pytest.mark.parametrize('recipe', ['corl/mujoco', 'jaxcql/mujoco', 'jrl/mujoco', 'corl/antmaze',
                                    'jaxcql/antmaze', 'finetune/antmaze', 'cal_ql/antmaze'])
def test_anchor_recipes_weight_uniform_samples_by_their_density(recipe):
  """CORL, JaxCQL, JRL and the Cal-QL authors all subtract log U(a) = -d log 2 from the uniform
  samples' Q; tf_agents' formula (the agent's default) gives -d^2 log 2 for the environments'
  per-dimension bounds, so every recipe that claims an anchor's CQL term must switch it."""
  train_eval.parse_gin_config([os.path.join(REPO, 'configs', f'{recipe}.gin')], [])
  assert gin.query_parameter(
      'cql_sac.agents.cql_sac_agent.CqlSacAgent.per_dimension_uniform_log_density') is True


def test_medium_replay_config_keeps_the_density_it_was_measured_with():
  """configs/mujoco_medium_replay.gin includes corl/mujoco.gin but keeps tf_agents' density,
  with which every number in its header was measured (CORL's ended lower on Hopper)."""
  train_eval.parse_gin_config([os.path.join(REPO, 'configs', 'mujoco_medium_replay.gin')], [])
  assert gin.query_parameter(
      'cql_sac.agents.cql_sac_agent.CqlSacAgent.per_dimension_uniform_log_density') is False


@pytest.mark.parametrize('recipe', ['corl/mujoco', 'jaxcql/mujoco', 'jrl/mujoco',
                                    'corl/antmaze', 'jaxcql/antmaze', 'mujoco_medium_replay'])
@pytest.mark.slow
def test_recipe_trains_200_steps_end_to_end(recipe, dataset_dir, antmaze_dataset_dir, tmp_path):
  """Each anchor recipe, as shipped but for batch size and evaluation length, on data recorded
  in the real Hopper (AntMaze for the AntMaze recipes)."""
  train_eval.parse_gin_config([os.path.join(REPO, 'configs', f'{recipe}.gin')], [])
  antmaze = recipe.endswith('antmaze')
  result = train_eval.train_eval(
      root_dir=str(tmp_path / 'run'), env_name='antmaze-umaze-v2' if antmaze else ENV_NAME,
      dataset_name=antmaze_dataset_dir if antmaze else dataset_dir, num_gradient_updates=200,
      batch_size=32, eval_interval=0, eval_episodes=1, learner_iterations_per_call=100,
      seed=0)
  assert result.train_steps == 200
  assert np.isfinite(result.eval_metrics['AverageReturn'])


def test_includes_resolve_next_to_the_including_file_after_a_recipe(tmp_path, monkeypatch):
  """configs/corl/mujoco.gin parsed first (as benchmarks.quality does) must not become the
  `include 'mujoco.gin'` of configs/mujoco_medium.gin."""
  monkeypatch.chdir(tmp_path)
  train_eval.parse_gin_config([os.path.join(REPO, 'configs', 'corl', 'mujoco.gin')], [])
  gin.clear_config()
  train_eval.parse_gin_config([os.path.join(REPO, 'configs', 'mujoco_medium.gin')], [])
  assert gin.query_parameter('train_eval.cql_alpha') == 5.0
  assert gin.query_parameter('train_eval.reward_scale_factor') == 0.1


@pytest.mark.slow
def test_cli_reports_bad_input_without_traceback(existing_root_dir, dataset_dir, tmp_path):
  before = snapshot(existing_root_dir)
  result = run_binary(
      binary_command('cql_sac.train_eval', f'--root_dir={existing_root_dir}',
                     f'--env_name={ENV_NAME}', f'--dataset_name={dataset_dir}',
                     '--gin_file=configs/missing.gin'), cwd=tmp_path, timeout=300)
  assert result.returncode != 0
  assert 'cql_sac_train_eval: error: --gin_file=configs/missing.gin not found' in result.stderr
  assert 'Traceback' not in result.stderr
  assert snapshot(existing_root_dir) == before


@pytest.mark.parametrize('step, expected', [
    (0, 150), (150, 150), (300, 100), (100, 50), (390, 10)])
def test_learner_calls_stop_at_each_evaluation_and_the_end(step, expected):
  # 400 steps, at most 200 per call, evaluation every 150 steps.
  assert learner_lib.iterations_until_next_stop(step, 400, 200, 150) == expected
