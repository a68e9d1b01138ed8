"""ComboAgent: the CQL gap of a batch whose first round(f·B) rows are dataset transitions and
the rest model-rollout transitions, against NumPy; its errors; and what the split does to
the Q values it learns.
"""
import numpy as np
import pytest
import tensorflow as tf

from cql_sac.agents import combo_agent
from cql_sac.agents import cql_sac_agent as cql
from tests.agents import agent_fixtures as fx
from tests.agents import numpy_reference as ref
from tests.agents import test_recurrent
from tests.agents.test_losses_numpy import _bounds
from tests.agents.test_losses_numpy import _critics
from tests.agents.test_losses_numpy import _injected

B, A = 5, 2


class InjectedComboAgent(fx.InjectedSamplesAgent, combo_agent.ComboAgent):
  """ComboAgent with the fixed draws of `InjectedSamplesAgent`."""


@pytest.mark.parametrize('real_ratio, num_real', [(0.6, 3), (0.5, 2), (1.0, 5)])
@pytest.mark.parametrize('importance_sample', [True, False])
def test_cql_loss_pushes_up_only_the_dataset_rows(real_ratio, num_real, importance_sample):
  """(1/C) Σ_k [E_batch lse_k(s) − E_dataset Q_k(s, a)]: NumPy with w = B/n on the first n
  = round(f·B) rows (Python's round: 2.5 → 2) and 0 after; f = 1 is CqlSacAgent's loss."""
  rng = np.random.default_rng(11)
  agent = fx.make_agent(InjectedComboAgent, real_ratio=real_ratio,
                        cql_importance_sample=importance_sample, initial_log_alpha=0.3)
  agent.injected = _injected(rng)
  batch = fx.random_batch(rng, B)
  assert combo_agent.num_dataset_items(B, real_ratio) == num_real
  weight = np.array([B / num_real] * num_real + [0.0] * (B - num_real))
  args = (_critics(agent), fx.layers(agent._actor_network), batch[0], batch[1],
          np.transpose(agent.injected[cql._SEED_CQL_POLICY], [1, 0, 2]),
          agent.injected['uniform'])
  kwargs = dict(temperature=1.0, uniform_log_density=-A * np.log(2.0), bounds=_bounds(agent),
                importance_sample=importance_sample)
  got = agent.cql_loss(*fx.transition_parts(agent, batch)[:2]).numpy()
  tolerance = dict(rtol=1e-5, atol=1e-6)  # float32 against float64.
  np.testing.assert_allclose(got, ref.cql_loss(*args, data_weight=weight, **kwargs),
                             **tolerance)
  plain = ref.cql_loss(*args, **kwargs)
  assert np.isclose(got, plain, **tolerance) == (num_real == B), (got, plain)


def test_bad_arguments():
  with pytest.raises(ValueError, match=r'real_ratio .* in \(0, 1\]; got 0.0'):
    fx.make_agent(combo_agent.ComboAgent, real_ratio=0.0)
  with pytest.raises(ValueError, match=r'real_ratio .* in \(0, 1\]; got 1.5'):
    fx.make_agent(combo_agent.ComboAgent, real_ratio=1.5)
  time_step_spec, action_spec = fx.make_specs()
  actor, critic = test_recurrent._recurrent_networks(time_step_spec, action_spec)
  with pytest.raises(ValueError, match='ComboAgent trains on transitions'):
    fx.make_agent(combo_agent.ComboAgent, time_step_spec, action_spec, actor_network=actor,
                  critic_network=critic)


def test_a_batch_without_dataset_rows_is_refused():
  """B = 1 and f = 0.4: round(0.4) = 0 dataset rows."""
  agent = fx.make_agent(combo_agent.ComboAgent, real_ratio=0.4)
  batch = fx.random_batch(np.random.default_rng(0), 1)
  with pytest.raises(tf.errors.InvalidArgumentError, match='holds no dataset transition'):
    agent.cql_loss(*fx.transition_parts(agent, batch)[:2])


@pytest.mark.slow
def test_model_rows_are_pushed_down_where_cql_would_push_them_up():
  """The same batches (rows 0-7 states near −1, rows 8-15 'model' states near +1, every
  reward 0, so every true Q is 0) train CqlSacAgent and ComboAgent (f = 0.5) from the same
  weights. CQL pushes Q up at each row's own action, COMBO only at the dataset rows: after
  training, COMBO's Q at the model rows' actions is below CQL's, by more than at the
  dataset rows'."""
  rng = np.random.default_rng(3)
  rows = 16
  states = np.concatenate([rng.normal(-1.0, 0.1, (rows // 2, fx.OBS_DIM)),
                           rng.normal(1.0, 0.1, (rows // 2, fx.OBS_DIM))])
  actions = rng.uniform(-0.8, 0.8, (rows, A))
  batch = (states, actions, np.zeros(rows), np.ones(rows), states)
  experience = fx.as_trajectory(batch)
  q_at_rows = {}
  for name, agent_class, kwargs in (('cql', cql.CqlSacAgent, {}),
                                    ('combo', combo_agent.ComboAgent, {'real_ratio': 0.5})):
    tf.random.set_seed(0)
    agent = fx.make_agent(agent_class, cql_alpha=5.0, **kwargs)
    train = tf.function(agent.train)
    for _ in range(300):
      train(experience)
    time_steps, action_steps, _ = agent._as_transition(experience)
    q = cql.q_values(agent.critics[0], time_steps.observation, action_steps.action,
                     time_steps.step_type, False)
    q_at_rows[name] = q.numpy()
  dataset_drop = np.mean(q_at_rows['cql'][:8] - q_at_rows['combo'][:8])
  model_drop = np.mean(q_at_rows['cql'][8:] - q_at_rows['combo'][8:])
  assert model_drop > 0.5 and model_drop > dataset_drop + 0.5, (model_drop, dataset_drop)
