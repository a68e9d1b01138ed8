"""COMBO in cql_sac_train_eval (`agent_class = @ComboAgent`) on data recorded in the real
Hopper: the dynamics model is fit and kept with the run, rollouts fill the model table, the
mixed batches train; options COMBO cannot take fail before anything is written."""

import json
import os

import gin
import numpy as np
import pytest

from cql_sac import model_rollouts
from cql_sac import train_eval
from cql_sac.agents.combo_agent import ComboAgent
from cql_sac.summaries import read_scalars
from tests.test_train_eval import clean_gin  # pylint: disable=unused-import (autouse)
from tests.test_train_eval import small_train_eval

# A small model and rollouts, so that the run takes seconds.
_BINDINGS = ['ModelConfig.ensemble_size = 2', 'ModelConfig.hidden_layers = (32, 32)',
             'ModelConfig.num_steps = 200', 'ModelConfig.steps_per_call = 100',
             'RolloutConfig.num_starts = 40', 'RolloutConfig.horizon = 2',
             'RolloutConfig.interval = 40']


@pytest.mark.slow
def test_combo_fits_the_model_rolls_out_and_trains(tmp_path, dataset_dir, monkeypatch):
  """120 steps, 40 per call: rollouts at steps 0 (before the learner), 40 and 80, each of at
  most 40 starts × 2 steps; the model's settings name the dataset; a second run on the same
  dataset reuses the model instead of fitting it again."""
  gin.parse_config(_BINDINGS)
  written = []
  roll_out = model_rollouts.ModelRolloutWriter.maybe_roll_out
  monkeypatch.setattr(model_rollouts.ModelRolloutWriter, 'maybe_roll_out',
                      lambda self, step: written.append((step, roll_out(self, step))))
  root_dir = str(tmp_path / 'run')
  result = small_train_eval(root_dir, dataset_dir, agent_class=ComboAgent,
                            num_gradient_updates=120, learner_iterations_per_call=40,
                            eval_interval=0, summary_interval=40)
  assert result.train_steps == 120 and np.isfinite(result.eval_metrics['AverageReturn'])
  rolled = [(step, count) for step, count in written if count]
  assert [step for step, _ in rolled] == [0, 40, 80], written
  assert all(0 < count <= 80 for _, count in rolled)
  with open(os.path.join(root_dir, model_rollouts.MODEL_DIR, 'model_settings.json')) as f:
    settings = json.load(f)
  assert settings['dataset']['dataset_name'] == dataset_dir
  assert settings['model']['num_steps'] == 200
  losses = read_scalars(os.path.join(root_dir, 'train'))['Losses/cql_loss']
  assert len(losses) >= 2 and all(np.isfinite(value) for _, value in losses)

  gin.parse_config(_BINDINGS + [f'RolloutConfig.model_dir = "{root_dir}/dynamics_model"'])
  fits = []
  monkeypatch.setattr('cql_sac.model_ope.fit_dynamics_model',
                      lambda *args: fits.append(args) or pytest.fail('fit again'))
  small_train_eval(str(tmp_path / 'second'), dataset_dir, agent_class=ComboAgent,
                   num_gradient_updates=40, learner_iterations_per_call=40, eval_interval=0)
  assert not fits


@pytest.mark.parametrize('overrides, message', [
    (dict(sample_in_loop=True), r'train_eval.sample_in_loop cannot run with ComboAgent'),
    (dict(online_env_steps=10), r'train_eval.online_env_steps cannot run with ComboAgent'),
])
def test_options_combo_cannot_take_fail_before_anything_is_written(tmp_path, dataset_dir,
                                                                   overrides, message):
  with pytest.raises(train_eval.ConfigError, match=message):
    small_train_eval(str(tmp_path / 'run'), dataset_dir, agent_class=ComboAgent, **overrides)
  assert not (tmp_path / 'run').exists()


def test_a_bad_rollout_setting_fails_before_anything_is_written(tmp_path, dataset_dir):
  gin.parse_config(['RolloutConfig.horizon = 0'])
  with pytest.raises(train_eval.ConfigError,
                     match=r"COMBO's model rollouts: RolloutConfig.horizon must be >= 1"):
    small_train_eval(str(tmp_path / 'run'), dataset_dir, agent_class=ComboAgent)
  assert not (tmp_path / 'run').exists()
