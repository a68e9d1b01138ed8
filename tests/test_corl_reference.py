"""benchmarks/corl_reference.py without torch, CORL or ../shared (a fresh clone has none).

The export is checked against transitions replayed in the real simulator, the gym stand-in
against gymnasium's Hopper and gym 0.23's semantics, the wandb stand-in against what CORL's
train() logs, and the whole path (export, a CORL process, the JSON and table) with a stand-in
checkout whose cql.py makes CORL's calls (plus stand-ins for torch and pyrallis in the child
process only).
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import gymnasium
import numpy as np
import pytest

from benchmarks import corl_reference as cr
from cql_sac import envs
from cql_sac import tasks
from cql_sac.recording import collect
from tests.data import helpers

_TASK = cr.OfflineTask('hopper-medium-replay-v2', 'Hopper-v4', 1000, -20.272305, 3234.3)


@pytest.fixture(scope='module')
def recorded(tmp_path_factory):
  """(dataset directory, transitions replayed in the simulator) of a random Hopper run whose
  25-step time limit gives both terminal and timed-out episodes."""
  env = envs.load_env(helpers.ENV_NAME, max_episode_steps=helpers.TIME_LIMIT)
  policy = helpers.RecordingPolicy(env.time_step_spec(), env.action_spec())
  root = tmp_path_factory.mktemp('corl_data')
  path = collect.write_dataset(helpers.ENV_NAME, policy, helpers.NUM_STEPS,
                               str(root / helpers.ENV_NAME), seed=helpers.SEED,
                               max_episode_steps=helpers.TIME_LIMIT)
  return path, helpers.replay_in_simulator(policy.actions)


@pytest.fixture(scope='module')
def exported(recorded, tmp_path_factory):
  """(npz path, metadata) of the recorded dataset."""
  path = str(tmp_path_factory.mktemp('corl_export') / 'data.npz')
  return path, cr.export_dataset(recorded[0], helpers.ENV_NAME, path)


def test_export_holds_the_simulator_transitions_in_d4rl_layout(recorded, exported):
  _, expected = recorded
  path, meta = exported
  with np.load(path) as data:
    arrays = {key: data[key] for key in data.files}
  assert sorted(arrays) == sorted(cr.NPZ_KEYS)
  np.testing.assert_array_equal(arrays['observations'], expected.observation)
  np.testing.assert_array_equal(arrays['actions'], expected.action)
  np.testing.assert_array_equal(arrays['rewards'], expected.reward)
  np.testing.assert_array_equal(arrays['next_observations'], expected.next_observation)
  terminal = expected.discount == 0
  np.testing.assert_array_equal(arrays['terminals'], terminal)
  np.testing.assert_array_equal(arrays['timeouts'], expected.episode_end & ~terminal)
  assert terminal.sum() >= 2 and (expected.episode_end & ~terminal).sum() >= 2  # Both kinds.
  for key in ('observations', 'actions', 'next_observations', 'rewards'):
    assert arrays[key].dtype == np.float32, key
  assert arrays['terminals'].dtype == arrays['timeouts'].dtype == np.bool_
  ends = np.flatnonzero(expected.episode_end) + 1
  returns = [chunk.astype(np.float64).sum() for chunk in np.split(expected.reward, ends[:-1])]
  info = tasks.get_dataset_info(helpers.ENV_NAME)
  assert meta['dataset_score'] == pytest.approx(
      tasks.d4rl_normalized_score(helpers.ENV_NAME, np.mean(returns)), rel=1e-5)
  assert (meta['ref_min_score'], meta['ref_max_score'], meta['gym_env_id']) == (
      info.ref_min_score, info.ref_max_score, 'Hopper-v4')
  assert (meta['num_transitions'], meta['num_episodes']) == (len(expected.reward), len(ends))
  assert meta['num_terminals'] + meta['num_timeouts'] == len(ends)


def test_d4rl_stand_in_returns_qlearning_dataset_keys_from_the_export(exported):
  path, meta = exported
  task = cr.OfflineTask(meta['env_name'], meta['gym_env_id'], 1000, meta['ref_min_score'],
                        meta['ref_max_score'], path)
  modules = cr.make_shim_modules({task.env_name: task}, cr.WandbRecorder())
  env = modules['gym'].make(task.env_name)
  data = modules['d4rl'].qlearning_dataset(env)
  assert sorted(data) == sorted(cr.QLEARNING_KEYS)
  with np.load(path) as saved:
    for key in cr.QLEARNING_KEYS:
      np.testing.assert_array_equal(data[key], saved[key])
  assert data['rewards'].shape == data['terminals'].shape == (meta['num_transitions'],)
  assert modules['d4rl'].get_normalized_score(task.env_name, 1000.0) == pytest.approx(
      tasks.d4rl_normalized_score(task.env_name, 1000.0) / 100)
  with pytest.raises(KeyError, match='next_observations'):
    cr.qlearning_dataset(env, {'observations': data['observations']})
  env.close()


def test_gym_stand_in_is_gymnasium_hopper_behind_the_old_api():
  env = cr.OldGymEnv(_TASK)
  ours = envs.make_gym_env(_TASK.env_name)
  assert (env.gymnasium_env.spec.id, env.gymnasium_env.spec.max_episode_steps) == (
      ours.spec.id, ours.spec.max_episode_steps)
  reference = gymnasium.make('Hopper-v4', max_episode_steps=1000)
  assert env.seed(7) == [7]
  observation = env.reset()
  assert isinstance(observation, np.ndarray) and observation.shape == (11,)
  np.testing.assert_array_equal(observation, reference.reset(seed=7)[0])
  rng = np.random.default_rng(0)
  for step in range(1000):
    action = rng.uniform(-1, 1, 3).astype(np.float32)
    result = env.step(action)
    assert len(result) == 4
    observation, reward, done, info = result
    ref_observation, ref_reward, terminated, truncated, _ = reference.step(action)
    np.testing.assert_array_equal(observation, ref_observation)
    assert reward == ref_reward and done == (terminated or truncated)
    if done:
      break
  assert terminated and step < 999  # A random Hopper falls: a terminal, not a timeout.
  assert not info.get('TimeLimit.truncated', False)
  env.close()


def test_gym_stand_in_time_limit_and_seeding_follow_gym_0_23():
  env = cr.OldGymEnv(cr.OfflineTask(**{**vars(_TASK), 'max_episode_steps': 5}))
  env.reset()
  for _ in range(4):
    assert not env.step(np.zeros(3, np.float32))[2]
  _, _, done, info = env.step(np.zeros(3, np.float32))
  assert done and info['TimeLimit.truncated']  # D4RL's timeouts, not its terminals.
  env.seed(3)
  first, second = env.reset(), env.reset()
  env.seed(3)
  np.testing.assert_array_equal(env.reset(), first)  # Each evaluation: the same starts.
  np.testing.assert_array_equal(env.reset(), second)
  assert not np.array_equal(first, second)
  env.close()


def test_wrappers_forward_and_evaluations_record_episode_returns():
  gym = cr.make_shim_modules({_TASK.env_name: _TASK}, cr.WandbRecorder())['gym']
  env = gym.make(_TASK.env_name)
  # CORL's wrap_env and eval_actor (cql.py), with a constant action for the actor.
  wrapped = gym.wrappers.TransformObservation(env, lambda state: (state - 1.0) / 2.0)
  wrapped = gym.wrappers.TransformReward(wrapped, lambda reward: 5.0 * reward)
  assert float(wrapped.action_space.high[0]) == 1.0
  assert wrapped.observation_space.shape == (11,) and wrapped.unwrapped is env
  with pytest.raises(AttributeError):
    _ = wrapped._pending_seed  # gym 0.23: private names are not forwarded.
  wrapped.seed(0)
  wrapped.action_space.seed(0)
  totals = []
  for _ in range(2):
    state, done, total = wrapped.reset(), False, 0.0
    raw = env.gymnasium_env.unwrapped._get_obs()
    np.testing.assert_allclose(state, (raw - 1.0) / 2.0)
    while not done:
      state, reward, done, _ = wrapped.step(np.full(3, 0.5, np.float32))
      total += reward
    totals.append(total)
  assert env.evaluations[-1]['seed'] == 0
  np.testing.assert_allclose(5.0 * np.array(env.evaluations[-1]['returns']), totals)
  assert wrapped.get_normalized_score(500.0) == pytest.approx(
      tasks.d4rl_normalized_score(_TASK.env_name, 500.0) / 100)
  env.close()


def test_wandb_stand_in_records_scores_and_thinned_losses():
  recorder = cr.WandbRecorder(train_log_interval=10)
  modules = cr.make_shim_modules({}, recorder)
  previous = cr.install_shims(modules)
  try:
    import wandb  # pylint: disable=import-outside-toplevel  # The stand-in, as CORL imports it.
    wandb.init(config={'seed': 0}, project='CORL', group='g', name='n', id='x')
    wandb.run.save()
    for step in range(1, 21):
      wandb.log({'qf1_loss': float(step)}, step=step)
      if step % 5 == 0:
        wandb.log({cr.SCORE_KEY: 10.0 * step}, step=step)
    wandb.finish()
  finally:
    cr.restore_modules(previous)
  assert sys.modules.get('wandb') is not modules['wandb']
  assert recorder.config == {'seed': 0} and recorder.init_kwargs['project'] == 'CORL'
  assert recorder.num_logged == 24 and recorder.finished
  assert recorder.curve() == [[5, 50.0], [10, 100.0], [15, 150.0], [20, 200.0]]
  assert recorder.curve('qf1_loss') == [[10, 10.0], [20, 20.0]]


def test_checkout_and_override_errors_are_one_line(tmp_path, capsys):
  with pytest.raises(cr.CorlReferenceError, match='is no CORL checkout') as error:
    cr.corl_paths(str(tmp_path), 'hopper', 'medium-replay')
  assert '\n' not in str(error.value)
  script = tmp_path / cr.CORL_SCRIPT
  script.parent.mkdir(parents=True)
  script.write_text('x = 1\n')
  with pytest.raises(cr.CorlReferenceError, match='no CQL config for hopper-medium-replay-v2'):
    cr.corl_paths(str(tmp_path), 'hopper', 'medium-replay')
  with pytest.raises(cr.CorlReferenceError, match='defines no TrainConfig'):
    cr.train_config_fields(str(script))
  script.write_text('@dataclass\nclass TrainConfig:\n    seed: int = 0\n    batch_size: int = 2\n'
                    '    device: str = "cuda"\n    eval_freq: int = 1\n    n_episodes: int = 1\n'
                    '    max_timesteps: int = 1\n    cql_n_actions: int = 10\n')
  fields = cr.train_config_fields(str(script))
  overrides = cr.config_overrides(fields, 2, 100, 10, 5, 64, ['cql_n_actions=4'])
  assert overrides == {'device': 'cpu', 'seed': '2', 'max_timesteps': '100', 'eval_freq': '10',
                       'n_episodes': '5', 'batch_size': '64', 'cql_n_actions': '4'}
  with pytest.raises(cr.CorlReferenceError, match='has no field width'):
    cr.config_overrides(fields, 0, 100, 10, 5, 64, ['width=64'])
  with pytest.raises(cr.CorlReferenceError, match='expected FIELD=VALUE'):
    cr.config_overrides(fields, 0, 100, 10, 5, 64, ['cql_n_actions'])
  assert cr.main(['--corl_dir', str(tmp_path / 'nowhere'), '--data_dir', str(tmp_path)]) == 2
  message = capsys.readouterr().err.strip()
  assert message.startswith('error: --corl_dir=') and '\n' not in message


# A stand-in CORL checkout: cql.py makes the calls CORL's train() makes (CORL's
# algorithms/offline/cql.py at eeeeef2), with a constant actor and no learning.
_FAKE_CQL = '''
import os
import uuid
from dataclasses import asdict, dataclass

import d4rl
import gym
import numpy as np
import pyrallis
import torch
import wandb


@dataclass
class TrainConfig:
    device: str = "cuda"
    env: str = "halfcheetah-medium-expert-v2"
    seed: int = 0
    eval_freq: int = int(5e3)
    n_episodes: int = 10
    max_timesteps: int = int(1e6)
    batch_size: int = 256
    cql_n_actions: int = 10
    project: str = "CORL"
    group: str = "CQL-D4RL"
    name: str = "CQL"


def eval_actor(env, n_episodes, seed):
    env.seed(seed)
    episode_rewards = []
    for _ in range(n_episodes):
        state, done = env.reset(), False
        episode_reward = 0.0
        while not done:
            state, reward, done, _ = env.step(np.full(3, 0.1 * (state[0] > 0)))
            episode_reward += reward
        episode_rewards.append(episode_reward)
    return np.asarray(episode_rewards)


@pyrallis.wrap()
def train(config: TrainConfig):
    env = gym.make(config.env)
    dataset = d4rl.qlearning_dataset(env)
    mean, std = dataset["observations"].mean(0), dataset["observations"].std(0) + 1e-3
    env = gym.wrappers.TransformObservation(env, lambda state: (state - mean) / std)
    env.seed(config.seed)
    env.action_space.seed(config.seed)
    wandb.init(config=asdict(config), project=config.project, group=config.group,
               name=config.name, id=str(uuid.uuid4()))
    wandb.run.save()
    for t in range(int(config.max_timesteps)):
        batch = np.random.randint(0, len(dataset["rewards"]), size=config.batch_size)
        wandb.log({"reward_mean": float(dataset["rewards"][batch].mean()),
                   "cql_n_actions": config.cql_n_actions}, step=t + 1)
        if (t + 1) % config.eval_freq == 0:
            scores = eval_actor(env, config.n_episodes, config.seed)
            wandb.log({"d4rl_normalized_score": env.get_normalized_score(scores.mean()) * 100.0},
                      step=t + 1)
'''

# Stand-ins for the child process only: torch (threads) and pyrallis 0.3.1's wrap(), which
# parses sys.argv (--config_path=<file>, --field=value) and ignores train()'s arguments.
_FAKE_TORCH = '__version__ = "stand-in"\n_n = [4]\ndef set_num_threads(n): _n[0] = n\n' \
              'def get_num_threads(): return _n[0]\n'
_FAKE_PYRALLIS = '''
import dataclasses, functools, inspect, json, sys


def wrap(config_path=None):
    def outer(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            cls = inspect.getfullargspec(fn).annotations["config"]
            values = {}
            for arg in sys.argv[1:]:
                key, _, value = arg[2:].partition("=")
                if key == "config_path":
                    values.update(json.load(open(value)))
                else:
                    values[key] = value
            types = {f.name: f.type for f in dataclasses.fields(cls)}
            return fn(cls(**{k: types[k](v) for k, v in values.items()}))
        return inner
    return outer
'''


@pytest.fixture
def fake_corl(tmp_path, monkeypatch):
  """A stand-in checkout committed to git, and the child's stand-in modules on PYTHONPATH."""
  if shutil.which('git') is None:
    pytest.skip('git is needed to check the checkout')
  corl = tmp_path / 'corl'
  (corl / 'algorithms' / 'offline').mkdir(parents=True)
  (corl / cr.CORL_SCRIPT).write_text(_FAKE_CQL)
  config = corl / 'configs' / 'offline' / 'cql' / 'hopper' / 'random_v2.yaml'
  config.parent.mkdir(parents=True)
  config.write_text(json.dumps({'env': 'hopper-random-v2', 'eval_freq': 5000, 'device': 'cuda',
                                'batch_size': 256, 'group': 'cql-hopper-random-v2'}))  # YAML.
  for args in (['init', '-q'], ['add', '.'], ['-c', 'user.name=t', '-c', 'user.email=t@t',
                                              'commit', '-q', '-m', 'stand-in']):
    subprocess.run(['git', '-C', str(corl), *args], check=True)
  fakes = tmp_path / 'fakes'
  fakes.mkdir()
  (fakes / 'torch.py').write_text(_FAKE_TORCH)
  (fakes / 'pyrallis.py').write_text(_FAKE_PYRALLIS)
  monkeypatch.setenv('PYTHONPATH', str(fakes))
  return corl


def test_end_to_end_writes_quality_layout_and_stability_table(recorded, fake_corl, tmp_path):
  data_dir = os.path.dirname(recorded[0])
  argv = ['--corl_dir', str(fake_corl), '--data_dir', data_dir, '--env', 'hopper',
          '--dataset', 'random', '--num_seeds', '2', '--num_steps', '20', '--eval_interval',
          '10', '--eval_episodes', '2', '--width', '256', '--set', 'cql_n_actions=4',
          '--root_dir', str(tmp_path / 'runs'), '--output_dir', str(tmp_path / 'out'),
          '--corl_python', sys.executable, '--train_log_interval', '5']
  args = cr._parser().parse_args(argv)  # pylint: disable=protected-access
  table = cr.run_reference(args)
  with open(tmp_path / 'out' / 'corl_hopper_random_0.02k.json') as f:
    output = json.load(f)
  # benchmarks.quality's keys and curve layout, CORL's algorithm name.
  assert {'protocol', 'num_steps', 'eval_interval', 'eval_episodes', 'data_dir',
          'extra_bindings', 'dataset_scores', 'curves', 'rows'} <= set(output)
  curves = output['curves']['random'][cr.ALGORITHM]
  assert sorted(curves) == ['0', '1'] and [s for s, _ in curves['0']] == [10, 20]
  assert output['rows'][0]['algorithm'] == cr.ALGORITHM and output['rows'][0]['seeds'] == 2
  run = output['runs']['0']
  # The logged score is the normalized mean of the episodes the gym stand-in recorded.
  for (step, score), evaluation in zip(curves['0'], run['evaluations']):
    assert evaluation['step'] == step and len(evaluation['returns']) == 2
    assert score == pytest.approx(
        tasks.d4rl_normalized_score('hopper-random-v2', np.mean(evaluation['returns'])))
  # The overrides reached CORL's TrainConfig through its own command-line parsing.
  assert {k: run['config'][k] for k in ('device', 'seed', 'max_timesteps', 'eval_freq',
                                        'n_episodes', 'batch_size', 'cql_n_actions')} == {
      'device': 'cpu', 'seed': 0, 'max_timesteps': 20, 'eval_freq': 10, 'n_episodes': 2,
      'batch_size': 64, 'cql_n_actions': 4}
  assert output['runs']['1']['config']['seed'] == 1
  assert [step for step, _ in run['train_log']] == [5, 10, 15, 20]
  assert run['torch_threads'] == 1 and output['corl']['commit'] is not None
  assert output['dataset_scores']['random'] == pytest.approx(
      cr.export_dataset(recorded[0], 'hopper-random-v2', str(tmp_path / 'x.npz'))
      ['dataset_score'])
  assert "CORL's own code (" in table and 'width 256, batch 64, cql_n_actions=4' in table
  with open(tmp_path / 'out' / 'corl_hopper_random_0.02k.md') as f:
    assert f.read() == table
  # A finished seed is reused; a modified checkout is refused.
  log = tmp_path / 'runs' / '0.02k' / 'hopper-random-v2' / 'seed0' / 'corl.log'
  mtime = os.path.getmtime(log)
  cr.run_reference(args)
  assert os.path.getmtime(log) == mtime
  # --first_seed starts the range later: seed 1 alone, reused, in the table.
  log1 = log.parent.parent / 'seed1' / 'corl.log'
  mtime1 = os.path.getmtime(log1)
  cr.run_reference(cr._parser().parse_args(  # pylint: disable=protected-access
      argv + ['--first_seed', '1', '--num_seeds', '1']))
  assert os.path.getmtime(log1) == mtime1
  with open(tmp_path / 'out' / 'corl_hopper_random_0.02k.json') as f:
    assert sorted(json.load(f)['curves']['random'][cr.ALGORITHM]) == ['1']
  with open(fake_corl / cr.CORL_SCRIPT, 'a') as f:
    f.write('# edited\n')
  with pytest.raises(cr.CorlReferenceError, match='is modified'):
    cr.run_reference(args)


def test_a_failing_corl_process_names_its_log(recorded, fake_corl, tmp_path):
  with open(fake_corl / cr.CORL_SCRIPT, 'a') as f:
    f.write(textwrap.dedent('''
        def _broken(*args, **kwargs):
            raise RuntimeError("stand-in failure")
        train = _broken
        '''))
  subprocess.run(['git', '-C', str(fake_corl), '-c', 'user.name=t', '-c', 'user.email=t@t',
                  'commit', '-q', '-am', 'broken'], check=True)
  args = cr._parser().parse_args([  # pylint: disable=protected-access
      '--corl_dir', str(fake_corl), '--data_dir', os.path.dirname(recorded[0]), '--env',
      'hopper', '--dataset', 'random', '--num_seeds', '1', '--num_steps', '10',
      '--eval_interval', '10', '--width', '256', '--root_dir', str(tmp_path / 'runs'),
      '--output_dir', str(tmp_path / 'out'), '--corl_python', sys.executable])
  with pytest.raises(cr.CorlReferenceError,
                     match=r'RuntimeError: stand-in failure \(log: .*corl\.log\)'):
    cr.run_reference(args)
