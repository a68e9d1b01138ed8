r"""Chooses a run's checkpoint without the simulator: the `cql_sac_select` binary.

    cql_sac_select --root_dir=/tmp/cql/hopper-medium

For every policy a `cql_sac_train_eval` run saved (root_dir/policies: its greedy policy, or
the averaged actor's with `CqlSacAgent.actor_ema_tau`, at every `policy_save_interval`
steps) this computes offline estimates of its quality from the run's dataset
(`cql_sac.ope`, read through root_dir/run_record.json):

  fqe_value            Fitted Q Evaluation: the discounted return, environment reward units;
  fqe_return           that as an undiscounted episode return (`ope.undiscounted_return`: the
                       task's full episode length at a constant reward; not for AntMaze);
  fqe_normalized_score that as a D4RL normalized score;
  critic_value         the trained critics' min_k Q_k(s0, μ(s0)), converted to reward units
                       (÷ reward scale, − shift·Σγ^t), where root_dir/train/checkpoints still
                       holds the step (`max_checkpoints_to_keep`);
  critic_td_error      their RMS TD error for μ on the held-out episodes
                       (`train_eval.holdout_fraction`; on all episodes when none are), reward
                       units;
  model_return         with --estimator=model (or --estimates=fqe,model): the mean episode
                       return of μ rolled out in a dynamics model fit on the dataset
                       (`cql_sac.model_ope`; fit once, in root_dir/selection/dynamics_model or
                       --model_dir), environment reward units, with model_normalized_score and
                       model_length (mean steps before the model's terminal);

next to the real evaluation the run logged at the step (eval/). It writes root_dir/selection/
(estimates.json, estimates.csv, estimates.png, TensorBoard scalars under ope/), prints the
chosen step (the best estimate, or the last checkpoint when the best beats the last's by no
more than --keep_last_margin, 10% by default) and copies that policy to
root_dir/policies/selected_policy, which
`cql_sac_eval --policy_dir=<root_dir>/policies/selected_policy` runs. Rerunning reuses the
estimates already computed with the same settings (each family, FQE with the critics' and the
model's, on its own).
"""

import csv
import dataclasses
import json
import os
import re
import shutil
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
import tqdm
from tf_agents.policies import py_tf_eager_policy
from tf_agents.train import learner
from tf_agents.trajectories import time_step as ts

from cql_sac import cli
from cql_sac import model_ope
from cql_sac import ope
from cql_sac import policies
from cql_sac import tasks
from cql_sac.datasets.holdout import split_episodes
from cql_sac.datasets.loading import load_episode_steps
from cql_sac.datasets.normalization import observation_statistics
from cql_sac.datasets.steps import EpisodeSteps
from cql_sac.datasets.validation import validate_episodes
from cql_sac.eval import NORMALIZED_SCORE_METRIC
from cql_sac.networks import make_networks
from cql_sac.run_lock import RunDirectoryError
from cql_sac.run_lock import holding_run_lock
from cql_sac.run_record import RUN_RECORD_FILE
from cql_sac.run_record import read_run_record
from cql_sac.files import write_file_atomically
from cql_sac.summaries import read_scalars

SELECTION_DIR = 'selection'
SELECTED_POLICY_DIR = 'selected_policy'
ESTIMATES_FILE = 'estimates.json'
# Selection rules: the column each maximizes (critic_td_error: minimizes).
ESTIMATORS = {'fqe': 'fqe_value', 'critic_value': 'critic_value',
              'critic_td_error': 'critic_td_error', 'model': 'model_return'}
# The estimates computed together, and the columns of each (`estimate`).
ESTIMATE_FAMILIES = {
    'fqe': ('fqe_value', 'fqe_return', 'fqe_normalized_score', 'fqe_td_loss', 'critic_value',
            'critic_td_error'),
    'model': ('model_return', 'model_normalized_score', 'model_length')}
# The family that computes each estimator's column.
FAMILY_OF = {estimator: family for family, columns in ESTIMATE_FAMILIES.items()
             for estimator, column in ESTIMATORS.items() if column in columns}
COLUMNS = ('step', *ESTIMATE_FAMILIES['fqe'], *ESTIMATE_FAMILIES['model'], 'real_return',
           'real_normalized_score', 'seconds')
MODEL_DIR = 'dynamics_model'
# `choose`'s default margin, set on the hopper-medium and medium-replay validation runs
# (docs/selection.md) before the halfcheetah-medium runs that check it.
KEEP_LAST_MARGIN = 0.1
# A checkpoint's FQE has diverged when its final TD loss exceeds this multiple of the median
# over the run's checkpoints (`usable_rows`; docs/selection.md, walker2d-medium-replay).
FQE_DIVERGED_TD_LOSS_RATIO = 10.0
_CHECKPOINT_PATTERN = re.compile(r'policy_checkpoint_(\d+)$')
_ACTION_BATCH = 16384


class SelectionError(ValueError):
  """Bad input found before anything is written; the message says what to change."""


class SavedPolicies(NamedTuple):
  """The policies a run saved.

  Attributes:
    saved_model_dir: The greedy policy's SavedModel (the averaged actor's when the run had one).
    checkpoints: {train step: its policy checkpoint directory}, by step.
  """
  saved_model_dir: str
  checkpoints: Dict[int, str]


def find_saved_policies(root_dir: str) -> SavedPolicies:
  """The greedy policy's SavedModel and checkpoints under root_dir/policies; the averaged
  actor's (policies/ema_greedy_policy) when there is one, since eval/ scored it.

  Raises:
    SelectionError: If there is no SavedModel or no policy checkpoint.
  """
  policies_dir = os.path.join(root_dir, learner.POLICY_SAVED_MODEL_DIR)
  for name, checkpoints_name in ((policies.EMA_POLICY_DIR, policies.EMA_CHECKPOINT_DIR),
                                 (learner.GREEDY_POLICY_SAVED_MODEL_DIR,
                                  learner.POLICY_CHECKPOINT_DIR)):
    saved_model_dir = os.path.join(policies_dir, name)
    if os.path.exists(os.path.join(saved_model_dir, 'saved_model.pb')):
      break
  else:
    raise SelectionError(f'No saved policies under {policies_dir}: pass --root_dir of a '
                         'cql_sac_train_eval run (it saves one every policy_save_interval steps).')
  checkpoints = {}
  checkpoints_dir = os.path.join(policies_dir, checkpoints_name)
  for entry in sorted(os.listdir(checkpoints_dir)) if os.path.isdir(checkpoints_dir) else []:
    match = _CHECKPOINT_PATTERN.match(entry)
    if match:
      checkpoints[int(match.group(1))] = os.path.join(checkpoints_dir, entry)
  if not checkpoints:
    raise SelectionError(f'No policy checkpoints under {checkpoints_dir}: train longer than '
                         'train_eval.policy_save_interval steps, or lower it.')
  return SavedPolicies(saved_model_dir, dict(sorted(checkpoints.items())))


@dataclasses.dataclass(frozen=True)
class RunData:
  """A run's dataset as `cql_sac.ope` reads it.

  Attributes:
    record: root_dir/run_record.json.
    transitions: Every transition of the dataset (training and held-out episodes).
    initial_states: float32 [E, O], every episode's first observation.
    td_transitions: The held-out episodes' transitions (all when none were held out).
    statistics: The dataset's observation statistics for the FQE critic, or None.
    critic_statistics: The training episodes' statistics the run's critics normalize with,
      or None.
  """
  record: dict
  transitions: ope.Transitions
  initial_states: np.ndarray
  td_transitions: ope.Transitions
  statistics: Optional[object]
  critic_statistics: Optional[object]


def load_run_data(root_dir: str, policy) -> RunData:
  """Reads the run's record and dataset, checks both against the saved policy.

  Args:
    root_dir: The run's directory.
    policy: The saved greedy PyPolicy (its specs).

  Raises:
    SelectionError: If root_dir has no readable run record, the dataset cannot be loaded or
      does not fit the policy's specs, or the record's held-out episodes do not fit it.
  """
  try:
    record = read_run_record(root_dir)
  except ValueError as e:
    raise SelectionError(str(e)) from e
  if record is None:
    raise SelectionError(
        f'{os.path.join(root_dir, RUN_RECORD_FILE)} is missing (runs of earlier versions write '
        'none): rerun the same cql_sac_train_eval command, which trains no further and writes it.')
  name = record['dataset_name']
  try:
    steps = load_episode_steps(name, data_dir=record.get('data_dir'),
                               take=record.get('data_take'))
    validate_episodes(steps, name, policy.time_step_spec.observation, policy.action_spec)
  except ValueError as e:
    raise SelectionError(f'The dataset {name} of {RUN_RECORD_FILE} does not fit the saved '
                         f'policy or cannot be read: {e} Restore the dataset the run trained '
                         f'on, or fix dataset_name in {RUN_RECORD_FILE}.') from e
  holdout = record.get('holdout', {})
  held_out = np.asarray(holdout.get('episodes', []), np.int64)
  if holdout.get('num_episodes', steps.num_episodes) != steps.num_episodes or (
      held_out.size and (held_out.min() < 0 or held_out.max() >= steps.num_episodes)):
    raise SelectionError(
        f'{RUN_RECORD_FILE} holds out episodes of a dataset of {holdout.get("num_episodes")} '
        f'episodes, but {name} has {steps.num_episodes}: restore the dataset the run trained on.')
  training, test = split_episodes(steps, held_out)
  return RunData(
      record=record, transitions=ope.dataset_transitions(steps),
      initial_states=ope.initial_observations(steps),
      td_transitions=ope.dataset_transitions(test if held_out.size else steps),
      statistics=_statistics_or_none(steps),
      critic_statistics=(observation_statistics(training)
                         if record.get('normalize_observations') else None))


def _statistics_or_none(steps: EpisodeSteps):
  """The observation statistics, or None where a dimension is constant."""
  try:
    return observation_statistics(steps)
  except ValueError:
    return None


def greedy_actions(policy, observations: np.ndarray) -> np.ndarray:
  """μ(s), float32 [N, A], of a saved greedy policy built with `batch_time_steps=False`."""
  actions = []
  for start in range(0, observations.shape[0], _ACTION_BATCH):
    batch = observations[start:start + _ACTION_BATCH]
    size = batch.shape[0]
    time_step = ts.TimeStep(step_type=np.full(size, ts.StepType.MID, np.int32),
                            reward=np.zeros(size, np.float32),
                            discount=np.ones(size, np.float32), observation=batch)
    actions.append(np.asarray(policy.action(time_step).action, np.float32))
  return np.concatenate(actions)


def load_critics(root_dir: str, step: int, data: RunData, policy):
  """(critics (Q1, Q2), target critics) of the run's train checkpoint at `step`, or None if
  root_dir/train/checkpoints no longer holds it.

  The networks are rebuilt by `make_networks` with the recorded layers and bindings; only
  the four critics are read from the checkpoint (the agent's `_critic_network_1`, ...).
  Critics that do not fit the checkpoint are logged and give None.
  """
  prefix = os.path.join(root_dir, learner.TRAIN_DIR, learner.POLICY_CHECKPOINT_DIR,
                        f'ckpt-{step}')
  if not tf.io.gfile.exists(prefix + '.index'):
    return None
  record = data.record
  observation_spec = tf.TensorSpec(data.initial_states.shape[1:], tf.float32)
  action_spec = tf.TensorSpec(policy.action_spec.shape, tf.float32)
  networks = make_networks(
      observation_spec, action_spec, actor_fc_layers=record['actor_fc_layers'],
      critic_joint_fc_layers=record['critic_joint_fc_layers'],
      observation_statistics=data.critic_statistics, **record.get('make_networks', {}))
  critics = (networks.critic_1, networks.critic_2)
  targets = (networks.target_critic_1, networks.target_critic_2)
  for network in critics + targets:
    network.create_variables()
  agent = tf.train.Checkpoint(_critic_network_1=critics[0], _critic_network_2=critics[1],
                              _target_critic_network_1=targets[0],
                              _target_critic_network_2=targets[1])
  try:
    tf.train.Checkpoint(agent=agent).read(prefix).expect_partial(
    ).assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    logging.warning('The critics of %s do not fit %s (%s); their estimates are left empty.',
                    prefix, RUN_RECORD_FILE, str(e).splitlines()[0] if str(e) else e)
    return None
  return critics, targets


def estimate(root_dir: str, step: int, checkpoint: str, policy, data: RunData,
             config: Optional[ope.FqeConfig],
             model: Optional[model_ope.ModelEstimator] = None) -> Dict[str, float]:
  """The estimates of the policy saved at `step` (module docstring), a row of the table: FQE's
  and the critics' with a `config`, the model's with a `model`, and 'seconds'."""
  started = time.time()
  policy.update_from_checkpoint(checkpoint)
  row = {'step': step}
  if config is not None:
    row.update(_fqe_estimates(root_dir, step, policy, data, config))
  if model is not None:
    rollouts = model.rate(lambda observation: greedy_actions(policy, observation))
    row.update(model_return=rollouts.mean_return, model_length=rollouts.mean_length,
               model_normalized_score=tasks.d4rl_normalized_score(data.record['env_name'],
                                                                  rollouts.mean_return))
  row['seconds'] = time.time() - started
  return row


def _fqe_estimates(root_dir: str, step: int, policy, data: RunData,
                   config: ope.FqeConfig) -> Dict[str, float]:
  """The 'fqe' family's columns of the policy loaded at `step`."""
  record = data.record
  next_actions = greedy_actions(policy, data.transitions.next_observation)
  initial_actions = greedy_actions(policy, data.initial_states)
  fqe = ope.fitted_q_evaluation(data.transitions, next_actions, data.initial_states,
                                initial_actions, config, data.statistics)
  row = {'fqe_value': fqe.discounted_value, 'fqe_td_loss': fqe.td_loss,
         'fqe_return': float('nan'), 'fqe_normalized_score': float('nan'),
         'critic_value': float('nan'), 'critic_td_error': float('nan')}
  info = tasks.get_dataset_info(record['env_name'])
  if not info.is_antmaze:  # A 0/1 goal reward has no per-step return to scale.
    row['fqe_return'] = float(ope.undiscounted_return(fqe.discounted_value, config.gamma,
                                                      info.max_episode_steps))
    row['fqe_normalized_score'] = tasks.d4rl_normalized_score(record['env_name'],
                                                              row['fqe_return'])
  critics = load_critics(root_dir, step, data, policy)
  if critics is not None:
    (online, targets), horizon = critics, info.max_episode_steps
    scale, shift, gamma = record['reward_scale_factor'], record['reward_shift'], record['gamma']
    shift_value = shift * float(np.sum(gamma ** np.arange(horizon)))  # Σ_{t<H} γ^t·shift.
    row['critic_value'] = ope.critic_initial_value(
        online, data.initial_states, initial_actions) / scale - shift_value
    row['critic_td_error'] = ope.critic_td_error(
        online[0], targets, data.td_transitions,
        greedy_actions(policy, data.td_transitions.next_observation), gamma, scale,
        shift) / abs(scale)
  return row


def model_estimator(root_dir: str, data: RunData, config: model_ope.ModelConfig,
                    model_dir: Optional[str] = None) -> model_ope.ModelEstimator:
  """The dataset's dynamics model, restored from `model_dir` (default
  root_dir/selection/dynamics_model) when it was fit with the same settings, else fit and
  saved there, with the rollouts' initial states and the task's horizon."""
  return model_ope.build_model_estimator(
      model_dir or os.path.join(root_dir, SELECTION_DIR, MODEL_DIR), data.transitions,
      data.initial_states, config, model_ope.dataset_identity(data.record),
      tasks.get_dataset_info(data.record['env_name']).max_episode_steps)


def real_returns(root_dir: str) -> Dict[int, Dict[str, float]]:
  """{step: {'real_return', 'real_normalized_score'}} of the evaluations in root_dir/eval."""
  scalars = read_scalars(os.path.join(root_dir, 'eval'))
  returns = dict(scalars.get('Metrics/AverageReturn', []))
  scores = dict(scalars.get(f'Metrics/{NORMALIZED_SCORE_METRIC}', []))
  return {step: {'real_return': returns[step], 'real_normalized_score': scores.get(
      step, float('nan'))} for step in returns}


def score(row: Dict[str, float], estimator: str) -> float:
  """A row's estimate oriented so that larger is better: the estimator's column, negated for
  critic_td_error (the lower the TD error, the better the policy).

  Args:
    row: A table row with the estimator's column (float; NaN where not computed).
    estimator: A key of `ESTIMATORS`.

  Raises:
    KeyError: For an estimator not in `ESTIMATORS`.
  """
  value = row[ESTIMATORS[estimator]]
  return -value if estimator == 'critic_td_error' else value


def fqe_diverged(rows: Sequence[Dict[str, float]]) -> List[int]:
  """The steps whose FQE diverged: final TD loss ('fqe_td_loss', squared reward units) above
  `FQE_DIVERGED_TD_LOSS_RATIO` × the median over the rows that have one.

  On walker2d-medium-replay FQE of 4 early checkpoints out of 30 ended with a TD loss 50 to
  10^14 times the median of the others (whose spread was 2-7x) and values of 593, 367, -7,883
  and -1.2e8 against 115-260 elsewhere; plain argmax chose the first two. At most half the
  rows can be flagged (the rest lie at or below the median). With fewer than 3 rows the
  median says nothing: none is flagged.

  Args:
    rows: Table rows with 'step' and, where FQE ran, 'fqe_td_loss' (float; NaN or absent
      where not).

  Returns:
    The flagged steps, ascending.
  """
  losses = {int(row['step']): row['fqe_td_loss'] for row in rows
            if np.isfinite(row.get('fqe_td_loss', float('nan')))}
  if len(losses) < 3:
    return []
  limit = FQE_DIVERGED_TD_LOSS_RATIO * float(np.median(list(losses.values())))
  return sorted(step for step, loss in losses.items() if loss > limit)


def usable_rows(rows: Sequence[Dict[str, float]], estimator: str) -> List[Dict[str, float]]:
  """The rows whose estimate can be trusted to choose: a finite value, and for FQE not a
  diverged one (`fqe_diverged`).

  Args:
    rows: Table rows with 'step' and the estimator's column.
    estimator: A key of `ESTIMATORS`.
  """
  column = ESTIMATORS[estimator]
  diverged = set(fqe_diverged(rows)) if estimator == 'fqe' else set()
  return [row for row in rows
          if np.isfinite(row[column]) and int(row['step']) not in diverged]


def choose(rows: Sequence[Dict[str, float]], estimator: str,
           keep_last_margin: float = 0.0) -> Dict[str, float]:
  """The row whose estimate is best (the largest value, the smallest TD error), unless that
  beats the last checkpoint's estimate by no more than `keep_last_margin`·|last's|: then the
  last checkpoint's row. Only `usable_rows` take part (for FQE: not a diverged one).

  The margin keeps the last policy when the estimates do not separate the checkpoints (on
  hopper-medium FQE's estimates spanned 213-241 while the real returns spanned 178-1,814:
  docs/selection.md).

  Args:
    rows: Table rows with 'step' and the estimator's column.
    estimator: A key of `ESTIMATORS`.
    keep_last_margin: Fraction >= 0 of the last checkpoint's |estimate|; 0: plain argmax.

  Raises:
    SelectionError: If no row has a usable estimate (the critics' need train checkpoints).
  """
  column = ESTIMATORS[estimator]
  rows = usable_rows(rows, estimator)
  if not rows:
    raise SelectionError(f'No checkpoint has a {column} estimate: the critics\' estimates need '
                         'root_dir/train/checkpoints at the policies\' steps (raise '
                         'train_eval.max_checkpoints_to_keep); or pass --estimator=fqe.')
  best = max(rows, key=lambda row: score(row, estimator))
  last = max(rows, key=lambda row: row['step'])
  gain = score(best, estimator) - score(last, estimator)
  return best if gain > keep_last_margin * abs(last[column]) else last


def _write_table(selection_dir: str, settings: dict, rows: List[Dict[str, float]]) -> None:
  """estimates.json (settings and rows, atomically) and estimates.csv."""
  path = os.path.join(selection_dir, ESTIMATES_FILE)
  write_file_atomically(path, json.dumps({'settings': settings, 'rows': rows}, indent=1))
  with open(os.path.join(selection_dir, 'estimates.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction='ignore', restval='')
    writer.writeheader()
    writer.writerows(rows)


def _earlier_estimates(selection_dir: str, settings: dict):
  """What an earlier call's table can give this one, per estimate family: a family computed
  now is reused where its settings (and the policy) are the same; one not computed now is
  carried over as it was.

  Args:
    selection_dir: root_dir/selection.
    settings: This call's {'policy': ..., family: its settings} for the families it computes.

  Returns:
    (the settings of the families reused or carried over, {step: {column: value}} of their
    columns).
  """
  try:
    with open(os.path.join(selection_dir, ESTIMATES_FILE)) as f:
      earlier = json.load(f)
  except (OSError, ValueError):
    return {}, {}
  earlier_settings = earlier.get('settings', {})
  if earlier_settings.get('policy') != settings['policy']:
    return {}, {}
  kept = {family: earlier_settings[family] for family in ESTIMATE_FAMILIES
          if family in earlier_settings and settings.get(family, earlier_settings[family])
          == earlier_settings[family]}
  columns = [column for family in kept for column in ESTIMATE_FAMILIES[family]] + ['seconds']
  return kept, {int(row['step']): {column: row[column] for column in columns if column in row}
                for row in earlier.get('rows', [])}


def plot(rows: Sequence[Dict[str, float]], chosen_step: int, title: str, path: str) -> None:
  """estimates.png: the normalized score of FQE and of the model (those computed; FQE's value
  where it has no score) and the real score against the step."""
  import matplotlib  # pylint: disable=import-outside-toplevel  # Only the plot needs it.
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

  steps = [row['step'] for row in rows]
  has = lambda column: any(np.isfinite(row[column]) for row in rows)
  fqe_column = 'fqe_normalized_score' if has('fqe_normalized_score') else 'fqe_value'
  fig, ax = plt.subplots(figsize=(7, 4))
  for label, column in ((f'FQE ({fqe_column})', fqe_column),
                        ('model (model_normalized_score)', 'model_normalized_score')):
    if has(column):
      ax.plot(steps, [row[column] for row in rows], 'o-', label=label)
  ax.plot(steps, [row.get('real_normalized_score', np.nan) for row in rows], 's-',
          label='real evaluation (normalized score)')
  ax.axvline(chosen_step, color='gray', linestyle='--', label=f'selected: step {chosen_step}')
  ax.set_xlabel('train step')
  ax.set_ylabel('D4RL normalized score')
  ax.set_title(title)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def export_selected(root_dir: str, saved: SavedPolicies, step: int) -> str:
  """Copies the SavedModel and the checkpoint of `step` to root_dir/policies/selected_policy
  (greedy_policy/ and checkpoints/policy_checkpoint_<step>), the layout `cql_sac_eval`
  loads; replaces an earlier selection, never the run's own files. Returns its path."""
  target = os.path.join(root_dir, learner.POLICY_SAVED_MODEL_DIR, SELECTED_POLICY_DIR)
  staging = target + '.tmp'
  shutil.rmtree(staging, ignore_errors=True)
  shutil.copytree(saved.saved_model_dir,
                  os.path.join(staging, learner.GREEDY_POLICY_SAVED_MODEL_DIR))
  checkpoint = saved.checkpoints[step]
  shutil.copytree(checkpoint, os.path.join(staging, learner.POLICY_CHECKPOINT_DIR,
                                           os.path.basename(checkpoint)))
  shutil.rmtree(target, ignore_errors=True)
  os.replace(staging, target)
  return target


@holding_run_lock('cql_sac_select')  # Not while a training run writes root_dir.
def select(root_dir: str, config: ope.FqeConfig, estimator: str = 'fqe',
           keep_last_margin: float = 0.0, estimates: Optional[Sequence[str]] = None,
           model_config: model_ope.ModelConfig = model_ope.ModelConfig(),
           model_dir: Optional[str] = None):
  """Estimates every saved policy, writes root_dir/selection/, exports the chosen one.

  Args:
    root_dir: A `cql_sac_train_eval` run's directory.
    config: The FQE settings.
    estimator: A key of `ESTIMATORS`, the rule that chooses.
    keep_last_margin: `choose`'s margin: a fraction of the last checkpoint's |estimate|.
    estimates: The families of `ESTIMATE_FAMILIES` to compute; default: the estimator's.
    model_config: The dynamics model's settings (the 'model' family).
    model_dir: Where the dynamics model is saved and reused; default
      root_dir/selection/dynamics_model (runs on one dataset may share one).

  Returns:
    (the chosen row, all rows by step).

  Raises:
    SelectionError: Before anything is written, for an estimate family that does not exist
      or leaves out the estimator's, a root_dir without saved policies or run record, a
      dataset that cannot be read or does not fit the policy, or held-out episodes that do
      not fit it; after the estimates, if none has the chosen estimator.
    cql_sac.run_lock.RunDirectoryInUse: If a run (training, or another selection) holds
      root_dir's lock; its host and pid are named.
  """
  families = list(dict.fromkeys(estimates or (FAMILY_OF[estimator],)))
  unknown = [family for family in families if family not in ESTIMATE_FAMILIES]
  if unknown:
    raise SelectionError(f'--estimates names {", ".join(unknown)}: the families are '
                         f'{", ".join(ESTIMATE_FAMILIES)}.')
  if FAMILY_OF[estimator] not in families:
    raise SelectionError(
        f'--estimates={",".join(families)} leaves out {FAMILY_OF[estimator]}, which '
        f'--estimator={estimator} chooses by: add it, or leave --estimates out.')
  saved = find_saved_policies(root_dir)
  policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
      saved.saved_model_dir, load_specs_from_pbtxt=True, batch_time_steps=False)
  data = load_run_data(root_dir, policy)
  selection_dir = os.path.join(root_dir, SELECTION_DIR)
  settings = json.loads(json.dumps({  # As read back: tuples become lists.
      'policy': saved.saved_model_dir,
      **({'fqe': dataclasses.asdict(config)} if 'fqe' in families else {}),
      **({'model': model_ope.model_settings(model_config,
                                            model_ope.dataset_identity(data.record))}
         if 'model' in families else {})}))
  kept, earlier = _earlier_estimates(selection_dir, settings)
  table_settings = {**kept, **settings}
  os.makedirs(selection_dir, exist_ok=True)
  writer = tf.summary.create_file_writer(selection_dir)
  real = real_returns(root_dir)
  model = None
  rows = []
  for step, checkpoint in tqdm.tqdm(saved.checkpoints.items(), desc='checkpoints', unit='ckpt',
                                    file=sys.stderr):
    row = {'step': step, **{column: float('nan') for column in COLUMNS[1:]},
           **earlier.get(step, {})}
    missing = [family for family in families
               if not all(column in earlier.get(step, {})
                          for column in ESTIMATE_FAMILIES[family])]
    if missing:
      if 'model' in missing and model is None:
        model = model_estimator(root_dir, data, model_config, model_dir)
      row.update(estimate(root_dir, step, checkpoint, policy, data,
                          config if 'fqe' in missing else None,
                          model if 'model' in missing else None))
      with writer.as_default():
        for column in (column for family in missing for column in ESTIMATE_FAMILIES[family]):
          tf.summary.scalar(f'ope/{column}', row[column], step=step)
    row.update(real.get(step, {'real_return': float('nan'),
                               'real_normalized_score': float('nan')}))
    rows.append(row)
    _write_table(selection_dir, table_settings, rows)  # After each checkpoint: a rerun resumes.
  writer.close()
  chosen = choose(rows, estimator, keep_last_margin)
  plot(rows, chosen['step'], f'{data.record["env_name"]}: offline estimates and real returns',
       os.path.join(selection_dir, 'estimates.png'))
  export_selected(root_dir, saved, chosen['step'])
  return chosen, rows


def fqe_config(record: dict, num_steps: int, batch_size: Optional[int] = None,
               hidden_layers: Sequence[int] = (), seed: int = 0) -> ope.FqeConfig:
  """The FQE settings for a run: by default its batch size, critic widths and γ."""
  return ope.FqeConfig(
      num_steps=num_steps, batch_size=batch_size or record.get('batch_size', 256),
      hidden_layers=tuple(hidden_layers or record.get('critic_joint_fc_layers', (256,) * 3)),
      gamma=record.get('gamma', 0.99), seed=seed)


def main(argv: Sequence[str]) -> None:
  """Entry point of `cql_sac_select`: prints the chosen step in one line.

  Args:
    argv: Command-line arguments left after flag parsing (must be none).
  """
  args = cli.start_main(argv)
  try:
    record = read_run_record(args.root_dir) or {}
  except ValueError:
    record = {}  # `select` reports it.
  try:
    layers = [int(width) for width in args.fqe_layers or ()]
  except ValueError:
    sys.exit(f'cql_sac_select: error: --fqe_layers={",".join(args.fqe_layers)} must be '
             'integer widths, e.g. --fqe_layers=256,256,256.')
  config = fqe_config(record, args.fqe_steps, args.fqe_batch_size, layers, args.fqe_seed)
  model_config = model_ope.ModelConfig(num_steps=args.model_steps)
  try:
    chosen, rows = select(args.root_dir, config, args.estimator, args.keep_last_margin,
                          args.estimates, model_config, args.model_dir)
  except (SelectionError, RunDirectoryError) as e:
    sys.exit(f'cql_sac_select: error: {e}')
  diverged = fqe_diverged(rows)
  if diverged and args.estimator == 'fqe':
    logging.warning('FQE diverged at steps %s (TD loss above %g times the median): not '
                    'chosen.', ', '.join(map(str, diverged)), FQE_DIVERGED_TD_LOSS_RATIO)
  column = ESTIMATORS[args.estimator]
  print(f'selected step {chosen["step"]} ({column} {chosen[column]:.4g}, real normalized '
        f'score {chosen["real_normalized_score"]:.1f}): '
        f'{os.path.join(args.root_dir, learner.POLICY_SAVED_MODEL_DIR, SELECTED_POLICY_DIR)}')


def run() -> None:
  """Console-script entry point: defines the flags and runs `main`."""
  flags.DEFINE_string('root_dir', None, 'Directory of a cql_sac_train_eval run.',
                      required=True)
  flags.DEFINE_enum('estimator', 'fqe', list(ESTIMATORS), 'The estimate that chooses: fqe '
                    '(Fitted Q Evaluation), critic_value (the run\'s critics\' Q(s0, μ(s0))), '
                    'critic_td_error (their TD error on held-out episodes, lowest wins) or '
                    'model (the return in a dynamics model fit on the dataset).')
  flags.DEFINE_list('estimates', None, 'The estimate families to compute, of fqe (FQE and '
                    'the critics\') and model; default: the --estimator\'s.')
  flags.DEFINE_integer('model_steps', model_ope.ModelConfig.num_steps, 'Fit steps of the '
                       'dynamics model (once per dataset).', lower_bound=1)
  flags.DEFINE_string('model_dir', None, 'Where the dynamics model is saved and reused '
                      '(default: <root_dir>/selection/dynamics_model); runs on one dataset '
                      'can share one.')
  flags.DEFINE_float('keep_last_margin', KEEP_LAST_MARGIN, 'Keep the last checkpoint unless '
                     'the best estimate beats its estimate by more than this fraction of it '
                     '(0: choose the best estimate).', lower_bound=0.0)
  flags.DEFINE_integer('fqe_steps', 100000, 'TD steps of Fitted Q Evaluation per checkpoint.',
                       lower_bound=1)
  flags.DEFINE_integer('fqe_batch_size', None, 'FQE batch size (default: the run\'s).',
                       lower_bound=1)
  flags.DEFINE_list('fqe_layers', None, 'FQE critic widths (default: the run\'s critic\'s).')
  flags.DEFINE_integer('fqe_seed', 0, 'Seeds the FQE critics and batches.')
  cli.list_flags_in_help(__name__)
  app.run(main)


if __name__ == '__main__':
  run()
