"""`benchmarks.policy_landscape`: the weight moves against direct computations, and the binary
on a tiny run trained on data recorded in the real Hopper."""

import json
import os

import gin
import numpy as np
import pytest

from benchmarks import policy_landscape
from cql_sac import train_eval
from tests.test_train_eval import ENV_NAME, binary_command, run_binary


def test_perturbed_moves_each_variable_by_its_radius():
  rng = np.random.default_rng(0)
  weights = [rng.normal(size=(4, 3)), rng.normal(size=5), np.zeros(2)]
  moved = policy_landscape.perturbed(weights, 0.02, np.random.default_rng(1))
  for w, m in zip(weights[:2], moved[:2]):
    np.testing.assert_allclose(np.linalg.norm(m - w) / np.linalg.norm(w), 0.02, rtol=1e-5)
  np.testing.assert_array_equal(moved[2], 0.0)  # A zero variable stays zero.
  again = policy_landscape.perturbed(weights, 0.02, np.random.default_rng(2))
  assert not np.allclose(again[0], moved[0])  # Each draw is another direction.
  unmoved = policy_landscape.perturbed(weights, 0.0, np.random.default_rng(1))
  for w, m in zip(weights, unmoved):
    np.testing.assert_allclose(m, w, rtol=1e-6)


def test_relative_distance_is_over_all_variables_together():
  a = [np.array([3.0, 0.0]), np.array([[4.0]])]
  b = [np.array([3.0, 1.0]), np.array([[4.0 + 2.0]])]
  assert policy_landscape.relative_distance(a, b) == pytest.approx(np.sqrt(5.0) / 5.0)


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, dataset_dir):
  """A 200-step run with the greedy policy saved every 100 steps."""
  gin.clear_config()
  root_dir = str(tmp_path_factory.mktemp('landscape') / 'run')
  train_eval.train_eval(
      root_dir=root_dir, env_name=ENV_NAME, dataset_name=dataset_dir,
      actor_fc_layers=(16, 16), critic_joint_fc_layers=(16, 16), batch_size=16,
      num_cql_samples=2, num_gradient_updates=200, eval_episodes=1, eval_interval=100,
      policy_save_interval=100, checkpoint_interval=100, learner_iterations_per_call=100,
      seed=1)
  return root_dir


@pytest.mark.slow
def test_binary_scores_random_moves_and_the_training_line(tiny_run, tmp_path):
  """The training line starts at the checkpoint's own score (the same weights on the same
  seeded episodes) and ends at the other's; the files hold every point."""
  output = str(tmp_path / 'landscape')
  result = run_binary(binary_command(
      'benchmarks.policy_landscape', f'--root_dir={tiny_run}', '--steps=100', '--steps=200',
      '--lines=100:200', '--radii=0.01', '--directions=2', '--points=3', '--episodes=1',
      f'--output={output}'), cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  with open(output + '.json') as f:
    points = json.load(f)
  by_step = {row['step']: row for row in points['random_directions']}
  line, = points['training_lines']
  assert line['t'] == [0.0, 0.5, 1.0] and line['distance'] > 0
  assert line['scores'][0] == pytest.approx(by_step[100]['score'])
  assert line['scores'][-1] == pytest.approx(by_step[200]['score'])
  assert len(by_step[100]['radii']['0.01']) == 2
  with open(output + '.md') as f:
    assert '| 100 → 200 |' in f.read()


@pytest.mark.slow
@pytest.mark.parametrize('flags,message', [
    (['--lines=200:100'], '--lines=200:100 is not START:END with START < END'),
    (['--steps=150'], 'No policy checkpoint at step 150'),
    ([], 'Pass --steps'),
    (['--steps=100', '--episodes=0'], '--episodes and --directions must be >= 1'),
])
def test_bad_flags_fail_before_writing(tiny_run, tmp_path, flags, message):
  output = str(tmp_path / 'landscape')
  result = run_binary(binary_command('benchmarks.policy_landscape', f'--root_dir={tiny_run}',
                                     f'--output={output}', *flags), cwd=str(tmp_path))
  assert result.returncode != 0
  assert message in result.stderr
  assert not os.path.exists(output + '.md') and not os.path.exists(output + '.json')
