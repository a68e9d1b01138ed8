"""COMBO's model rollouts (`cql_sac.model_rollouts`) in a model of a known 1-D system: each
member's step, the rollouts' transitions and endings, the FIFO model table and the writer's
schedule."""

import numpy as np
import pytest
import tensorflow as tf

from cql_sac import model_ope
from cql_sac import model_rollouts
from cql_sac.datasets import transitions
from tests.test_model_ope import FAST_MODEL
from tests.test_model_ope import _step
from tests.test_model_ope import _transitions

_SPEC = transitions.data_spec(tf.TensorSpec([1], tf.float32), tf.TensorSpec([1], tf.float32),
                              tf.TensorSpec([], tf.float32))


@pytest.fixture(scope='module')
def model():
  return model_ope.fit_dynamics_model(_transitions(), FAST_MODEL)


def _policy(observation, seed):
  """μ(s) = (1 − s)/2, whatever the seed (the system's never-ending policy)."""
  del seed
  return 0.5 - 0.5 * observation


def _items(values, ended=None):
  """M transitions whose s, a, r and s' all equal `values` (float [M])."""
  column = np.asarray(values, np.float32)[:, None]
  ended = np.zeros(len(values), bool) if ended is None else ended
  return model_rollouts.as_trajectory_steps(column, column, column[:, 0], ended, column)


def test_member_predict_is_each_members_own_step(model):
  """s' = clip(s + std_Δ·out_k[Δ] + mean_Δ), r = std_r·out_k[r] + mean_r, p = σ(out_k[d]) from
  member k's raw outputs, row by row; each member agrees with the system within 0.1."""
  s = np.linspace(-1, 1, 6, dtype=np.float32)[:, None]
  a = np.linspace(1, -1, 6, dtype=np.float32)[:, None]
  member = np.array([0, 1, 1, 0, 1, 0], np.int32)
  outputs = model.outputs(tf.constant(s), tf.constant(a)).numpy()[member, np.arange(6)]
  want_next = np.clip(s + outputs[:, :1] * model.deltas.std.numpy() + model.deltas.mean.numpy(),
                      model.state_low.numpy(), model.state_high.numpy())
  want_reward = outputs[:, 1] * model.rewards.std.numpy()[0] + model.rewards.mean.numpy()[0]
  got = [x.numpy() for x in model.member_predict(tf.constant(s), tf.constant(a),
                                                 tf.constant(member))]
  np.testing.assert_allclose(got[0], want_next, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[1], want_reward, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[2], 1 / (1 + np.exp(-outputs[:, 2])), rtol=1e-5, atol=1e-6)
  true_next, true_reward, _ = _step(s[:, 0], a[:, 0])
  np.testing.assert_allclose(got[0][:, 0], true_next, atol=0.1)
  np.testing.assert_allclose(got[1], true_reward, atol=0.1)


def test_rollouts_follow_the_policy_and_stop_at_terminal_steps(model):
  """From s = 0 and from s = 1.45 (a = −0.225, s' = 1.19) the policy never ends: 4 chained
  steps each, within 0.1 of the system's. A policy a = +1 from s = 1.2 reaches 1.58 > 1.5: one
  terminal step (discount 0, next_step_type LAST) and no more."""
  starts = np.array([[0.0], [1.45]], np.float32)
  steps = model_rollouts.rollout_steps(model, _policy, starts, horizon=4, seed=0)
  traj = steps.trajectory
  assert steps.num_items == 8
  np.testing.assert_array_equal(steps.items, np.arange(16).reshape(8, 2))
  first, second = steps.items[:, 0], steps.items[:, 1]
  observation, next_observation = traj.observation[first, 0], traj.observation[second, 0]
  # Items are ordered by step, then row: row r's step t is item 2t + r.
  np.testing.assert_allclose(observation[2:], next_observation[:-2])
  np.testing.assert_allclose(traj.action[first, 0], 0.5 - 0.5 * observation, rtol=1e-6)
  true_next, true_reward, _ = _step(observation, traj.action[first, 0])
  np.testing.assert_allclose(next_observation, true_next, atol=0.1)
  np.testing.assert_allclose(traj.reward[first], true_reward, atol=0.15)
  assert np.all(traj.discount[first] == 1) and np.all(traj.next_step_type[first] == 1)

  ending = model_rollouts.rollout_steps(
      model, lambda s, seed: tf.ones_like(s), np.array([[1.2]], np.float32), horizon=4, seed=0)
  assert ending.num_items == 1
  assert ending.trajectory.discount[0] == 0 and ending.trajectory.next_step_type[0] == 2
  assert ending.trajectory.step_type[1] == 2


def test_model_replay_keeps_the_last_capacity_items_and_samples_only_them():
  replay = model_rollouts.ModelReplay(_SPEC, capacity=4)
  replay.add(_items([0, 1, 2]))
  batches = iter(replay.as_dataset(64, prefetch=1))
  held = lambda: set(np.unique(next(batches)[0].observation.numpy()[:, 0, 0]).tolist())
  assert held() == {0, 1, 2} and replay.num_items == 3
  replay.add(_items([3, 4, 5]))
  for _ in range(3):  # The prefetched batch still holds the old items.
    latest = held()
  assert latest == {2, 3, 4, 5} and replay.num_items == 4
  replay.add(_items(np.arange(10, 20)))
  for _ in range(3):
    latest = held()
  assert latest == {16, 17, 18, 19}
  item, _ = next(batches)
  np.testing.assert_array_equal(item.observation.numpy()[:, 0], item.action.numpy()[:, 0])


def test_model_replay_errors():
  with pytest.raises(ValueError, match='capacity of at least 1 item, got 0'):
    model_rollouts.ModelReplay(_SPEC, 0)
  spec = transitions.data_spec(_SPEC.observation, _SPEC.action, _SPEC.reward,
                               with_return_to_go=True)
  with pytest.raises(ValueError, match='carry no policy_info'):
    model_rollouts.ModelReplay(spec, 4)


def test_writer_rolls_out_on_the_first_call_of_each_interval(model):
  """Rollouts at steps 0, 1000 and 3100 (3 starts × 2 steps each); the same seed with
  reward_shift −1 writes the same transitions with every reward 1 lower."""
  config = model_rollouts.RolloutConfig(horizon=2, num_starts=3, interval=1000,
                                        retained_rollouts=2)
  starts = np.linspace(-1, 1, 5, dtype=np.float32)[:, None]
  make_writer = lambda shift: model_rollouts.ModelRolloutWriter(
      model, model_rollouts.ModelReplay(_SPEC, config.capacity), starts, _policy, config,
      seed=0, reward_shift=shift)
  writer = make_writer(0.0)
  written = [writer.maybe_roll_out(step) for step in (0, 500, 999, 1000, 1500, 3100)]
  assert written == [6, 0, 0, 6, 0, 6] and writer.replay.num_items == 12
  plain, shifted = make_writer(0.0), make_writer(-1.0)
  batches = []
  for w in (plain, shifted):
    w.maybe_roll_out(0)
    batches.append(next(iter(w.replay.as_dataset(32, seed=7)))[0])
  np.testing.assert_array_equal(batches[0].observation, batches[1].observation)
  np.testing.assert_allclose(batches[1].reward[:, 0], batches[0].reward[:, 0] - 1.0, atol=1e-6)


@pytest.mark.parametrize('field, value, message', [
    ('horizon', 0, r'RolloutConfig.horizon must be >= 1, got 0'),
    ('num_starts', 0, r'RolloutConfig.num_starts must be >= 1'),
    ('interval', -5, r'RolloutConfig.interval must be >= 1, got -5'),
    ('terminal_threshold', 0.0, r'terminal_threshold is a probability in \(0, 1\]')])
def test_rollout_config_errors(field, value, message):
  with pytest.raises(ValueError, match=message):
    model_rollouts.RolloutConfig(**{field: value}).check()
