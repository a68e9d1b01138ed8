"""Registry names, TFDS configs, environment specs, normalized scores, and name errors."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cql_sac import envs
from cql_sac import tasks as d4rl
from cql_sac.datasets import loading

_TASKS = ('hopper', 'halfcheetah', 'walker2d', 'ant')


def test_every_d4rl_name_resolves_to_a_tfds_config():
  names = d4rl.all_env_names()
  # 4 tasks x (5 datasets x v0/v1/v2 + full-replay x v1/v2) + 6 AntMaze x v0/v2.
  assert len(names) == 4 * (5 * 3 + 2) + 6 * 2
  assert 'hopper-medium-v2' in names and 'antmaze-medium-play-v0' in names
  for name in names:
    info = d4rl.get_dataset_info(name)
    builder_name, config = info.tfds_name.split('/')
    builder_class = tfds.builder_cls(builder_name)
    assert config in {c.name for c in builder_class.BUILDER_CONFIGS}, name
    assert info.max_episode_steps == (700 if name.startswith('antmaze-umaze') else 1000)


def test_mapping_examples():
  info = d4rl.get_dataset_info('hopper-medium-replay-v0')
  assert info.tfds_name == 'd4rl_mujoco_hopper/v0-mixed'
  info = d4rl.get_dataset_info('antmaze-medium-play-v0')
  assert (info.tfds_name, info.gym_env_id, info.is_antmaze) == (
      'd4rl_antmaze/medium-play-v0', 'AntMaze_Medium-v4', True)


@pytest.mark.parametrize('name', [f'{t}-medium-v2' for t in _TASKS] + ['antmaze-umaze-v2'])
def test_environment_specs_equal_dataset_specs(name):
  info = d4rl.get_dataset_info(name)
  env = envs.load_env(name, seed=0)
  assert env.observation_spec().shape == (info.observation_dim,)
  assert env.observation_spec().dtype == np.float32
  assert env.action_spec().shape == (info.action_dim,)
  np.testing.assert_array_equal(env.action_spec().minimum, -1.0)
  np.testing.assert_array_equal(env.action_spec().maximum, 1.0)
  time_step = env.reset()
  assert time_step.observation.shape == (info.observation_dim,)
  assert env.gym.spec.max_episode_steps == info.max_episode_steps
  env.close()


def test_antmaze_starts_at_the_d4rl_origin():
  env = envs.load_env('antmaze-large-diverse-v2', seed=0)
  xy = env.reset().observation[:2]
  assert np.all(np.abs(xy) <= 1.0)  # D4RL start cell centre (0, 0), +-1 m reset noise.
  env.close()


@pytest.mark.parametrize('task, low, high', [
    ('halfcheetah', -280.178953, 12135.0), ('hopper', -20.272305, 3234.3),
    ('walker2d', 1.629008, 4592.3), ('ant', -325.6, 3879.7)])
def test_normalized_score_is_0_and_100_at_the_reference_returns(task, low, high):
  name = f'{task}-medium-v2'
  assert d4rl.d4rl_normalized_score(name, low) == pytest.approx(0.0)
  assert d4rl.d4rl_normalized_score(name, high) == pytest.approx(100.0)
  np.testing.assert_allclose(d4rl.d4rl_normalized_score(name, np.array([low, high])), [0, 100])


def test_antmaze_normalized_score_is_success_rate():
  assert d4rl.d4rl_normalized_score('antmaze-umaze-v0', np.mean([1, 0, 1, 1])) == 75.0


def test_unknown_names_list_closest_matches(tmp_path):
  with pytest.raises(ValueError, match='Closest known names: hopper-medium-v2'):
    d4rl.get_dataset_info('hoper-medium-v2')
  with pytest.raises(ValueError, match='Closest known names: walker2d-expert-v2'):
    envs.load_env('walker-expert-v2')
  with pytest.raises(ValueError, match='Fix: use a TFDS name'):
    loading.load_episodes('no_such_dataset/v2-medium', data_dir=str(tmp_path))
  with pytest.raises(ValueError, match='does not exist'):
    loading.load_episodes(str(tmp_path / 'missing'))
  with pytest.raises(ValueError, match='no dataset_info.json'):
    loading.load_episodes(str(tmp_path))
