r"""Offline checkpoint selection against the real evaluations: how far `cql_sac_select` can be
trusted (the DOPE benchmark's measures, Fu et al. 2021).

For each run directory (a `cql_sac_train_eval` run with a policy saved, and a real evaluation
logged, at every checkpoint: `benchmarks.quality --save_every_eval`) this runs
`cql_sac.select.select` (reusing estimates already in <run>/selection/; --estimates=fqe,model
adds the dynamics model's, whose model runs on one dataset share with --model_cache_dir), then
per estimator with an estimate:

  spearman   the Spearman rank correlation of the estimate with the real normalized score
             over the run's checkpoints (the TD error negated: lower is better);
  regret@1   the best real normalized score of the run minus that of the checkpoint the
             estimator chooses;
  selected − last   the chosen checkpoint's real score minus the last checkpoint's;

each under two rules (`select.choose`): margin 0, the best estimate, and the margin of
`cql_sac_select --keep_last_margin` (default `select.KEEP_LAST_MARGIN`), which keeps the last
checkpoint unless the best estimate beats its own by more than that fraction; and writes
`ope_validation[_tag].json` and `.md` (per run, then the mean per dataset and over all runs)
under --output_dir.

    python -m benchmarks.ope_validation --output_dir=benchmarks/results \
        --runs='runs/quality/hopper_reduced_100000_ope/*/cql/seed*'
"""

import glob
import json
import os
import re
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags
import numpy as np
from scipy import stats

from cql_sac import cli
from cql_sac import select
from cql_sac.run_record import read_run_record

_REAL = 'real_normalized_score'


def estimator_scores(rows: Sequence[Dict[str, float]], estimator: str,
                     keep_last_margin: float = 0.0) -> Dict[str, float]:
  """Spearman, regret@1 and selected − last of one estimator over one run's checkpoints.

  Args:
    rows: `cql_sac.select` table rows (step, estimates, real_normalized_score).
    estimator: A key of `select.ESTIMATORS`.
    keep_last_margin: The margin of `select.choose`.

  Returns:
    {'spearman', 'regret_at_1', 'selected_minus_last', 'selected_step', 'checkpoints'}, the
    best and the last real score taken over every checkpoint with one (diverged included):
    NaN where fewer than 2 checkpoints have both a usable estimate (`select.usable_rows`:
    FQE's diverged ones are left out) and a real score.
  """
  scored = [row for row in rows if np.isfinite(row[_REAL])]
  usable = select.usable_rows(scored, estimator)  # Once: choose() filters the same way.
  nan = float('nan')
  if len(usable) < 2:
    return {'spearman': nan, 'regret_at_1': nan, 'selected_minus_last': nan,
            'selected_step': nan, 'checkpoints': len(usable)}
  estimates = np.array([select.score(row, estimator) for row in usable])
  real = np.array([row[_REAL] for row in usable])
  chosen = select.choose(scored, estimator, keep_last_margin)
  last = max(scored, key=lambda row: row['step'])
  return {'spearman': float(stats.spearmanr(estimates, real).statistic),
          'regret_at_1': float(max(row[_REAL] for row in scored) - chosen[_REAL]),
          'selected_minus_last': float(chosen[_REAL] - last[_REAL]),
          'selected_step': int(chosen['step']), 'checkpoints': len(usable)}


def validate(run_dirs: Sequence[str], fqe_steps: int, keep_last_margin: float,
             estimates: Sequence[str] = ('fqe',),
             model_cache_dir: Optional[str] = None) -> List[Dict[str, object]]:
  """Selects in every run, computing the `estimates` families (`select.ESTIMATE_FAMILIES`),
  and scores every estimator with an estimate under margin 0 and `keep_last_margin`; one dict
  per (run, estimator, margin). With `model_cache_dir`, runs on one dataset share the dynamics
  model saved in a directory of it named after the dataset."""
  results = []
  for run_dir in run_dirs:
    record = read_run_record(run_dir) or {}
    model_dir = model_cache_dir and os.path.join(
        model_cache_dir, re.sub(r'[^\w.-]+', '_', record.get('dataset_name', 'dataset')))
    _, rows = select.select(run_dir, select.fqe_config(record, fqe_steps),
                            estimator='fqe' if 'fqe' in estimates else 'model',
                            estimates=estimates, model_dir=model_dir)
    for estimator, column in select.ESTIMATORS.items():
      if not any(np.isfinite(row[column]) for row in rows):
        continue
      for margin in dict.fromkeys((0.0, keep_last_margin)):  # Once each if equal.
        results.append({'run': run_dir, 'env_name': record.get('env_name', ''),
                         'estimator': estimator, 'margin': margin,
                         **estimator_scores(rows, estimator, margin)})
  return results


def mean_rows(results: Sequence[Dict[str, object]]) -> List[Dict[str, object]]:
  """The mean of each measure per (dataset, estimator, margin), and over all runs ('all')."""
  groups = {}
  for result in results:
    for dataset in (result['env_name'], 'all'):
      groups.setdefault((dataset, result['estimator'], result['margin']), []).append(result)
  return [{'env_name': dataset, 'estimator': estimator, 'margin': margin, 'runs': len(group),
           **{measure: float(np.nanmean([r[measure] for r in group]))
              if any(np.isfinite(r[measure]) for r in group) else float('nan')
              for measure in ('spearman', 'regret_at_1', 'selected_minus_last')}}
          for (dataset, estimator, margin), group in groups.items()]


def markdown(results, means) -> str:
  """The per-run table and the means table, in Markdown."""
  lines = ['| run | estimator | margin | checkpoints | Spearman | regret@1 | selected − last '
           '| selected step |', '|---|---|---:|---:|---:|---:|---:|---:|']
  for r in results:
    lines.append(f"| {r['run']} | {r['estimator']} | {r['margin']:g} | {r['checkpoints']} "
                 f"| {r['spearman']:.2f} "
                 f"| {r['regret_at_1']:.1f} | {r['selected_minus_last']:+.1f} "
                 f"| {r['selected_step']} |")
  lines += ['', '| dataset | estimator | margin | runs | mean Spearman | mean regret@1 '
            '| mean selected − last |', '|---|---|---:|---:|---:|---:|---:|']
  for m in means:
    lines.append(f"| {m['env_name']} | {m['estimator']} | {m['margin']:g} | {m['runs']} "
                 f"| {m['spearman']:.2f} "
                 f"| {m['regret_at_1']:.1f} | {m['selected_minus_last']:+.1f} |")
  return '\n'.join(lines) + '\n'


def main(argv: Sequence[str]) -> None:
  """Validates the runs matched by --runs and writes the tables."""
  args = cli.start_main(argv)
  run_dirs = sorted({path for pattern in args.runs for path in glob.glob(pattern)
                     if os.path.isdir(path)})
  if not run_dirs:
    raise app.UsageError(f'--runs={args.runs} matches no directory.')
  results = validate(run_dirs, args.fqe_steps, args.keep_last_margin, args.estimates,
                     args.model_cache_dir)
  means = mean_rows(results)
  os.makedirs(args.output_dir, exist_ok=True)
  stem = os.path.join(args.output_dir, 'ope_validation' + (f'_{args.tag}' if args.tag else ''))
  with open(stem + '.json', 'w') as f:
    json.dump({'fqe_steps': args.fqe_steps, 'runs': results, 'means': means}, f, indent=1)
  with open(stem + '.md', 'w') as f:
    f.write(markdown(results, means))
  print(markdown(results, means))


if __name__ == '__main__':
  flags.DEFINE_list('runs', None, 'Glob patterns of run directories.', required=True)
  flags.DEFINE_integer('fqe_steps', 100000, 'FQE steps per checkpoint (cql_sac_select\'s '
                       '--fqe_steps).')
  flags.DEFINE_float('keep_last_margin', select.KEEP_LAST_MARGIN, 'The margin rule scored '
                     'beside the best estimate (cql_sac_select\'s --keep_last_margin).',
                     lower_bound=0.0)
  flags.DEFINE_list('estimates', ['fqe'], 'Estimate families to compute (cql_sac_select\'s '
                    '--estimates): fqe, model.')
  flags.DEFINE_string('model_cache_dir', None, 'Runs on one dataset share the dynamics model '
                      'saved here (default: one per run, in its selection/).')
  flags.DEFINE_string('output_dir', 'benchmarks/results', 'Where the tables go.')
  flags.DEFINE_string('tag', '', 'Suffix of the output file names.')
  app.run(main)
