"""`cql_sac_select` (`cql_sac.select`) on a tiny run trained on data recorded in the real Hopper,
and its bad-input errors."""

import json
import os
import shutil

import gin
import numpy as np
import pytest

from cql_sac import eval as cql_eval
from cql_sac import model_ope
from cql_sac import ope
from cql_sac import select
from cql_sac import tasks
from cql_sac import train_eval
from cql_sac.datasets.holdout import holdout_episodes
from cql_sac.summaries import read_scalars
from tests.test_train_eval import ENV_NAME, binary_command, run_binary, snapshot

FAST_FQE = ope.FqeConfig(num_steps=300, batch_size=16, hidden_layers=(16, 16),
                         steps_per_call=100)
FAST_MODEL = model_ope.ModelConfig(ensemble_size=2, hidden_layers=(16,), num_steps=200,
                                   steps_per_call=100, num_rollouts=5, horizon=20)


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, dataset_dir):
  """A 300-step run holding out 20% of the episodes, with a policy and a train checkpoint
  saved, and an evaluation logged, every 100 steps."""
  gin.clear_config()
  root_dir = str(tmp_path_factory.mktemp('select') / 'run')
  result = train_eval.train_eval(
      root_dir=root_dir, env_name=ENV_NAME, dataset_name=dataset_dir,
      actor_fc_layers=(16, 16), critic_joint_fc_layers=(16, 16), batch_size=16,
      num_cql_samples=2, num_gradient_updates=300, eval_episodes=1, eval_interval=100,
      policy_save_interval=100, checkpoint_interval=100, max_checkpoints_to_keep=5,
      learner_iterations_per_call=100, holdout_fraction=0.2, seed=1)
  with open(os.path.join(root_dir, 'run_record.json')) as f:
    holdout = json.load(f)['holdout']
  assert result.dataset_num_episodes == holdout['num_episodes'] - len(holdout['episodes']) > 0
  return root_dir


def _copy(root_dir, tmp_path):
  """A copy of the run to change."""
  copy = str(tmp_path / 'copy')
  shutil.copytree(root_dir, copy)
  return copy


@pytest.mark.slow
def test_select_end_to_end(tiny_run, tmp_path):
  """The binary prints one line naming the chosen step, writes the table (with the eval/
  returns at each step), figure and ope/ scalars, and exports a policy cql_sac_eval loads at
  that step; a rerun reuses every estimate."""
  result = run_binary(binary_command('cql_sac.select', f'--root_dir={tiny_run}',
                                     '--fqe_steps=300'), cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('selected step ')
  chosen_step = int(lines[0].split()[2])
  with open(os.path.join(tiny_run, 'run_record.json')) as f:
    holdout = json.load(f)['holdout']
  assert holdout['fraction'] == 0.2 and holdout['seed'] == 1
  assert holdout['episodes'] == holdout_episodes(holdout['num_episodes'], 0.2, 1).tolist()
  selection_dir = os.path.join(tiny_run, select.SELECTION_DIR)
  with open(os.path.join(selection_dir, select.ESTIMATES_FILE)) as f:
    rows = json.load(f)['rows']
  assert [row['step'] for row in rows] == [100, 200, 300]
  real = dict(read_scalars(os.path.join(tiny_run, 'eval'))['Metrics/AverageReturn'])
  for row in rows:
    assert row['real_return'] == pytest.approx(real[row['step']])
    for column in ('fqe_value', 'fqe_return', 'fqe_normalized_score', 'critic_value',
                   'critic_td_error'):
      assert np.isfinite(row[column]), column
  best, last = max(rows, key=lambda row: row['fqe_value']), rows[-1]
  keeps_last = best['fqe_value'] - last['fqe_value'] <= 0.1 * abs(last['fqe_value'])
  assert chosen_step == (last if keeps_last else best)['step']  # The default margin, 10%.
  assert os.path.getsize(os.path.join(selection_dir, 'estimates.png')) > 0
  with open(os.path.join(selection_dir, 'estimates.csv')) as f:
    assert len(f.read().strip().splitlines()) == 4
  tags = read_scalars(selection_dir)
  assert [step for step, _ in tags['ope/fqe_value']] == [100, 200, 300]
  assert 'ope/critic_td_error' in tags
  policy = cql_eval.load_policy(
      os.path.join(tiny_run, 'policies', select.SELECTED_POLICY_DIR))
  assert policy.get_train_step() == chosen_step

  def no_second_estimate(*args):
    raise AssertionError(f'estimated again: {args[1]}')

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(select, 'estimate', no_second_estimate)
    chosen, again = select.select(tiny_run, ope.FqeConfig(
        num_steps=300, batch_size=16, hidden_layers=(16, 16)), keep_last_margin=0.1)
  assert [row['fqe_value'] for row in again] == [row['fqe_value'] for row in rows]
  assert chosen['step'] == chosen_step


@pytest.mark.slow
def test_model_estimates_join_the_fqe_estimates(tiny_run, tmp_path):
  """--estimator=model adds the model's columns to an earlier FQE table without recomputing
  it, chooses the best model return, and a rerun reuses the saved model and every estimate."""
  run = _copy(tiny_run, tmp_path)
  shutil.rmtree(os.path.join(run, select.SELECTION_DIR), ignore_errors=True)
  _, fqe_rows = select.select(run, FAST_FQE)
  with pytest.MonkeyPatch.context() as patch:
    real_estimate = select.estimate

    def model_only(*args):
      assert args[5] is None, 'FQE estimated again'
      return real_estimate(*args)

    patch.setattr(select, 'estimate', model_only)
    chosen, rows = select.select(run, FAST_FQE, estimator='model', estimates=['model'],
                                 model_config=FAST_MODEL)
  assert [row['fqe_value'] for row in rows] == [row['fqe_value'] for row in fqe_rows]
  for row in rows:
    assert np.isfinite(row['model_return']) and 1 <= row['model_length'] <= 20
    assert row['model_normalized_score'] == pytest.approx(
        tasks.d4rl_normalized_score(ENV_NAME, row['model_return']))
  assert chosen['step'] == max(rows, key=lambda row: row['model_return'])['step']
  with open(os.path.join(run, select.SELECTION_DIR, select.ESTIMATES_FILE)) as f:
    assert set(json.load(f)['settings']) == {'policy', 'fqe', 'model'}
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(select, 'estimate', lambda *args: pytest.fail('estimated again'))
    patch.setattr(model_ope, 'fit_dynamics_model', lambda *args: pytest.fail('fit again'))
    _, again = select.select(run, FAST_FQE, estimator='model', estimates=['fqe', 'model'],
                             model_config=FAST_MODEL)
  assert [row['model_return'] for row in again] == [row['model_return'] for row in rows]


@pytest.mark.parametrize('estimates, message', [
    (['fqe'], r'--estimates=fqe leaves out model, which --estimator=model chooses by: add it'),
    (['model', 'mbpo'], r'--estimates names mbpo: the families are fqe, model\.'),
])
def test_bad_estimates_fail_before_writing(tmp_path, estimates, message):
  before = snapshot(str(tmp_path))
  with pytest.raises(select.SelectionError, match=message):
    select.select(str(tmp_path), FAST_FQE, estimator='model', estimates=estimates)
  assert snapshot(str(tmp_path)) == before


def test_root_dir_without_policies(tmp_path):
  before = snapshot(str(tmp_path))
  with pytest.raises(select.SelectionError, match=r'No saved policies under .*policies: pass '
                     r'--root_dir of a cql_sac_train_eval run'):
    select.select(str(tmp_path), FAST_FQE)
  assert snapshot(str(tmp_path)) == before


def _edit_record(root_dir, edit):
  path = os.path.join(root_dir, 'run_record.json')
  with open(path) as f:
    record = json.load(f)
  edit(record)
  with open(path, 'w') as f:
    json.dump(record, f)


@pytest.mark.slow
@pytest.mark.parametrize('edit, message', [
    (lambda record: record.pop('dataset_name'), None),
    (lambda record: record['holdout'].update(num_episodes=7),
     r'holds out episodes of a dataset of 7 episodes, but .* has \d+: restore the dataset'),
    (lambda record: record['holdout'].update(episodes=[100000]),
     r'holds out episodes of a dataset of \d+ episodes'),
])
def test_bad_run_record_fails_before_writing(tiny_run, tmp_path, edit, message):
  run = _copy(tiny_run, tmp_path)
  shutil.rmtree(os.path.join(run, select.SELECTION_DIR), ignore_errors=True)
  if message is None:
    os.remove(os.path.join(run, 'run_record.json'))
    message = r'run_record.json is missing .* rerun the same cql_sac_train_eval command'
  else:
    _edit_record(run, edit)
  before = snapshot(run)
  with pytest.raises(select.SelectionError, match=message):
    select.select(run, FAST_FQE)
  assert snapshot(run) == before


@pytest.mark.slow
def test_dataset_that_does_not_fit_the_policy(tiny_run, tmp_path, antmaze_dataset_dir):
  run = _copy(tiny_run, tmp_path)
  shutil.rmtree(os.path.join(run, select.SELECTION_DIR), ignore_errors=True)
  _edit_record(run, lambda record: record.update(dataset_name=antmaze_dataset_dir))
  before = snapshot(run)
  with pytest.raises(select.SelectionError, match=r'does not fit the saved policy .*observation'):
    select.select(run, FAST_FQE)
  assert snapshot(run) == before
