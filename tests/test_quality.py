"""benchmarks/quality.py: gin bindings per algorithm, and the table and figure from curves."""

import os

import pytest

from benchmarks import quality

_CURVES = {
    'medium-replay': {
        'cql': {0: [[0, 1.0], [1000, 30.0], [2000, 20.0]],
                1: [[0, 2.0], [1000, 10.0], [2000, 40.0]]},
        'bc': {0: [[0, 1.0], [1000, 5.0], [2000, 5.0]],
               1: [[0, 1.0], [1000, 9.0], [2000, 7.0]]},
    },
}


def test_bc_clones_for_every_step_and_cql_keeps_the_warmup_share():
  assert quality.gin_bindings('bc', 'full', 1000000) == ['train_eval.bc_steps = 1000000']
  assert quality.gin_bindings('cql', 'full', 1000000) == ['train_eval.bc_steps = 10000']
  reduced = quality.gin_bindings('cql', 'reduced', 5000)
  assert reduced[-1] == 'train_eval.bc_steps = 50'
  assert 'train_eval.batch_size = 64' in reduced
  bf16 = quality.gin_bindings('cql_bf16', 'reduced', 5000)
  assert bf16 == reduced[:-1] + ["make_networks.compute_dtype = 'bfloat16'", reduced[-1]]
  with pytest.raises(ValueError):
    quality.gin_bindings('iql', 'full', 10)


def test_recipes_keep_their_depths_and_bc_share_at_width_64():
  assert quality.gin_bindings('corl_cql', 'reduced', 100000) == [
      'train_eval.actor_fc_layers = (64, 64, 64)',
      'train_eval.critic_joint_fc_layers = (64, 64, 64)', 'train_eval.batch_size = 64',
      'train_eval.num_cql_samples = 4', 'train_eval.bc_steps = 0']
  jrl = quality.gin_bindings('jrl_cql', 'reduced', 100000)
  assert jrl[:2] == ['train_eval.actor_fc_layers = (64, 64)',
                     'train_eval.critic_joint_fc_layers = (64, 64, 64)']
  assert jrl[-1] == 'train_eval.bc_steps = 5000'  # JRL: 50,000 of 1M.
  assert quality.gin_bindings('jaxcql_cql', 'full', 2000000) == ['train_eval.bc_steps = 0']
  assert quality.config_file('jrl_cql', 'medium').endswith('configs/jrl/mujoco.gin')
  assert quality.config_file('cql', 'medium').endswith('configs/mujoco_medium.gin')


def test_recurrent_algorithm_uses_the_recurrent_config_at_the_reduced_protocol():
  assert quality.config_file('cql_recurrent', 'medium').endswith('configs/mujoco_recurrent.gin')
  assert quality.gin_bindings('cql_recurrent', 'reduced', 100000) == [
      'train_eval.actor_fc_layers = (64, 64)',
      'train_eval.critic_joint_fc_layers = (64, 64, 64)', 'train_eval.batch_size = 64',
      'train_eval.num_cql_samples = 4', 'train_eval.bc_steps = 1000']


def test_summarize_last_and_best_over_seeds():
  rows = quality.summarize(_CURVES, {'medium-replay': 12.5})
  cql, bc = rows
  assert (cql['algorithm'], cql['seeds'], cql['steps']) == ('cql', 2, 2000)
  assert cql['last_mean'] == pytest.approx(30.0) and cql['last_std'] == pytest.approx(10.0)
  assert cql['best_mean'] == pytest.approx(35.0) and cql['best_std'] == pytest.approx(5.0)
  assert bc['last_mean'] == pytest.approx(6.0) and bc['best_mean'] == pytest.approx(7.0)
  table = quality.markdown_table(rows)
  assert '| medium-replay | CQL | 2 | 2,000 | 30.0 ± 10.0 | 35.0 ± 5.0 | 12.5 |' in table
  bf16_row = dict(cql, algorithm='cql_bf16')
  assert '| medium-replay | CQL (bfloat16) | 2 |' in quality.markdown_table([bf16_row])
  # Every algorithm the benchmark trains has a name in its table (cql_recurrent once had none,
  # which failed after the runs had trained).
  every = quality.markdown_table([dict(cql, algorithm=name) for name in quality.ALGORITHMS])
  assert '| medium-replay | CQL (recurrent) | 2 |' in every


def test_plot_writes_png(tmp_path):
  path = os.path.join(tmp_path, 'curves.png')
  quality.plot_curves(_CURVES, {'medium-replay': 12.5}, 'test', path)
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_reduced_protocol_keeps_a_configs_own_cql_samples(tmp_path):
  """N = 4 under the reduced protocol unless the config binds num_cql_samples (a config
  that chose N keeps it); BC runs take mujoco.gin's settings on every dataset."""
  config = tmp_path / 'mixed.gin'
  config.write_text('train_eval.num_cql_samples = 10\n'
                    'train_eval.actor_fc_layers = (256, 256, 256)\n')
  assert quality._protocol_bindings(str(config), 'reduced', 100000) == [
      'train_eval.actor_fc_layers = (64, 64, 64)',
      'train_eval.critic_joint_fc_layers = (64, 64, 64)', 'train_eval.batch_size = 64',
      'train_eval.bc_steps = 0']
  assert quality.config_file('bc', 'medium-replay').endswith(os.path.join('configs',
                                                                          'mujoco.gin'))
  assert quality.gin_bindings('bc', 'reduced', 5000, 'medium-replay')[-1] == (
      'train_eval.bc_steps = 5000')
  assert quality.gin_bindings('cql', 'reduced', 100000, 'medium-replay') == [  # Shipped.
      'train_eval.actor_fc_layers = (64, 64, 64)',
      'train_eval.critic_joint_fc_layers = (64, 64, 64)', 'train_eval.batch_size = 64',
      'train_eval.bc_steps = 0']
  with pytest.raises(ValueError, match="dataset 'expert'"):
    quality.gin_bindings('cql', 'reduced', 5000, 'expert')
