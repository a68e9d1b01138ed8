"""Online fine-tuning after offline pre-training, CQL or Cal-QL: `cql_sac_train_eval`'s phase 2.

After `num_gradient_updates` offline train steps, `finetune` keeps training the same agent
(nothing is reset: networks, targets, optimizers, α and α' carry over) on data it collects in
the real environment, as the Cal-QL authors do (nakamotoo/Cal-QL@ac6eafe,
JaxCQL/conservative_sac_main.py; ../shared/reference/calql_finetune.md, section 3):

1. Collect one whole episode with the agent's collect (stochastic) policy through TF-Agents'
   `PyDriver`, the policy fixed during it; the last episode is cut at `online_env_steps` and
   marked like a time-limit end.
2. Write it to root_dir/online_episodes as an RLDS dataset (`cql_sac.datasets.online_episodes`),
   compute its returns-to-go (Cal-QL: the same `cql_sac.datasets.returns` rule as the dataset's),
   and add its transitions to the online Reverb table.
3. Train until the train step is num_gradient_updates + updates_per_env_step · env steps
   (UTD; CORL interleaves one env step and one update, the authors train after each episode,
   as here), on batches of round(mixing_ratio·B) offline and B − that online items
   (`cql_sac.datasets.replay.mixed_dataset`), or with `mixing_ratio = None` on one table holding
   both (CORL's CQL fine-tuning). Evaluations run at the multiples of `online_eval_interval`
   train steps and at the end; the switch's is the offline phase's last.

Resume: the online data on disk is the record. A rerun reloads every complete episode into
the online table, counts its env steps, restores the train step from the checkpoint and first
trains up to the UTD target; an episode in progress at a kill is not on disk and is collected
anew. What was checkpointed, and every finished episode, is kept.

TensorBoard root_dir/online (step axis: the train step): online/env_steps, episode_return,
episode_length, d4rl_normalized_score of each training episode, online_share_of_batch; for
goal tasks (AntMaze) success and CORL's regret, the share of failed online episodes so far
(corl-team/CORL@eeeeef2 algorithms/finetune/cal_ql.py, `train/regret`); at the switch,
online/fraction_q_below_return_to_go (`fraction_q_below_return_to_go`: how far pre-training
left Q under the dataset's returns, what Cal-QL's bound prevents). Cal-QL's bound rate is
train/cal_ql/bound_rate.
"""

import os
from typing import Callable, Dict, NamedTuple, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
from tf_agents.drivers import py_driver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.trajectories import time_step as ts

import cql_sac
from cql_sac import critic_network
from cql_sac import tasks
from cql_sac.agents.cal_ql_agent import CalQlAgent
from cql_sac.datasets import online_episodes
from cql_sac.datasets import replay as replay_lib
from cql_sac.datasets import steps as steps_lib
from cql_sac.datasets import transitions
from cql_sac.envs import load_env
from cql_sac.learner import iterations_until_next_stop
from cql_sac.learner import stack_exactly
from cql_sac.run_lock import holding_run_lock

ONLINE_SUMMARY_DIR = 'online'
EPISODES_DIR = 'online_episodes'


class FinetuneConfig(NamedTuple):
  """The online phase's settings (`train_eval`'s gin parameters of the same names).

  Attributes:
    online_env_steps: Environment steps to collect online; 0: no online phase.
    updates_per_env_step: UTD, train steps per collected env step (integer >= 1).
    mixing_ratio: Share of offline items per batch in [0, 1] (CORL, the authors: 0.5); None
      for one table holding the dataset and the online transitions, sampled uniformly.
    cql_alpha_online: CQL weight α' for the online phase (fixed weight only), or None to
      keep `cql_alpha` (the authors' default).
    calibration_online: Cal-QL only: keep the return-to-go bound on online (the authors'
      choice, True) or switch it off (CORL's, False).
    online_eval_interval: Train steps between online evaluations (the authors: 2,000 env
      steps at UTD 1); None keeps the offline phase's `eval_interval`.
  """
  online_env_steps: int = 0
  updates_per_env_step: int = 1
  mixing_ratio: Optional[float] = 0.5
  cql_alpha_online: Optional[float] = None
  calibration_online: bool = True
  online_eval_interval: Optional[int] = None


class OnlineData(NamedTuple):
  """Where online transitions go and how batches are drawn.

  Attributes:
    offline: The dataset's replay (with room for the online items when `online` is None).
    online: The online table (`build_online_replay`), or None for one shared table.
    reward_shift: As `train_eval.reward_shift`, applied to online rewards too.
    action_clipping: As `train_eval.action_clipping`.
    returns_to_go: EpisodeSteps -> float32 [N] returns-to-go (Cal-QL), or None.
  """
  offline: replay_lib.Replay
  online: Optional[replay_lib.Replay]
  reward_shift: float
  action_clipping: transitions.ActionClipping
  returns_to_go: Optional[Callable[[steps_lib.EpisodeSteps], np.ndarray]]

  @property
  def table(self) -> replay_lib.Replay:
    """The table online transitions are added to."""
    return self.offline if self.online is None else self.online

  def add(self, episodes: steps_lib.EpisodeSteps) -> None:
    """Adds the transitions of `episodes` (with their own returns-to-go) to `table`."""
    returns = None if self.returns_to_go is None else self.returns_to_go(episodes)
    self.table.add(transitions.to_trajectory_steps(
        episodes, self.reward_shift, self.action_clipping, True, returns))


@holding_run_lock('cql_sac fine-tuning')  # Re-entrant: train_eval holds it already.
def finetune(config: FinetuneConfig, *, root_dir: str, env_name: str, seed: Optional[int],
             agent, cql_learner, data: OnlineData, batch_size: int, data_prefetch: int,
             num_offline_steps: int, steps_per_call: int, eval_interval: int,
             run_evaluation: Callable[[], Dict[str, float]],
             cql_alpha: Optional[tf.Variable] = None,
             dataset_returns: Optional[Tuple[np.ndarray, np.ndarray]] = None
             ) -> Dict[str, float]:
  """Runs (or resumes) the online phase (module docstring); returns the last eval metrics.

  Args:
    config: The `FinetuneConfig`, `online_env_steps` >= 1.
    root_dir: The run's output directory (online/ and online_episodes/ are written in it).
    env_name: D4RL environment name; collection runs in a new instance of it.
    seed: Seeds the collection environment (seed + 1); None for random.
    agent: The trained `CqlSacAgent` (or `CalQlAgent`).
    cql_learner: Its `CqlLearner` (checkpoints, triggers, train/ summaries).
    data: The `OnlineData`.
    batch_size: B.
    data_prefetch: Batches prefetched from Reverb.
    num_offline_steps: Train step at which the online phase starts.
    steps_per_call: K, the most train steps per compiled call.
    eval_interval: The offline phase's train steps between evaluations, used online unless
      `config.online_eval_interval` is set (<= 0: only at the end).
    run_evaluation: Runs an evaluation, writes eval/, returns its metrics.
    cql_alpha: The agent's fixed CQL weight variable, set to `config.cql_alpha_online`.
    dataset_returns: (observations float32 [N, O], returns-to-go float32 [N]) of dataset
      states, for `fraction_q_below_return_to_go` at the switch (cql_sac's agents only).

  Returns:
    The metrics of the last evaluation ({} if evaluation is off).

  Raises:
    cql_sac.run_lock.RunDirectoryInUse: If another process holds the lock of `root_dir`.
  """
  if isinstance(agent, CalQlAgent):
    agent.set_calibration(config.calibration_online)
  if config.cql_alpha_online is not None:
    cql_alpha.assign(config.cql_alpha_online)
  episodes_dir = os.path.join(root_dir, EPISODES_DIR)
  stored = online_episodes.read_episodes(episodes_dir)
  num_episodes, env_steps, successes = 0, 0, []
  if stored is not None:
    data.add(stored)
    successes = [_succeeded(stored, start, end) for start, end in stored.episode_bounds()]
    num_episodes, env_steps = stored.num_episodes, stored.num_steps - stored.num_episodes
    logging.info('Online phase resumed: %d episodes, %d env steps reloaded from %s',
                 num_episodes, env_steps, episodes_dir)
  if config.online_eval_interval is not None:
    eval_interval = config.online_eval_interval
  train_step = agent.train_step_counter
  writer = tf.summary.create_file_writer(os.path.join(root_dir, ONLINE_SUMMARY_DIR))
  if dataset_returns is not None and stored is None and int(
      train_step.numpy()) == num_offline_steps:
    fraction = fraction_q_below_return_to_go(agent, *dataset_returns)
    with writer.as_default(step=num_offline_steps):
      tf.summary.scalar('online/fraction_q_below_return_to_go', fraction)
    logging.info('At the switch, Q(s, a ~ pi) < G(s) on %.1f%% of (dataset state, critic) '
                 'pairs', 100 * fraction)
  env = load_env(env_name, seed=None if seed is None else seed + 1)
  policy = py_tf_eager_policy.PyTFEagerPolicy(agent.collect_policy, use_tf_function=True)
  recorder = online_episodes.EpisodeRecorder()
  batches = None
  eval_results, evaluated_at = {}, None
  while True:
    # Train up to the UTD target, stopping at every evaluation.
    target = num_offline_steps + config.updates_per_env_step * env_steps
    step = int(train_step.numpy())
    while step < target:
      if batches is None:
        batches = iter(replay_lib.mixed_dataset(data.offline, data.online, batch_size,
                                                config.mixing_ratio, data_prefetch))
      iterations = iterations_until_next_stop(step, target, steps_per_call, eval_interval)
      experience = stack_exactly(batches, iterations, steps_per_call)
      cql_learner.run(iterations=iterations, iterator=iter([experience]))
      step = int(train_step.numpy())
      if eval_interval > 0 and step % eval_interval == 0:
        eval_results, evaluated_at = run_evaluation(), step
    if env_steps >= config.online_env_steps:
      break
    # Collect one episode and store it.
    driver = py_driver.PyDriver(env, policy, [], transition_observers=[recorder],
                                max_steps=config.online_env_steps - env_steps, max_episodes=1,
                                end_episode_on_boundary=False)
    driver.run(env.reset())
    episode = recorder.finish()
    online_episodes.write_episode(episodes_dir, num_episodes, episode, {
        'created_by': 'cql_sac_train_eval (online fine-tuning)',
        'cql_sac_version': cql_sac.__version__, 'env_name': env_name,
        'policy': 'collect_policy', 'train_step': step, 'seed': seed})
    data.add(episode)
    num_episodes += 1
    env_steps += episode.num_steps - 1
    successes.append(_succeeded(episode, 0, episode.num_steps))
    with writer.as_default(step=step):
      tf.summary.scalar('online/env_steps', env_steps)
      tf.summary.scalar('online/online_share_of_batch',
                        _online_share(config.mixing_ratio, data, env_steps, batch_size))
      _summarize_episode(env_name, episode, successes)
    logging.info('online episode %d: %d env steps (%d/%d), train step %d', num_episodes,
                 episode.num_steps - 1, env_steps, config.online_env_steps, step)
  writer.flush()
  env.close()
  if evaluated_at != int(train_step.numpy()):
    eval_results = run_evaluation()
  return eval_results


def fraction_q_below_return_to_go(agent, observations: np.ndarray, returns: np.ndarray,
                                  batch_size: int = 4096) -> float:
  """The share of (state, critic) pairs with Q_k(s, a) < G(s), one a ~ π(·|s) per state.

  Over dataset states this is Cal-QL's bound rate (`CalQlLossInfo.bound_rate`) for one policy
  sample: how often the critics sit below the behaviour's Monte-Carlo return, the
  under-estimation Cal-QL's bound removes (Nakamoto et al. 2023, section 4).

  Args:
    agent: A cql_sac `CqlSacAgent` (its `critics` and policy).
    observations: float32 [N, O] dataset states.
    returns: float32 [N] their returns-to-go G(s), in TD-target units.
    batch_size: States per critic call.

  Returns:
    The share in [0, 1] (float).
  """
  below, total = 0, 0
  for start in range(0, len(returns), batch_size):
    obs = tf.constant(observations[start:start + batch_size])
    time_steps = ts.restart(obs, batch_size=obs.shape[0])
    actions = agent.collect_policy.action(time_steps).action
    for critic in agent.critics:
      q = critic_network.q_values(critic, obs, actions, time_steps.step_type)
      below += int(tf.reduce_sum(tf.cast(q < returns[start:start + batch_size], tf.int32)))
      total += int(q.shape[0])
  return below / total


def _succeeded(steps: steps_lib.EpisodeSteps, start: int, end: int) -> bool:
  """Whether the episode in steps [start, end) earned a positive reward (AntMaze's goal,
  CORL's success test)."""
  return bool(np.any(steps.reward[start:end - 1] > 0))


def _summarize_episode(env_name: str, episode: steps_lib.EpisodeSteps, successes) -> None:
  """Writes a training episode's return, length and score (goal tasks: success, regret)."""
  episode_return = float(np.sum(episode.reward[:-1]))
  score = tasks.d4rl_normalized_score(env_name, episode_return)
  tf.summary.scalar('online/episode_return', episode_return)
  tf.summary.scalar('online/episode_length', episode.num_steps - 1)
  tf.summary.scalar('online/d4rl_normalized_score', score)
  if tasks.get_dataset_info(env_name).is_antmaze:
    tf.summary.scalar('online/success', float(successes[-1]))
    tf.summary.scalar('online/regret', 1.0 - float(np.mean(successes)))
  logging.info('online episode: return %.1f, D4RL normalized score %.1f', episode_return,
               score)


def _online_share(mixing_ratio: Optional[float], data: OnlineData, online_items: int,
                  batch_size: int) -> float:
  """The share of online items in a batch: fixed with two tables, on average with one."""
  if data.online is None:
    return online_items / data.offline.num_items
  return (batch_size - int(round(mixing_ratio * batch_size))) / batch_size
