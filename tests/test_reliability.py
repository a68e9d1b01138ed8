"""Faults a user meets, each fired for real: what they see is one line, and nothing is lost.

Damaged datasets (a flipped byte, a truncated TFRecord, a truncated D4RL HDF5 file), two runs
on one root_dir, a damaged newest checkpoint, a run killed inside a checkpoint save, a
changed configuration on resume, and a write that fails for lack of space.
"""

import errno
import glob
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import gin
import h5py
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import policy_saver

from cql_sac import checkpoints
from cql_sac import run_config
from cql_sac import run_lock
from cql_sac import train_eval
from cql_sac.datasets import hdf5
from cql_sac.summaries import read_scalars
from tests.test_train_eval import REPO
from tests.test_train_eval import clean_gin  # pylint: disable=unused-import  # Autouse.
from tests.test_train_eval import run_binary
from tests.test_train_eval import small_train_eval
from tests.test_train_eval import snapshot
from tests.test_train_eval import train_command

CHECKPOINTS = os.path.join('train', 'checkpoints')
MINARI_FIXTURE = os.path.join('tests', 'data', 'minari', 'cql_sac_test', 'hopper-random-v0')
# A short run with a checkpoint every 10 steps and no evaluation.
SHORT = dict(checkpoint_interval=10, policy_save_interval=10, learner_iterations_per_call=10,
             eval_episodes=0, eval_interval=0, seed=1)


def assert_one_line_error(result, expected):
  """The binary failed with exactly one line on stderr's end, containing `expected`."""
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert expected in last, result.stderr[-3000:]
  return last


def damaged_copy(dataset_dir, tmp_path, damage):
  """A copy of the test dataset whose TFRecord file went through `damage(path)`."""
  copy = str(tmp_path / 'data')
  shutil.copytree(dataset_dir, copy)
  records = [name for name in os.listdir(copy) if '.tfrecord' in name]
  assert len(records) == 1, records
  damage(os.path.join(copy, records[0]))
  return copy, os.path.join(copy, records[0])


def flip_a_byte(path):
  """Inverts one byte in the middle of the file."""
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))


def truncate_to_two_thirds(path):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) * 2 // 3)


# --- Damaged data: one line naming the file and record, no root_dir created. -------------------

def test_flipped_byte_in_a_tfrecord_is_named_in_one_line(dataset_dir, tmp_path):
  data, record_file = damaged_copy(dataset_dir, tmp_path, flip_a_byte)
  root_dir = tmp_path / 'run'
  result = run_binary(train_command(str(root_dir), data, num_steps=10), cwd=tmp_path,
                      timeout=300)
  line = assert_one_line_error(result, f'file {record_file} is damaged at record ')
  assert 'corrupted record' in line and 'Fix: record the dataset again' in line
  assert not root_dir.exists()


def test_truncated_tfrecord_is_named_and_no_root_dir_is_left(dataset_dir, tmp_path):
  data, record_file = damaged_copy(dataset_dir, tmp_path, truncate_to_two_thirds)
  root_dir = tmp_path / 'run'
  with pytest.raises(train_eval.ConfigError,
                     match=rf'file {record_file} is damaged at record \d+ .*truncated record'):
    small_train_eval(str(root_dir), data)
  assert not root_dir.exists()


def test_truncated_hdf5_is_named_in_one_line_and_nothing_is_written(tmp_path):
  path = str(tmp_path / 'hopper_medium-v2.hdf5')
  with h5py.File(path, 'w') as f:
    for key, shape in (('observations', (5000, 11)), ('actions', (5000, 3)),
                       ('rewards', (5000,)), ('terminals', (5000,)), ('timeouts', (5000,))):
      f[key] = np.ones(shape, np.float32)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)
  output_dir = tmp_path / 'rlds'
  with pytest.raises(ValueError, match=rf"HDF5 file '{path}' is damaged or incomplete.*"
                                       'Fix: download it again'):
    hdf5.convert_hdf5(path, 'hopper-medium-v2', str(output_dir))
  assert not output_dir.exists()
  result = run_binary([sys.executable, '-m', 'cql_sac.recording.make_dataset',
                       '--env_name=hopper-medium-v2', f'--from_hdf5={path}',
                       f'--output_dir={output_dir}'], cwd=tmp_path, timeout=300)
  assert_one_line_error(result, f"cql_sac_make_dataset: error: HDF5 file '{path}' is damaged")
  assert not output_dir.exists()


# --- One run per root_dir. ---------------------------------------------------------------------

HOLD_LOCK = '''
import sys, time
from cql_sac.run_lock import RunLock
with RunLock(sys.argv[1], 'cql_sac_train_eval'):
  print('locked', flush=True)
  time.sleep(600)
'''


def test_second_run_on_a_root_dir_is_refused_and_a_killed_holder_never_blocks(
    dataset_dir, tmp_path):
  root_dir = str(tmp_path / 'run')
  env = dict(os.environ, PYTHONPATH=REPO)
  holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, root_dir], env=env,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    before = snapshot(root_dir)
    result = run_binary(train_command(root_dir, dataset_dir, num_steps=10), cwd=tmp_path,
                        timeout=300)
    line = assert_one_line_error(result, f'--root_dir={root_dir} is in use by '
                                 f'cql_sac_train_eval (host {socket.gethostname()}, pid '
                                 f'{holder.pid}, since ')
    assert 'pass another --root_dir' in line
    assert snapshot(root_dir) == before
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with run_lock.RunLock(root_dir, 'test'):  # kill -9 released it.
    with open(os.path.join(root_dir, run_lock.LOCK_FILE)) as f:
      assert json.load(f)['pid'] == os.getpid()
  assert not os.path.exists(os.path.join(root_dir, run_lock.LOCK_FILE))


def test_the_lock_is_reentrant_and_a_failed_first_run_leaves_no_directory(tmp_path):
  root_dir = str(tmp_path / 'new' / 'run')
  with pytest.raises(KeyError):
    with run_lock.RunLock(root_dir, 'outer'):
      with run_lock.RunLock(root_dir, 'inner'):  # The same process: no refusal.
        assert os.listdir(root_dir) == [run_lock.LOCK_FILE]
      raise KeyError('a failure before anything was written')
  assert not os.path.exists(root_dir)
  assert os.path.isdir(tmp_path / 'new')  # Only what the lock created is removed.
  with run_lock.RunLock(str(tmp_path), 'an existing directory'):
    pass
  assert os.listdir(tmp_path) == ['new']


# --- Damaged and half-written checkpoints. ------------------------------------------------------

@pytest.fixture(scope='module')
def short_run(dataset_dir, tmp_path_factory):
  """A 30-step run with checkpoints at 10, 20, 30 (kept: all three)."""
  root_dir = str(tmp_path_factory.mktemp('short') / 'run')
  small_train_eval(root_dir, dataset_dir, num_gradient_updates=30, **SHORT)
  return root_dir


@pytest.fixture
def run_copy(short_run, tmp_path):
  root_dir = str(tmp_path / 'run')
  shutil.copytree(short_run, root_dir)
  return root_dir


def listed_checkpoints(root_dir):
  state = tf.train.get_checkpoint_state(os.path.join(root_dir, CHECKPOINTS))
  return [os.path.basename(path) for path in state.all_model_checkpoint_paths]


@pytest.mark.slow
def test_truncated_newest_checkpoint_is_set_aside_and_the_previous_one_resumed(
    run_copy, dataset_dir, caplog):
  caplog.set_level(logging.INFO, logger='absl')
  data_file = os.path.join(run_copy, CHECKPOINTS, 'ckpt-30.data-00000-of-00001')
  with open(data_file, 'r+b') as f:
    f.truncate(os.path.getsize(data_file) // 2)
  damaged = {name: snapshot(run_copy)[os.path.join(CHECKPOINTS, name)]
             for name in os.listdir(os.path.join(run_copy, CHECKPOINTS))
             if name.startswith('ckpt-30.')}
  result = small_train_eval(run_copy, dataset_dir, num_gradient_updates=40, **SHORT)
  assert result.train_steps == 40
  moved = [r.getMessage() for r in caplog.records if 'cannot be read' in r.getMessage()]
  assert len(moved) == 1 and 'ckpt-30' in moved[0] and 'resuming from ckpt-20' in moved[0]
  after = snapshot(run_copy)
  for name, digest in damaged.items():  # Moved, byte for byte.
    assert after[os.path.join(CHECKPOINTS, checkpoints.DAMAGED_DIR, name)] == digest
  assert 'Resuming from the checkpoint at step 20' in caplog.text
  assert listed_checkpoints(run_copy)[-1] == 'ckpt-40'


def test_damaged_newest_checkpoints_are_moved_and_the_manager_restores_the_previous(tmp_path):
  directory = str(tmp_path / 'checkpoints')
  variable = tf.Variable(0.0)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), directory, 5)
  for step in (1, 2, 3, 4):
    variable.assign(float(step))
    manager.save(checkpoint_number=step)
  for step in (3, 4):  # A truncated data file, a flipped index byte.
    truncate_to_two_thirds(os.path.join(directory, f'ckpt-{step}.data-00000-of-00001'))
  flip_a_byte(os.path.join(directory, 'ckpt-4.index'))
  before = snapshot(directory)
  outcome = checkpoints.set_aside_damaged_checkpoints(directory)
  assert outcome.resume_from == os.path.join(directory, 'ckpt-2')
  assert sorted(os.path.basename(p) for p in outcome.moved) == ['ckpt-3', 'ckpt-4']
  after = snapshot(directory)
  for name, digest in before.items():  # Every file kept, byte for byte.
    if name.startswith(('ckpt-3.', 'ckpt-4.')):
      assert after[os.path.join(checkpoints.DAMAGED_DIR, name)] == digest
  variable.assign(-1.0)
  restored = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), directory, 5)
  restored.restore_or_initialize()
  assert variable.numpy() == 2.0
  assert [os.path.basename(p) for p in restored.checkpoints] == ['ckpt-1', 'ckpt-2']


SLOW_STATE_WRITE = '''
import os, sys, time
from tensorflow.python.checkpoint import checkpoint_management
write_state = checkpoint_management.update_checkpoint_state_internal
def slow_write_state(save_dir, model_checkpoint_path, *args, **kwargs):
  if model_checkpoint_path.endswith('ckpt-20'):  # Data and index written, state not yet.
    open(os.environ['IN_SAVE_MARKER'], 'w').close()
    time.sleep(600)
  return write_state(save_dir, model_checkpoint_path, *args, **kwargs)
checkpoint_management.update_checkpoint_state_internal = slow_write_state
from cql_sac import train_eval
train_eval.run()
'''


@pytest.mark.slow
def test_a_run_killed_inside_a_checkpoint_save_resumes_from_the_previous_one(
    dataset_dir, tmp_path):
  root_dir = str(tmp_path / 'run')
  command = train_command(root_dir, dataset_dir, 'train_eval.checkpoint_interval=10',
                          'train_eval.eval_interval=0', num_steps=30)
  command += ['--learner_iterations_per_call=10']
  marker = str(tmp_path / 'in_save')
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2', IN_SAVE_MARKER=marker)
  process = subprocess.Popen([sys.executable, '-c', SLOW_STATE_WRITE] + command[3:],
                             cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 400
    while not os.path.exists(marker) and process.poll() is None and time.time() < deadline:
      time.sleep(0.2)
    assert os.path.exists(marker), 'the run never reached its second checkpoint save'
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()
  assert listed_checkpoints(root_dir) == ['ckpt-10']  # What a reader sees.
  assert checkpoints.read_error(os.path.join(root_dir, CHECKPOINTS, 'ckpt-10')) is None
  result = run_binary(command, cwd=tmp_path, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resuming from the checkpoint at step 10' in result.stderr
  assert 'Trained 30 steps' in result.stdout


def evaluations_logged(eval_dir, step):
  """How many evaluations at `step` the event files in `eval_dir` hold, repeats counted."""
  count = 0
  for path in glob.glob(os.path.join(eval_dir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      count += event.step == step and any(
          value.tag == 'Metrics/AverageReturn' for value in event.summary.value)
  return count


@pytest.mark.slow
def test_a_run_killed_before_its_final_evaluation_evaluates_it_on_rerun(dataset_dir, tmp_path):
  """A checkpoint at an evaluation step is saved before that evaluation runs. A run killed in
  between (here: its evaluations removed, as if the last never reached the disk) resumes at
  that step and evaluates it (session 16: two resumed quality runs had lost one each); a rerun
  of a complete run reports the logged evaluation and does not evaluate again. With an
  averaged actor, a kill between its evaluation and the trained actor's leaves only
  eval_raw_actor/ to complete."""
  gin.parse_config(['cql_sac.agents.cql_sac_agent.CqlSacAgent.actor_ema_tau = 0.05'])
  root_dir = str(tmp_path / 'run')
  settings = dict(num_gradient_updates=20, eval_interval=10, checkpoint_interval=10,
                  policy_save_interval=10, learner_iterations_per_call=10, eval_episodes=1,
                  seed=1)
  complete = small_train_eval(root_dir, dataset_dir, **settings)
  eval_dir = os.path.join(root_dir, 'eval')
  assert [evaluations_logged(eval_dir, step) for step in (0, 10, 20)] == [1, 1, 1]
  raw_dir = os.path.join(root_dir, train_eval.RAW_ACTOR_EVAL_DIR)
  again = small_train_eval(root_dir, dataset_dir, **settings)
  assert again.eval_metrics == pytest.approx(complete.eval_metrics, rel=1e-6)  # As logged.
  assert [evaluations_logged(eval_dir, 20), evaluations_logged(raw_dir, 20)] == [1, 1]

  shutil.rmtree(eval_dir)
  resumed = small_train_eval(root_dir, dataset_dir, **settings)
  assert resumed.train_steps == 20
  assert [evaluations_logged(eval_dir, step) for step in (0, 10, 20)] == [0, 0, 1]
  # What the rerun returns is that evaluation, as a complete run returns its last.
  logged = dict(read_scalars(eval_dir)['Metrics/AverageReturn'])
  assert resumed.eval_metrics['AverageReturn'] == pytest.approx(logged[20], rel=1e-6)
  assert set(resumed.eval_metrics) == set(complete.eval_metrics)

  assert evaluations_logged(raw_dir, 20) == 1  # Not run again.
  shutil.rmtree(raw_dir)
  small_train_eval(root_dir, dataset_dir, **settings)
  assert [evaluations_logged(raw_dir, 20), evaluations_logged(eval_dir, 20)] == [1, 1]


def test_a_policy_checkpoint_write_that_fails_leaves_no_folder_a_reader_takes(tmp_path):
  export_dir = str(tmp_path / 'checkpoints' / 'policy_checkpoint_0000000020')

  def half_write(path):
    os.makedirs(os.path.join(path, 'variables'))
    with open(os.path.join(path, 'variables', 'variables.index'), 'w') as f:
      f.write('half')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  with pytest.raises(checkpoints.CheckpointWriteError,
                     match=rf'Cannot write to {tmp_path / "checkpoints"} \(No space left on '
                           r'device\)\. What was written before is kept'):
    checkpoints.save_policy_checkpoint(half_write, export_dir)
  assert not tf.io.gfile.glob(str(tmp_path / 'checkpoints' / 'policy_checkpoint_*'))
  checkpoints.save_policy_checkpoint(lambda path: os.makedirs(path), export_dir)  # Retried.
  assert os.listdir(tmp_path / 'checkpoints') == ['policy_checkpoint_0000000020']


# --- The resolved configuration, kept and checked. ----------------------------------------------

@pytest.mark.slow
def test_a_changed_config_on_resume_is_refused_unless_allowed(run_copy, dataset_dir):
  config_dir = os.path.join(run_copy, 'config')
  with open(os.path.join(config_dir, 'run-000.json')) as f:
    record = json.load(f)
  assert record['train_eval']['batch_size'] == '16'
  assert record['dataset']['path'] == os.path.abspath(dataset_dir)
  assert len(record['dataset']['fingerprint']) == 16 and record['cql_sac_version']
  before = snapshot(run_copy)
  with pytest.raises(train_eval.ConfigError) as error:
    small_train_eval(run_copy, dataset_dir, num_gradient_updates=40, batch_size=32, **SHORT)
  line = str(error.value).split(train_eval._GIN_CALL_NOTE)[0]  # pylint: disable=protected-access
  assert 'train_eval.batch_size: 16 -> 32' in line
  assert '--allow_config_change' in line and '\n' not in line
  assert snapshot(run_copy) == before
  result = small_train_eval(run_copy, dataset_dir, num_gradient_updates=40, batch_size=32,
                            allow_config_change=True, **SHORT)
  assert result.train_steps == 40
  assert sorted(os.listdir(config_dir)) == ['run-000.gin', 'run-000.json', 'run-001.gin',
                                           'run-001.json']
  with open(os.path.join(config_dir, 'run-001.json')) as f:
    assert json.load(f)['train_eval']['batch_size'] == '32'


def test_an_argument_added_after_the_record_counts_as_its_default():
  """A run recorded before `train_eval` gained an argument resumes while it is at its default."""
  record = {'train_eval': {'batch_size': '16', 'new_option': 'False'}, 'gin_bindings': {},
            'dataset': {'fingerprint': 'f'}}
  older = {'train_eval': {'batch_size': '16'}, 'gin_bindings': {}, 'dataset': {'fingerprint': 'f'}}
  defaults = {'batch_size': '256', 'new_option': 'False'}
  assert run_config._differences(older, record, defaults) == []  # pylint: disable=protected-access
  record['train_eval']['new_option'] = 'True'
  assert run_config._differences(older, record, defaults) == [  # pylint: disable=protected-access
      'train_eval.new_option: False -> True']
  assert run_config._differences(older, record, {}) == [  # pylint: disable=protected-access
      'train_eval.new_option: unset -> True']


@pytest.mark.parametrize('kind', ['rlds', 'minari'])
def test_the_dataset_fingerprint_follows_its_files(dataset_dir, tmp_path, kind):
  source = dataset_dir if kind == 'rlds' else os.path.join(REPO, MINARI_FIXTURE)
  copy = str(tmp_path / 'data')
  shutil.copytree(source, copy)
  identity = run_config.dataset_identity(copy, None)
  assert identity['path'] == copy and identity['files']
  assert run_config.dataset_identity(copy, None)['fingerprint'] == identity['fingerprint']
  largest = max(identity['files'], key=identity['files'].get)
  truncate_to_two_thirds(os.path.join(copy, largest))
  assert run_config.dataset_identity(copy, None)['fingerprint'] != identity['fingerprint']


@pytest.mark.slow
def test_the_cli_refuses_a_changed_config_in_one_line(short_run, tmp_path):
  """The record says the run had a binding this command lacks: refused before training."""
  root_dir = str(tmp_path / 'run')
  shutil.copytree(short_run, root_dir)
  record_path = os.path.join(root_dir, 'config', 'run-000.json')
  with open(record_path) as f:
    record = json.load(f)
  record['gin_bindings']['CqlSacAgent.actor_ema_tau'] = '0.005'
  with open(record_path, 'w') as f:
    json.dump(record, f)
  before = snapshot(root_dir)
  result = run_binary(train_command(root_dir, record['dataset']['path'], num_steps=40),
                      cwd=tmp_path, timeout=300)
  line = assert_one_line_error(result, 'holds a run with another configuration')
  assert 'CqlSacAgent.actor_ema_tau: 0.005 -> unset' in line
  assert snapshot(root_dir) == before


# --- A write that fails: one line naming the directory, the previous checkpoint kept. -----------

@pytest.mark.slow
def test_a_checkpoint_write_failing_for_space_ends_in_one_line(run_copy, dataset_dir,
                                                               monkeypatch):
  def no_space(self, *args, **kwargs):
    raise tf.errors.ResourceExhaustedError(None, None, 'ckpt-40_temp/part-00000-of-00001; '
                                           'No space left on device')
  monkeypatch.setattr(tf.train.CheckpointManager, 'save', no_space)
  with pytest.raises(checkpoints.CheckpointWriteError) as error:
    small_train_eval(run_copy, dataset_dir, num_gradient_updates=40, **SHORT)
  checkpoint_dir = os.path.join(run_copy, CHECKPOINTS)
  assert str(error.value).startswith(f'Cannot write to {checkpoint_dir} (No space left on '
                                     'device). What was written before is kept')
  assert listed_checkpoints(run_copy)[-1] == 'ckpt-30'
  assert checkpoints.read_error(os.path.join(checkpoint_dir, 'ckpt-30')) is None


@pytest.mark.slow
def test_a_policy_write_failing_for_space_ends_in_one_line(run_copy, dataset_dir, monkeypatch):
  def no_space(self, export_dir, options=None):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), export_dir)
  monkeypatch.setattr(policy_saver.PolicySaver, 'save_checkpoint', no_space)
  policies_dir = os.path.join(run_copy, 'policies', 'checkpoints')
  before = sorted(os.listdir(policies_dir))
  with pytest.raises(checkpoints.CheckpointWriteError,
                     match=rf'^Cannot write to {policies_dir} \(No space left on device\)'):
    small_train_eval(run_copy, dataset_dir, num_gradient_updates=40, **SHORT)
  assert sorted(os.listdir(policies_dir)) == before
