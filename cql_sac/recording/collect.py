"""Records a policy acting in a D4RL task's real MuJoCo simulation as an RLDS or Minari dataset.

This is how D4RL's datasets were made (a policy run in the environment, terminals and time-limit
ends marked), and how users record their own: the result loads with
`cql_sac.datasets.loading.load_episodes(<directory>)` like a TFDS D4RL dataset, or, written with
`dataset_format='minari'`, with `minari.load_dataset` and `--dataset_name=<directory>`.
"""

from typing import Any, Dict, Optional, Union

from tf_agents.policies import py_policy
from tf_agents.policies import py_tf_eager_policy
from tf_agents.policies import random_py_policy

import cql_sac
from cql_sac import envs
from cql_sac import tasks
from cql_sac.datasets import minari_writing
from cql_sac.datasets import writing
from cql_sac.recording import numpy_actor

RANDOM_POLICY = 'random'
DATASET_FORMATS = ('rlds', 'minari')
# The quickstart's dataset (`cql_sac_make_dataset --quickstart`): the shipped Hopper behaviour
# actor (greedy return 1,310.8) with BCQ's imperfect-demonstration noise (N(0, 0.3^2), 30%
# uniform-random actions) in 20% of the episodes and uniform-random actions in the other 80%,
# like D4RL's medium-replay mix of policy and random episodes. 20,000 steps, seed 0: 422
# episodes, mean episode return 94.1 (behaviour episodes 419.9 over 158 steps; 37% of the steps
# in random episodes).
QUICKSTART_DATASET = {
    'env_name': 'hopper-medium-v2', 'policy': numpy_actor.HOPPER_MEDIUM_ACTOR,
    'num_steps': 20000, 'action_noise': 0.3, 'random_action_probability': 0.3,
    'random_episode_probability': 0.8,
    'extra_metadata': {'behavior_policy_greedy_return': numpy_actor.HOPPER_MEDIUM_GREEDY_RETURN},
}


def check_dataset_format(dataset_format: str) -> None:
  """Raises ValueError unless `dataset_format` is one of `DATASET_FORMATS`."""
  if dataset_format not in DATASET_FORMATS:
    raise ValueError(f'dataset_format must be one of {DATASET_FORMATS}, got {dataset_format!r}.')


def open_writer(env_name: str, env: envs.GymnasiumEnvironment, output_dir: str,
                metadata: Dict[str, Any], dataset_format: str = 'rlds',
                minari_dataset_id: Optional[str] = None
                ) -> Union[writing.RldsWriter, minari_writing.MinariWriter]:
  """Opens the writer of `dataset_format` for episodes recorded in `env`.

  Args:
    env_name: D4RL name of the task (observation and action sizes; reference scores).
    env: the recording environment (for Minari: its gymnasium spec and spaces).
    output_dir: new directory for the dataset.
    metadata: JSON-serializable record of how the data was made.
    dataset_format: 'rlds' (`writing.RldsWriter`) or 'minari' (`minari_writing.MinariWriter`,
      with the task's reference scores).
    minari_dataset_id: for 'minari', the dataset id; None for
      `minari_writing.default_dataset_id(output_dir)`.

  Returns:
    The writer (`begin_episode`, `add_step`, `close`).

  Raises:
    ValueError: for an unknown format or env_name, an output_dir holding a dataset, or a
      malformed Minari dataset id.
  """
  check_dataset_format(dataset_format)
  info = tasks.get_dataset_info(env_name)
  if dataset_format == 'minari':
    return minari_writing.MinariWriter(
        output_dir, env, metadata, minari_dataset_id,
        reference_scores=(info.ref_min_score, info.ref_max_score))
  return writing.RldsWriter(output_dir, info.observation_dim, info.action_dim, metadata)


def _make_policy(policy: Union[str, py_policy.PyPolicy], env, seed: Optional[int],
                 noise: Dict[str, float]) -> py_policy.PyPolicy:
  if isinstance(policy, py_policy.PyPolicy):
    return policy
  if policy == RANDOM_POLICY:
    return random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec(), seed=seed)
  if policy.endswith('.npz'):
    return numpy_actor.NoisyActorPolicy(env.time_step_spec(), env.action_spec(), policy,
                                        seed=seed, **noise)
  return py_tf_eager_policy.SavedModelPyTFEagerPolicy(
      policy, env.time_step_spec(), env.action_spec())


def write_dataset(env_name: str, policy: Union[str, py_policy.PyPolicy], num_steps: int,
                  output_dir: str, seed: Optional[int] = 0,
                  max_episode_steps: Optional[int] = None,
                  extra_metadata: Optional[Dict[str, Any]] = None,
                  action_noise: float = 0.0, random_action_probability: float = 0.0,
                  random_episode_probability: float = 0.0, dataset_format: str = 'rlds',
                  minari_dataset_id: Optional[str] = None) -> str:
  """Runs `policy` in the environment for `num_steps` steps and writes an RLDS dataset.

  Episodes end at a terminal state (discount 0, is_terminal) or at the time limit (discount 1,
  is_last only); the last episode is cut at `num_steps` and marked like a time-limit end, as
  D4RL marks the end of its files. Observations are the float32 observations of
  `cql_sac.envs.load_env`; actions float32.

  Args:
    env_name: D4RL name, e.g. 'hopper-medium-v2' (selects the simulator and time limit).
    policy: 'random' (uniform over the action bounds), the directory of a TF-Agents policy
      SavedModel (e.g. `<root_dir>/policies/greedy_policy` written by cql_sac's binary), an
      actor weights file `*.npz` (`cql_sac.recording.numpy_actor`, e.g. `HOPPER_MEDIUM_ACTOR`)
      run greedily with the three noise arguments below, or a TF-Agents
      PyPolicy.
    num_steps: number of environment steps (transitions) to record, >= 1.
    output_dir: new directory for the dataset.
    seed: seeds the environment's first reset and the random policy; None for random.
    max_episode_steps: time limit override; None uses D4RL's.
    extra_metadata: JSON-serializable facts about how the policy was made (e.g. its return
      and training steps), added to the dataset's metadata.
    action_noise: For a `.npz` policy: standard deviation of the Gaussian action noise.
    random_action_probability: For a `.npz` policy: probability of a uniform-random action.
    random_episode_probability: For a `.npz` policy: probability of a uniform-random episode.
    dataset_format: 'rlds' (`writing.RldsWriter`) or 'minari' (`minari_writing.MinariWriter`,
      with the task's reference scores).
    minari_dataset_id: for 'minari', the dataset id; None for
      `minari_writing.default_dataset_id(output_dir)`.

  Returns:
    `output_dir`, which `--dataset_name` accepts.

  Raises:
    ValueError: for an unknown env_name or dataset_format, num_steps < 1, an output_dir that
      holds a dataset, noise given for a policy that is not a `.npz` file, noise out of range,
      or a malformed Minari dataset id.
  """
  check_dataset_format(dataset_format)
  if num_steps < 1:
    raise ValueError(f'num_steps must be at least 1, got {num_steps}.')
  noise = {'action_noise': action_noise, 'random_action_probability': random_action_probability,
           'random_episode_probability': random_episode_probability}
  noisy = any(noise.values())
  if noisy and not (isinstance(policy, str) and policy.endswith('.npz')):
    raise ValueError(f'action noise and random actions or episodes apply to a .npz actor '
                     f'policy only, got policy {policy!r}. Pass an actor weights file.')
  info = tasks.get_dataset_info(env_name)
  env = envs.load_env(env_name, seed=seed, max_episode_steps=max_episode_steps)
  actor = _make_policy(policy, env, seed, noise)
  metadata = {
      'created_by': 'cql_sac_make_dataset', 'cql_sac_version': cql_sac.__version__,
      'source': 'environment', 'env_name': env_name, 'gym_env_id': info.gym_env_id,
      'max_episode_steps': max_episode_steps or info.max_episode_steps,
      'policy': policy if isinstance(policy, str) else type(policy).__name__,
      'seed': seed, 'num_steps': num_steps, **(extra_metadata or {}),
  }
  if noisy:
    metadata.update(noise)
  writer = open_writer(env_name, env, output_dir, metadata, dataset_format, minari_dataset_id)
  time_step = env.reset()
  writer.begin_episode(time_step.observation)
  policy_state = actor.get_initial_state(batch_size=None)
  for step in range(num_steps):
    action_step = actor.action(time_step, policy_state)
    policy_state = action_step.state
    next_time_step = env.step(action_step.action)
    is_last = bool(next_time_step.is_last()) or step == num_steps - 1
    writer.add_step(action_step.action, next_time_step.reward, next_time_step.discount,
                    next_time_step.observation, is_last)
    time_step = next_time_step
    if is_last and step < num_steps - 1:
      time_step = env.reset()
      policy_state = actor.get_initial_state(batch_size=None)
      writer.begin_episode(time_step.observation)
  env.close()
  return writer.close()
