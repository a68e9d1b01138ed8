"""benchmarks/stability.py: last, best, swing and evaluation noise from eval summaries."""

import os

from absl import app
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import stability

# D4RL's Hopper reference returns (random, expert): one return unit in normalized points.
_HOPPER_POINTS_PER_RETURN = 100.0 / (3234.3 - (-20.272305))


def _write_evaluations(run_dir, subdir, scores, stds):
  """Writes eval summaries as train_eval's Actor does, at steps 0, 10, 20, ..."""
  writer = tf.summary.create_file_writer(os.path.join(run_dir, subdir))
  with writer.as_default():
    for i, (score, std) in enumerate(zip(scores, stds)):
      tf.summary.scalar('Metrics/d4rl_normalized_score', score, step=10 * i)
      tf.summary.scalar('Metrics/StdReturn', std, step=10 * i)
  writer.close()


def test_last_best_swing_and_noise_match_a_hand_computation(tmp_path):
  _write_evaluations(str(tmp_path / 'seed0'), 'eval', [10.0, 50.0, 20.0], [100.0, 200.0, 300.0])
  _write_evaluations(str(tmp_path / 'seed1'), 'eval', [5.0, 30.0, 40.0], [0.0, 0.0, 0.0])
  _write_evaluations(str(tmp_path / 'seed1'), 'eval_raw_actor', [1.0, 2.0, 3.0], [0.0] * 3)
  row = stability.summarize(
      stability.read_curves(str(tmp_path), 'eval', 'hopper-medium-replay-v2', episodes=4))
  assert row['seeds'] == 2 and row['steps'] == 20
  assert row['last'] == [20.0, 40.0] and row['best'] == [50.0, 40.0]
  assert row['last_mean'] == pytest.approx(30.0) and row['last_std'] == pytest.approx(10.0)
  assert row['last_over_best'] == pytest.approx(30.0 / 45.0)
  # Final 3: seed 0 (10 + 50 + 20) / 3 = 26.67, seed 1 (5 + 30 + 40) / 3 = 25.0.
  assert row['final3_mean'] == pytest.approx(25.8333, abs=1e-3)
  assert row['final3_std'] == pytest.approx(0.8333, abs=1e-3)
  assert row['swing'] == pytest.approx(np.mean([(40 + 30) / 2, (25 + 10) / 2]))
  expected_noise = np.mean([100, 200, 300, 0, 0, 0]) / 2 * _HOPPER_POINTS_PER_RETURN
  assert row['noise'] == pytest.approx(expected_noise, rel=1e-5)
  raw = stability.read_curves(str(tmp_path), 'eval_raw_actor', 'hopper-medium-replay-v2', 4)
  assert list(raw) == ['seed1']
  table = stability.markdown_table({'x': row})
  assert '| 20.0, 40.0 | 30.0 ± 10.0 | 45.0 ± 5.0 | 0.67 | 25.8 ± 0.8 |' in table
  with pytest.raises(ValueError, match='No seed\\*/eval_other evaluations'):
    stability.read_curves(str(tmp_path), 'eval_other', 'hopper-medium-replay-v2', 4)


def test_runs_parse_and_a_label_given_twice_is_refused():
  """Two groups under one label would silently keep only the second row."""
  assert stability.parse_runs(['N = 10=a/b', 'raw=c:eval_raw_actor']) == [
      ('N = 10', 'a/b', 'eval'), ('raw', 'c', 'eval_raw_actor')]
  with pytest.raises(app.UsageError, match=r"label 'same' is given twice"):
    stability.parse_runs(['same=a', 'same=b:eval_raw_actor'])
  with pytest.raises(app.UsageError, match=r'expected "label=directory'):
    stability.parse_runs(['no-label'])
