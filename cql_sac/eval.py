"""Evaluates a saved CQL-SAC policy in the real environment: the `cql_sac_eval` binary.

    cql_sac_eval --policy_dir=<root_dir>/policies --env_name=hopper-medium-v2 --num_episodes=10

prints the mean episode return, its standard deviation and the D4RL normalized score
(for AntMaze: the success rate in percent). The same evaluation metrics and actor are
used by `cql_sac_train_eval` for its periodic evaluation, so both report the same
numbers for the same policy.
"""

import os
from typing import Dict, List, NamedTuple, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
from tf_agents.environments import py_environment
from tf_agents.metrics import py_metrics
from tf_agents.policies import py_policy
from tf_agents.policies import py_tf_eager_policy
from tf_agents.train import actor
from tf_agents.train import learner

from cql_sac import cli
from cql_sac import policies
from cql_sac.envs import load_env
from cql_sac.tasks import d4rl_normalized_score

NORMALIZED_SCORE_METRIC = 'd4rl_normalized_score'


class NormalizedScoreMetric(py_metrics.AverageReturnMetric):
  """D4RL normalized score of the average episode return over the last episodes.

  normalized score = 100 * (return - ref_min) / (ref_max - ref_min), with the
  reference returns of `env_name` (D4RL's infos.py); for AntMaze (0/1 reward) it is
  the success rate in percent. For a Minari task the references are its metadata's
  ref_min_score/ref_max_score; without them the score is NaN (logged once here).
  """

  def __init__(self, env_name: str, buffer_size: int):
    """Creates the metric.

    Args:
      env_name: D4RL environment name (or Minari task name) whose reference returns
        normalize the score.
      buffer_size: Number of most recent episodes averaged.
    """
    super().__init__(name=NORMALIZED_SCORE_METRIC, buffer_size=buffer_size)
    self._env_name = env_name
    if np.isnan(d4rl_normalized_score(env_name, 0.0)):
      logging.info('%s has no ref_min_score/ref_max_score in its Minari metadata: its '
                   'normalized score is NaN.', env_name)

  def result(self) -> np.float32:
    """Returns the normalized score (percent) of the average return, 0 before any episode."""
    return np.float32(d4rl_normalized_score(self._env_name, super().result()))


class StdReturnMetric(py_metrics.AverageReturnMetric):
  """Standard deviation of the episode return over the last `buffer_size` episodes."""

  def __init__(self, buffer_size: int):
    """Creates the metric.

    Args:
      buffer_size: Number of most recent episodes the deviation is taken over.
    """
    super().__init__(name='StdReturn', buffer_size=buffer_size)
    self._buffer_size = buffer_size
    self._returns: List[float] = []

  def add_to_buffer(self, values) -> None:
    """Records finished episodes' returns (see `StreamingMetric.add_to_buffer`)."""
    super().add_to_buffer(values)
    self._returns = (self._returns + [float(v) for v in values])[-self._buffer_size:]

  def reset(self) -> None:
    """Forgets all recorded episodes."""
    super().reset()
    self._returns = []

  def result(self) -> np.float32:
    """Returns the population standard deviation of the recorded returns, 0 if none."""
    return np.float32(np.std(self._returns) if self._returns else 0.0)


def eval_metrics(env_name: str, num_episodes: int) -> List[py_metrics.StreamingMetric]:
  """Builds the evaluation metrics, each averaged over the last `num_episodes` episodes.

  Args:
    env_name: D4RL environment name, for the normalized score.
    num_episodes: Episodes per evaluation.

  Returns:
    [AverageReturn, AverageEpisodeLength (env steps), StdReturn, d4rl_normalized_score].
  """
  return actor.eval_metrics(num_episodes) + [
      StdReturnMetric(num_episodes),
      NormalizedScoreMetric(env_name, num_episodes),
  ]


def make_eval_actor(env: py_environment.PyEnvironment, policy: py_policy.PyPolicy,
                    env_name: str, num_episodes: int, train_step: tf.Variable,
                    summary_dir: Optional[str] = None) -> actor.Actor:
  """Builds an Actor that runs `num_episodes` full episodes per `run()`.

  Its metrics (see `eval_metrics`) are written on every run as
  `Metrics/<name>` scalars at the current `train_step`, if `summary_dir` is given.

  Args:
    env: Environment to evaluate in (unbatched PyEnvironment).
    policy: Policy to evaluate, usually a greedy one.
    env_name: D4RL environment name, for the normalized score.
    num_episodes: Episodes per `run()`.
    train_step: Scalar int64 variable, the step the summaries are written at.
    summary_dir: Where the event files go; None writes none.

  Returns:
    The `tf_agents.train.actor.Actor`.
  """
  return actor.Actor(
      env, policy, train_step,
      episodes_per_run=num_episodes,
      metrics=eval_metrics(env_name, num_episodes),
      summary_dir=summary_dir,
      summary_interval=1)  # Write every evaluation (the Actor's default skips 1000 steps).


def metric_results(eval_actor: actor.Actor) -> Dict[str, float]:
  """Reads the current results of an Actor's metrics.

  Args:
    eval_actor: An Actor, e.g. from `make_eval_actor`, after `run()`.

  Returns:
    {metric name: result}: returns in environment reward units, lengths in environment
    steps, the normalized score in percent.
  """
  return {m.name: float(m.result()) for m in eval_actor.metrics}


def load_policy(policy_dir: str, q_filter: bool = False,
                ema: bool = False) -> py_tf_eager_policy.SavedModelPyTFEagerPolicy:
  """Loads a greedy (Q-filtered, or averaged-actor) policy saved by `cql_sac_train_eval`,
  with its latest weights.

  `cql_sac_train_eval` writes the SavedModels once, at the start, and then variable
  checkpoints every `policy_save_interval` steps under `policies/checkpoints/` (and
  `policies/q_filtered_checkpoints/`, `policies/ema_checkpoints/`); this loads the SavedModel and then the latest of
  those checkpoints.

  Args:
    policy_dir: `<root_dir>/policies` (its `greedy_policy` is used, or with `q_filter` its
      `q_filtered_policy`), or a SavedModel directory itself (e.g.
      `<root_dir>/policies/policy`).
    q_filter: Load the Q-filtered policy of a run with `train_eval.eval_with_q_filter`
      (over the averaged actor when the run had one).
    ema: Load the greedy policy of the Polyak-averaged actor
      (`CqlSacAgent.actor_ema_tau`), `policies/ema_greedy_policy`.

  Returns:
    The policy as a PyPolicy.

  Raises:
    ValueError: If no saved policy is found at `policy_dir`.
  """
  if q_filter:
    name, checkpoints_name = policies.Q_FILTERED_POLICY_DIR, policies.Q_FILTERED_CHECKPOINT_DIR
  elif ema:
    name, checkpoints_name = policies.EMA_POLICY_DIR, policies.EMA_CHECKPOINT_DIR
  else:
    name, checkpoints_name = learner.GREEDY_POLICY_SAVED_MODEL_DIR, learner.POLICY_CHECKPOINT_DIR
  named_dir = os.path.join(policy_dir, name)
  if tf.io.gfile.exists(os.path.join(named_dir, 'saved_model.pb')):
    saved_model_dir, policies_dir = named_dir, policy_dir
  elif not (q_filter or ema) and tf.io.gfile.exists(os.path.join(policy_dir, 'saved_model.pb')):
    saved_model_dir, policies_dir = policy_dir, os.path.dirname(policy_dir.rstrip('/'))
  elif q_filter:
    raise ValueError(
        f'No Q-filtered policy at {named_dir}: train with '
        '--gin_bindings="train_eval.eval_with_q_filter = True", or drop --q_filter.')
  elif ema:
    raise ValueError(
        f'No averaged-actor policy at {named_dir}: train with --gin_bindings='
        '"cql_sac.agents.cql_sac_agent.CqlSacAgent.actor_ema_tau = 1e-3", or drop --ema.')
  else:
    raise ValueError(
        f'No saved policy at {policy_dir}: pass --policy_dir=<root_dir>/policies of a '
        'cql_sac_train_eval run, or one of its SavedModel directories.')
  policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
      saved_model_dir, load_specs_from_pbtxt=True)
  checkpoint_dir = os.path.join(policies_dir, checkpoints_name)
  checkpoints = sorted(tf.io.gfile.glob(os.path.join(checkpoint_dir, 'policy_checkpoint_*')))
  if checkpoints:
    policy.update_from_checkpoint(checkpoints[-1])
    logging.info('Loaded policy weights from %s', checkpoints[-1])
  return policy


class EvalResult(NamedTuple):
  """Outcome of `evaluate`.

  Attributes:
    mean_return: Mean undiscounted episode return.
    std_return: Standard deviation of the episode return.
    mean_episode_length: Mean episode length in environment steps.
    normalized_score: D4RL normalized score of `mean_return` (percent).
    train_step: Train step at which the policy was saved (-1 if unknown).
  """
  mean_return: float
  std_return: float
  mean_episode_length: float
  normalized_score: float
  train_step: int


def evaluate(policy_dir: str, env_name: str, num_episodes: int,
             seed: Optional[int] = None, q_filter: bool = False,
             ema: bool = False, velocities_hidden: bool = False) -> EvalResult:
  """Runs a saved policy for `num_episodes` episodes in the real environment.

  A recurrent policy carries its state through each episode (tf_agents' Actor starts every
  episode from the policy's initial state).

  Args:
    policy_dir: See `load_policy`.
    q_filter: See `load_policy`.
    ema: See `load_policy`.
    env_name: D4RL environment name (e.g. 'hopper-medium-v2').
    num_episodes: Number of full episodes to run.
    seed: Optional environment seed.
    velocities_hidden: Observe positions only (`cql_sac.envs.PositionsOnly`), for a policy
      trained with `train_eval.velocities_hidden`.

  Returns:
    An `EvalResult`.

  Raises:
    ValueError: For an unknown `env_name` or when no policy is found.
  """
  env = load_env(env_name, seed=seed, velocities_hidden=velocities_hidden)
  policy = load_policy(policy_dir, q_filter, ema)
  train_step = tf.Variable(policy.get_train_step(), dtype=tf.int64)
  eval_actor = make_eval_actor(env, policy, env_name, num_episodes, train_step)
  eval_actor.run()
  results = metric_results(eval_actor)
  return EvalResult(
      mean_return=results['AverageReturn'],
      std_return=results['StdReturn'],
      mean_episode_length=results['AverageEpisodeLength'],
      normalized_score=results[NORMALIZED_SCORE_METRIC],
      train_step=int(train_step.numpy()))


def main(argv: Sequence[str]) -> None:
  """Entry point of `cql_sac_eval`; prints mean return, std and normalized score.

  Args:
    argv: Command-line arguments left after flag parsing (must be none).

  Raises:
    app.UsageError: For leftover arguments, an unknown environment or no policy.
  """
  args = cli.start_main(argv)
  try:
    result = evaluate(args.policy_dir, args.env_name, args.num_episodes, args.seed,
                      args.q_filter, args.ema, args.velocities_hidden)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  print(f'policy: {args.policy_dir} (train step {result.train_step})')
  print(f'env: {args.env_name}, {args.num_episodes} episodes, '
        f'mean length {result.mean_episode_length:.1f} steps')
  print(f'mean return: {result.mean_return:.2f}')
  print(f'std return: {result.std_return:.2f}')
  print(f'normalized score: {result.normalized_score:.2f}')


def run() -> None:
  """Console-script entry point: defines the flags and runs `main`.

  The flags are defined here rather than at import so that `cql_sac_train_eval`,
  which imports this module, keeps its own `--env_name` and `--seed`.
  """
  flags.DEFINE_string('policy_dir', None, '<root_dir>/policies of a cql_sac_train_eval '
                      'run, or a SavedModel directory under it.', required=True)
  flags.DEFINE_string('env_name', None, 'D4RL environment name, e.g. hopper-medium-v2, or the '
                      'Minari dataset trained on (minari:<dataset_id> or its directory).',
                      required=True)
  flags.DEFINE_integer('num_episodes', 10, 'Number of episodes to run.', lower_bound=1)
  flags.DEFINE_integer('seed', None, 'Environment seed.')
  flags.DEFINE_bool('q_filter', False, 'Run the Q-filtered policy (policies/q_filtered_policy) '
                    'of a run trained with train_eval.eval_with_q_filter.')
  flags.DEFINE_bool('ema', False, 'Run the greedy policy of the Polyak-averaged actor '
                    '(policies/ema_greedy_policy) of a run trained with '
                    'CqlSacAgent.actor_ema_tau.')
  flags.DEFINE_bool('velocities_hidden', False, 'Observe positions only, for a policy trained '
                    'with train_eval.velocities_hidden (the "-P" partially observed task).')
  cli.list_flags_in_help(__name__)
  app.run(main)


if __name__ == '__main__':
  run()
