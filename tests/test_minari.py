"""Minari datasets: the reader against files the real minari wrote, the evaluation environment
and scores from their metadata, the errors, training on one, and the project's Minari writer.

The fixtures under tests/data/minari were written by minari 0.5.3 itself
(tests/data/minari/make_fixtures.py; versions in tests/data/minari/README.md).
"""

import json
import logging
import os
import shutil

import gin
import h5py
import numpy as np
import pytest

from cql_sac import envs
from cql_sac import tasks
from cql_sac import train_eval
from cql_sac.datasets import loading
from cql_sac.datasets import minari as minari_reader
from cql_sac.datasets import transitions
from cql_sac.datasets import validation
from cql_sac.recording import collect
from cql_sac.recording import make_behavior

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'minari')
HOPPER_ID = 'cql_sac_test/hopper-random-v0'
MAZE_ID = 'cql_sac_test/pointmaze-umaze-random-v0'
HOPPER = os.path.join(FIXTURES, HOPPER_ID)
MAZE = os.path.join(FIXTURES, MAZE_ID)


def raw_episodes(directory):
  """Each episode's arrays as minari stored them, read here with h5py, in episode order."""
  with h5py.File(os.path.join(directory, 'data', 'main_data.hdf5'), 'r') as f:
    count = len(f.keys())
    def read(node):
      return ({key: node[key][()] for key in node} if isinstance(node, h5py.Group)
              else node[()])
    return [{key: read(f[f'episode_{i}'][key]) for key in
             ('observations', 'actions', 'rewards', 'terminations', 'truncations')}
            for i in range(count)]


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_hopper_fixture_reads_every_transition_with_its_ending():
  raw = raw_episodes(HOPPER)
  steps = loading.load_episode_steps(HOPPER)
  env = envs.load_env(HOPPER)
  stats = validation.validate_episodes(steps, HOPPER, env.observation_spec(), env.action_spec())
  terminated = [bool(e['terminations'][-1]) for e in raw]
  truncated = [bool(e['truncations'][-1]) and not t for e, t in zip(raw, terminated)]
  assert stats.num_transitions == sum(len(e['rewards']) for e in raw) == 277
  assert stats.num_episodes == 12
  assert (stats.num_terminal_episodes, stats.num_truncated_episodes) == (
      sum(terminated), sum(truncated)) == (8, 4)
  # Items: s, a, r, discount -> s' exactly as stored, in episode order (not HDF5's name order).
  trajectory_steps = transitions.to_trajectory_steps(steps)
  traj, items = trajectory_steps.trajectory, trajectory_steps.items
  expected = {key: np.concatenate([e[key] for e in raw]) for key in ('actions', 'rewards')}
  np.testing.assert_array_equal(traj.observation[items[:, 0]], np.concatenate(
      [e['observations'][:-1] for e in raw]).astype(np.float32))
  np.testing.assert_array_equal(traj.observation[items[:, 1]], np.concatenate(
      [e['observations'][1:] for e in raw]).astype(np.float32))
  np.testing.assert_array_equal(traj.action[items[:, 0]], expected['actions'])
  np.testing.assert_allclose(traj.reward[items[:, 0]], expected['rewards'], rtol=1e-6)
  # Termination -> discount 0 on the episode's last transition; truncation bootstraps.
  expected_discount = np.concatenate([
      np.append(np.ones(len(e['rewards']) - 1), 0.0 if t else 1.0)
      for e, t in zip(raw, terminated)])
  np.testing.assert_array_equal(traj.discount[items[:, 0]], expected_discount)


def test_evaluation_env_and_score_come_from_the_metadata(tmp_path):
  env = envs.load_env(HOPPER, seed=0)
  assert (env.gym.spec.id, env.gym.spec.max_episode_steps) == ('Hopper-v5', 30)
  copy = str(tmp_path / 'hopper-v0')
  shutil.copytree(HOPPER, copy)
  metadata_path = os.path.join(copy, 'data', 'metadata.json')
  with open(metadata_path) as f:
    metadata = json.load(f)
  metadata.update(ref_min_score=10.0, ref_max_score=1010.0)
  with open(metadata_path, 'w') as f:
    json.dump(metadata, f)
  # The metadata's references, not D4RL's Hopper table (-20.27, 3234.3).
  assert tasks.d4rl_normalized_score(copy, 510.0) == pytest.approx(50.0)
  # An evaluation spec, when the dataset has one (D4RL's AntMaze on Minari), wins.
  eval_spec = json.loads(metadata['env_spec'])
  eval_spec['max_episode_steps'] = 17
  metadata['eval_env_spec'] = json.dumps(eval_spec)
  with open(metadata_path, 'w') as f:
    json.dump(metadata, f)
  assert envs.load_env(copy).gym.spec.max_episode_steps == 17


def test_dict_observations_keep_the_goal(caplog):
  raw = raw_episodes(MAZE)
  steps = loading.load_episode_steps(MAZE)
  env = envs.load_env(MAZE, seed=0)
  assert env.observation_spec().shape == (8,)
  validation.validate_episodes(steps, MAZE, env.observation_spec(), env.action_spec())
  stored = np.concatenate([np.concatenate([e['observations'][key] for key in (
      'achieved_goal', 'observation', 'desired_goal')], axis=1) for e in raw])
  np.testing.assert_array_equal(steps.observation, stored.astype(np.float32))
  assert np.abs(steps.observation[:, 6:]).sum() > 0  # The desired goal is there.
  # The environment flattens the same way: achieved_goal is the position in observation.
  first = env.reset().observation
  np.testing.assert_allclose(first[:2], first[2:4])
  with caplog.at_level(logging.INFO):
    from cql_sac import eval as cql_eval  # pylint: disable=g-import-not-at-top
    metric = cql_eval.NormalizedScoreMetric(MAZE, 1)
  assert np.isnan(metric.result())
  assert 'no ref_min_score/ref_max_score' in caplog.text


def test_minari_prefix_resolves_under_the_datasets_root(monkeypatch):
  monkeypatch.setenv('MINARI_DATASETS_PATH', FIXTURES)
  by_id = loading.load_episode_steps('minari:' + HOPPER_ID, take=3)
  by_path = loading.load_episode_steps(HOPPER, take=3)
  assert by_id.num_episodes == 3
  np.testing.assert_array_equal(by_id.observation, by_path.observation)
  assert loading.recorded_env_name('minari:' + HOPPER_ID) == 'minari:' + HOPPER_ID


def test_missing_dataset_names_the_download(monkeypatch, tmp_path):
  monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path))
  with pytest.raises(ValueError, match=r'minari download mujoco/hopper/medium-v0'):
    loading.load_episode_steps('minari:mujoco/hopper/medium-v0')
  with pytest.raises(train_eval.ConfigError, match=r'minari download mujoco/hopper/medium-v0'):
    train_eval.train_eval(root_dir=str(tmp_path / 'run'), env_name=None,
                          dataset_name='minari:mujoco/hopper/medium-v0')


def test_env_name_other_than_the_datasets_fails_naming_both(tmp_path):
  assert minari_reader.evaluation_env_name('Hopper-v5', HOPPER) == HOPPER
  assert minari_reader.evaluation_env_name(None, HOPPER) == HOPPER
  with pytest.raises(train_eval.ConfigError,
                     match=r'--env_name=hopper-medium-v2 differs from Hopper-v5.*drop --env_name'):
    train_eval.train_eval(root_dir=str(tmp_path / 'run'), env_name='hopper-medium-v2',
                          dataset_name=HOPPER)
  with pytest.raises(train_eval.ConfigError, match=r'--env_name is required'):
    train_eval.train_eval(root_dir=str(tmp_path / 'run'), env_name=None,
                          dataset_name='d4rl_mujoco_hopper/v2-medium')
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.parametrize('damage', ['truncate', 'garbage'])
def test_damaged_data_file_is_one_line_naming_it(tmp_path, damage):
  copy = str(tmp_path / 'hopper-v0')
  shutil.copytree(HOPPER, copy)
  path = os.path.join(copy, 'data', 'main_data.hdf5')
  if damage == 'truncate':
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)
  else:
    with open(path, 'wb') as f:
      f.write(b'not hdf5' * 100)
  with pytest.raises(ValueError) as error:
    loading.load_episode_steps(copy)
  message = str(error.value)
  assert '\n' not in message
  assert path in message and 'minari download --force' in message


def test_episode_with_missing_final_observation_is_rejected(tmp_path):
  copy = str(tmp_path / 'hopper-v0')
  shutil.copytree(HOPPER, copy)
  with h5py.File(os.path.join(copy, 'data', 'main_data.hdf5'), 'r+') as f:
    observations = f['episode_3/observations'][()]
    del f['episode_3/observations']
    f['episode_3/observations'] = observations[:-1]
  with pytest.raises(ValueError, match=r'episode_3 has \d+ rewards but lengths'):
    loading.load_episode_steps(copy)


@pytest.mark.slow
def test_trains_100_steps_on_the_real_minari_hopper(tmp_path):
  result = train_eval.train_eval(
      root_dir=str(tmp_path / 'run'), env_name=None, dataset_name=HOPPER,
      actor_fc_layers=(16, 16), critic_joint_fc_layers=(16, 16), batch_size=16,
      num_cql_samples=2, num_gradient_updates=100, learner_iterations_per_call=50,
      eval_episodes=1, eval_interval=100)
  assert result.train_steps == 100
  assert (result.dataset_num_episodes, result.dataset_num_transitions) == (12, 277)
  assert np.isfinite(result.eval_metrics['d4rl_normalized_score'])


def write_both_formats(tmp_path):
  """The same seeded random recording written as RLDS and as Minari."""
  kwargs = dict(env_name='hopper-random-v2', policy='random', num_steps=200, seed=1,
                max_episode_steps=25)
  rlds_dir = collect.write_dataset(output_dir=str(tmp_path / 'rlds'), **kwargs)
  minari_dir = collect.write_dataset(output_dir=str(tmp_path / 'cql_sac' / 'hopper-v0'),
                                     dataset_format='minari', **kwargs)
  return rlds_dir, minari_dir


def test_project_written_minari_dataset_reads_back_like_its_rlds_twin(tmp_path):
  rlds_dir, minari_dir = write_both_formats(tmp_path)
  rlds = loading.load_episode_steps(rlds_dir)
  written = loading.load_episode_steps(minari_dir)
  for field in ('observation', 'is_first', 'is_last', 'is_terminal'):
    np.testing.assert_array_equal(getattr(written, field), getattr(rlds, field), err_msg=field)
  not_last = ~rlds.is_last  # RLDS leaves the last step's action and reward undefined.
  for field in ('action', 'reward', 'discount'):
    np.testing.assert_array_equal(getattr(written, field)[not_last],
                                  getattr(rlds, field)[not_last], err_msg=field)
  assert written.is_terminal.any() and (rlds.is_last & ~rlds.is_terminal).any()
  assert envs.load_env(minari_dir).gym.spec.id == 'Hopper-v4'
  with pytest.raises(ValueError, match='already holds a Minari dataset'):
    collect.write_dataset('hopper-random-v2', 'random', 10, minari_dir, dataset_format='minari')


def test_real_minari_loads_a_project_written_dataset(tmp_path, monkeypatch):
  minari = pytest.importorskip('minari')
  _, minari_dir = write_both_formats(tmp_path)
  monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path))
  ours = loading.load_episode_steps(minari_dir)
  dataset = minari.load_dataset('cql_sac/hopper-v0')
  episodes = list(dataset.iterate_episodes())
  assert dataset.total_steps == 200 and len(episodes) == ours.num_episodes
  np.testing.assert_array_equal(np.concatenate([e.observations for e in episodes]),
                                ours.observation)
  assert sum(bool(e.terminations[-1]) for e in episodes) == int(ours.is_terminal.sum())


@pytest.mark.slow
def test_make_behavior_writes_minari_datasets(tmp_path):
  result = make_behavior.make_behavior_datasets(
      'hopper', str(tmp_path), max_env_steps=120, target_return=1e9, initial_collect_steps=60,
      eval_interval=30, eval_episodes=1, medium_steps=50, random_steps=40,
      hidden_layers=(8,), batch_size=8, max_episode_steps=20, seed=1, dataset_format='minari')
  expected_steps = {'medium': 50, 'random': 40, 'medium-replay': result.policy_env_steps}
  for kind, path in result.dataset_dirs.items():
    with open(os.path.join(path, 'data', 'metadata.json')) as f:
      metadata = json.load(f)
    assert metadata['dataset_id'] == f'cql_sac/hopper-{kind}-v2'
    stats = validation.validate_episodes(loading.load_episode_steps(path), path,
                                         envs.load_env(path).observation_spec(),
                                         envs.load_env(path).action_spec())
    assert expected_steps[kind] - stats.num_transitions in (
        (0,) if kind != 'medium-replay' else (0, 1))
    assert metadata['total_steps'] == stats.num_transitions


def test_project_written_antmaze_dataset_rebuilds_its_wrapped_environment(tmp_path):
  path = collect.write_dataset('antmaze-umaze-v2', 'random', 30, str(tmp_path / 'antmaze-v0'),
                               seed=0, max_episode_steps=20, dataset_format='minari')
  steps = loading.load_episode_steps(path)
  env = envs.load_env(path)  # gym.make(env_spec) with the D4RL observation wrapper.
  assert env.observation_spec().shape == steps.observation.shape[1:] == (29,)
  validation.validate_episodes(steps, path, env.observation_spec(), env.action_spec())
