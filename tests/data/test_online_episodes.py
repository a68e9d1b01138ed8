"""Online fine-tuning's data: recorded episodes, their RLDS copies, the mixed batches."""

import os

import numpy as np
import pytest
from tf_agents.drivers import py_driver

from cql_sac import envs
from cql_sac.datasets import online_episodes
from cql_sac.datasets import replay as replay_lib
from cql_sac.datasets import returns as returns_lib
from cql_sac.datasets import transitions
from tests.data import helpers

GAMMA = 0.99


def _record(num_episodes, last_episode_steps):
  """Episodes of the seeded random Hopper (time limit 25) through TF-Agents' PyDriver; the
  last is cut after `last_episode_steps` steps, as the online budget cuts it."""
  env = envs.load_env(helpers.ENV_NAME, seed=helpers.SEED, max_episode_steps=helpers.TIME_LIMIT)
  policy = helpers.RecordingPolicy(env.time_step_spec(), env.action_spec())
  recorder = online_episodes.EpisodeRecorder()
  episodes = []
  for i in range(num_episodes):
    cut = i == num_episodes - 1
    driver = py_driver.PyDriver(env, policy, [], transition_observers=[recorder],
                                max_steps=last_episode_steps if cut else None, max_episodes=1,
                                end_episode_on_boundary=False)
    driver.run(env.reset())
    episodes.append(recorder.finish())
  return episodes, policy.actions


def test_recorded_episodes_are_the_simulators_transitions_and_round_trip(tmp_path):
  """Each recorded episode's items are the transitions an independent re-run of the seeded
  simulator gives; written as RLDS and read back, every field is identical."""
  episodes, actions = _record(6, last_episode_steps=5)
  expected = helpers.replay_in_simulator(actions)
  assert any(e.is_terminal[-1] for e in episodes[:-1]), 'no episode fell: pick another seed'
  assert any(not e.is_terminal[-1] for e in episodes[:-1]), 'no episode timed out'
  assert not episodes[-1].is_terminal[-1] and episodes[-1].num_steps == 6  # Cut: 5 + 1.
  rows = []
  for episode in episodes:
    steps = transitions.to_trajectory_steps(episode)
    rows.append(helpers.item_transitions(steps.trajectory, steps.items))
  actual = helpers.Transitions(*[np.concatenate([getattr(r, f) for r in rows]) for f in (
      'observation', 'action', 'reward', 'discount', 'next_observation', 'episode_end')])
  helpers.assert_transitions_equal(actual, expected)

  for index, episode in enumerate(episodes):
    online_episodes.write_episode(str(tmp_path), index, episode, {'index': index})
  back = online_episodes.read_episodes(str(tmp_path))
  assert back.num_episodes == len(episodes)
  for field in ('observation', 'action', 'reward', 'discount', 'is_first', 'is_last',
                'is_terminal'):
    np.testing.assert_array_equal(getattr(back, field),
                                  np.concatenate([getattr(e, field) for e in episodes]),
                                  err_msg=field)


def test_episode_writes_are_atomic_and_never_overwrite(tmp_path):
  episodes, _ = _record(2, last_episode_steps=3)
  directory = str(tmp_path)
  online_episodes.write_episode(directory, 0, episodes[0], {})
  # A kill during the write of episode 1 leaves a partial .tmp- directory: never read,
  # replaced by the next write of that index.
  partial = os.path.join(directory, '.tmp-episode_000001')
  os.makedirs(partial)
  with open(os.path.join(partial, 'garbage'), 'w') as f:
    f.write('partial')
  assert online_episodes.read_episodes(directory).num_episodes == 1
  online_episodes.write_episode(directory, 1, episodes[1], {})
  assert not os.path.exists(partial)
  assert online_episodes.read_episodes(directory).num_episodes == 2
  with pytest.raises(ValueError, match='never overwritten'):
    online_episodes.write_episode(directory, 1, episodes[0], {})
  assert online_episodes.read_episodes(str(tmp_path / 'none')) is None


def _offline_and_online(num_online_episodes):
  """A 3-dim toy dataset (observations < 1) and online episodes whose observations
  1000·(episode + 1) + t say which episode and step each item comes from."""
  rng = np.random.default_rng(0)
  offline = helpers.episode_steps(rng.uniform(size=(40, 3)).astype(np.float32), [10] * 4,
                                  reward=rng.normal(size=40))
  online = []
  for e in range(num_online_episodes):
    n = 3 + 2 * e  # Steps (transitions + 1).
    observation = (1000.0 * (e + 1) + np.arange(n))[:, None].repeat(3, 1).astype(np.float32)
    terminal = np.zeros(n, bool)
    terminal[-1] = e % 2 == 0
    discount = np.ones(n, np.float32)
    discount[-2] = 0.0 if terminal[-1] else 1.0
    online.append(helpers.episode_steps(observation, [n], reward=rng.normal(size=n),
                                        discount=discount, is_terminal=terminal))
  return offline, online


def _direct_return(episode, t):
  """Σ_k γ^(k−t) r_k over the episode's transitions k >= t (a terminal ends the sum)."""
  return sum(GAMMA ** (k - t) * float(episode.reward[k])
             for k in range(t, episode.num_steps - 1))


@pytest.mark.parametrize('mixing_ratio', [0.25, None])
def test_mixed_batches_draw_the_mixing_ratio_and_online_returns(mixing_ratio):
  """Two tables: each batch has exactly round(ratio·B) dataset items. One shared table: the
  share of online items over 200 batches is N_online / N within 4.5 standard errors (draws
  are i.i.d.: 3 standard errors fail 0.27% of runs by chance, and did once in CI; 4.5 fail
  one run in 150,000, and still catch a sampler off by a tenth of the share). Either way
  online items carry the returns-to-go of their own episode."""
  offline, online = _offline_and_online(4)
  returns_fn = lambda steps: returns_lib.returns_to_go(steps, GAMMA)
  online_items = sum(e.num_steps - 1 for e in online)
  offline_replay = replay_lib.build_replay(offline, returns_to_go=returns_fn(offline),
                                           extra_capacity=online_items if mixing_ratio is None
                                           else 0)
  online_replay = (None if mixing_ratio is None
                   else replay_lib.build_online_replay(offline_replay.data_spec, 100))
  table = online_replay or offline_replay
  for episode in online:
    table.add(transitions.to_trajectory_steps(episode, returns_to_go=returns_fn(episode)))
  batch_size, num_batches = 32, 200
  try:
    batches = iter(replay_lib.mixed_dataset(offline_replay, online_replay, batch_size,
                                            mixing_ratio))
    shares = []
    for _ in range(num_batches):
      batch = next(batches)
      observation = batch.observation.numpy()[:, 0, 0]
      is_online = observation >= 1000.0
      shares.append(is_online.mean())
      if mixing_ratio is not None:
        assert not is_online[:8].any() and is_online[8:].all()  # 8 = round(0.25 · 32).
      for i in np.flatnonzero(is_online):
        e, t = divmod(int(observation[i]), 1000)
        np.testing.assert_allclose(batch.policy_info['return_to_go'][i, 0],
                                   _direct_return(online[e - 1], t), rtol=1e-5, atol=1e-5)
  finally:
    offline_replay.close()
    if online_replay is not None:
      online_replay.close()
  expected = 0.75 if mixing_ratio is not None else online_items / (online_items + 36)
  standard_error = np.sqrt(expected * (1 - expected) / (batch_size * num_batches))
  assert abs(np.mean(shares) - expected) <= 4.5 * standard_error + 1e-12, (np.mean(shares),
                                                                         expected)


def test_online_table_refuses_items_beyond_its_capacity():
  offline, online = _offline_and_online(2)
  offline_replay = replay_lib.build_replay(offline)
  online_replay = replay_lib.build_online_replay(offline_replay.data_spec, 3)
  try:
    online_replay.add(transitions.to_trajectory_steps(online[0]))  # 2 items.
    with pytest.raises(ValueError, match='holds 2 of at most 3 items; 4 more do not fit'):
      online_replay.add(transitions.to_trajectory_steps(online[1]))
    with pytest.raises(ValueError, match='mixing_ratio is the share of offline items'):
      replay_lib.mixed_dataset(offline_replay, online_replay, 8, 1.5)
  finally:
    offline_replay.close()
    online_replay.close()
