"""The NumPy behaviour actor: same greedy actions as TF-Agents, its noise, the shipped file."""

import json
import os

from absl import flags
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import actor_policy
from tf_agents.policies import greedy_policy
from tf_agents.policies import policy_saver
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from cql_sac import envs
from cql_sac.recording import collect
from cql_sac.datasets import loading
from cql_sac.recording import make_dataset
from cql_sac.recording import numpy_actor
from cql_sac.datasets import validation
from cql_sac.datasets import writing
from cql_sac.networks import make_networks


@pytest.fixture(autouse=True)
def _reset_flags():
  """absl keeps parsed flag values (e.g. --quickstart) for the next main() in this process."""
  yield
  flags.FLAGS.unparse_flags()


@pytest.fixture(scope='module', name='hopper')
def _hopper():
  return envs.load_env('hopper-medium-v2', seed=0)


def _saved_actor(env, tmp_path):
  """A random-weight SAC actor policy saved as make_behavior saves its policy."""
  time_step_spec = tensor_spec.from_spec(env.time_step_spec())
  action_spec = tensor_spec.from_spec(env.action_spec())
  actor = make_networks(time_step_spec.observation, action_spec, actor_fc_layers=(16, 8),
                        critic_joint_fc_layers=(4,)).actor
  policy = actor_policy.ActorPolicy(time_step_spec, action_spec, actor_network=actor,
                                    training=False)
  policy_dir = str(tmp_path / 'policy')
  policy_saver.PolicySaver(policy, batch_size=None).save(policy_dir)
  return policy, policy_dir


@pytest.mark.slow
def test_greedy_actions_equal_tf_agents_greedy_policy(hopper, tmp_path):
  policy, policy_dir = _saved_actor(hopper, tmp_path)
  path = str(tmp_path / 'actor.npz')
  numpy_actor.export_actor_weights(policy_dir, path)
  observations = np.random.default_rng(0).normal(size=(64, 11)).astype(np.float32) * 3
  time_steps = ts.restart(tf.constant(observations), batch_size=64)
  expected = greedy_policy.GreedyPolicy(policy).action(time_steps).action.numpy()

  actual = numpy_actor.greedy_actions(numpy_actor.load_actor_weights(path), observations)

  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
  assert np.abs(expected).max() > 0.1  # Not a trivially zero policy.


def test_noise_and_random_actions_and_episodes(hopper):
  weights = numpy_actor.load_actor_weights(numpy_actor.HOPPER_MEDIUM_ACTOR)
  observation = hopper.reset().observation
  greedy = numpy_actor.greedy_actions(weights, observation[None])[0]
  time_step = ts.restart(observation)

  def actions(policy, state, n=4000):
    return np.stack([policy.action(time_step, state).action for _ in range(n)])

  noisy = numpy_actor.NoisyActorPolicy(hopper.time_step_spec(), hopper.action_spec(),
                                       numpy_actor.HOPPER_MEDIUM_ACTOR, action_noise=0.05,
                                       seed=1)
  deviations = actions(noisy, noisy.get_initial_state()) - greedy
  inside = np.abs(greedy) < 0.8  # Dimensions the clipping cannot touch at 0.05 noise.
  assert inside.any()
  np.testing.assert_allclose(deviations[:, inside].std(axis=0), 0.05, rtol=0.06)
  np.testing.assert_allclose(deviations[:, inside].mean(axis=0), 0.0, atol=0.005)

  mixed = numpy_actor.NoisyActorPolicy(hopper.time_step_spec(), hopper.action_spec(),
                                       numpy_actor.HOPPER_MEDIUM_ACTOR,
                                       random_action_probability=0.3, seed=2)
  exact_greedy = np.all(np.abs(actions(mixed, mixed.get_initial_state()) - greedy) < 1e-6,
                        axis=1)
  share_random = 1 - exact_greedy.mean()
  assert abs(share_random - 0.3) < 3 * np.sqrt(0.3 * 0.7 / 4000)

  episodes = numpy_actor.NoisyActorPolicy(hopper.time_step_spec(), hopper.action_spec(),
                                          numpy_actor.HOPPER_MEDIUM_ACTOR,
                                          random_episode_probability=0.8, seed=3)
  states = np.array([episodes.get_initial_state() for _ in range(4000)])
  assert abs(states.mean() - 0.8) < 3 * np.sqrt(0.8 * 0.2 / 4000)
  uniform = actions(episodes, np.array(True))
  assert uniform.min() >= -1 and uniform.max() <= 1
  np.testing.assert_allclose(uniform.mean(axis=0), 0.0, atol=0.05)
  np.testing.assert_allclose(uniform.var(axis=0), 1 / 3, rtol=0.08)


def test_bad_noise_and_mismatched_actor_are_refused(hopper):
  with pytest.raises(ValueError, match='random_action_probability'):
    numpy_actor.NoisyActorPolicy(hopper.time_step_spec(), hopper.action_spec(),
                                 numpy_actor.HOPPER_MEDIUM_ACTOR,
                                 random_action_probability=1.5)
  cheetah = envs.load_env('halfcheetah-medium-v2')
  with pytest.raises(ValueError, match='Use the actor of this environment'):
    numpy_actor.NoisyActorPolicy(cheetah.time_step_spec(), cheetah.action_spec(),
                                 numpy_actor.HOPPER_MEDIUM_ACTOR)
  with pytest.raises(ValueError, match='apply to a .npz actor policy only'):
    collect.write_dataset('hopper-medium-v2', collect.RANDOM_POLICY, 10, '/nonexistent/x',
                          action_noise=0.1)


def test_shipped_actor_and_its_provenance():
  weights = numpy_actor.load_actor_weights(numpy_actor.HOPPER_MEDIUM_ACTOR)
  assert weights['kernel_0'].shape == (11, 256)
  assert weights['kernel_2'].shape == (256, 6)  # [loc, log-scale] of 3 actions.
  np.testing.assert_array_equal(weights['action_minimum'], -1.0)
  assert os.path.getsize(numpy_actor.HOPPER_MEDIUM_ACTOR) < 1 << 20
  readme = os.path.join(os.path.dirname(numpy_actor.HOPPER_MEDIUM_ACTOR), 'README.md')
  with open(readme) as f:
    text = f.read()
  for fact in ('cql_sac_make_behavior --env=hopper', '--seed=0', '1,255.9',
               f'{numpy_actor.HOPPER_MEDIUM_GREEDY_RETURN:,}', 'export_actor_weights'):
    assert fact in text


@pytest.mark.slow
def test_quickstart_dataset_recipe(hopper, tmp_path):
  output_dir = str(tmp_path / 'quickstart')
  with pytest.raises(SystemExit) as exit_info:  # absl's app.run exits when main returns.
    make_dataset.main(['cql_sac_make_dataset', '--quickstart', f'--output_dir={output_dir}'])
  assert not exit_info.value.code
  stats = validation.validate_episodes(loading.load_episodes(output_dir), output_dir,
                                       hopper.observation_spec(), hopper.action_spec())
  assert stats.num_transitions == 20000
  with open(os.path.join(output_dir, writing.METADATA_FILE)) as f:
    metadata = json.load(f)
  for name in ('action_noise', 'random_action_probability', 'random_episode_probability'):
    assert metadata[name] == collect.QUICKSTART_DATASET[name]
  assert metadata['behavior_policy_greedy_return'] == numpy_actor.HOPPER_MEDIUM_GREEDY_RETURN
  # Mostly short random episodes and some long noisy behaviour ones (seed 0: 422 episodes,
  # mean return 94.1): far below the behaviour policy, far above uniform-random play (~18).
  assert 300 < stats.num_episodes < 550
  assert 60 < stats.mean_episode_return < 130


def test_quickstart_flag_refuses_flags_it_sets(tmp_path):
  with pytest.raises(SystemExit) as exit_info:
    make_dataset.main(['cql_sac_make_dataset', '--quickstart', '--num_steps=5',
                       f'--output_dir={tmp_path}/x'])
  assert exit_info.value.code
  assert not os.path.exists(tmp_path / 'x')
