"""JRL's Q-filtered evaluation policy: the argmax over candidates of the min over critics."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.networks import network
from tf_agents.policies import policy_saver
from tf_agents.trajectories import time_step as ts

from cql_sac import policies
from tests.agents import agent_fixtures as fx


class _QuadraticCritic(network.Network):
  """Q(s, a) = −scale·|a − peak|² (its maximum is known), ignoring s."""

  def __init__(self, input_tensor_spec, peak, scale, name='QuadraticCritic'):
    super().__init__(input_tensor_spec=input_tensor_spec, state_spec=(), name=name)
    self._peak = tf.constant(peak, tf.float32)
    self._scale = scale

  def call(self, inputs, step_type=(), network_state=(), training=False):
    _, action = inputs
    return -self._scale * tf.reduce_sum((action - self._peak) ** 2, axis=-1), network_state


class _FixedCandidates(policies.QFilteredPolicy):
  """The sampling seam: fixed candidate actions."""

  def __init__(self, *args, fixed, **kwargs):
    super().__init__(*args, **kwargs)
    self._fixed = tf.constant(fixed, tf.float32)

  def candidates(self, time_step, seed=None):
    return self._fixed


def test_returns_the_candidate_with_the_largest_min_over_critics():
  time_step_spec, action_spec = fx.make_specs()
  agent = fx.make_agent(time_step_spec=time_step_spec, action_spec=action_spec)
  specs = (time_step_spec.observation, action_spec)
  peaks = np.array([[0.3, -0.2], [-0.5, 0.6]])
  critics = [_QuadraticCritic(specs, peaks[0], 1.0), _QuadraticCritic(specs, peaks[1], 2.0)]
  rng = np.random.default_rng(0)
  candidates = rng.uniform(-1, 1, size=(4, 6, 2))
  policy = _FixedCandidates(agent.policy, critics, num_eval_samples=3, fixed=candidates)
  observations = tf.constant(rng.normal(size=(4, fx.OBS_DIM)), tf.float32)
  got = policy.action(ts.restart(observations, batch_size=4)).action.numpy()
  q = np.min([-s * ((candidates - p) ** 2).sum(-1) for p, s in zip(peaks, (1.0, 2.0))], axis=0)
  want = candidates[np.arange(4), q.argmax(axis=1)]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert len(set(q.argmax(axis=1))) > 1  # The best candidate differs across states.


@pytest.mark.parametrize('with_uniform', [pytest.param(True, marks=pytest.mark.slow), False])
def test_candidates_and_export(tmp_path, with_uniform):
  """K policy samples (+ K uniform), best per state within bounds; the SavedModel keeps the
  critics and gives an action that is one of its candidates' kind (inside the bounds)."""
  time_step_spec, action_spec = fx.make_specs(-2.0, 2.0)
  agent = fx.make_agent(time_step_spec=time_step_spec, action_spec=action_spec)
  policy = policies.QFilteredPolicy(agent.policy, agent.critics, num_eval_samples=5,
                                    with_uniform=with_uniform)
  steps = ts.restart(tf.random.normal([7, fx.OBS_DIM]), batch_size=7)
  assert policy.candidates(steps).shape == (7, 10 if with_uniform else 5, 2)
  action = policy.action(steps).action.numpy()
  assert action.shape == (7, 2) and np.all(np.abs(action) <= 2.0)
  policy_saver.PolicySaver(policy).save(str(tmp_path / 'q_filtered'))
  loaded = tf.saved_model.load(str(tmp_path / 'q_filtered'))
  names = {v.name for v in loaded.model_variables}
  assert any('CriticNetwork2' in n for n in names) and any('Actor' in n for n in names)
  assert np.all(np.abs(loaded.action(steps).action.numpy()) <= 2.0)


@pytest.mark.parametrize('value', [0, -1, 2.0])
def test_num_eval_samples_must_be_a_positive_integer(value):
  agent = fx.make_agent()
  with pytest.raises(ValueError, match=f'num_eval_samples must be an integer >= 1, got {value}'):
    policies.QFilteredPolicy(agent.policy, agent.critics, num_eval_samples=value)
