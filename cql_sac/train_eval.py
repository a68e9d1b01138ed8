r"""Trains CQL-SAC offline on a D4RL dataset and evaluates it in the real environment.

    cql_sac_train_eval --root_dir=/tmp/cql/hopper-medium \
      --env_name=hopper-medium-v2 --dataset_name=d4rl_mujoco_hopper/v2-medium \
      --gin_file=configs/mujoco_medium.gin

The script reads top to bottom: `train_eval`, which
  1. checks the output directory, the environment, the dataset (against the
     environment's specs) and any checkpoint, before it writes anything;
  2. pushes every transition of the dataset into a Reverb table sized to hold them all;
  3. builds the networks and the CQL-SAC agent exactly as TF-Agents' kumar20 example;
  4. trains with TF-Agents' Learner running the fused K-steps-per-call loop of
     `cql_sac.learner` (TensorBoard under root_dir/train, checkpoints under
     root_dir/train/checkpoints, SavedModel policies under root_dir/policies);
  5. evaluates the greedy policy in the real environment at step 0, every
     `eval_interval` steps and at the end (TensorBoard under root_dir/eval);
  6. with `online_env_steps` > 0, fine-tunes online in the real environment
     (`cql_sac.finetune`: online episodes under root_dir/online_episodes, TensorBoard
     under root_dir/online).
Rerunning the same command resumes from the last checkpoint (and the online episodes). `main` and the flags close
the file.

Flags given on the command line override gin bindings of `train_eval`, which override
its defaults. Every other hyperparameter is a gin parameter of `train_eval`, with the
names and defaults of the TF-Agents reference `cql_sac_train_eval`.
"""

import difflib
import inspect
import math
import os
import re
import sys
import tempfile
import time
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import gin
import numpy as np
import tensorflow as tf
from tf_agents.policies import greedy_policy
from tf_agents.policies import py_tf_eager_policy
from tf_agents.specs import tensor_spec
from tf_agents.train import learner
from tf_agents.train import triggers
from tf_agents.train.utils import strategy_utils  # Defines --use_gpu (and --tpu).
from tf_agents.train.utils import train_utils
from tf_agents.typing import types

from cql_sac import cli
from cql_sac import eval as cql_eval
from cql_sac import finetune

from cql_sac.agents.cal_ql_agent import CalQlAgent
from cql_sac.agents.cql_sac_agent import CqlSacAgent
from cql_sac.datasets.loading import load_episodes
from cql_sac.datasets.loading import recorded_env_name
from cql_sac.datasets.normalization import corl_reward_scale
from cql_sac.datasets.normalization import observation_statistics
from cql_sac.datasets.replay import build_in_memory_replay
from cql_sac.datasets.replay import build_online_replay
from cql_sac.datasets.replay import build_replay
from cql_sac.datasets.returns import returns_to_go
from cql_sac.datasets.steps import read_episode_steps
from cql_sac.datasets.validation import validate_episodes
from cql_sac.tasks import get_dataset_info
from cql_sac.envs import load_env
from cql_sac.learner import CqlLearner
from cql_sac.learner import iterations_until_next_stop
from cql_sac.networks import make_networks
from cql_sac import policies
from cql_sac.summaries import read_scalars

# Flags passed on to `train_eval` when given on the command line.
_TRAIN_EVAL_FLAGS = ('root_dir', 'env_name', 'dataset_name', 'num_gradient_updates',
                     'eval_interval', 'summary_interval', 'policy_save_interval',
                     'learner_iterations_per_call', 'reverb_port', 'replay_server_address',
                     'data_dir', 'data_take', 'seed', 'use_gpu', 'tpu', 'online_env_steps')


# With an averaged actor (`CqlSacAgent.actor_ema_tau`): the trained actor's evaluations.
RAW_ACTOR_EVAL_DIR = 'eval_raw_actor'
GAMMA = 0.99  # The discount of the TD target and of Cal-QL's returns-to-go.


class ConfigError(ValueError):
  """Bad input found before training; the message says what to change."""


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
    env_name: str,
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
    critic_learning_rate: types.Float = 3e-4,
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
    pad_end_of_episodes: bool = False,
    reverb_port: Optional[int] = None,
    replay_server_address: Optional[str] = None,
    sample_in_loop: bool = False,
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
    env_name: D4RL environment name, e.g. 'hopper-medium-v2'; evaluation runs in it.
    dataset_name: TFDS RLDS name or a directory written by this package.
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
    critic_learning_rate: Adam learning rate of the two critics.
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
    pad_end_of_episodes: Whether 1-step episodes are kept, padded with a zero step.
    reverb_port: Port of the in-process Reverb server; None picks a free one.
    replay_server_address: 'host:port' of an external Reverb server to fill and sample
      instead of an in-process one.
    sample_in_loop: Hold the dataset in (device) memory instead of Reverb and draw each
      step's batch inside the compiled K-step loop (`FusedLearner.train_on_replay`): the
      same uniform distribution, no host round trip per step; the fast path on a GPU.
      Single process, single replica; Reverb (False) serves remote and online tables.
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

  Returns:
    A `TrainEvalResult`.

  Raises:
    ConfigError: Before anything is written, for a numeric argument out of range or an
      agent argument the agent rejects, for an unwritable `root_dir`, an unknown
      environment or dataset, a dataset that does not match the environment, or an
      unreadable checkpoint in `root_dir`, `sample_in_loop` with a remote replay or several
      devices, normalization on a dataset with a constant observation dimension or equal
      episode returns, online fine-tuning with `mixing_ratio` outside [0, 1],
      `cql_alpha_online` with Lagrange, `sample_in_loop`, one shared table on an external
      server, or an environment other than the one the dataset was recorded in; after
      restoring, for a checkpoint written
      with different network shapes.
  """
  # 1. Check every input before writing anything.
  _check_numbers(locals())
  if sample_in_loop and (replay_server_address or tpu or use_gpu and len(
      tf.config.list_logical_devices('GPU')) > 1):
    raise ConfigError('train_eval.sample_in_loop samples in this process on one device; drop '
                      '--replay_server_address (and --tpu), or set '
                      'train_eval.sample_in_loop = False for several devices.')
  for option, value, needs in (('sample_in_loop', sample_in_loop, 'its replay seed'),
                               ('eval_with_q_filter', eval_with_q_filter, 'its critics')):
    if value and not issubclass(agent_class, CqlSacAgent):
      raise ConfigError(f'train_eval.{option} needs cql_sac\'s CqlSacAgent ({needs}), not '
                        f'{agent_class.__module__}.{agent_class.__name__}; set '
                        f'train_eval.{option} = False for a reference run.')
  if online_env_steps:
    _check_online(locals())
  if replay_server_address and issubclass(agent_class, CalQlAgent):
    raise ConfigError('CalQlAgent needs returns-to-go in the replay, which an external Reverb '
                      'server does not store; drop --replay_server_address.')
  _check_root_dir(root_dir)
  logging.info('Training CQL-SAC on %s from %s into %s', env_name, dataset_name, root_dir)
  if seed is not None:  # Python's, NumPy's and TF's generators: Keras' unseeded initializers
    tf.keras.utils.set_random_seed(seed)  # draw from Python's `random`.
  try:
    env = load_env(env_name, seed=seed)
  except ValueError as e:
    raise ConfigError(f'Unknown --env_name={env_name}: {e}') from e
  try:  # Read once into memory; validation and Reverb both use this copy.
    episodes = read_episode_steps(
        load_episodes(dataset_name, data_dir=data_dir, take=data_take), dataset_name)
  except ValueError as e:  # TFDS's DatasetNotFoundError is a ValueError too.
    raise ConfigError(f'Cannot load --dataset_name={dataset_name}: {e}') from e
  try:
    dataset_stats = validate_episodes(episodes, dataset_name, env.observation_spec(),
                                      env.action_spec(), action_clipping=action_clipping)
  except ValueError as e:
    raise ConfigError(f'--dataset_name={dataset_name} does not fit --env_name={env_name}: {e}'
                      ' Pass the dataset recorded in that environment.') from e
  logging.info('Dataset: %d episodes, %d transitions, mean episode return %.2f',
               dataset_stats.num_episodes, dataset_stats.num_transitions,
               dataset_stats.mean_episode_return)
  try:
    observation_stats = observation_statistics(episodes) if normalize_observations else None
    if normalize_rewards:
      reward_scale_factor *= corl_reward_scale(dataset_stats.min_episode_return,
                                               dataset_stats.max_episode_return)
      logging.info('Reward normalization: reward_scale_factor %.6g', reward_scale_factor)
  except ValueError as e:
    raise ConfigError(f'--dataset_name={dataset_name}: {e}') from e
  _check_checkpoint(os.path.join(root_dir, learner.TRAIN_DIR, learner.POLICY_CHECKPOINT_DIR))

  # 2. Every transition of the dataset goes into Reverb (or, with sample_in_loop, stays in
  # memory for the compiled loop); training samples uniformly. Cal-QL's items also carry
  # their return-to-go (online fine-tuning measures Q against it at the switch).
  episode_returns = lambda steps: returns_to_go(steps, GAMMA, reward_scale_factor,
                                                reward_shift, cal_ql_sparse_failure_reward)
  cal_ql = issubclass(agent_class, CalQlAgent)
  dataset_returns = episode_returns(episodes) if cal_ql or online_env_steps else None
  returns = dataset_returns if cal_ql else None
  if sample_in_loop:
    replay = build_in_memory_replay(episodes, reward_shift=reward_shift,
                                    action_clipping=action_clipping,
                                    pad_end_of_episodes=pad_end_of_episodes,
                                    returns_to_go=returns)
  else:
    shared_table = online_env_steps > 0 and mixing_ratio is None
    replay = build_replay(episodes, reward_shift=reward_shift, action_clipping=action_clipping,
                          pad_end_of_episodes=pad_end_of_episodes,
                          server_address=replay_server_address, port=reverb_port,
                          returns_to_go=returns,
                          extra_capacity=online_env_steps if shared_table else 0)
  logging.info('The replay (%s) holds %d transitions',
               'in memory' if sample_in_loop else 'Reverb', replay.num_items)
  served = [tuple(spec.shape) for spec in (replay.data_spec.observation, replay.data_spec.action)]
  expected = [tuple(spec.shape) for spec in (env.observation_spec(), env.action_spec())]
  if served != expected:  # Only possible with an external server (replay_server_address).
    replay.close()
    raise ConfigError(f'The Reverb server at {replay_server_address} serves observations and '
                      f'actions of shapes {served}; --env_name={env_name} needs {expected}. '
                      'Start it with the dataset of that environment.')
  online_replay = None
  if online_env_steps and mixing_ratio is not None:
    online_replay = build_online_replay(replay.data_spec, online_env_steps)
  try:
    # 3. Networks and agent, as in TF-Agents' kumar20 example (`make_networks.compute_dtype`
    # = 'bfloat16' in gin runs the critics' matmuls in bfloat16).
    strategy = strategy_utils.get_strategy(tpu, use_gpu)
    time_step_spec = tensor_spec.from_spec(env.time_step_spec())
    observation_spec = time_step_spec.observation
    action_spec = tensor_spec.from_spec(env.action_spec())
    with strategy.scope():
      train_step = train_utils.create_train_step()
      if cql_alpha_online is not None:  # Checkpointed with the agent; finetune sets it.
        cql_alpha = tf.Variable(float(cql_alpha), trainable=False, name='cql_alpha')
      networks = make_networks(observation_spec, action_spec, actor_fc_layers=actor_fc_layers,
                               critic_joint_fc_layers=critic_joint_fc_layers,
                               observation_statistics=observation_stats)
      agent = _make_agent(
          agent_class,
          time_step_spec, action_spec,
          actor_network=networks.actor,
          critic_network=networks.critic_1,
          actor_optimizer=tf.keras.optimizers.Adam(learning_rate=actor_learning_rate),
          critic_optimizer=tf.keras.optimizers.Adam(learning_rate=critic_learning_rate),
          alpha_optimizer=tf.keras.optimizers.Adam(learning_rate=alpha_learning_rate),
          cql_alpha=cql_alpha,
          num_cql_samples=num_cql_samples,
          include_critic_entropy_term=include_critic_entropy_term,
          target_entropy=target_entropy_per_action_dim * action_spec.shape.num_elements(),
          use_lagrange_cql_alpha=use_lagrange_cql_alpha,
          cql_alpha_learning_rate=cql_alpha_learning_rate,
          target_update_tau=5e-3,
          target_update_period=1,
          random_seed=seed,
          cql_tau=cql_tau,
          reward_noise_variance=reward_noise_variance,
          num_bc_steps=bc_steps,
          td_errors_loss_fn=tf.math.squared_difference,
          gamma=GAMMA,
          reward_scale_factor=reward_scale_factor,
          gradient_clipping=None,
          log_cql_alpha_clipping=log_cql_alpha_clipping,
          softmax_temperature=softmax_temperature,
          debug_summaries=debug_summaries,
          summarize_grads_and_vars=summarize_grads_and_vars,
          train_step_counter=train_step,
          critic_network_2=networks.critic_2,
          target_critic_network=networks.target_critic_1,
          target_critic_network_2=networks.target_critic_2)

    # 4. The Learner restores the last checkpoint (agent, optimizers, α, α', train step)
    # and saves one every `checkpoint_interval` steps; the trigger exports policies.
    policies_dir = os.path.join(root_dir, learner.POLICY_SAVED_MODEL_DIR)
    policy_triggers = [triggers.PolicySavedModelTrigger(policies_dir, agent, train_step,
                                                        interval=policy_save_interval)]
    # With `CqlSacAgent.actor_ema_tau` the averaged actor is the one evaluated and exported
    # (policies/ema_greedy_policy); the trained actor is then also evaluated, into eval_raw_actor/.
    ema_policy = getattr(agent, 'ema_policy', None)
    acting_policy = ema_policy or agent.policy
    eval_tf_policy = greedy_policy.GreedyPolicy(acting_policy)
    if ema_policy is not None:
      policy_triggers.append(policies.PolicyExportTrigger(
          policies_dir, eval_tf_policy, train_step, policy_save_interval,
          policies.EMA_POLICY_DIR, policies.EMA_CHECKPOINT_DIR))
    if eval_with_q_filter:
      eval_tf_policy = policies.QFilteredPolicy(acting_policy, agent.critics, num_eval_samples)
      policy_triggers.append(policies.PolicyExportTrigger(
          policies_dir, eval_tf_policy, train_step, policy_save_interval,
          policies.Q_FILTERED_POLICY_DIR, policies.Q_FILTERED_CHECKPOINT_DIR))
    try:
      cql_learner = CqlLearner(
          root_dir, train_step, agent,
          experience_dataset_fn=(None if sample_in_loop
                                 else lambda: replay.as_dataset(batch_size, data_prefetch)),
          replay=replay if sample_in_loop else None, batch_size=batch_size,
          steps_per_call=learner_iterations_per_call,
          triggers=policy_triggers,
          checkpoint_interval=checkpoint_interval,
          max_checkpoints_to_keep=max_checkpoints_to_keep,
          summary_interval=summary_interval,
          strategy=strategy)
    except ValueError as e:
      if 'when attempting to restore' not in str(e):  # TF's message for a shape mismatch.
        raise
      raise ConfigError(
          f'The checkpoint under {root_dir} does not fit this configuration ({e}). It was '
          'written with other network sizes or agent settings; pass another --root_dir.'
      ) from e

    # 5. Evaluation of the greedy (mode) or Q-filtered policy in the real environment.
    eval_actor = raw_actor_eval = None
    if eval_episodes > 0:
      eval_policy = py_tf_eager_policy.PyTFEagerPolicy(eval_tf_policy, use_tf_function=True)
      eval_actor = cql_eval.make_eval_actor(
          env, eval_policy, env_name, eval_episodes, train_step,
          summary_dir=os.path.join(root_dir, 'eval'))
      if ema_policy is not None:
        raw_actor_eval = cql_eval.make_eval_actor(  # Its own env: the same initial states.
            load_env(env_name, seed=seed), py_tf_eager_policy.PyTFEagerPolicy(
                greedy_policy.GreedyPolicy(agent.policy), use_tf_function=True),
            env_name, eval_episodes, train_step,
            summary_dir=os.path.join(root_dir, RAW_ACTOR_EVAL_DIR))

    def run_evaluation() -> Dict[str, float]:
      """Runs `eval_episodes` episodes, writes eval/ summaries; returns the metrics."""
      if eval_actor is None:
        return {}
      eval_actor.run_and_log()
      if raw_actor_eval is not None:
        raw_actor_eval.run_and_log()
      return cql_eval.metric_results(eval_actor)

    # 6. Training loop.
    step = start_step = int(train_step.numpy())
    if start_step:
      logging.info('Resuming from the checkpoint at step %d', start_step)
    eval_results = run_evaluation() if step == 0 and eval_interval > 0 else {}
    progress = _Progress(start_step, num_gradient_updates, cql_learner.train_summary_writer)
    while step < num_gradient_updates:
      iterations = iterations_until_next_stop(
          step, num_gradient_updates, learner_iterations_per_call, eval_interval)
      started = time.time()
      loss_info = cql_learner.run(iterations=iterations)
      step = int(train_step.numpy())
      progress.update(step, time.time() - started, loss_info)
      if step == num_gradient_updates or (eval_interval > 0 and step % eval_interval == 0):
        eval_results = run_evaluation()

    # 7. Online fine-tuning: collect in the real environment, train on mixed batches.
    if online_env_steps:
      config = finetune.FinetuneConfig(online_env_steps, updates_per_env_step, mixing_ratio,
                                       cql_alpha_online, calibration_online,
                                       online_eval_interval)
      data = finetune.OnlineData(replay, online_replay, reward_shift, action_clipping,
                                 returns_to_go=episode_returns if cal_ql else None)
      eval_results = finetune.finetune(
          config, root_dir=root_dir, env_name=env_name, seed=seed, agent=agent,
          cql_learner=cql_learner, data=data, batch_size=batch_size,
          data_prefetch=data_prefetch, num_offline_steps=num_gradient_updates,
          steps_per_call=learner_iterations_per_call, eval_interval=eval_interval,
          run_evaluation=run_evaluation,
          cql_alpha=cql_alpha if cql_alpha_online is not None else None,
          dataset_returns=(_transition_starts(episodes, dataset_returns, seed)
                           if issubclass(agent_class, CqlSacAgent) else None)) or eval_results
      step = int(train_step.numpy())
    if step > start_step:  # Final checkpoint and policy, unless just written.
      for trigger in cql_learner.triggers:
        trigger(step, force_trigger=True)
    if not eval_results and eval_actor is not None:  # E.g. a finished run started again:
      # report its last evaluation, or evaluate if it has none at this step.
      eval_results = (_logged_evaluation(os.path.join(root_dir, 'eval'), step)
                      or run_evaluation())
  finally:
    replay.close()
    if online_replay is not None:
      online_replay.close()

  return TrainEvalResult(
      train_steps=step,
      eval_metrics=eval_results,
      dataset_num_episodes=dataset_stats.num_episodes,
      dataset_num_transitions=dataset_stats.num_transitions,
      dataset_mean_episode_return=dataset_stats.mean_episode_return)


# train_eval's numeric arguments and what each allows (`_check_numbers`).
_POSITIVE = ('actor_learning_rate', 'critic_learning_rate', 'alpha_learning_rate',
             'cql_alpha_learning_rate', 'softmax_temperature')
_NON_NEGATIVE = ('cql_alpha', 'reward_noise_variance')
_FINITE = ('reward_scale_factor', 'cql_tau', 'reward_shift', 'target_entropy_per_action_dim')
_INTEGERS_AT_LEAST = {
    'num_gradient_updates': 0, 'batch_size': 1, 'bc_steps': 0, 'num_cql_samples': 1,
    'data_prefetch': 1, 'policy_save_interval': 1, 'summary_interval': 1,
    'checkpoint_interval': 1, 'max_checkpoints_to_keep': 1, 'learner_iterations_per_call': 1,
    'eval_episodes': 0, 'num_eval_samples': 1, 'online_env_steps': 0,
    'updates_per_env_step': 1}


def _check_numbers(arguments: Dict[str, object]) -> None:
  """Checks train_eval's numeric arguments (its `locals()` on entry) against their ranges.

  Raises:
    ConfigError: Naming the first argument out of range, what it allows, and the gin binding.
  """
  def fail(name, allowed):
    raise ConfigError(f'train_eval.{name} must be {allowed}, got {arguments[name]!r}. Set it in '
                      f'the gin file or with --gin_bindings="train_eval.{name} = ...".')

  def number(name):
    value = arguments[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      try:
        value = float(value.numpy())  # A tf.Variable (gin can pass one).
      except AttributeError:
        fail(name, 'a number')
    return float(value)

  for name, minimum in _INTEGERS_AT_LEAST.items():
    value = arguments[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
      fail(name, f'an integer >= {minimum}')
  data_take = arguments['data_take']
  if data_take is not None and (isinstance(data_take, bool) or not isinstance(data_take, int)
                                or data_take < 1):
    fail('data_take', 'None (the whole dataset) or an integer >= 1')
  for name in _POSITIVE:
    if not number(name) > 0:
      fail(name, '> 0')
  for name in _NON_NEGATIVE:
    if not number(name) >= 0:
      fail(name, '>= 0')
  for name in _FINITE:
    if not math.isfinite(number(name)):
      fail(name, 'a finite number')


def _check_online(arguments: Dict[str, object]) -> None:
  """Checks the online fine-tuning arguments (train_eval's `locals()` on entry).

  Raises:
    ConfigError: For `mixing_ratio` outside [0, 1], `cql_alpha_online` < 0 or with
      Lagrange, `sample_in_loop`, a shared table (`mixing_ratio` None) on an external server,
      or a dataset recorded in another environment than `env_name`.
  """
  ratio = arguments['mixing_ratio']
  if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))
                            or not 0.0 <= ratio <= 1.0):
    raise ConfigError(f'train_eval.mixing_ratio is the share of dataset items in an online '
                      f'batch and must be in [0, 1] (or None for one shared table), got '
                      f'{ratio!r}.')
  alpha = arguments['cql_alpha_online']
  if alpha is not None and (arguments['use_lagrange_cql_alpha'] or not alpha >= 0):
    raise ConfigError(f'train_eval.cql_alpha_online={alpha!r} sets a fixed CQL weight >= 0 '
                      'for the online phase; with use_lagrange_cql_alpha = True α\' is '
                      'learned: set cql_alpha_online = None, or use_lagrange_cql_alpha = False.')
  if arguments['sample_in_loop']:
    raise ConfigError('Online fine-tuning adds transitions to Reverb tables; set '
                      'train_eval.sample_in_loop = False (or online_env_steps = 0).')
  if ratio is None and arguments['replay_server_address']:
    raise ConfigError('train_eval.mixing_ratio = None adds online transitions to the dataset\'s '
                      'table, which an external Reverb server owns; drop '
                      '--replay_server_address or set a mixing_ratio.')
  recorded = recorded_env_name(arguments['dataset_name'])
  env_name = arguments['env_name']
  try:
    same = recorded is None or (get_dataset_info(recorded).gym_env_id
                                == get_dataset_info(env_name).gym_env_id)
  except ValueError:
    same = True  # An unknown name is reported with the environment.
  if not same:
    raise ConfigError(f'--dataset_name={arguments["dataset_name"]} was recorded in {recorded}, '
                      f'not in --env_name={env_name}: online fine-tuning would add another '
                      'task\'s transitions. Pass the environment of the dataset.')


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


def _check_root_dir(root_dir: str) -> None:
  """Creates `root_dir` if needed and checks that files can be written in it.

  Raises:
    ConfigError: If it cannot be created or written.
  """
  try:
    os.makedirs(root_dir, exist_ok=True)
    with tempfile.TemporaryFile(dir=root_dir):
      pass
  except OSError as e:
    raise ConfigError(f'--root_dir={root_dir} is not a writable directory ({e}). Pass a '
                      'directory you can write to.') from e


def _check_checkpoint(checkpoint_dir: str) -> None:
  """Reads every tensor of the latest checkpoint in `checkpoint_dir`, if there is one.

  A damaged checkpoint is reported, never repaired or deleted.

  Raises:
    ConfigError: If the checkpoint index or any of its files cannot be read.
  """
  if not tf.io.gfile.isdir(checkpoint_dir):
    return
  prefix = None
  try:
    prefix = tf.train.latest_checkpoint(checkpoint_dir)
    if prefix is None:
      return
    reader = tf.train.load_checkpoint(prefix)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  except Exception as e:  # pylint: disable=broad-except  # TF raises several kinds here.
    files = sorted(tf.io.gfile.glob(prefix + '*')) if prefix else [
        os.path.join(checkpoint_dir, 'checkpoint')]
    raise ConfigError(
        f'The checkpoint {prefix or checkpoint_dir} cannot be read ({type(e).__name__}: '
        f'{str(e).splitlines()[0] if str(e) else ""}). Its files: {", ".join(files)}. '
        'Nothing was changed. Pass another --root_dir to start a new run, or move the '
        'damaged checkpoint files (and its line in the "checkpoint" file) away to resume '
        'from an earlier one.') from e


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


def _define_flags() -> None:
  """Defines the binary's flags; at run time, so that importing this module defines none.

  Flags left unset fall back to the gin binding `train_eval.<name>`, then to its default.
  """
  flags.DEFINE_string('root_dir', None, 'Directory for TensorBoard logs, checkpoints and '
                      'policies. Rerunning with the same root_dir resumes.', required=True)
  flags.DEFINE_string('env_name', None, 'D4RL environment name, e.g. hopper-medium-v2 or '
                      'antmaze-medium-play-v0; evaluation runs in it.', required=True)
  flags.DEFINE_string('dataset_name', None, 'TFDS RLDS name (e.g. d4rl_mujoco_hopper/v2-medium)'
                      ' or a directory written by cql_sac_make_dataset.', required=True)
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


def main(argv: Sequence[str]) -> None:
  """Entry point of `cql_sac_train_eval`: parses gin, trains, prints the final result.

  Args:
    argv: Command-line arguments left after flag parsing (must be none).
  """
  args = cli.start_main(argv)
  overrides = {name: args[name].value for name in _TRAIN_EVAL_FLAGS if args[name].present}
  try:
    parse_gin_config(args.gin_file, args.gin_bindings + args.gin_param)
    logging.info('Gin bindings:\n%s', gin.config_str())
    result = train_eval(**overrides)
  except ConfigError as e:
    sys.exit(f'cql_sac_train_eval: error: {e}')
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
