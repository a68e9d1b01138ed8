r"""Trains CQL-SAC offline on a D4RL dataset and evaluates it in the real environment.

    cql_sac_train_eval --root_dir=/tmp/cql/hopper-medium \
      --env_name=hopper-medium-v2 --dataset_name=d4rl_mujoco_hopper/v2-medium \
      --gin_file=configs/mujoco_medium.gin

The script reads top to bottom: `train_eval` runs its stages in order, each a function (stage 1
in `cql_sac.config_checks`, the others below it in this file):
  1. `check_config`: the arguments and the output directory, before anything is written;
     then the run takes the lock of root_dir (`cql_sac.run_lock`: one run per root_dir);
  2. `_load_dataset`: the environment, and the dataset read into memory and checked against
     the environment's specs (then `check_checkpoint` finds the checkpoint to resume
     from, moving damaged ones aside, and `ConfigRecord` checks the configuration against
     the one recorded in root_dir/config, where stage 4 records it);
  3. `_build_replay`: every transition of the dataset into a Reverb table sized to hold
     them all (or into memory for `sample_in_loop`);
  4. `_build_agent`, `_build_learner`: the networks and the CQL-SAC agent as TF-Agents'
     kumar20 example (its BC warm-up is the agent's `num_bc_steps`), and TF-Agents' Learner
     running the fused K-steps-per-call loop of `cql_sac.learner` (TensorBoard under
     root_dir/train, checkpoints under root_dir/train/checkpoints, SavedModel policies
     under root_dir/policies);
  5. `_Evaluation`: the greedy policy in the real environment (TensorBoard under
     root_dir/eval);
  6. `_train_offline`: training, evaluating at step 0, every `eval_interval` steps and at
     the end;
  7. `_train_online`: with `online_env_steps` > 0, fine-tuning online in the real
     environment (`cql_sac.finetune`: online episodes under root_dir/online_episodes,
     TensorBoard under root_dir/online);
  8. `_finish`: the final checkpoint and policies.
Rerunning the same command resumes from the last checkpoint (and the online episodes).
The stages' helpers, `main` and the flags close the file; the checks are
`cql_sac.config_checks`.

Flags given on the command line override gin bindings of `train_eval`, which override
its defaults. Every other hyperparameter is a gin parameter of `train_eval`, with the
names and defaults of the TF-Agents reference `cql_sac_train_eval`.
"""

import dataclasses
import difflib
import functools
import inspect
import logging as std_logging
import os
import re
import sys
import time
from types import SimpleNamespace
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple, Union

from absl import app
from absl import flags
from absl import logging
import gin
from gin import resource_reader
import numpy as np
import tensorflow as tf
from tf_agents.environments import py_environment
from tf_agents.policies import greedy_policy
from tf_agents.policies import py_tf_eager_policy
from tf_agents.specs import tensor_spec
from tf_agents.train import learner
from tf_agents.train import triggers
from tf_agents.train.utils import strategy_utils  # Defines --use_gpu (and --tpu).
from tf_agents.train.utils import train_utils
from tf_agents.typing import types

from cql_sac import cli
from cql_sac.config_checks import ConfigError
from cql_sac.config_checks import check_checkpoint
from cql_sac.checkpoints import CheckpointWriteError
from cql_sac.config_checks import check_config
from cql_sac import eval as cql_eval
from cql_sac import finetune

from cql_sac.agents.cal_ql_agent import CalQlAgent
from cql_sac.agents.combo_agent import ComboAgent
from cql_sac.agents.cql_sac_agent import CqlSacAgent
from cql_sac.datasets.holdout import holdout_episodes
from cql_sac.datasets.holdout import holdout_seed
from cql_sac.datasets.holdout import split_episodes
from cql_sac.datasets.integrity import describe_damage
from cql_sac.datasets.loading import load_episode_steps
from cql_sac.datasets.minari import evaluation_env_name
from cql_sac.datasets.normalization import corl_reward_scale
from cql_sac.datasets.normalization import observation_statistics
from cql_sac.datasets.replay import InMemoryReplay
from cql_sac.datasets.replay import Replay
from cql_sac.datasets.replay import build_in_memory_replay
from cql_sac.datasets.replay import build_online_replay
from cql_sac.datasets.replay import build_replay
from cql_sac.datasets.replay import mixed_dataset
from cql_sac.datasets.returns import returns_to_go
from cql_sac.datasets.steps import EpisodeSteps
from cql_sac.datasets.validation import DatasetStats
from cql_sac.datasets.validation import validate_episodes
from cql_sac.envs import load_env
from cql_sac.envs import positions_only
from cql_sac.learner import CqlLearner
from cql_sac.learner import iterations_until_next_stop
from cql_sac.model_ope import ModelConfig
from cql_sac.model_ope import build_model_estimator
from cql_sac.model_ope import dataset_identity
from cql_sac.model_rollouts import ModelRolloutWriter
from cql_sac.model_rollouts import RolloutConfig
from cql_sac.model_rollouts import build_rollout_writer
from cql_sac.model_rollouts import model_directory
from cql_sac.networks import ObservationStatistics
from cql_sac.ope import dataset_transitions
from cql_sac.ope import initial_observations
from cql_sac.policy_rollback import MODEL_DIR as ROLLBACK_MODEL_DIR
from cql_sac.policy_rollback import ROLLBACK_DIR
from cql_sac.policy_rollback import PolicyRollbackTrigger
from cql_sac.policy_rollback import RollbackConfig
from cql_sac.policy_rollback import greedy_action_fn
from cql_sac.networks import make_networks
from cql_sac import policies
from cql_sac.run_config import ConfigRecord
from cql_sac.run_lock import RunDirectoryError
from cql_sac.run_lock import RunLock
from cql_sac.run_record import RUN_RECORD_FILE
from cql_sac.run_record import write_run_record
from cql_sac.summaries import read_scalars
from cql_sac.tasks import get_dataset_info

# Flags passed on to `train_eval` when given on the command line.
_TRAIN_EVAL_FLAGS = ('root_dir', 'env_name', 'dataset_name', 'num_gradient_updates',
                     'eval_interval', 'summary_interval', 'policy_save_interval',
                     'learner_iterations_per_call', 'reverb_port', 'replay_server_address',
                     'data_dir', 'data_take', 'seed', 'use_gpu', 'tpu', 'online_env_steps',
                     'allow_config_change')


# With an averaged actor (`CqlSacAgent.actor_ema_tau`): the trained actor's evaluations.
RAW_ACTOR_EVAL_DIR = 'eval_raw_actor'
GAMMA = 0.99  # The discount of the TD target and of Cal-QL's returns-to-go.
# gin appends this and the configurable to the message of an error raised inside one.
_GIN_CALL_NOTE = '\n  In call to configurable'


class TrainEvalResult(NamedTuple):
  """What a `train_eval` run ends with.

  Attributes:
    train_steps: Train step reached (gradient updates, counting resumed ones).
    eval_metrics: {metric name: value} of the last evaluation (see
      `cql_sac.eval.eval_metrics`); empty if evaluation is off.
    dataset_num_episodes: Episodes in the (possibly `data_take`-truncated) dataset.
    dataset_num_transitions: Transitions (env steps) in it.
    dataset_mean_episode_return: Its mean undiscounted episode return.
  """
  train_steps: int
  eval_metrics: Dict[str, float]
  dataset_num_episodes: int
  dataset_num_transitions: int
  dataset_mean_episode_return: float


@gin.configurable
def train_eval(
    root_dir: str,
    env_name: Optional[str],
    dataset_name: str,
    data_dir: Optional[str] = None,
    # Training params
    tpu: bool = False,
    use_gpu: bool = False,
    num_gradient_updates: int = 1000000,
    actor_fc_layers: Tuple[int, ...] = (256, 256),
    critic_joint_fc_layers: Tuple[int, ...] = (256, 256, 256),
    # Agent params
    batch_size: int = 256,
    bc_steps: int = 0,
    actor_learning_rate: types.Float = 3e-5,
    cosine_decay_actor_learning_rate: bool = False,
    critic_learning_rate: types.Float = 3e-4,
    cosine_decay_critic_learning_rate: bool = False,
    alpha_learning_rate: types.Float = 3e-4,
    reward_scale_factor: types.Float = 1.0,
    cql_alpha_learning_rate: types.Float = 3e-4,
    cql_alpha: types.Float = 5.0,
    cql_tau: types.Float = 10.0,
    num_cql_samples: int = 10,
    reward_noise_variance: types.Float = 0.0,
    include_critic_entropy_term: bool = False,
    target_entropy_per_action_dim: types.Float = -0.5,
    use_lagrange_cql_alpha: bool = True,
    log_cql_alpha_clipping: Optional[Tuple[types.Float, types.Float]] = None,
    softmax_temperature: types.Float = 1.0,
    normalize_observations: bool = False,
    normalize_rewards: bool = False,
    cal_ql_sparse_failure_reward: Optional[types.Float] = None,
    # Online fine-tuning params (cql_sac.finetune)
    online_env_steps: int = 0,
    updates_per_env_step: int = 1,
    mixing_ratio: Optional[types.Float] = 0.5,
    cql_alpha_online: Optional[types.Float] = None,
    calibration_online: bool = True,
    online_eval_interval: Optional[int] = None,
    # Data and Reverb replay params
    reward_shift: types.Float = 0.0,
    action_clipping: Optional[Tuple[types.Float, types.Float]] = None,
    data_prefetch: int = 10,
    data_take: Optional[int] = None,
    holdout_fraction: types.Float = 0.0,
    pad_end_of_episodes: bool = False,
    reverb_port: Optional[int] = None,
    replay_server_address: Optional[str] = None,
    sample_in_loop: bool = False,
    train_sequence_length: int = 2,
    velocities_hidden: bool = False,
    # Others
    agent_class: type = CqlSacAgent,
    policy_save_interval: int = 10000,
    eval_interval: int = 10000,
    summary_interval: int = 1000,
    checkpoint_interval: int = 10000,
    max_checkpoints_to_keep: int = 3,
    learner_iterations_per_call: int = 500,
    eval_episodes: int = 10,
    eval_with_q_filter: bool = False,
    num_eval_samples: int = 10,
    debug_summaries: bool = False,
    summarize_grads_and_vars: bool = False,
    seed: Optional[int] = None,
    allow_config_change: bool = False,
) -> TrainEvalResult:
  """Trains CQL-SAC on an RLDS dataset and evaluates it in the real environment.

  Differences from the TF-Agents reference: the Reverb table holds the whole dataset
  (the reference's `data_shuffle_buffer_size`=100 FIFO table kept only the last 100
  transitions; that parameter and `min_rate_limiter` are gone); evaluation runs at step
  0, at every multiple of `eval_interval` whatever `learner_iterations_per_call` is, and
  at the end; `eval/` also gets the D4RL normalized score; checkpoints are written every
  `checkpoint_interval` steps (the reference: every 100000) and at the end;
  `load_dataset_fn` is replaced by this package's loader (`data_dir`).

  Args:
    root_dir: Output directory: train/ (TensorBoard, checkpoints/), eval/ (TensorBoard),
      policies/ (SavedModels and policy checkpoints). With an averaged actor
      (gin `CqlSacAgent.actor_ema_tau`) eval/ and policies/ema_greedy_policy are the
      averaged actor's, and eval_raw_actor/ scores the trained actor at the same steps.
    env_name: D4RL environment name, e.g. 'hopper-medium-v2'; evaluation runs in it. None
      for a Minari dataset, which names its environment (`cql_sac.datasets.minari`).
    dataset_name: TFDS RLDS name, a directory written by this package, or a Minari dataset
      ('minari:<dataset_id>' or its directory; `cql_sac.minari_tasks`).
    data_dir: TFDS data directory; None for TFDS's default.
    tpu: Whether to train on a TPU.
    use_gpu: Whether to train with a MirroredStrategy over the local GPUs.
    num_gradient_updates: Train steps to reach (one gradient update of every network and
      temperature per step).
    actor_fc_layers: Units of the actor's hidden layers.
    critic_joint_fc_layers: Units of the critic's hidden layers (on [observation, action]).
    batch_size: Transitions per train step.
    bc_steps: Train steps during which the actor is trained by behaviour cloning.
    actor_learning_rate: Adam learning rate of the actor.
    cosine_decay_actor_learning_rate: Decay the actor's learning rate from
      `actor_learning_rate` to 0 over `num_gradient_updates` train steps by half a cosine,
      lr(n) = lr·(1 + cos(π·n / num_gradient_updates)) / 2 (Loshchilov & Hutter 2017; IQL's
      official code decays its actor so, Kostrikov et al. 2021). Offline training only.
    critic_learning_rate: Adam learning rate of the two critics.
    cosine_decay_critic_learning_rate: Decay the critics' learning rate from
      `critic_learning_rate` to 0 by the same half cosine, so that the critics' preference
      among actions stops changing by the end of training. Offline training only.
    alpha_learning_rate: Adam learning rate of the SAC temperature log α.
    reward_scale_factor: Multiplies rewards in the TD target.
    cql_alpha_learning_rate: Adam learning rate of log α' (CQL-Lagrange only).
    cql_alpha: CQL weight α'; the initial value with CQL-Lagrange.
    cql_tau: CQL-Lagrange threshold on the CQL gap.
    num_cql_samples: Policy and uniform action samples per state in the CQL term.
    reward_noise_variance: Std (sic, the reference's name) of Gaussian reward noise.
    include_critic_entropy_term: Whether the TD target includes -α·log π.
    target_entropy_per_action_dim: SAC's target entropy is this times A, in nats: −0.5 is
      SacAgent's default −A/2; CORL, JaxCQL and JRL use −1 (−A).
    use_lagrange_cql_alpha: Whether α' is tuned by dual gradient descent.
    log_cql_alpha_clipping: (min, max) clip of log α' when read, or None.
    softmax_temperature: T multiplying Q inside the CQL log-sum-exp.
    normalize_observations: Every network sees (s − mean)/(std + 1e-3) with the dataset's
      statistics (CORL's `normalize`; `cql_sac.datasets.normalization`), inside the networks,
      so SavedModel policies and evaluation take raw observations.
    normalize_rewards: Multiply `reward_scale_factor` by CORL's locomotion factor
      1000/(max − min episode return) of the dataset (`normalize_reward`);
      `reward_shift` stays in environment reward units (added before scaling).
    cal_ql_sparse_failure_reward: With `agent_class = @CalQlAgent`: the failure reward of
      the returns-to-go's sparse rule (`cql_sac.datasets.returns`; AntMaze 0.0), None for
      dense rewards.
    online_env_steps: Environment steps of online fine-tuning after the
      `num_gradient_updates` offline steps (`cql_sac.finetune`); 0: offline only.
    updates_per_env_step: Online UTD: train steps per collected environment step.
    mixing_ratio: Online: the share of dataset items in each batch, in [0, 1] (CORL and the
      Cal-QL authors: 0.5); None puts online transitions into the dataset's table and samples
      the union uniformly (CORL's CQL fine-tuning).
    cql_alpha_online: Online: the fixed CQL weight α' (needs `use_lagrange_cql_alpha` False),
      or None to keep `cql_alpha`.
    calibration_online: Online, Cal-QL: keep the return-to-go bound on, with each online
      episode's own returns (the authors), or switch it off (CORL).
    online_eval_interval: Online: train steps between evaluations; None: `eval_interval`.
    reward_shift: Added to every dataset reward before it is stored in Reverb.
    action_clipping: (min, max) clip of dataset actions, or None.
    data_prefetch: Batches prefetched from Reverb.
    data_take: Use only the first `data_take` episodes of the dataset.
    holdout_fraction: The share of whole episodes, in [0, 1), held out of training by a rule
      seeded with `seed` (0 if None) for offline policy evaluation (`cql_sac_select`);
      root_dir/run_record.json names them (`cql_sac.datasets.holdout`). 0: train on all.
    pad_end_of_episodes: Whether 1-step episodes are kept, padded with a zero step.
    reverb_port: Port of the in-process Reverb server; None picks a free one.
    replay_server_address: 'host:port' of an external Reverb server to fill and sample
      instead of an in-process one.
    sample_in_loop: Hold the dataset in (device) memory instead of Reverb and draw each
      step's batch inside the compiled K-step loop (`FusedLearner.train_on_replay`): the
      same uniform distribution, no host round trip per step; the fast path on a GPU.
      Single process, single replica; Reverb (False) serves remote and online tables.
    train_sequence_length: Steps per replay item: 2 (transitions) for feed-forward networks;
      with recurrent ones (`make_networks.lstm_size`) the length L >= 3 of the sequences
      sampled from the same Reverb table (every L-step window of an episode), on which
      they are unrolled from the zero state (L − 1 transitions each).
    velocities_hidden: The partially observed ("-P") task: dataset and evaluation
      environments observe the positions only (`cql_sac.envs.positions_only`; Hopper 5 of
      11 entries); evaluate its policies with `cql_sac_eval --velocities_hidden`.
    agent_class: The agent: cql_sac's `CqlSacAgent`, or tf_agents' own for a
      reference run (gin `@tf_agents.agents.cql.cql_sac_agent.CqlSacAgent`; it takes the
      same arguments, but not `sample_in_loop`).
    policy_save_interval: Train steps between policy checkpoints.
    eval_interval: Train steps between evaluations; <= 0 evaluates only at the end.
    summary_interval: Train steps between train/ summaries.
    checkpoint_interval: Train steps between checkpoints of the whole training state.
    max_checkpoints_to_keep: Number of most recent checkpoints kept.
    learner_iterations_per_call: K, train steps per compiled call of the fused learner
      (`cql_sac.learner.CqlLearner`, which samples K batches at a time; gin
      `CqlLearner.jit_compile` compiles the loop with XLA).
    eval_episodes: Episodes per evaluation; 0 turns evaluation off.
    eval_with_q_filter: Evaluate JRL's Q-filtered policy (`cql_sac.policies.QFilteredPolicy`:
      the best of `num_eval_samples` policy and as many uniform actions by the min over
      the critics) instead of the greedy one, and export it to
      policies/q_filtered_policy (`cql_sac_eval --q_filter`).
    num_eval_samples: Policy samples per state of the Q-filter (JRL's, 10).
    debug_summaries: Whether the agent writes its debug summaries.
    summarize_grads_and_vars: Whether the agent writes gradient and variable summaries.
    seed: Seeds TensorFlow, NumPy, the agent and the environment; None for random.
    allow_config_change: Resume a run whose recorded configuration (root_dir/config,
      `cql_sac.run_config`) differs from this one, recording the new one beside it.

  Returns:
    A `TrainEvalResult`.

  Raises:
    ConfigError: Before anything is written, for a numeric argument out of range or an
      agent argument the agent rejects, for an unwritable `root_dir`, an unknown
      environment or dataset, a damaged dataset file (named with its record), a dataset
      that does not match the environment, no readable checkpoint in `root_dir` (damaged
      newest ones are moved to train/checkpoints/damaged/ and the newest readable one
      resumed), a configuration other than the recorded one on resume without
      `allow_config_change`, `sample_in_loop` with a remote replay or several
      devices, normalization on a dataset with a constant observation dimension or equal
      episode returns, online fine-tuning with `mixing_ratio` outside [0, 1],
      `cql_alpha_online` with Lagrange, `sample_in_loop`, one shared table on an external
      server, or an environment other than the one the dataset was recorded in; after
      restoring, for a checkpoint written
      with different network shapes.
    cql_sac.run_lock.RunDirectoryInUse: If another run holds `root_dir` (its host and pid
      are named).
    cql_sac.checkpoints.CheckpointWriteError: If a checkpoint or policy cannot be written
      (e.g. a full disk); what was written before is kept.
  """
  config = SimpleNamespace(**locals())
  config.env_name = _evaluation_env_name(env_name, dataset_name)
  check_config(config)
  with RunLock(root_dir, 'cql_sac_train_eval'):  # One run per root_dir (cql_sac.run_lock).
    return _locked_train_eval(config)


def _locked_train_eval(config: SimpleNamespace) -> TrainEvalResult:
  """Stages 2-8 of `train_eval`, holding the lock of `config.root_dir`."""
  root_dir = config.root_dir
  logging.info('Training CQL-SAC on %s from %s into %s', config.env_name, config.dataset_name,
               root_dir)
  if config.seed is not None:  # Python's, NumPy's and TF's generators: Keras' unseeded
    tf.keras.utils.set_random_seed(config.seed)  # initializers draw from Python's `random`.
  data = _load_dataset(config)
  resume_from = check_checkpoint(
      os.path.join(root_dir, learner.TRAIN_DIR, learner.POLICY_CHECKPOINT_DIR))
  config_record = ConfigRecord(  # cql_sac.run_config
      config, resuming=resume_from is not None,
      defaults={name: parameter.default
                for name, parameter in inspect.signature(train_eval).parameters.items()})
  replays = _build_replay(config, data)
  try:
    training = _build_agent(config, data)
    rollouts = _build_rollouts(config, data, training, replays.offline)
    cql_learner, eval_tf_policy = _build_learner(config, data, training, replays.offline,
                                                 rollouts)
    config_record.write()  # root_dir/config/run-<n>.json, .gin
    _record_run(config, data)  # Once every check passed, before training.
    evaluation = _Evaluation(config, data.env, training.agent, eval_tf_policy,
                             training.train_step)
    start_step = int(training.train_step.numpy())
    eval_results = _train_offline(config, cql_learner, training.train_step, evaluation,
                                  rollouts)
    if config.online_env_steps:
      eval_results = _train_online(config, data, replays, training, cql_learner,
                                   evaluation) or eval_results
    step = _finish(cql_learner, training.train_step, start_step)
    if not eval_results:  # A finished online run started again (`_train_offline` covers
      # offline ones): its last evaluation, or one now if none.
      eval_results = evaluation.complete(step)
  finally:
    replays.close()
  return TrainEvalResult(
      train_steps=step,
      eval_metrics=eval_results,
      dataset_num_episodes=data.stats.num_episodes,
      dataset_num_transitions=data.stats.num_transitions,
      dataset_mean_episode_return=data.stats.mean_episode_return)


def _evaluation_env_name(env_name: Optional[str], dataset_name: str) -> str:
  """--env_name, or the Minari dataset's environment (`minari.evaluation_env_name`).

  Raises:
    ConfigError: If neither names an environment, or they disagree.
  """
  try:
    env_name = evaluation_env_name(env_name, dataset_name)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if env_name is None:
    raise ConfigError(f'--env_name is required with --dataset_name={dataset_name} (only a '
                      'Minari dataset names its environment). Pass e.g. '
                      '--env_name=hopper-medium-v2.')
  return env_name


class _Dataset(NamedTuple):
  """What stage 2 (`_load_dataset`) gives the later stages.

  Attributes:
    env: The evaluation environment (`load_env(env_name, seed)`).
    episodes: The whole dataset in memory, `EpisodeSteps`.
    stats: Its `validate_episodes` statistics (episodes, transitions, returns).
    observation_statistics: `ObservationStatistics` for the networks, or None.
    reward_scale_factor: `train_eval.reward_scale_factor`, times CORL's factor with
      `normalize_rewards`.
    held_out: int64 [K] indices of the episodes held out of `episodes` (`holdout_fraction`).
  """
  env: py_environment.PyEnvironment
  episodes: EpisodeSteps
  stats: DatasetStats
  observation_statistics: Optional[ObservationStatistics]
  reward_scale_factor: float
  held_out: np.ndarray


def _load_dataset(config: SimpleNamespace) -> _Dataset:
  """Stage 2: builds the environment, reads the dataset into memory and checks it against
  the environment's specs; holds out `holdout_fraction` of its episodes; computes the
  normalization statistics asked for (on the training episodes).

  Args:
    config: `train_eval`'s arguments by name.

  Returns:
    A `_Dataset`.

  Raises:
    ConfigError: For an unknown environment or dataset, a dataset that does not fit the
      environment, or normalization of a constant observation dimension or of equal
      episode returns.
  """
  env_name, dataset_name = config.env_name, config.dataset_name
  try:
    env = load_env(env_name, seed=config.seed, velocities_hidden=config.velocities_hidden)
  except ValueError as e:
    raise ConfigError(f'Unknown --env_name={env_name}: {e}') from e
  try:  # Read once into memory; validation and Reverb both use this copy.
    episodes = load_episode_steps(dataset_name, data_dir=config.data_dir,
                                  take=config.data_take)
    if config.velocities_hidden:
      episodes = dataclasses.replace(
          episodes, observation=positions_only(episodes.observation, env_name))
  except ValueError as e:  # TFDS's DatasetNotFoundError is a ValueError too.
    raise ConfigError(f'Cannot load --dataset_name={dataset_name}: {e}') from e
  except tf.errors.OpError as e:  # A damaged file: DataLossError, naming neither it nor where.
    raise ConfigError(f'Cannot read --dataset_name={dataset_name}: '
                      f'{describe_damage(dataset_name, config.data_dir, e)}') from e
  try:
    held_out = holdout_episodes(episodes.num_episodes, config.holdout_fraction,
                                holdout_seed(config.seed))
  except ValueError as e:
    raise ConfigError(f'train_eval.holdout_fraction: {e}') from e
  if held_out.size:
    episodes, _ = split_episodes(episodes, held_out)
    logging.info('Held out %d of %d episodes (root_dir/%s)', held_out.size,
                 episodes.num_episodes + held_out.size, RUN_RECORD_FILE)
  try:
    stats = validate_episodes(episodes, dataset_name, env.observation_spec(),
                              env.action_spec(), action_clipping=config.action_clipping)
  except ValueError as e:
    raise ConfigError(f'--dataset_name={dataset_name} does not fit --env_name={env_name}: {e}'
                      ' Pass the dataset recorded in that environment.') from e
  logging.info('Dataset: %d episodes, %d transitions, mean episode return %.2f',
               stats.num_episodes, stats.num_transitions, stats.mean_episode_return)
  reward_scale_factor = config.reward_scale_factor
  try:
    observation_stats = (observation_statistics(episodes) if config.normalize_observations
                         else None)
    if config.normalize_rewards:
      reward_scale_factor *= corl_reward_scale(stats.min_episode_return,
                                               stats.max_episode_return)
      logging.info('Reward normalization: reward_scale_factor %.6g', reward_scale_factor)
  except ValueError as e:
    raise ConfigError(f'--dataset_name={dataset_name}: {e}') from e
  return _Dataset(env, episodes, stats, observation_stats, reward_scale_factor, held_out)


def _record_run(config: SimpleNamespace, data: _Dataset) -> None:
  """Writes root_dir/run_record.json (`cql_sac.run_record`): what `cql_sac_select` needs."""
  try:
    network_bindings = dict(gin.get_bindings(make_networks))
  except ValueError:  # Not configured at all.
    network_bindings = {}
  write_run_record(config.root_dir, {
      'env_name': config.env_name, 'dataset_name': config.dataset_name,
      'data_dir': config.data_dir, 'data_take': config.data_take, 'seed': config.seed,
      'holdout': {'fraction': float(config.holdout_fraction),
                  'seed': holdout_seed(config.seed),
                  'num_episodes': int(data.episodes.num_episodes + data.held_out.size),
                  'episodes': data.held_out.tolist()},
      'gamma': GAMMA, 'reward_scale_factor': float(data.reward_scale_factor),
      'reward_shift': float(config.reward_shift),
      'normalize_observations': bool(config.normalize_observations),
      'actor_fc_layers': list(config.actor_fc_layers),
      'critic_joint_fc_layers': list(config.critic_joint_fc_layers),
      'batch_size': config.batch_size,
      'make_networks': {name: value for name, value in network_bindings.items()
                        if isinstance(value, (bool, int, float, str))}})


class _Replays(NamedTuple):
  """What stage 3 (`_build_replay`) gives the later stages.

  Attributes:
    offline: The dataset's replay: a Reverb `Replay` or, with `sample_in_loop`, an
      `InMemoryReplay`.
    online: The online table of fine-tuning with a `mixing_ratio`, else None.
    episode_returns: EpisodeSteps -> float32 [N] returns-to-go in TD-target units.
    dataset_returns: The dataset's returns-to-go [N] (Cal-QL or fine-tuning), else None.
  """
  offline: Union[Replay, InMemoryReplay]
  online: Optional[Replay]
  episode_returns: Callable[[EpisodeSteps], np.ndarray]
  dataset_returns: Optional[np.ndarray]

  def close(self) -> None:
    """Closes both replays (stops in-process Reverb servers)."""
    self.offline.close()
    if self.online is not None:
      self.online.close()


def _build_replay(config: SimpleNamespace, data: _Dataset) -> _Replays:
  """Stage 3: every transition of the dataset goes into Reverb (or, with `sample_in_loop`,
  stays in memory for the compiled loop); training samples uniformly. Cal-QL's items also
  carry their return-to-go (online fine-tuning measures Q against it at the switch).

  Args:
    config: `train_eval`'s arguments by name.
    data: Stage 2's `_Dataset`.

  Returns:
    `_Replays`; the caller closes them.

  Raises:
    ConfigError: If an external server serves observations or actions of other shapes than
      the environment's.
  """
  episode_returns = functools.partial(
      returns_to_go, gamma=GAMMA, reward_scale_factor=data.reward_scale_factor,
      reward_shift=config.reward_shift, sparse_failure_reward=config.cal_ql_sparse_failure_reward)
  cal_ql = issubclass(config.agent_class, CalQlAgent)
  dataset_returns = (episode_returns(data.episodes) if cal_ql or config.online_env_steps
                     else None)
  items = dict(reward_shift=config.reward_shift, action_clipping=config.action_clipping,
               pad_end_of_episodes=config.pad_end_of_episodes,
               returns_to_go=dataset_returns if cal_ql else None)
  if config.sample_in_loop:
    replay = build_in_memory_replay(data.episodes, **items)
  else:
    shared_table = config.online_env_steps > 0 and config.mixing_ratio is None
    replay = build_replay(data.episodes, server_address=config.replay_server_address,
                          port=config.reverb_port,
                          extra_capacity=config.online_env_steps if shared_table else 0,
                          sequence_length=config.train_sequence_length, **items)
  logging.info('The replay (%s) holds %d transitions',
               'in memory' if config.sample_in_loop else 'Reverb', replay.num_items)
  served = [tuple(spec.shape) for spec in (replay.data_spec.observation, replay.data_spec.action)]
  expected = [tuple(spec.shape) for spec in (data.env.observation_spec(), data.env.action_spec())]
  if served != expected:  # Only possible with an external server (replay_server_address).
    replay.close()
    raise ConfigError(f'The Reverb server at {config.replay_server_address} serves observations '
                      f'and actions of shapes {served}; --env_name={config.env_name} needs '
                      f'{expected}. Start it with the dataset of that environment.')
  online_replay = None
  if config.online_env_steps and config.mixing_ratio is not None:
    online_replay = build_online_replay(replay.data_spec, config.online_env_steps)
  return _Replays(replay, online_replay, episode_returns, dataset_returns)


class _Training(NamedTuple):
  """What stage 4 (`_build_agent`) gives the later stages.

  Attributes:
    agent: The initialized agent (built under `strategy`'s scope).
    train_step: Its int64 train step counter.
    strategy: The `tf.distribute.Strategy`.
    cql_alpha: With `cql_alpha_online`: the α' variable the online phase sets; else None.
  """
  agent: CqlSacAgent
  train_step: tf.Variable
  strategy: tf.distribute.Strategy
  cql_alpha: Optional[tf.Variable]


def learning_rate_schedule(learning_rate: float, cosine_decay: bool, decay_steps: int):
  """An optimizer's learning rate (the actor's or the critics'): a constant, or a cosine decay
  to 0.

  Args:
    learning_rate: The initial (or constant) learning rate, > 0.
    cosine_decay: If True, lr(n) = learning_rate·(1 + cos(π·min(n, decay_steps) /
      decay_steps)) / 2 at the optimizer's step n (its `iterations`, checkpointed with it).
    decay_steps: Train steps over which it decays (`num_gradient_updates`).

  Returns:
    A float, or a `tf.keras.optimizers.schedules.CosineDecay`.
  """
  if not cosine_decay:
    return learning_rate
  return tf.keras.optimizers.schedules.CosineDecay(learning_rate, max(decay_steps, 1))


def _build_agent(config: SimpleNamespace, data: _Dataset) -> _Training:
  """Stage 4a: the networks and the agent, as in TF-Agents' kumar20 example
  (`make_networks.compute_dtype` = 'bfloat16' in gin runs the critics' matmuls in bfloat16).
  The BC warm-up (`bc_steps`) is the agent's `num_bc_steps`.

  Args:
    config: `train_eval`'s arguments by name.
    data: Stage 2's `_Dataset`.

  Returns:
    `_Training`.

  Raises:
    ConfigError: For an argument the agent rejects.
  """
  strategy = strategy_utils.get_strategy(config.tpu, config.use_gpu)
  time_step_spec = tensor_spec.from_spec(data.env.time_step_spec())
  action_spec = tensor_spec.from_spec(data.env.action_spec())
  variable = None
  with strategy.scope():
    train_step = train_utils.create_train_step()
    if config.cql_alpha_online is not None:  # Checkpointed with the agent; finetune sets it.
      variable = tf.Variable(float(config.cql_alpha), trainable=False, name='cql_alpha')
    networks = make_networks(time_step_spec.observation, action_spec,
                             actor_fc_layers=config.actor_fc_layers,
                             critic_joint_fc_layers=config.critic_joint_fc_layers,
                             observation_statistics=data.observation_statistics)
    agent = _make_agent(
        config.agent_class,
        time_step_spec, action_spec,
        actor_network=networks.actor,
        critic_network=networks.critic_1,
        actor_optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate_schedule(
            config.actor_learning_rate, config.cosine_decay_actor_learning_rate,
            config.num_gradient_updates)),
        critic_optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate_schedule(
            config.critic_learning_rate, config.cosine_decay_critic_learning_rate,
            config.num_gradient_updates)),
        alpha_optimizer=tf.keras.optimizers.Adam(learning_rate=config.alpha_learning_rate),
        cql_alpha=config.cql_alpha if variable is None else variable,
        num_cql_samples=config.num_cql_samples,
        include_critic_entropy_term=config.include_critic_entropy_term,
        target_entropy=(config.target_entropy_per_action_dim
                        * action_spec.shape.num_elements()),
        use_lagrange_cql_alpha=config.use_lagrange_cql_alpha,
        cql_alpha_learning_rate=config.cql_alpha_learning_rate,
        target_update_tau=5e-3,
        target_update_period=1,
        random_seed=config.seed,
        cql_tau=config.cql_tau,
        reward_noise_variance=config.reward_noise_variance,
        num_bc_steps=config.bc_steps,
        td_errors_loss_fn=tf.math.squared_difference,
        gamma=GAMMA,
        reward_scale_factor=data.reward_scale_factor,
        gradient_clipping=None,
        log_cql_alpha_clipping=config.log_cql_alpha_clipping,
        softmax_temperature=config.softmax_temperature,
        debug_summaries=config.debug_summaries,
        summarize_grads_and_vars=config.summarize_grads_and_vars,
        train_step_counter=train_step,
        critic_network_2=networks.critic_2,
        target_critic_network=networks.target_critic_1,
        target_critic_network_2=networks.target_critic_2)
  return _Training(agent, train_step, strategy, variable)


def _build_rollouts(config: SimpleNamespace, data: _Dataset, training: _Training,
                    replay) -> Optional[ModelRolloutWriter]:
  """Stage 4a': COMBO's dynamics model and model table (`cql_sac.model_rollouts`) when the
  agent is a `ComboAgent`, else None. The table gets its first rollout here, from the policy
  as built, before the learner's input pipeline starts drawing from it (a resumed run rolls
  its restored policy out again before its first train step).

  Raises:
    ConfigError: For a `RolloutConfig` setting out of range.
  """
  if not isinstance(training.agent, ComboAgent):
    return None
  try:
    rollouts = build_rollout_writer(config.root_dir, data.episodes, _model_dataset(config, data),
                                    replay.data_spec, training.agent.collect_policy,
                                    config.seed or 0, config.reward_shift)
  except ValueError as e:
    raise ConfigError(f'COMBO\'s model rollouts: {e}') from e
  rollouts.maybe_roll_out(0)
  return rollouts


def _model_dataset(config: SimpleNamespace, data: _Dataset) -> dict:
  """What a dynamics model of this run is fit on (`model_ope.dataset_identity`, as
  `cql_sac_select` records it, so that runs share a model), with the held-out episodes."""
  dataset = dataset_identity(vars(config))
  if data.held_out.size:
    dataset['held_out'] = data.held_out.tolist()
  return dataset


def _build_rollback(config: SimpleNamespace, data: _Dataset, agent, eval_tf_policy,
                    rollouts: Optional[ModelRolloutWriter]) -> Optional[PolicyRollbackTrigger]:
  """Stage 4b': the model-rated policy rollback (`cql_sac.policy_rollback`) when
  `RollbackConfig.tolerance` is set, else None. Fits its rating model (or restores it:
  with COMBO and the same seed, COMBO's own), rolled out to the task's episode length unless
  `ModelConfig.horizon`. With `RollbackConfig.rate_trained_actor` the trained actor's greedy
  policy is rated too, and the averaged actor takes its weights when it is the better one.
  """
  rollback = RollbackConfig()
  if not rollback.enabled:
    return None
  model_config = ModelConfig()
  if rollback.model_seed is not None:
    model_config = dataclasses.replace(model_config, seed=rollback.model_seed)
  if rollback.model_dir:
    model_dir = rollback.model_dir
  elif rollouts is not None and model_config == ModelConfig():  # COMBO's own model.
    model_dir = model_directory(config.root_dir, RolloutConfig())
  else:
    model_dir = os.path.join(config.root_dir, ROLLBACK_DIR, ROLLBACK_MODEL_DIR)
  estimator = build_model_estimator(
      model_dir, dataset_transitions(data.episodes), initial_observations(data.episodes),
      model_config, _model_dataset(config, data),
      get_dataset_info(config.env_name).max_episode_steps)
  trained_act = adopt_trained = None
  if rollback.rate_trained_actor:
    trained_act = greedy_action_fn(greedy_policy.GreedyPolicy(agent.policy))
    adopt_trained = agent.reset_ema_actor
  return PolicyRollbackTrigger(estimator, greedy_action_fn(eval_tf_policy),
                               agent.actor_variables,
                               os.path.join(config.root_dir, ROLLBACK_DIR),
                               config.eval_interval, config.num_gradient_updates,
                               rollback.tolerance, rollback.margin, trained_act, adopt_trained)


def _build_learner(config: SimpleNamespace, data: _Dataset, training: _Training, replay,
                   rollouts: Optional[ModelRolloutWriter] = None):
  """Stage 4b: the learner, which restores the last checkpoint (agent, optimizers, α, α',
  train step) and saves one every `checkpoint_interval` steps, and the policy exports.

  With `CqlSacAgent.actor_ema_tau` the averaged actor is the one evaluated and exported
  (policies/ema_greedy_policy); with `eval_with_q_filter` the Q-filtered policy is
  (policies/q_filtered_policy).

  Args:
    config: `train_eval`'s arguments by name.
    data: Stage 2's `_Dataset`.
    training: Stage 4a's `_Training`.
    replay: Stage 3's offline replay.
    rollouts: COMBO's model side, whose table gives each batch's share 1 − f, or None.

  Returns:
    (`CqlLearner`, the TF policy to evaluate).

  Raises:
    ConfigError: If the checkpoint under `root_dir` was written with other shapes.
  """
  agent, train_step, interval = training.agent, training.train_step, config.policy_save_interval
  policies_dir = os.path.join(config.root_dir, learner.POLICY_SAVED_MODEL_DIR)
  policy_triggers = [policies.AtomicPolicySavedModelTrigger(policies_dir, agent, train_step,
                                                           interval=interval)]
  ema_policy = getattr(agent, 'ema_policy', None)
  acting_policy = ema_policy or agent.policy
  eval_tf_policy = greedy_policy.GreedyPolicy(acting_policy)
  if ema_policy is not None:
    policy_triggers.append(policies.PolicyExportTrigger(
        policies_dir, eval_tf_policy, train_step, interval, policies.EMA_POLICY_DIR,
        policies.EMA_CHECKPOINT_DIR))
  if config.eval_with_q_filter:
    eval_tf_policy = policies.QFilteredPolicy(acting_policy, agent.critics,
                                              config.num_eval_samples)
    policy_triggers.append(policies.PolicyExportTrigger(
        policies_dir, eval_tf_policy, train_step, interval, policies.Q_FILTERED_POLICY_DIR,
        policies.Q_FILTERED_CHECKPOINT_DIR))
  rollback = _build_rollback(config, data, agent, eval_tf_policy, rollouts)
  if rollback is not None:  # First: the policies and checkpoint saved after it are its.
    policy_triggers.insert(0, rollback)
  experience_dataset_fn = lambda: replay.as_dataset(config.batch_size, config.data_prefetch)
  if rollouts is not None:
    experience_dataset_fn = lambda: mixed_dataset(replay, rollouts.replay, config.batch_size,
                                                  agent.real_ratio, config.data_prefetch)
  try:
    cql_learner = CqlLearner(
        config.root_dir, train_step, agent,
        experience_dataset_fn=None if config.sample_in_loop else experience_dataset_fn,
        replay=replay if config.sample_in_loop else None, batch_size=config.batch_size,
        steps_per_call=config.learner_iterations_per_call,
        triggers=policy_triggers,
        checkpoint_interval=config.checkpoint_interval,
        max_checkpoints_to_keep=config.max_checkpoints_to_keep,
        summary_interval=config.summary_interval,
        strategy=training.strategy)
  except ValueError as e:
    if 'when attempting to restore' not in str(e):  # TF's message for a shape mismatch.
      raise
    raise ConfigError(
        f'The checkpoint under {config.root_dir} does not fit this configuration ({e}). It was '
        'written with other network sizes or agent settings; pass another --root_dir.'
    ) from e
  return cql_learner, eval_tf_policy


class _Evaluation:
  """Stage 5: the greedy (mode) or Q-filtered policy in the real environment.

  `run()` plays `eval_episodes` episodes and writes eval/ (and, with an averaged actor, the
  trained actor's eval_raw_actor/ on its own identically seeded environment); it returns
  the metrics, {} when evaluation is off (`eval_episodes` = 0). `complete(step)` does the
  same at a resumed step for only the directories that lack it.
  """

  def __init__(self, config: SimpleNamespace, env, agent, eval_tf_policy, train_step):
    """Builds the evaluation actors.

    Args:
      config: `train_eval`'s arguments by name.
      env: The evaluation environment.
      agent: The agent (its `policy` is the trained actor's).
      eval_tf_policy: The TF policy evaluated into eval/.
      train_step: The train step counter the summaries are written at.
    """
    self._actor = self._raw_actor = None
    root_dir, env_name, episodes = config.root_dir, config.env_name, config.eval_episodes
    self._eval_dir = os.path.join(root_dir, 'eval')
    self._raw_eval_dir = os.path.join(root_dir, RAW_ACTOR_EVAL_DIR)
    if episodes <= 0:
      return
    self._actor = cql_eval.make_eval_actor(
        env, py_tf_eager_policy.PyTFEagerPolicy(eval_tf_policy, use_tf_function=True),
        env_name, episodes, train_step, summary_dir=self._eval_dir)
    if getattr(agent, 'ema_policy', None) is not None:
      self._raw_actor = cql_eval.make_eval_actor(  # Its own env: the same initial states.
          load_env(env_name, seed=config.seed, velocities_hidden=config.velocities_hidden),
          py_tf_eager_policy.PyTFEagerPolicy(
              greedy_policy.GreedyPolicy(agent.policy), use_tf_function=True),
          env_name, episodes, train_step, summary_dir=self._raw_eval_dir)

  def run(self) -> Dict[str, float]:
    """Runs `eval_episodes` episodes, writes eval/ summaries; returns the metrics."""
    if self._actor is None:
      return {}
    self._actor.run_and_log()
    if self._raw_actor is not None:
      self._raw_actor.run_and_log()
    return cql_eval.metric_results(self._actor)

  def complete(self, step: int) -> Dict[str, float]:
    """At a step a killed run may not have evaluated: runs each actor whose directory (eval/,
    eval_raw_actor/) lacks an evaluation at `step`; returns eval/'s metrics at `step`."""
    if self._actor is None:
      return {}
    results = _logged_evaluation(self._eval_dir, step)
    if not results:
      self._actor.run_and_log()
      results = cql_eval.metric_results(self._actor)
    if self._raw_actor is not None and not _logged_evaluation(self._raw_eval_dir, step):
      self._raw_actor.run_and_log()
    return results


def _train_offline(config: SimpleNamespace, cql_learner: CqlLearner,
                   train_step: tf.Variable, evaluation: _Evaluation,
                   rollouts: Optional[ModelRolloutWriter] = None) -> Dict[str, float]:
  """Stage 6: trains to `num_gradient_updates`, evaluating at step 0, at every multiple of
  `eval_interval` and at the end; with COMBO, rolling the policy out in the model before the
  first call and every `RolloutConfig.interval` steps.

  Args:
    config: `train_eval`'s arguments by name.
    cql_learner: The learner (restored from any checkpoint).
    train_step: The train step counter.
    evaluation: Stage 5's `_Evaluation`.
    rollouts: COMBO's `ModelRolloutWriter`, or None.

  Returns:
    The last evaluation's metrics: of this call, or the one logged at the step it resumed
    from; {} if neither.
  """
  final_step, eval_interval = config.num_gradient_updates, config.eval_interval
  evaluates_at = lambda step: step == final_step or (eval_interval > 0
                                                     and step % eval_interval == 0)
  step = int(train_step.numpy())
  if step:
    logging.info('Resuming from the checkpoint at step %d', step)
  # The checkpoint of an evaluation step is saved before its evaluation runs: a run killed in
  # between resumes there and evaluates it now; one that logged it reports it.
  eval_results = {}
  if step <= final_step and evaluates_at(step):
    eval_results = evaluation.complete(step)
  progress = _Progress(step, final_step, cql_learner.train_summary_writer)
  while step < final_step:
    iterations = iterations_until_next_stop(
        step, final_step, config.learner_iterations_per_call, eval_interval)
    started = time.time()
    if rollouts is not None:
      rollouts.maybe_roll_out(step)
    loss_info = cql_learner.run(iterations=iterations)
    step = int(train_step.numpy())
    progress.update(step, time.time() - started, loss_info)
    if evaluates_at(step):
      eval_results = evaluation.run()
  return eval_results


def _train_online(config: SimpleNamespace, data: _Dataset, replays: _Replays,
                  training: _Training, cql_learner: CqlLearner,
                  evaluation: _Evaluation) -> Dict[str, float]:
  """Stage 7 (with `online_env_steps` > 0): online fine-tuning, collecting in the real
  environment and training on mixed batches (`cql_sac.finetune`).

  Args:
    config: `train_eval`'s arguments by name.
    data: Stage 2's `_Dataset`.
    replays: Stage 3's `_Replays`.
    training: Stage 4a's `_Training`.
    cql_learner: The learner.
    evaluation: Stage 5's `_Evaluation`.

  Returns:
    The last online evaluation's metrics, {} if none ran.
  """
  finetune_config = finetune.FinetuneConfig(
      config.online_env_steps, config.updates_per_env_step, config.mixing_ratio,
      config.cql_alpha_online, config.calibration_online, config.online_eval_interval)
  cal_ql = issubclass(config.agent_class, CalQlAgent)
  online_data = finetune.OnlineData(
      replays.offline, replays.online, config.reward_shift, config.action_clipping,
      returns_to_go=replays.episode_returns if cal_ql else None)
  return finetune.finetune(
      finetune_config, root_dir=config.root_dir, env_name=config.env_name, seed=config.seed,
      agent=training.agent, cql_learner=cql_learner, data=online_data,
      batch_size=config.batch_size, data_prefetch=config.data_prefetch,
      num_offline_steps=config.num_gradient_updates,
      steps_per_call=config.learner_iterations_per_call, eval_interval=config.eval_interval,
      run_evaluation=evaluation.run, cql_alpha=training.cql_alpha,
      dataset_returns=(_transition_starts(data.episodes, replays.dataset_returns, config.seed)
                       if issubclass(config.agent_class, CqlSacAgent) else None))


def _finish(cql_learner: CqlLearner, train_step: tf.Variable, start_step: int) -> int:
  """Stage 8: the final checkpoint and policies, unless this call trained no step.

  Returns:
    The train step reached.
  """
  step = int(train_step.numpy())
  if step > start_step:
    for trigger in cql_learner.triggers:
      trigger(step, force_trigger=True)
  return step


def _logged_evaluation(eval_dir: str, step: int) -> Dict[str, float]:
  """The evaluation metrics eval/ holds for `step` ({} unless all of them are there)."""
  prefix = 'Metrics/'
  logged = {tag[len(prefix):]: dict(points).get(step)
            for tag, points in read_scalars(eval_dir).items() if tag.startswith(prefix)}
  names = ('AverageReturn', 'AverageEpisodeLength', 'StdReturn',
           cql_eval.NORMALIZED_SCORE_METRIC)
  if any(logged.get(name) is None for name in names):
    return {}
  return {name: logged[name] for name in names}


def _transition_starts(episodes, returns, seed, max_states: int = 20000):
  """(observations [M, O], returns-to-go [M]) of up to `max_states` random dataset states
  that start a transition (the last step of an episode has none)."""
  starts = np.flatnonzero(~episodes.is_last | episodes.is_first)
  if len(starts) > max_states:
    starts = np.sort(np.random.default_rng(seed).choice(starts, max_states, replace=False))
  return episodes.observation[starts].astype(np.float32), returns[starts].astype(np.float32)


def _make_agent(agent_class, *args, **kwargs):
  """`agent_class(*args, **kwargs)`, initialized; its ValueErrors become ConfigErrors.

  Raises:
    ConfigError: For an argument the agent rejects (e.g. a gin binding of
      `cql_sac.agents.cql_sac_agent.CqlSacAgent.num_critics = 1`), before anything is
      written.
  """
  try:
    agent = agent_class(*args, **kwargs)
  except ValueError as e:
    raise ConfigError(f'{agent_class.__name__}: {e}') from e
  agent.initialize()
  return agent


class _Progress:
  """Logs train progress (steps/s, ETA, losses) and writes RunTime/train_steps_per_sec."""

  def __init__(self, start_step: int, final_step: int, summary_writer):
    """Starts tracking at `start_step`; `summary_writer` receives the steps/s scalar."""
    self._final_step = final_step
    self._last_step = start_step
    self._summary_writer = summary_writer

  def update(self, step: int, seconds: float, loss_info) -> None:
    """Records that training reached `step` after `seconds` of training since last call."""
    steps_per_sec = (step - self._last_step) / max(seconds, 1e-9)
    self._last_step = step
    eta = (self._final_step - step) / max(steps_per_sec, 1e-9)
    with self._summary_writer.as_default(), tf.summary.record_if(True):
      tf.summary.scalar('RunTime/train_steps_per_sec', steps_per_sec, step=step)
    losses = ' '.join(f'{name}={float(value):.4g}'
                      for name, value in loss_info.extra._asdict().items())
    logging.info('step %d/%d (%.0f%%), %.1f steps/s, ETA %s (training only) | %s', step,
                 self._final_step, 100.0 * step / self._final_step, steps_per_sec,
                 time.strftime('%H:%M:%S', time.gmtime(eta)), losses)


def parse_gin_config(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
  """Parses gin files, then bindings; `include`s resolve relative to the including file.

  Args:
    gin_files: Paths of gin files (relative to the working directory or absolute).
    gin_bindings: Gin binding strings, applied after the files.

  Raises:
    ConfigError: For a missing file or a binding gin rejects (an unknown configurable
      or parameter, a syntax error), with the closest known parameter names.
  """
  paths = [os.path.abspath(f) for f in gin_files]
  for given, path in zip(gin_files, paths):
    if not os.path.isfile(path):
      raise ConfigError(f'--gin_file={given} not found (looked for {path}). The shipped '
                        'configs are configs/*.gin in the cql-sac checkout.')
  # Includes resolve against gin's search paths in order: put these files' directories first,
  # so that configs/mujoco_medium.gin's `include 'mujoco.gin'` finds configs/mujoco.gin even
  # after configs/corl/mujoco.gin was parsed in the same process (benchmarks.quality). gin
  # 0.5 appends search paths and has no public way to reorder them.
  prefixes = gin.config._LOCATION_PREFIXES  # pylint: disable=protected-access
  for directory in reversed(list(dict.fromkeys(os.path.dirname(p) for p in paths))):
    if directory in prefixes:
      prefixes.remove(directory)
    prefixes.insert(1, directory)  # After '' (absolute paths and the working directory).
  root_logger = std_logging.getLogger()
  root_logger.addFilter(_not_a_gin_path_probe)
  try:
    gin.parse_config_files_and_bindings(paths, gin_bindings)
  except (ValueError, IOError, SyntaxError) as e:
    message = str(e)
    unknown = re.search(r"parameter named '(\w+)'", message)
    if unknown:
      close = difflib.get_close_matches(unknown.group(1),
                                        list(inspect.signature(train_eval).parameters))
      message += f' Did you mean: {", ".join(close)}?' if close else ''
    raise ConfigError(f'Bad gin configuration: {message}') from e
  finally:
    root_logger.removeFilter(_not_a_gin_path_probe)


def _not_a_gin_path_probe(record: std_logging.LogRecord) -> bool:
  """Logging filter dropping gin's resource_reader lines: for each include it first tries
  the name as a Python package path and logs "Path not found: mujoco.gin" as an error
  before finding the file beside the including one."""
  return record.pathname != resource_reader.__file__


def _gin_binds(parameter: str) -> bool:
  """Whether the parsed gin config binds `parameter` ('configurable.name')."""
  try:
    gin.query_parameter(parameter)
  except ValueError:
    return False
  return True


def _define_flags() -> None:
  """Defines the binary's flags; at run time, so that importing this module defines none.

  Flags left unset fall back to the gin binding `train_eval.<name>`, then to its default.
  """
  flags.DEFINE_string('root_dir', None, 'Directory for TensorBoard logs, checkpoints and '
                      'policies. Rerunning with the same root_dir resumes.', required=True)
  flags.DEFINE_string('env_name', None, 'D4RL environment name, e.g. hopper-medium-v2 or '
                      'antmaze-medium-play-v0; evaluation runs in it. Not needed for a Minari '
                      'dataset (its metadata names the environment).')
  flags.DEFINE_string('dataset_name', None, 'TFDS RLDS name (e.g. d4rl_mujoco_hopper/v2-medium)'
                      ', a directory written by cql_sac_make_dataset, or a Minari dataset: '
                      'minari:<dataset_id> (e.g. minari:mujoco/hopper/medium-v0) or its '
                      'directory.', required=True)
  flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s); includes inside resolve '
                            'relative to the including file.')
  flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings, e.g. "train_eval.batch_size=64".')
  flags.DEFINE_multi_string('gin_param', [], 'Same as --gin_bindings (the reference\'s name).')
  flags.DEFINE_integer('num_gradient_updates', None, 'Total train steps (default 1000000).')
  flags.DEFINE_integer('eval_interval', None, 'Train steps between evaluations (default 10000).')
  flags.DEFINE_integer('summary_interval', None, 'Train steps between train/ summaries '
                       '(default 1000).')
  flags.DEFINE_integer('policy_save_interval', None, 'Train steps between policy checkpoints '
                       'under root_dir/policies (default 10000).')
  flags.DEFINE_integer('learner_iterations_per_call', None, 'Train steps per Learner.run call '
                       '(default 500).')
  flags.DEFINE_integer('reverb_port', None, 'Port of the in-process Reverb server (default: a '
                       'free one).')
  flags.DEFINE_string('replay_server_address', None, 'host:port of a running Reverb server '
                      '(cql_sac_reverb_server) to use instead of an in-process one.')
  flags.DEFINE_string('data_dir', None, 'TFDS data directory (default: TFDS\'s, ~/tensorflow_'
                      'datasets).')
  flags.DEFINE_integer('data_take', None, 'Use only the first N *episodes* of the dataset.')
  flags.DEFINE_integer('seed', None, 'Seeds TensorFlow, NumPy, the agent and the environment.')
  flags.DEFINE_integer('online_env_steps', None, 'Environment steps of online fine-tuning '
                       'after the offline steps (default 0: offline only).')
  flags.DEFINE_bool('allow_config_change', None, 'Resume although the configuration differs '
                    'from the one recorded in root_dir/config (the new one is recorded too).')


def main(argv: Sequence[str]) -> None:
  """Entry point of `cql_sac_train_eval`: parses gin, trains, prints the final result.

  Args:
    argv: Command-line arguments left after flag parsing (must be none).
  """
  args = cli.start_main(argv)
  overrides = {name: args[name].value for name in _TRAIN_EVAL_FLAGS if args[name].present}
  try:
    parse_gin_config(args.gin_file, args.gin_bindings + args.gin_param)
    if not _gin_binds('train_eval.env_name'):
      overrides.setdefault('env_name', None)  # Optional for a Minari dataset.
    logging.info('Gin bindings:\n%s', gin.config_str())
    result = train_eval(**overrides)
  except (ConfigError, RunDirectoryError, CheckpointWriteError) as e:
    message = str(e).split(_GIN_CALL_NOTE)[0]  # Without the line gin appends.
    sys.exit(f'cql_sac_train_eval: error: {message}')
  print(f'Trained {result.train_steps} steps; TensorBoard: tensorboard --logdir '
        f'{args.root_dir}')
  print(f'Dataset: {result.dataset_num_episodes} episodes, {result.dataset_num_transitions} '
        f'transitions, mean episode return {result.dataset_mean_episode_return:.2f}')
  if result.eval_metrics:
    metrics = result.eval_metrics
    print(f'Final evaluation: mean return {metrics["AverageReturn"]:.2f} '
          f'(std {metrics["StdReturn"]:.2f}, mean length {metrics["AverageEpisodeLength"]:.1f}),'
          f' D4RL normalized score {metrics[cql_eval.NORMALIZED_SCORE_METRIC]:.2f}')


def run() -> None:
  """Console-script entry point: defines the flags and runs `main`."""
  _define_flags()
  cli.list_flags_in_help(__name__)
  cli.list_flags_in_help(strategy_utils.__name__)  # --use_gpu, --tpu.
  app.run(main)


if __name__ == '__main__':
  run()
