"""benchmarks/finetune.py: the online curve, the dip, the table and the figure."""

import os

import pytest

from benchmarks import finetune

# Offline 1,000 steps, then 1,000 online env steps at UTD 1, evaluations every 100.
_CURVE = [[0, 1.0], [500, 20.0], [1000, 30.0], [1100, 22.0], [1200, 25.0], [1300, 10.0],
          [2000, 50.0]]


def test_online_curve_counts_env_steps_from_the_switch():
  assert finetune.online_curve(_CURVE, 1000) == [[0, 30.0], [100, 22.0], [200, 25.0],
                                                 [300, 10.0], [1000, 50.0]]
  assert finetune.online_curve(_CURVE, 1000, updates_per_env_step=2)[1] == [50, 22.0]


def test_dip_is_the_lowest_evaluation_in_the_first_fifth_minus_the_switch():
  online = finetune.online_curve(_CURVE, 1000)
  assert finetune.dip(online, 1000) == 22.0 - 30.0  # 10.0 at 300 env steps is after 200.
  with pytest.raises(ValueError, match='No evaluation in the first fifth'):
    finetune.dip([[0, 30.0], [1000, 50.0]], 1000)


def test_table_and_figure(tmp_path):
  runs = {'cql': {s: {'online': finetune.online_curve(_CURVE, 1000),
                      'fraction_q_below_g': 0.5 + 0.1 * s} for s in (0, 1)},
          'cal_ql': {0: {'online': [[0, 30.0], [200, 29.0], [1000, 60.0]],
                         'fraction_q_below_g': 0.1}}}
  rows = finetune.summarize(runs, 1000)
  cql, cal_ql = rows
  assert cql['dip_mean'] == -8.0 and cql['online_final_mean'] == 50.0
  assert cql['fraction_q_below_g_mean'] == pytest.approx(0.55)
  assert cal_ql['dip_mean'] == -1.0 and cal_ql['seeds'] == 1
  table = finetune.markdown_table(rows)
  assert '| CQL | 2 | 30.0 ± 0.0 | 50.0 ± 0.0 | -8.0 ± 0.0 | 55.0% ± 5.0 |' in table
  path = str(tmp_path / 'f.png')
  finetune.plot(runs, 1000, 'test', path)
  assert os.path.getsize(path) > 1000
