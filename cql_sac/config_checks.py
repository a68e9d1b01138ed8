"""The checks `cql_sac.train_eval` runs on its arguments before it writes anything.

`check_config` (its stage 1) checks the numbers' ranges, the combinations of options, the
online fine-tuning settings and the output directory; `check_checkpoint` finds the
checkpoint to resume from in the output directory, setting damaged ones aside. Each raises
`ConfigError` with a message that says what to change.
"""

import math
import os
from types import SimpleNamespace
from typing import Dict, Optional

from absl import logging
import gin
import tensorflow as tf

from cql_sac import checkpoints

from cql_sac.agents.cal_ql_agent import CalQlAgent
from cql_sac.agents.combo_agent import ComboAgent
from cql_sac.agents.cql_sac_agent import CqlSacAgent
from cql_sac.datasets.holdout import holdout_seed
from cql_sac.datasets.loading import recorded_env_name
from cql_sac.envs import position_dims
from cql_sac.model_ope import ModelConfig
from cql_sac.model_rollouts import RolloutConfig
from cql_sac.networks import configured_lstm_size
from cql_sac.policy_rollback import RollbackConfig
from cql_sac.run_record import read_run_record
from cql_sac.tasks import get_dataset_info


class ConfigError(ValueError):
  """Bad input found before training; the message says what to change."""


def check_config(config: SimpleNamespace) -> None:
  """Stage 1 of `train_eval`: checks its arguments and `root_dir` before it writes anything.

  Args:
    config: `train_eval`'s arguments by name.

  Raises:
    ConfigError: For a numeric argument out of range (`_check_numbers`), `sample_in_loop`
      with a remote replay or several devices, an option that needs cql_sac's agent with
      another agent class, bad online settings (`_check_online`), a bad or changed
      `holdout_fraction` (`_check_holdout`), Cal-QL with an external Reverb server, a
      sequence length that does not fit the networks or an option recurrent networks cannot
      take (`_check_sequences`), an option COMBO cannot take (`_check_combo`), a policy
      rollback setting that cannot work (`_check_rollback`),
      `velocities_hidden` for a task without that variant, or an unwritable `root_dir`.
  """
  arguments = vars(config)
  _check_numbers(arguments)
  if config.sample_in_loop and (config.replay_server_address or config.tpu or config.use_gpu
                                and len(tf.config.list_logical_devices('GPU')) > 1):
    raise ConfigError('train_eval.sample_in_loop samples in this process on one device; drop '
                      '--replay_server_address (and --tpu), or set '
                      'train_eval.sample_in_loop = False for several devices.')
  agent_class = config.agent_class
  for option, needs in (('sample_in_loop', 'its replay seed'),
                        ('eval_with_q_filter', 'its critics')):
    if arguments[option] and not issubclass(agent_class, CqlSacAgent):
      raise ConfigError(f'train_eval.{option} needs cql_sac\'s CqlSacAgent ({needs}), not '
                        f'{agent_class.__module__}.{agent_class.__name__}; set '
                        f'train_eval.{option} = False for a reference run.')
  if config.online_env_steps:
    _check_online(arguments)
  _check_holdout(config)
  if config.replay_server_address and issubclass(agent_class, CalQlAgent):
    raise ConfigError('CalQlAgent needs returns-to-go in the replay, which an external Reverb '
                      'server does not store; drop --replay_server_address.')
  if issubclass(agent_class, ComboAgent):
    _check_combo(arguments)
  _check_rollback(arguments)
  _check_sequences(arguments)
  if config.velocities_hidden:
    try:
      position_dims(config.env_name)
    except ValueError as e:
      raise ConfigError(f'train_eval.velocities_hidden: {e}') from e
  _check_root_dir(config.root_dir)


# Options COMBO's mixed batches cannot take: train_eval argument -> why.
_NOT_WITH_COMBO = {
    'sample_in_loop': 'the compiled in-memory sampler draws only the dataset\'s items',
    'online_env_steps': 'online fine-tuning mixes its own table into the batches',
}


def _check_combo(arguments: Dict) -> None:
  """ComboAgent's batches mix the dataset's table with the model's (`mixed_dataset`), which
  the gin-bound `RolloutConfig` fills."""
  for option, why in _NOT_WITH_COMBO.items():
    if arguments[option]:
      raise ConfigError(f'train_eval.{option} cannot run with ComboAgent ({why}); unset it or '
                        'train with CqlSacAgent.')
  try:
    RolloutConfig().check()
  except ValueError as e:
    raise ConfigError(f'COMBO\'s model rollouts: {e}') from e


def _check_rollback(arguments: Dict) -> None:
  """The gin-bound `RollbackConfig` (`cql_sac.policy_rollback`): in range, and, when on, what
  it needs: evaluation steps to rate at, cql_sac's agent (its `actor_variables`), a stateless
  policy, and a rating model directory of its own unless it rates with COMBO's model (the
  same seed).

  Raises:
    ConfigError: Naming the setting to change.
  """
  rollback = RollbackConfig()
  try:
    rollback.check()
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if not rollback.enabled:
    return
  agent_class = arguments['agent_class']
  problems = (
      (arguments['eval_interval'] < 1, 'rates the policy at evaluation steps; set '
       'train_eval.eval_interval >= 1'),
      (not issubclass(agent_class, CqlSacAgent), f'restores cql_sac\'s CqlSacAgent\'s actor, '
       f'not {agent_class.__module__}.{agent_class.__name__}'),
      (arguments['train_sequence_length'] != 2, 'rolls a stateless policy out; recurrent '
       'networks are not supported'),
      (rollback.rate_trained_actor and _bound_actor_ema_tau(agent_class) is None,
       'with RollbackConfig.rate_trained_actor rates the trained actor beside the averaged '
       'one; set CqlSacAgent.actor_ema_tau or unset RollbackConfig.rate_trained_actor'),
      (issubclass(agent_class, ComboAgent) and rollback.model_dir is not None
       and rollback.model_dir == RolloutConfig().model_dir
       and rollback.model_seed not in (None, ModelConfig().seed), 'shares COMBO\'s model '
       'directory but fits another model (RollbackConfig.model_seed differs from '
       'ModelConfig.seed); give RollbackConfig.model_dir another directory, or unset '
       'RollbackConfig.model_seed to rate with COMBO\'s model'))
  for failed, why in problems:
    if failed:
      raise ConfigError(f'RollbackConfig.tolerance (policy rollback) {why}, or unset '
                        'RollbackConfig.tolerance.')


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
    'updates_per_env_step': 1, 'train_sequence_length': 2}
# Options recurrent networks cannot take: train_eval argument -> why.
_NOT_WITH_SEQUENCES = {
    'sample_in_loop': 'the in-memory sampler draws 2-step items',
    'online_env_steps': 'online fine-tuning collects 2-step items',
    'eval_with_q_filter': 'the Q-filtered policy is stateless',
    'replay_server_address': 'cql_sac_reverb_server serves 2-step items',
    'normalize_observations': 'the recurrent critics take no normalization layer'}


def _bound_actor_ema_tau(agent_class: type) -> Optional[float]:
  """`actor_ema_tau` as gin binds it for `agent_class` (a `CqlSacAgent` subclass), or None:
  the class's own binding, else its nearest parent's."""
  for cls in agent_class.__mro__:
    if not issubclass(cls, CqlSacAgent):
      continue
    try:
      return gin.query_parameter(f'{cls.__module__}.{cls.__name__}.actor_ema_tau')
    except ValueError:
      continue
  return None


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


def _check_sequences(arguments: Dict[str, object]) -> None:
  """Checks `train_sequence_length` against `make_networks.lstm_size` and the options
  recurrent networks cannot take (`_NOT_WITH_SEQUENCES`, Cal-QL, bfloat16 and the other
  feed-forward network options).

  Raises:
    ConfigError: Naming the option to change.
  """
  try:
    lstm_size = configured_lstm_size()
  except ValueError as e:
    raise ConfigError(str(e)) from e
  length = arguments['train_sequence_length']
  if lstm_size is None:
    if length != 2:
      raise ConfigError(f'train_eval.train_sequence_length = {length} needs recurrent networks '
                        '(make_networks.lstm_size, e.g. (128,)); feed-forward networks train '
                        'on 2-step items: set it to 2.')
    return
  if length < 3:
    raise ConfigError(f'make_networks.lstm_size = {lstm_size} makes the networks recurrent: '
                      'set train_eval.train_sequence_length to the steps per sampled '
                      'sequence (e.g. 20).')
  for option, why in _NOT_WITH_SEQUENCES.items():
    if arguments[option]:
      raise ConfigError(f'train_eval.{option} does not work with recurrent networks ({why}); '
                        f'unset it or make_networks.lstm_size.')
  if issubclass(arguments['agent_class'], CalQlAgent):
    raise ConfigError('CalQlAgent takes feed-forward networks only; unset '
                      'make_networks.lstm_size or use CqlSacAgent.')


def _check_online(arguments: Dict[str, object]) -> None:
  """Checks the online fine-tuning arguments (train_eval's `locals()` on entry).

  Raises:
    ConfigError: For `mixing_ratio` outside [0, 1], `cql_alpha_online` < 0 or with
      Lagrange, `cosine_decay_actor_learning_rate` or `cosine_decay_critic_learning_rate`,
      `sample_in_loop`, a shared table
      (`mixing_ratio` None) on an external server,
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
  for name, networks in (('actor', "actor's"), ('critic', "critics'")):
    if arguments[f'cosine_decay_{name}_learning_rate']:
      raise ConfigError(f'train_eval.cosine_decay_{name}_learning_rate decays the {networks} '
                        'learning rate to 0 by the end of offline training, so online '
                        'fine-tuning would not train them; set it False (or online_env_steps '
                        '= 0).')
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


def _check_holdout(config: SimpleNamespace) -> None:
  """Checks `holdout_fraction` and that a resumed run holds out the episodes it held out before.

  Raises:
    ConfigError: For a fraction outside [0, 1), an unreadable root_dir/run_record.json, or one
      recording another fraction or split seed.
  """
  fraction = config.holdout_fraction
  if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
      0.0 <= fraction < 1.0):
    raise ConfigError(f'train_eval.holdout_fraction is the share of episodes held out of '
                      f'training and must be in [0, 1), got {fraction!r}. Set it with '
                      '--gin_bindings="train_eval.holdout_fraction = 0.1" (0.0: hold none out).')
  try:
    record = read_run_record(config.root_dir)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if record is None or 'holdout' not in record:
    return
  recorded = record['holdout']
  given = (float(fraction), holdout_seed(config.seed))
  if (recorded.get('fraction'), recorded.get('seed')) != given and (
      recorded.get('fraction') or given[0]):  # With nothing held out the seed plays no part.
    raise ConfigError(
        f'--root_dir={config.root_dir} was trained holding out a fraction '
        f'{recorded.get("fraction")} of the episodes with seed {recorded.get("seed")}, not '
        f'{given[0]} with seed {given[1]}; resuming would train on other episodes. Pass the '
        'same holdout_fraction and --seed, or another --root_dir.')


def _check_root_dir(root_dir: str) -> None:
  """Checks that `root_dir` is, or can be created as, a writable directory; creates nothing
  (`cql_sac.run_lock.RunLock` creates it once the run starts).

  Raises:
    ConfigError: If it, or its nearest existing parent, is not a writable directory.
  """
  existing = os.path.abspath(root_dir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
    raise ConfigError(f'--root_dir={root_dir} is not a writable directory ({existing} is not '
                      'a directory you can write to). Pass a directory you can write to.')


def check_checkpoint(checkpoint_dir: str) -> Optional[str]:
  """Finds the checkpoint to resume from in `checkpoint_dir`, setting damaged ones aside.

  The newest checkpoints that cannot be read are moved to `<checkpoint_dir>/damaged/`
  (`cql_sac.checkpoints.set_aside_damaged_checkpoints`; nothing is deleted), each reported
  in one warning line. Call it while holding the run's lock: it may move files.

  Returns:
    The prefix of the checkpoint training resumes from, or None if there is none.

  Raises:
    ConfigError: If no listed checkpoint (or the state file) can be read; nothing was
      changed.
  """
  if not tf.io.gfile.isdir(checkpoint_dir):
    return None
  try:
    outcome = checkpoints.set_aside_damaged_checkpoints(checkpoint_dir)
  except checkpoints.CheckpointsUnreadable as e:
    raise ConfigError(
        f'{e} Nothing was changed. Pass another --root_dir to start a new run, or move '
        'the damaged files away to start this one anew.') from e
  for prefix, error in outcome.moved.items():
    logging.warning('The checkpoint %s cannot be read (%s): moved its files to %s; resuming '
                    'from %s.', prefix, error, outcome.damaged_dir,
                    os.path.basename(outcome.resume_from))
  return outcome.resume_from
