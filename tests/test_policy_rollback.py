"""Model-rated policy rollback (`cql_sac.policy_rollback`): the trigger's rule against ratings
computed from the weights themselves, the incumbent kept over a restart, and in
cql_sac_train_eval the restored weights being the ones saved at the step; settings that
cannot work fail before anything is written."""

import os

import gin
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.agents.cql import cql_sac_agent as tf_agents_cql
from tf_agents.policies import py_tf_eager_policy

from cql_sac import config_checks
from cql_sac import model_ope
from cql_sac import policy_rollback
from cql_sac import select
from cql_sac import train_eval
from cql_sac.agents.combo_agent import ComboAgent
from cql_sac.model_ope import ModelRollouts
from cql_sac.summaries import read_scalars
from tests.test_train_eval import clean_gin  # pylint: disable=unused-import (autouse)
from tests.test_train_eval import small_train_eval


class _Rating:
  """Rates μ(s) = w·s at s = 1 by −|w − 3|: the best weight is 3."""

  def rate(self, act):
    return ModelRollouts(-abs(float(act(np.ones([1, 1], np.float32))[0, 0]) - 3.0), 1.0)


def _trigger(weight, checkpoint_dir, tolerance=0.1, **kwargs):
  act = lambda observation: observation * weight.numpy()
  return policy_rollback.PolicyRollbackTrigger(_Rating(), act, [weight], checkpoint_dir,
                                               interval=10, final_step=35,
                                               tolerance=tolerance, **kwargs)


def test_the_trigger_keeps_the_best_weights_and_restores_them_after_a_drop(tmp_path):
  weight = tf.Variable(1.0)
  trigger = _trigger(weight, str(tmp_path))
  outcomes = []
  # Step: the weight training left. Ratings −2, −0.5, −0.54 (within 10% of −0.5), −4,
  # and at the final step 35 (not a multiple of 10) −0.5 again after the restore.
  for step, trained in ((5, 9.0), (10, 1.0), (20, 2.5), (30, 2.46), (31, 7.0), (35, 7.0)):
    weight.assign(trained)
    outcomes.append((step, trigger(step), weight.numpy()))
  assert outcomes == [(5, None, 9.0), (10, 'improved', 1.0), (20, 'improved', 2.5),
                      (30, 'kept', np.float32(2.46)), (31, None, 7.0), (35, 'restored', 2.5)]
  assert trigger(40) is None and trigger(35, force_trigger=True) is None
  assert (float(trigger.best_rating.numpy()), int(trigger.best_step.numpy())) == (-0.5, 20)

  # A restarted run keeps the incumbent: a later drop restores 2.5, not its own weight.
  weight.assign(-5.0)
  again = _trigger(weight, str(tmp_path))
  assert int(again.best_step.numpy()) == 20
  assert again(10) == 'restored' and weight.numpy() == 2.5


def test_a_zero_tolerance_restores_on_any_drop(tmp_path):
  weight = tf.Variable(3.0)
  trigger = _trigger(weight, str(tmp_path), tolerance=0.0)
  assert trigger(10) == 'improved'
  weight.assign(3.01)
  assert trigger(20) == 'restored' and weight.numpy() == 3.0


def test_a_margin_keeps_the_incumbent_against_a_small_rise(tmp_path):
  weight = tf.Variable(1.0)
  trigger = _trigger(weight, str(tmp_path), margin=0.5)
  outcomes = []
  # Ratings −2; −1.5 (above −2 but not above −2 + 0.5·2 = −1: kept, not the incumbent); −3
  # (below −2.2) restores 1.0, not 1.5; at the final step −2.1, within the 10% band: kept,
  # and the run ends on it.
  for step, trained in ((10, 1.0), (20, 1.5), (30, 0.0), (35, 0.9)):
    weight.assign(trained)
    outcomes.append((step, trigger(step), float(weight.numpy())))
  assert outcomes == [(10, 'improved', 1.0), (20, 'kept', 1.5), (30, 'restored', 1.0),
                      (35, 'kept', np.float32(0.9))]
  assert (float(trigger.best_rating.numpy()), int(trigger.best_step.numpy())) == (-2.0, 10)


def test_a_higher_rated_trained_actor_is_adopted_by_the_averaged_one(tmp_path):
  """Two actors μ_avg(s) = a·s and μ_trained(s) = t·s; the incumbent holds both weights."""
  averaged, trained = tf.Variable(1.0), tf.Variable(2.0)
  trigger = policy_rollback.PolicyRollbackTrigger(
      _Rating(), lambda o: o * averaged.numpy(), [trained, averaged], str(tmp_path),
      interval=10, final_step=40, tolerance=0.1, trained_act=lambda o: o * trained.numpy(),
      adopt_trained=lambda: averaged.assign(trained))
  assert trigger(10) == 'promoted'  # −1 (trained) against −2: the average takes 2.
  assert (averaged.numpy(), trained.numpy()) == (2.0, 2.0)
  assert float(trigger.best_rating.numpy()) == -1.0
  averaged.assign(2.8)  # −0.2 against the trained actor's −2: the average is the better.
  trained.assign(5.0)
  assert trigger(20) == 'improved'
  np.testing.assert_allclose((averaged.numpy(), trained.numpy()), (2.8, 5.0))
  averaged.assign(0.0)
  trained.assign(0.5)  # −3 and −2.5: both far below −0.2.
  assert trigger(30) == 'restored'
  np.testing.assert_allclose((averaged.numpy(), trained.numpy()), (2.8, 5.0))
  averaged.assign(0.0)
  trained.assign(2.79)  # −0.21, inside the band, does not save the evaluated policy's −3.
  assert trigger(40) == 'restored'
  np.testing.assert_allclose((averaged.numpy(), trained.numpy()), (2.8, 5.0))
  with pytest.raises(ValueError, match='needs adopt_trained'):
    policy_rollback.PolicyRollbackTrigger(_Rating(), lambda o: o, [trained], str(tmp_path),
                                          10, 40, 0.1, trained_act=lambda o: o)


_SMALL_MODEL = ['ModelConfig.ensemble_size = 2', 'ModelConfig.hidden_layers = (16,)',
                'ModelConfig.num_steps = 100', 'ModelConfig.steps_per_call = 100',
                'ModelConfig.num_rollouts = 8', 'ModelConfig.horizon = 3',
                'RollbackConfig.tolerance = 0.1']
_PROBE = np.linspace(-1, 1, 11, dtype=np.float32)[None]  # Hopper observations [1, 11].


def _train_with_ratings(root_dir, dataset_dir, monkeypatch, ratings, num_gradient_updates):
  """small_train_eval (a rating every 40 steps) with `ModelEstimator.rate` answering
  `ratings` in turn. Returns the rated policies' actions at _PROBE, in rating order, the
  run's saved policies and a policy loaded from their SavedModel."""
  actions, ratings = [], iter(ratings)
  def rate(estimator, act):
    assert estimator.horizon == 3 and estimator.initial_states.shape == (8, 11)
    actions.append(act(_PROBE))
    return ModelRollouts(next(ratings), 3.0)
  monkeypatch.setattr(model_ope.ModelEstimator, 'rate', rate)
  small_train_eval(root_dir, dataset_dir, num_gradient_updates=num_gradient_updates,
                   eval_interval=40, learner_iterations_per_call=40, policy_save_interval=40,
                   actor_learning_rate=1e-2)
  saved = select.find_saved_policies(root_dir)
  policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(saved.saved_model_dir,
                                                        load_specs_from_pbtxt=True,
                                                        batch_time_steps=False)
  return actions, saved, policy


@pytest.mark.slow
def test_train_eval_exports_the_trained_actor_when_it_rates_higher(tmp_path, dataset_dir,
                                                                  monkeypatch):
  """With an averaged actor and rate_trained_actor: at step 40 the trained actor rates 1 and
  the averaged one 0, so the averaged actor takes the trained weights before step 40's
  policies are saved; the exported (averaged) policy then acts as the trained actor did."""
  gin.parse_config(_SMALL_MODEL + [
      'RollbackConfig.rate_trained_actor = True',
      'cql_sac.agents.cql_sac_agent.CqlSacAgent.actor_ema_tau = 0.05'])
  root_dir = str(tmp_path / 'run')
  (averaged_actions, trained_actions), saved, policy = _train_with_ratings(
      root_dir, dataset_dir, monkeypatch, [0.0, 1.0], num_gradient_updates=40)
  assert not np.allclose(averaged_actions, trained_actions, atol=1e-4)
  assert saved.saved_model_dir.endswith('ema_greedy_policy')
  policy.update_from_checkpoint(saved.checkpoints[40])
  np.testing.assert_allclose(select.greedy_actions(policy, _PROBE), trained_actions,
                             rtol=1e-5, atol=1e-6)
  ratings = read_scalars(os.path.join(root_dir, 'train'))
  assert ratings['Rollback/trained_actor_model_return'] == [(40, 1.0)]


@pytest.mark.slow
def test_train_eval_saves_the_restored_actor_at_the_rating_step(tmp_path, dataset_dir,
                                                                monkeypatch):
  """Ratings 1 at step 40, then 0 at 80 and 120: the actor of step 40 comes back before the
  step-80 and step-120 policies are saved, so the exported policy acts as step 40's did."""
  gin.parse_config(_SMALL_MODEL)
  root_dir = str(tmp_path / 'run')
  actions, saved, policy = _train_with_ratings(root_dir, dataset_dir, monkeypatch,
                                               [1.0, 0.0, 0.0], num_gradient_updates=120)
  assert len(actions) == 3 and not np.allclose(actions[1], actions[0], atol=1e-4)
  assert sorted(saved.checkpoints) == [40, 80, 120]
  for step in (80, 120):  # Saved after the restores: step 40's actor.
    policy.update_from_checkpoint(saved.checkpoints[step])
    np.testing.assert_allclose(select.greedy_actions(policy, _PROBE), actions[0], rtol=1e-5,
                               atol=1e-6)
  assert os.path.exists(os.path.join(root_dir, policy_rollback.ROLLBACK_DIR,
                                     policy_rollback.MODEL_DIR, 'model_settings.json'))


@pytest.mark.parametrize('bindings, overrides, message', [
    (['RollbackConfig.tolerance = -0.1'], {}, r'RollbackConfig.tolerance must be >= 0'),
    (['RollbackConfig.tolerance = 0.1', 'RollbackConfig.margin = -0.05'], {},
     r'RollbackConfig.margin must be >= 0'),
    (['RollbackConfig.tolerance = 0.1', 'RollbackConfig.rate_trained_actor = True'], {},
     r'rates the trained actor beside the averaged one; set CqlSacAgent.actor_ema_tau'),
    (['RollbackConfig.tolerance = 0.1'], dict(eval_interval=0),
     r'policy rollback\) rates the policy at evaluation steps; set train_eval.eval_interval'),
    (['RollbackConfig.tolerance = 0.1'], dict(agent_class=tf_agents_cql.CqlSacAgent),
     r"restores cql_sac's CqlSacAgent's actor, not tf_agents.agents.cql"),
    (['RollbackConfig.tolerance = 0.1', 'RollbackConfig.model_seed = 1',
      'RollbackConfig.model_dir = "/tmp/m"', 'RolloutConfig.model_dir = "/tmp/m"'],
     dict(agent_class=ComboAgent),
     r"shares COMBO's model directory but fits another model"),
])
def test_rollback_settings_that_cannot_work_fail_before_anything_is_written(
    tmp_path, dataset_dir, bindings, overrides, message):
  gin.parse_config(bindings)
  with pytest.raises(train_eval.ConfigError, match=message):
    small_train_eval(str(tmp_path / 'run'), dataset_dir, **overrides)
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow
def test_combo_rates_with_its_own_model_by_default(tmp_path, dataset_dir, monkeypatch):
  """COMBO fits its model once; the rollback reads that model (the same estimator settings)
  instead of fitting a second one."""
  gin.parse_config(['ModelConfig.ensemble_size = 2', 'ModelConfig.hidden_layers = (16,)',
                    'ModelConfig.num_steps = 100', 'ModelConfig.steps_per_call = 100',
                    'ModelConfig.num_rollouts = 4', 'ModelConfig.horizon = 2',
                    'RolloutConfig.num_starts = 20', 'RolloutConfig.horizon = 2',
                    'RolloutConfig.interval = 40', 'RollbackConfig.tolerance = 0.1'])
  fit = model_ope.fit_dynamics_model
  fits = []
  monkeypatch.setattr(model_ope, 'fit_dynamics_model',
                      lambda *args: fits.append(args) or fit(*args))
  root_dir = tmp_path / 'run'
  small_train_eval(str(root_dir), dataset_dir, agent_class=ComboAgent, num_gradient_updates=80,
                   eval_interval=40, learner_iterations_per_call=40)
  assert len(fits) == 1
  assert not (root_dir / policy_rollback.ROLLBACK_DIR / policy_rollback.MODEL_DIR).exists()
  ratings = read_scalars(str(root_dir / 'train'))['Rollback/model_return']
  assert [step for step, _ in ratings] == [40, 80]
