r"""How steady a configuration's evaluations are: last, best, and the swing between evaluations.

For groups of runs made by `benchmarks.quality` (each a directory of `seed<k>/` runs), this
reads every evaluation of the greedy policy (`Metrics/d4rl_normalized_score` and
`Metrics/StdReturn` under the run's `eval/`, or another evaluation directory such as
`eval_raw_actor/`, the trained actor of a run with an averaged one) and writes a Markdown table:

  last per seed, last and best (mean ± std over seeds)   CORL's definitions
  last / best                                            the ratio of the means (issue 35's
                                                         "steady" target: >= 0.8)
  final 3  each seed's mean over its last 3 evaluations (mean ± std over seeds): less of a
           lottery than "last" when one evaluation can land on either side of a swing
  swing    mean |score(k+1) − score(k)| between consecutive evaluations, in normalized points
  noise    mean standard error of one evaluation's mean, std(episode returns)/√episodes,
           in normalized points: a swing many times the noise is the policy changing, not
           the evaluation's sampling

    python -m benchmarks.stability --env_name=hopper-medium-replay-v2 --episodes=10 \
      --output=benchmarks/results/stability_hopper_medium_replay \
      --runs='CORL N=10=runs/quality/hopper_reduced_100000_corl/medium-replay/corl_cql' \
      --runs='CORL N=10, trained actor=runs/quality/.../corl_cql:eval_raw_actor'

Each `--runs` is `label=directory[:evaluation subdirectory]` (default `eval`); the label
ends at the last '='.
"""

import os
from typing import Dict, List, NamedTuple, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np

from cql_sac import tasks
from cql_sac.summaries import read_scalars

_SCORE_TAG = 'Metrics/d4rl_normalized_score'
_STD_TAG = 'Metrics/StdReturn'
_FINAL_EVALUATIONS = 3  # The 'final 3' column.


class SeedCurve(NamedTuple):
  """One run's evaluations.

  Attributes:
    steps: int [E] train steps of the evaluations.
    scores: float [E] D4RL normalized scores of the evaluations' mean returns.
    noise: float [E] standard errors of those means, normalized points.
  """
  steps: np.ndarray
  scores: np.ndarray
  noise: np.ndarray


def read_curves(directory: str, eval_subdir: str, env_name: str,
                episodes: int) -> Dict[str, SeedCurve]:
  """Reads the evaluations of every `seed*/` run in `directory`.

  Args:
    directory: Holds `seed<k>/` run directories.
    eval_subdir: The evaluation summary directory inside each run ('eval', 'eval_raw_actor').
    env_name: D4RL name of the evaluation task, for the score's scale.
    episodes: Episodes per evaluation (the standard error's √n).

  Returns:
    {seed directory name: SeedCurve}, runs without evaluations left out.

  Raises:
    ValueError: If no run in `directory` has evaluations under `eval_subdir`.
  """
  points_per_return = (tasks.d4rl_normalized_score(env_name, 1.0)
                       - tasks.d4rl_normalized_score(env_name, 0.0))
  curves = {}
  seeds = os.listdir(directory) if os.path.isdir(directory) else []
  for seed in sorted(d for d in seeds if d.startswith('seed')):
    scalars = read_scalars(os.path.join(directory, seed, eval_subdir))
    if _SCORE_TAG not in scalars:
      continue
    steps, scores = map(np.array, zip(*scalars[_SCORE_TAG]))
    stds = dict(scalars.get(_STD_TAG, []))
    noise = np.array([stds.get(s, np.nan) for s in steps]) * points_per_return / np.sqrt(
        episodes)
    curves[seed] = SeedCurve(steps, scores, noise)
  if not curves:
    raise ValueError(f'No seed*/{eval_subdir} evaluations in {directory}; pass a '
                     'benchmarks.quality directory <root_dir>/<dataset>/<algorithm>.')
  return curves


def summarize(curves: Dict[str, SeedCurve]) -> Dict[str, object]:
  """The table's numbers for one group of runs (see the module docstring).

  Args:
    curves: From `read_curves`.

  Returns:
    {'seeds', 'last' (per seed, list), 'last_mean', 'last_std', 'best' (per seed),
    'best_mean', 'best_std', 'last_over_best', 'final3_mean', 'final3_std', 'swing', 'noise',
    'steps' (of the last evaluation, smallest over seeds)}.
  """
  last = np.array([c.scores[-1] for c in curves.values()])
  best = np.array([c.scores.max() for c in curves.values()])
  final3 = np.array([c.scores[-_FINAL_EVALUATIONS:].mean() for c in curves.values()])
  swing = np.mean([np.abs(np.diff(c.scores)).mean() for c in curves.values()
                   if len(c.scores) > 1] or [np.nan])
  return {'seeds': len(curves), 'last': last.tolist(), 'last_mean': float(last.mean()),
          'last_std': float(last.std()), 'best': best.tolist(),
          'best_mean': float(best.mean()), 'best_std': float(best.std()),
          'last_over_best': float(last.mean() / best.mean()) if best.mean() else np.nan,
          'final3_mean': float(final3.mean()), 'final3_std': float(final3.std()),
          'swing': float(swing),
          'noise': float(np.nanmean(np.concatenate([c.noise for c in curves.values()]))),
          'steps': int(min(c.steps[-1] for c in curves.values()))}


def markdown_table(rows: Dict[str, Dict[str, object]]) -> str:
  """Formats {label: summarize(...)} as a Markdown table, one row per group."""
  lines = ['| configuration | seeds | steps | last per seed | last (mean ± std) '
           '| best (mean ± std) | last / best | final 3 (mean ± std) | swing | noise |',
           '|---|---:|---:|---|---:|---:|---:|---:|---:|---:|']
  for label, r in rows.items():
    per_seed = ', '.join(f'{x:.1f}' for x in r['last'])
    lines.append(f"| {label} | {r['seeds']} | {r['steps']:,} | {per_seed} "
                 f"| {r['last_mean']:.1f} ± {r['last_std']:.1f} "
                 f"| {r['best_mean']:.1f} ± {r['best_std']:.1f} | {r['last_over_best']:.2f} "
                 f"| {r['final3_mean']:.1f} ± {r['final3_std']:.1f} "
                 f"| {r['swing']:.1f} | {r['noise']:.1f} |")
  return '\n'.join(lines) + '\n'


def _define_flags() -> None:
  """Defines the tool's flags."""
  flags.DEFINE_multi_string('runs', [], '"label=directory[:eval subdirectory]"; repeat.')
  flags.DEFINE_string('env_name', None, 'D4RL name of the evaluation task.', required=True)
  flags.DEFINE_integer('episodes', 10, 'Episodes per evaluation.')
  flags.DEFINE_string('output', None, 'Path prefix of the .md to write.', required=True)


def parse_runs(specs: Sequence[str]) -> List[Tuple[str, str, str]]:
  """(label, directory, evaluation subdirectory) of each --runs 'label=directory[:subdir]'.

  Raises:
    app.UsageError: For a spec without "label=directory", or a label given twice (its rows
      would overwrite each other).
  """
  groups = []
  for spec in specs:
    label, sep, location = spec.rpartition('=')  # Labels may hold '=' ("N = 10").
    if not sep:
      raise app.UsageError(f'--runs={spec!r}: expected "label=directory[:subdirectory]".')
    if label in [group[0] for group in groups]:
      raise app.UsageError(f'--runs label {label!r} is given twice; give each group its own '
                           'label.')
    directory, _, subdir = location.partition(':')
    groups.append((label, directory, subdir or 'eval'))
  return groups


def main(argv: Sequence[str]) -> None:
  """Reads the groups, writes <output>.md, prints the table.

  Raises:
    app.UsageError: For positional arguments or a bad --runs (`parse_runs`).
  """
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  args = flags.FLAGS
  rows = {label: summarize(read_curves(directory, subdir, args.env_name, args.episodes))
          for label, directory, subdir in parse_runs(args.runs)}
  table = markdown_table(rows)
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with open(args.output + '.md', 'w') as f:
    f.write(table)
  print(table)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
