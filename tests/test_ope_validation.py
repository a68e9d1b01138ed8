"""benchmarks.ope_validation's measures on a hand-made table."""

import math

import pytest

from benchmarks import ope_validation
from cql_sac import select

NAN = float('nan')


def _row(step, fqe, td_error, real):
  return {'step': step, 'fqe_value': fqe, 'critic_value': NAN, 'critic_td_error': td_error,
          'real_normalized_score': real}


ROWS = [_row(10, 1.0, 0.5, 20.0), _row(20, 3.0, 0.1, 50.0), _row(30, 2.0, 0.3, 40.0),
        _row(40, 4.0, 0.2, 30.0)]


def test_fqe_measures():
  scores = ope_validation.estimator_scores(ROWS, 'fqe')
  # Ranks of FQE 1, 3, 2, 4 against real 1, 4, 3, 2: d = 0, 1, 1, 2; 1 - 6·6/(4·15) = 0.4.
  assert scores['spearman'] == pytest.approx(0.4)
  assert scores['selected_step'] == 40
  assert scores['regret_at_1'] == pytest.approx(50.0 - 30.0)
  assert scores['selected_minus_last'] == pytest.approx(0.0)


def test_margin_keeps_the_last_checkpoint_unless_the_best_beats_it_by_more():
  # FQE's best, 4.0, is the last: any margin keeps it. The lowest TD error, 0.1, beats the
  # last's 0.2 by 0.1 = 50% of it: kept under margin 0.4, not under 0.6.
  assert ope_validation.estimator_scores(ROWS, 'fqe', 0.5)['selected_step'] == 40
  assert ope_validation.estimator_scores(ROWS, 'critic_td_error', 0.4)['selected_step'] == 20
  scores = ope_validation.estimator_scores(ROWS, 'critic_td_error', 0.6)
  assert scores['selected_step'] == 40 and scores['selected_minus_last'] == 0.0
  assert scores['regret_at_1'] == pytest.approx(50.0 - 30.0)


def test_td_error_chooses_its_lowest_and_a_missing_estimate_gives_nan():
  scores = ope_validation.estimator_scores(ROWS, 'critic_td_error')
  assert scores['selected_step'] == 20 and scores['regret_at_1'] == 0.0
  assert scores['selected_minus_last'] == pytest.approx(20.0)
  assert scores['spearman'] == pytest.approx(0.8)  # -TD ranks 1, 4, 2, 3 vs 1, 4, 3, 2.
  assert math.isnan(ope_validation.estimator_scores(ROWS, 'critic_value')['spearman'])


def test_a_diverged_fqe_is_flagged_and_never_chosen():
  # TD losses 40, 60, 50, 5000, 45: median 50, limit 500; step 40's 5000 diverged (its value
  # 900 is the largest and would win plain argmax and the margin rule).
  losses = (40.0, 60.0, 50.0, 5000.0, 45.0)
  values = (100.0, 300.0, 200.0, 900.0, 150.0)
  reals = (10.0, 40.0, 20.0, 45.0, 15.0)
  rows = [dict(_row(10 * (k + 1), value, NAN, real), fqe_td_loss=loss)
          for k, (value, loss, real) in enumerate(zip(values, losses, reals))]
  assert select.fqe_diverged(rows) == [40]
  assert [row['step'] for row in select.usable_rows(rows, 'fqe')] == [10, 20, 30, 50]
  assert select.choose(rows, 'fqe')['step'] == 20
  scores = ope_validation.estimator_scores(rows, 'fqe', 0.1)
  assert scores['checkpoints'] == 4 and scores['selected_step'] == 20
  # Regret counts the left-out checkpoint's real 45 as the best there was.
  assert scores['regret_at_1'] == 5.0 and scores['selected_minus_last'] == pytest.approx(25.0)
  assert scores['spearman'] == pytest.approx(1.0)  # 100, 300, 200, 150 vs 10, 40, 20, 15.
  # Below 3 TD losses the median says nothing; other estimators ignore the TD loss.
  assert select.fqe_diverged(rows[2:4]) == []
  assert len(select.usable_rows(rows, 'critic_td_error')) == 0  # NaN TD errors.
  with pytest.raises(select.SelectionError, match='No checkpoint has a critic_value'):
    select.choose(rows, 'critic_value')


def test_means_per_dataset_and_over_all_runs():
  results = [{'env_name': 'a', 'estimator': 'fqe', 'margin': 0.1, 'spearman': 0.2,
              'regret_at_1': 1.0, 'selected_minus_last': 2.0},
             {'env_name': 'b', 'estimator': 'fqe', 'margin': 0.1, 'spearman': 0.6,
              'regret_at_1': NAN, 'selected_minus_last': 4.0}]
  means = {row['env_name']: row for row in ope_validation.mean_rows(results)}
  assert means['all']['spearman'] == pytest.approx(0.4) and means['all']['runs'] == 2
  assert means['all']['regret_at_1'] == pytest.approx(1.0)
  assert means['b']['selected_minus_last'] == pytest.approx(4.0)
