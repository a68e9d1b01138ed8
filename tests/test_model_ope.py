"""Model-based offline policy evaluation (`cql_sac.model_ope`) against returns computed exactly
in the system the data came from."""

import json
import os

import numpy as np
import pytest

from cql_sac import model_ope
from cql_sac import ope

FAST_MODEL = model_ope.ModelConfig(ensemble_size=2, hidden_layers=(64, 64), num_steps=4000,
                                   steps_per_call=1000)
_BOUND = 1.5  # |s'| above it is terminal.


def _step(s, a):
  """The true system: s' = 0.9·s + 0.5·a, r = 2·s² + a, terminal when |s'| > 1.5."""
  s_next = 0.9 * s + 0.5 * a
  return s_next, 2.0 * s ** 2 + a, np.abs(s_next) > _BOUND


def _transitions(num=20000, seed=0):
  """Uniform s in [−2, 2] and a in [−1, 1] through `_step`, as `ope.Transitions` (O = A = 1)."""
  rng = np.random.default_rng(seed)
  s, a = rng.uniform(-2, 2, num), rng.uniform(-1, 1, num)
  s_next, r, terminal = _step(s, a)
  as_column = lambda x: x[:, None].astype(np.float32)
  return ope.Transitions(as_column(s), as_column(a), r.astype(np.float32),
                         (~terminal).astype(np.float32), as_column(s_next))


def _exact(policy, initial_states, horizon):
  """(mean return, [E] lengths) of the policy in the true system, ending as the model does."""
  s = initial_states[:, 0].astype(np.float64)
  alive, total, length = np.ones(s.shape, bool), np.zeros(s.shape), np.zeros(s.shape)
  for _ in range(horizon):
    s_next, r, terminal = _step(s, policy(s[:, None])[:, 0])
    total += np.where(alive, r, 0.0)
    length += alive
    alive &= ~terminal
    s = s_next
  return total.mean(), length


@pytest.fixture(scope='module')
def model():
  return model_ope.fit_dynamics_model(_transitions(), FAST_MODEL)


def test_model_return_matches_a_policy_that_never_ends(model):
  """μ(s) = (1 − s)/2 draws s to 0.71 (s' = 0.65·s + 0.25), where r = 1.16: 30 steps from
  every start, return (33.1) within 5%."""
  policy = lambda s: (0.5 - 0.5 * s).astype(np.float32)
  starts = np.linspace(-1, 1, 21, dtype=np.float32)[:, None]
  exact, lengths = _exact(policy, starts, 30)
  assert np.all(lengths == 30)
  estimate = model_ope.model_return(model, policy, starts, horizon=30)
  assert estimate.mean_length == 30
  assert estimate.mean_return == pytest.approx(exact, rel=0.05)


def test_model_return_ends_where_the_system_terminates(model):
  """μ(s) = 1 drives s to 5: each rollout ends at the step |s'| passes 1.5, as in the system,
  and the return is within 5% (a start near the boundary would make the length a coin flip;
  these stay 0.14 or more away from it)."""
  policy = lambda s: np.ones_like(s, np.float32)
  starts = np.array([[-0.6], [-0.1], [0.4], [0.9]], np.float32)
  exact, lengths = _exact(policy, starts, 30)
  assert lengths.tolist() == [5, 4, 3, 2]
  estimate = model_ope.model_return(model, policy, starts, horizon=30)
  assert estimate.mean_length == pytest.approx(lengths.mean())
  assert estimate.mean_return == pytest.approx(exact, rel=0.05)


def test_a_saved_model_is_reused_and_replaced_when_its_settings_change(tmp_path, model):
  transitions = _transitions()
  model_dir = str(tmp_path / 'model')
  quick = model_ope.ModelConfig(ensemble_size=1, hidden_layers=(8,), num_steps=10,
                                steps_per_call=10)
  first = model_ope.load_or_fit_dynamics_model(model_dir, transitions, quick, {'name': 'x'})
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(model_ope, 'fit_dynamics_model', lambda *a: pytest.fail('fit again'))
    again = model_ope.load_or_fit_dynamics_model(model_dir, transitions, quick, {'name': 'x'})
  observation, action = transitions.observation[:5], transitions.action[:5]
  for a, b in zip(first.predict(observation, action), again.predict(observation, action)):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  model_ope.load_or_fit_dynamics_model(model_dir, transitions, quick, {'name': 'other'})
  with open(os.path.join(model_dir, model_ope.MODEL_SETTINGS_FILE)) as f:
    assert json.load(f)['dataset'] == {'name': 'other'}
  assert not os.path.exists(model_dir + '.tmp')


def test_errors():
  transitions = _transitions(num=10)
  with pytest.raises(ValueError, match='needs transitions'):
    model_ope.fit_dynamics_model(transitions._replace(reward=transitions.reward[:0]),
                                 FAST_MODEL)
  with pytest.raises(ValueError, match='horizon >= 1'):
    model_ope.model_return(None, None, np.zeros((1, 1), np.float32), horizon=0)
