r"""cql_sac_make_behavior: D4RL-style random, medium and medium-replay datasets from online SAC.

    cql_sac_make_behavior --env=hopper --output_dir=data/behavior

(Hopper, seed 0: a stochastic return of 1,170 after 110,000 environment steps, 20 minutes on
2 CPU cores.)

D4RL (Fu et al. 2020, section 5) made its locomotion datasets with a SAC agent trained online
in the simulator: `medium` holds rollouts of a policy stopped at about one third of the expert
return, `medium-replay` every transition in its replay buffer until that point, and `random`
rollouts of a uniform-random policy. This tool does the same with TF-Agents' SacAgent, Actor,
PyDriver, Learner and a Reverb replay table, in the gymnasium MuJoCo environment of `cql_sac.envs`:

  1. collects `initial_collect_steps` uniform-random steps, then alternates 10 environment steps
     of the stochastic SAC policy with 10 gradient steps;
  2. every `eval_interval` environment steps evaluates that stochastic policy (the one that
     would record the data) and keeps the best weights; it stops once the mean return reaches
     `target_return` (default: one third of D4RL's expert return, 1078 for Hopper) or after
     `max_env_steps`;
  3. saves the chosen policy with PolicySaver under `<output_dir>/policies/medium` (and its
     actor's weights as `<output_dir>/policies/medium_actor.npz`, which
     `cql_sac.recording.numpy_actor` runs without TensorFlow) and writes
     `<env>-medium-v2` (its rollouts), `<env>-medium-replay-v2` (every transition collected up
     to the step it was chosen at) and `<env>-random-v2` under `<output_dir>`, each with its
     policy's return, training steps and seed in the metadata; as RLDS, or with
     `--format=minari` in Minari's layout (`cql_sac.datasets.minari_writing`).
"""

import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np
import reverb
import tensorflow as tf
from tf_agents.agents.sac import sac_agent
from tf_agents.drivers import py_driver
from tf_agents.policies import policy_saver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.policies import random_py_policy
from tf_agents.replay_buffers import reverb_utils
from tf_agents.specs import tensor_spec
from tf_agents.train import learner
from tf_agents.train.utils import train_utils
from tf_agents.trajectories import trajectory as trajectory_lib

import cql_sac
from cql_sac import cli
from cql_sac import envs
from cql_sac import eval as cql_eval
from cql_sac import tasks
from cql_sac.datasets import replay as replay_lib
from cql_sac.networks import make_networks
from cql_sac.recording import collect
from cql_sac.recording import numpy_actor

ENVS = ('hopper', 'halfcheetah', 'walker2d')
# Environment steps collected, then as many gradient steps, per round (1:1 as in D4RL's SAC;
# rounds of several steps keep Python overhead low).
_STEPS_PER_TRAIN_CALL = 10


class BehaviorResult(NamedTuple):
  """What `make_behavior_datasets` ends with.

  Attributes:
    policy_return: Mean return of the chosen (medium) policy's last evaluation.
    policy_env_steps: Environment steps collected when it was chosen (medium-replay holds
      them, less the last one, whose next observation was not logged).
    policy_train_steps: SAC gradient steps it had been trained for.
    dataset_dirs: {'medium': dir, 'medium-replay': dir, 'random': dir}.
  """
  policy_return: float
  policy_env_steps: int
  policy_train_steps: int
  dataset_dirs: Dict[str, str]


class _TrajectoryLog:
  """Observer that keeps every collected `Trajectory` and counts environment steps.

  The Actor also emits a boundary trajectory (LAST -> FIRST, the reset) after each episode;
  it is kept but is no environment step.
  """

  def __init__(self):
    self.trajectories: List[trajectory_lib.Trajectory] = []
    self.num_env_steps = 0

  def __call__(self, traj: trajectory_lib.Trajectory) -> None:
    self.trajectories.append(traj)
    self.num_env_steps += int(not traj.is_boundary())


def _write_replay(trajectories: Sequence[trajectory_lib.Trajectory], output_dir: str,
                  env_name: str, env, metadata: Dict[str, Any], dataset_format: str) -> str:
  """Writes logged trajectories as an RLDS dataset, cutting the last episode where they end.

  Trajectory t holds o_t, a_t, r_t and the discount that followed; o_{t+1} is the observation
  of trajectory t+1, so the last logged step (whose next observation is unknown) is dropped.
  A boundary trajectory (LAST -> FIRST) carries no transition.

  Args:
    trajectories: Unbatched trajectories in collection order, starting with a FIRST one.
    output_dir: New directory for the dataset.
    env_name: D4RL name, for the observation and action sizes.
    env: The environment the trajectories were collected in.
    metadata: How the data was made; stored in the dataset.
    dataset_format: 'rlds' or 'minari' (`collect.open_writer`).

  Returns:
    `output_dir`.
  """
  writer = collect.open_writer(env_name, env, output_dir, metadata, dataset_format)
  last = len(trajectories) - 2  # Index of the last trajectory with a known next observation.
  for i, traj in enumerate(trajectories[:last + 1]):
    if traj.is_first():
      writer.begin_episode(traj.observation)
    if traj.is_boundary():
      continue
    writer.add_step(traj.action, traj.reward, traj.discount, trajectories[i + 1].observation,
                    is_last=bool(traj.is_last()) or i == last)  # is_last: next step is LAST.
  return writer.close()


def make_behavior_datasets(
    env: str,
    output_dir: str,
    max_env_steps: int = 200000,
    target_return: Optional[float] = None,
    initial_collect_steps: int = 5000,
    eval_interval: int = 5000,
    eval_episodes: int = 5,
    medium_steps: int = 100000,
    random_steps: int = 100000,
    hidden_layers: Sequence[int] = (256, 256),
    batch_size: int = 256,
    max_episode_steps: Optional[int] = None,
    seed: int = 0,
    dataset_format: str = 'rlds',
) -> BehaviorResult:
  """Trains SAC online and writes the random, medium and medium-replay datasets.

  Args:
    env: 'hopper', 'halfcheetah' or 'walker2d'.
    output_dir: Directory for policies/medium and the three datasets; must not hold them.
    max_env_steps: Most environment steps of online training.
    target_return: Stop once the stochastic policy's mean return reaches this; None: one
      third of D4RL's expert return for `env`.
    initial_collect_steps: Uniform-random steps before SAC starts training (part of
      medium-replay, as in D4RL's replay buffers).
    eval_interval: Environment steps between evaluations.
    eval_episodes: Episodes per evaluation.
    medium_steps: Transitions in the medium dataset.
    random_steps: Transitions in the random dataset.
    hidden_layers: Actor hidden widths; the critics get the same.
    batch_size: SAC batch size.
    max_episode_steps: Time limit override (tests); None uses D4RL's 1000.
    seed: Seeds TensorFlow, NumPy, the environments and the random policy.
    dataset_format: 'rlds' or 'minari' (`collect.open_writer`).

  Returns:
    A `BehaviorResult`.

  Raises:
    ValueError: For an unknown `env` or `dataset_format`, or `max_env_steps` not above
      `initial_collect_steps`.
  """
  collect.check_dataset_format(dataset_format)
  if env not in ENVS:
    raise ValueError(f'env must be one of {ENVS}, got {env!r}.')
  if max_env_steps <= initial_collect_steps:
    raise ValueError(f'max_env_steps ({max_env_steps}) must exceed initial_collect_steps '
                     f'({initial_collect_steps}).')
  names = {kind: f'{env}-{kind}-v2' for kind in ('medium', 'medium-replay', 'random')}
  info = tasks.get_dataset_info(names['medium'])
  if target_return is None:
    target_return = info.ref_max_score / 3.0
  tf.random.set_seed(seed)
  np.random.seed(seed)
  collect_env = envs.load_env(names['medium'], seed=seed, max_episode_steps=max_episode_steps)
  eval_env = envs.load_env(names['medium'], seed=seed + 1, max_episode_steps=max_episode_steps)

  agent, actor_network = _make_sac_agent(collect_env, hidden_layers)
  log = _TrajectoryLog()
  best = _train_sac(agent, actor_network, collect_env, eval_env, log, names['medium'],
                    output_dir, max_env_steps=max_env_steps, target_return=target_return,
                    initial_collect_steps=initial_collect_steps, eval_interval=eval_interval,
                    eval_episodes=eval_episodes, batch_size=batch_size, seed=seed)
  actor_network.set_weights(best.actor_weights)
  policy_dir = os.path.join(output_dir, 'policies', 'medium')
  policy_saver.PolicySaver(agent.collect_policy, batch_size=None).save(policy_dir)
  numpy_actor.export_actor_weights(policy_dir, policy_dir + '_actor.npz')
  made_by = {'created_by': 'cql_sac_make_behavior', 'behavior_algorithm': 'tf_agents SacAgent',
             'behavior_hidden_layers': list(hidden_layers), 'behavior_seed': seed,
             'behavior_policy_return': float(best.mean_return),
             'behavior_policy_env_steps': best.env_steps,
             'behavior_policy_train_steps': best.train_steps,
             'behavior_target_return': float(target_return)}
  dirs = {kind: os.path.join(output_dir, name) for kind, name in names.items()}
  _write_replay(log.trajectories[:best.num_logged], dirs['medium-replay'],
                names['medium-replay'], collect_env, {
                    **made_by, 'cql_sac_version': cql_sac.__version__,
                    'source': 'sac_replay_buffer', 'env_name': names['medium-replay'],
                    'initial_random_steps': initial_collect_steps}, dataset_format)
  collect.write_dataset(names['medium'], policy_dir, medium_steps, dirs['medium'],
                        seed=seed + 2, max_episode_steps=max_episode_steps,
                        extra_metadata=made_by, dataset_format=dataset_format)
  collect.write_dataset(names['random'], collect.RANDOM_POLICY, random_steps, dirs['random'],
                        seed=seed + 3, max_episode_steps=max_episode_steps,
                        dataset_format=dataset_format)
  return BehaviorResult(float(best.mean_return), best.env_steps, best.train_steps, dirs)


def _make_sac_agent(env, hidden_layers: Sequence[int]):
  """TF-Agents' `SacAgent` with this package's networks (kumar20's SAC settings), initialized.

  Args:
    env: The collect environment (its specs).
    hidden_layers: Hidden widths of the actor and of each critic.

  Returns:
    (the agent, its actor network).
  """
  time_step_spec = tensor_spec.from_spec(env.time_step_spec())
  action_spec = tensor_spec.from_spec(env.action_spec())
  networks = make_networks(time_step_spec.observation, action_spec,
                           actor_fc_layers=hidden_layers, critic_joint_fc_layers=hidden_layers)
  agent = sac_agent.SacAgent(
      time_step_spec, action_spec,
      actor_network=networks.actor, critic_network=networks.critic_1,
      critic_network_2=networks.critic_2, target_critic_network=networks.target_critic_1,
      target_critic_network_2=networks.target_critic_2,
      actor_optimizer=tf.keras.optimizers.Adam(3e-4),
      critic_optimizer=tf.keras.optimizers.Adam(3e-4),
      alpha_optimizer=tf.keras.optimizers.Adam(3e-4),
      target_update_tau=5e-3, target_update_period=1,
      td_errors_loss_fn=tf.math.squared_difference, gamma=0.99,
      train_step_counter=train_utils.create_train_step())
  agent.initialize()
  return agent, networks.actor


class _BestPolicy(NamedTuple):
  """The best evaluation of online SAC so far (`_train_sac`).

  Attributes:
    mean_return: Its mean stochastic-policy return (environment reward units).
    env_steps: Environment steps collected when it was evaluated.
    num_logged: Trajectories logged by then (the medium-replay data ends there).
    train_steps: SAC train steps by then.
    actor_weights: The actor's weights (`get_weights`) at that evaluation.
  """
  mean_return: float
  env_steps: int
  num_logged: int
  train_steps: int
  actor_weights: list


def _train_sac(agent, actor_network, collect_env, eval_env, log: _TrajectoryLog,
               env_name: str, output_dir: str, *, max_env_steps: int, target_return: float,
               initial_collect_steps: int, eval_interval: int, eval_episodes: int,
               batch_size: int, seed: int) -> _BestPolicy:
  """Online SAC: uniform-random steps, then collect and train until `target_return` or
  `max_env_steps`; every collected trajectory goes to `log` and to a Reverb table.

  Args:
    agent: The initialized `SacAgent`.
    actor_network: Its actor network (whose weights the best evaluation keeps).
    collect_env: The environment SAC collects in (one episode stream).
    eval_env: The environment its stochastic policy is evaluated in.
    log: Receives every collected trajectory.
    env_name: The D4RL name of the task (for the normalized score).
    output_dir: SAC's summaries go under output_dir/sac.
    max_env_steps: Most environment steps, random ones included.
    target_return: Stop once an evaluation reaches this mean return.
    initial_collect_steps: Uniform-random steps first.
    eval_interval: Environment steps between evaluations.
    eval_episodes: Episodes per evaluation.
    batch_size: SAC batch size.
    seed: Seeds the random policy.

  Returns:
    `_BestPolicy` of the best evaluation.
  """
  train_step = agent.train_step_counter
  table = reverb.Table(replay_lib.TABLE_NAME, max_size=max_env_steps,
                       sampler=reverb.selectors.Uniform(), remover=reverb.selectors.Fifo(),
                       rate_limiter=reverb.rate_limiters.MinSize(1),
                       signature=tensor_spec.add_outer_dim(agent.collect_data_spec,
                                                           replay_lib.SEQUENCE_LENGTH))
  server = reverb.Server([table], port=None)
  # The project's TrajectoryDataset reader: ~3.5x the batches/s of ReverbReplayBuffer's.
  replay = replay_lib.Replay(agent.collect_data_spec, num_items=None, server=server,
                             packed=False)
  replay_observer = reverb_utils.ReverbAddTrajectoryObserver(
      server.localhost_client(), replay_lib.TABLE_NAME,
      sequence_length=replay_lib.SEQUENCE_LENGTH, stride_length=1)
  try:
    observers = [replay_observer, log]
    random_policy = random_py_policy.RandomPyPolicy(
        collect_env.time_step_spec(), collect_env.action_spec(), seed=seed)
    # One episode stream: the SAC driver continues from the random driver's last time step.
    time_step, _ = py_driver.PyDriver(collect_env, random_policy, observers,
                                      max_steps=initial_collect_steps).run(collect_env.reset())
    collect_policy = py_tf_eager_policy.PyTFEagerPolicy(agent.collect_policy,
                                                        use_tf_function=True)
    collect_driver = py_driver.PyDriver(collect_env, collect_policy, observers,
                                        max_steps=_STEPS_PER_TRAIN_CALL)
    policy_state = collect_policy.get_initial_state(batch_size=None)
    sac_learner = learner.Learner(
        os.path.join(output_dir, 'sac'), train_step, agent,
        experience_dataset_fn=lambda: replay.as_dataset(batch_size),
        summary_interval=1000)
    eval_actor = cql_eval.make_eval_actor(eval_env, collect_policy, env_name,
                                          eval_episodes, train_step)
    best = None
    env_steps = log.num_env_steps
    while env_steps < max_env_steps:
      next_eval = env_steps + min(eval_interval, max_env_steps - env_steps)
      while log.num_env_steps < next_eval:
        time_step, policy_state = collect_driver.run(time_step, policy_state)
        sac_learner.run(iterations=_STEPS_PER_TRAIN_CALL)
      env_steps = log.num_env_steps
      eval_actor.run()
      mean_return = cql_eval.metric_results(eval_actor)['AverageReturn']
      logging.info('env step %d, train step %d: mean return %.1f (target %.1f)', env_steps,
                   int(train_step.numpy()), mean_return, target_return)
      if best is None or mean_return > best.mean_return:
        best = _BestPolicy(mean_return, env_steps, len(log.trajectories),
                           int(train_step.numpy()), actor_network.get_weights())
      if mean_return >= target_return:
        break
  finally:
    replay_observer.close()
    server.stop()
  return best


def _define_flags() -> None:
  """Defines the tool's flags (at run time, so that importing this module defines none)."""
  flags.DEFINE_enum('env', 'hopper', ENVS, 'Locomotion task.')
  flags.DEFINE_string('output_dir', None, 'Directory for the policy and the three datasets.',
                      required=True)
  flags.DEFINE_integer('max_env_steps', 200000, 'Most environment steps of online SAC.')
  flags.DEFINE_float('target_return', None, 'Stop at this stochastic-policy return '
                     '(default: a third of the D4RL expert return).')
  flags.DEFINE_integer('initial_collect_steps', 5000, 'Uniform-random steps before training.')
  flags.DEFINE_integer('eval_interval', 5000, 'Environment steps between evaluations.')
  flags.DEFINE_integer('eval_episodes', 5, 'Episodes per evaluation.')
  flags.DEFINE_integer('medium_steps', 100000, 'Transitions in <env>-medium.')
  flags.DEFINE_integer('random_steps', 100000, 'Transitions in <env>-random.')
  flags.DEFINE_integer('seed', 0, 'Seed.')
  flags.DEFINE_enum('format', 'rlds', collect.DATASET_FORMATS, "Datasets' format: 'rlds' or "
                    "'minari' (Minari's HDF5 layout, which minari.load_dataset loads).")


def main(argv: Sequence[str]) -> None:
  """Entry point: trains the behaviour policy and prints where the datasets went.

  Args:
    argv: Command-line arguments left after flag parsing (must be none).
  """
  args = cli.start_main(argv)
  result = make_behavior_datasets(
      args.env, args.output_dir, max_env_steps=args.max_env_steps,
      target_return=args.target_return, initial_collect_steps=args.initial_collect_steps,
      eval_interval=args.eval_interval, eval_episodes=args.eval_episodes,
      medium_steps=args.medium_steps, random_steps=args.random_steps, seed=args.seed,
      dataset_format=args.format)
  print(f'Medium policy: mean return {result.policy_return:.1f} after '
        f'{result.policy_env_steps} environment steps ({result.policy_train_steps} SAC steps)')
  for kind, path in result.dataset_dirs.items():
    print(f'{kind}: {path}')


def run() -> None:
  """Console-script entry point: defines the flags and runs `main`."""
  _define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
