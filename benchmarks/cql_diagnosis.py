r"""What CQL's critic and actor do over training: figures and a table from `debug_summaries` runs.

For runs made by `benchmarks.quality` with `--gin_bindings='train_eval.debug_summaries = True'`
(and `--summary_interval`), this reads each run's train/ and eval/ summaries and draws, per
labelled group of runs (mean over its seeds, against the train step):

  eval score       D4RL normalized score of the greedy policy (eval/)
  Q data / policy / uniform
                   critic 1's mean Q at dataset actions (cql_loss/q_original1), at a ~ pi(.|s)
                   (q_estimates1) and at uniform actions (q_uniform1)
  Q policy - Q data
                   how far the policy's actions are valued above the data's
  CQL gap          Losses/cql_loss: E[logsumexp_a Q(s, a) - Q(s, a_data)] over both critics
  alpha            the SAC temperature (sac_alpha); alpha' (cql_alpha) is in the table
  policy entropy   -E[log pi(a|s)] of the actor's samples (actor_loss/entropy_avg)
  greedy action saturation
                   share of the greedy action's components within 1% of the bounds
  actor gradient norm
                   global norm of the actor's gradient (the two: runs from issue 35 on)

    python -m benchmarks.cql_diagnosis --output=benchmarks/results/diagnosis_hopper_medium \
      --runs='CQL (BC warm-up 1,000)=runs/quality/reduced_100000_diag/medium/cql' \
      --runs='CQL (BC warm-up 10,000)=runs/quality/reduced_100000_diag_bc10k/medium/cql'

Each `--runs` is `label=directory`; the directory holds `seed<k>/` run directories.
"""

import os
from typing import Dict, List, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np

from cql_sac.summaries import read_scalars

# (panel title, tag in train/ or eval/, which directory).
PANELS = (
    ('eval: D4RL normalized score', 'Metrics/d4rl_normalized_score', 'eval'),
    ('Q at dataset actions', 'cql_loss/q_original1', 'train'),
    ('Q at policy actions', 'cql_loss/q_estimates1', 'train'),
    ('Q at uniform actions', 'cql_loss/q_uniform1', 'train'),
    ('CQL gap (cql_loss)', 'Losses/cql_loss', 'train'),
    ('SAC alpha', 'sac_alpha', 'train'),
    ('policy entropy', 'actor_loss/entropy_avg', 'train'),
    ('greedy action saturation', 'actor_loss/greedy_action_saturation', 'train'),
    ('actor gradient norm', 'actor_loss/gradient_global_norm', 'train'),
)
_EXTRA_TABLE_TAGS = (('cql_alpha', 'train'),)

# {label: {tag: (steps [T], values [seeds, T])}}
Groups = Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]]


def read_group(directory: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """Reads the PANELS tags of every `seed*/` run in `directory`, on the steps all seeds share.

  Args:
    directory: Holds `seed<k>/` run directories of `cql_sac_train_eval` (train/, eval/).

  Returns:
    {tag: (steps int64 [T], values float64 [num_seeds, T])}; tags no seed wrote are left out.

  Raises:
    ValueError: If `directory` holds no `seed*` runs.
  """
  seeds = sorted(d for d in os.listdir(directory) if d.startswith('seed'))
  if not seeds:
    raise ValueError(f'No seed*/ runs in {directory}; pass a benchmarks.quality directory '
                     '<root_dir>/<dataset>/<algorithm>.')
  logs = {kind: [read_scalars(os.path.join(directory, seed, kind)) for seed in seeds]
          for kind in ('train', 'eval')}
  curves = {}
  for _, tag, kind in PANELS + tuple((None, t, k) for t, k in _EXTRA_TABLE_TAGS):
    per_seed = [dict(log[tag]) for log in logs[kind] if tag in log]
    if len(per_seed) != len(seeds):
      continue
    steps = sorted(set.intersection(*(set(points) for points in per_seed)))
    curves[tag] = (np.array(steps), np.array([[p[s] for s in steps] for p in per_seed]))
  return curves


def _value_near(steps: np.ndarray, values: np.ndarray, step: int) -> np.ndarray:
  """Per-seed values at the logged step closest to `step`."""
  return values[:, int(np.argmin(np.abs(steps - step)))]


def markdown_table(groups: Groups, at_steps: Sequence[int]) -> str:
  """Mean over seeds of each quantity at chosen steps, one row per group and step.

  Args:
    groups: {label: read_group(...)}.
    at_steps: Train steps to report (the nearest logged step is used).

  Returns:
    A Markdown table.
  """
  tags = [tag for _, tag, _ in PANELS] + [tag for tag, _ in _EXTRA_TABLE_TAGS]
  names = [title for title, _, _ in PANELS] + ['cql_alpha']
  lines = ['| runs | seeds | step | ' + ' | '.join(names) + ' |',
           '|---|---:|---:|' + '---:|' * len(names)]
  for label, curves in groups.items():
    num_seeds = next(iter(curves.values()))[1].shape[0]
    for step in at_steps:
      cells = []
      for tag in tags:
        if tag in curves:
          cells.append(f'{_value_near(*curves[tag], step).mean():.2f}')
        else:
          cells.append('n/a')
      lines.append(f'| {label} | {num_seeds} | {step:,} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot(groups: Groups, title: str, path: str) -> None:
  """One panel per PANELS entry, one line per group (mean over seeds, band = min..max).

  Args:
    groups: {label: read_group(...)}.
    title: Figure title.
    path: PNG to write.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel  # Only the plot needs it.
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

  panels: List = list(PANELS) + [('Q policy - Q data', None, 'train')]
  columns = (len(panels) + 1) // 2
  fig, axes = plt.subplots(2, columns, figsize=(5 * columns, 8))
  for ax, (panel_title, tag, _) in zip(axes.flat, panels):
    for label, curves in groups.items():
      if tag is None:
        if 'cql_loss/q_estimates1' not in curves:
          continue
        steps, policy = curves['cql_loss/q_estimates1']
        data_steps, data = curves['cql_loss/q_original1']
        values = policy - data if np.array_equal(steps, data_steps) else None
      elif tag in curves:
        steps, values = curves[tag]
      else:
        continue
      if values is None:
        continue
      ax.plot(steps, values.mean(axis=0), label=label)
      ax.fill_between(steps, values.min(axis=0), values.max(axis=0), alpha=0.2)
    ax.set_title(panel_title)
    ax.set_xlabel('train step')
  axes.flat[0].legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def _define_flags() -> None:
  """Defines the tool's flags."""
  flags.DEFINE_multi_string('runs', [], '"label=directory" of seed*/ runs; repeat per group.')
  flags.DEFINE_string('output', None, 'Path prefix of the .png and .md to write.',
                      required=True)
  flags.DEFINE_string('title', 'CQL diagnosis', 'Figure title.')
  flags.DEFINE_list('table_steps', ['10000', '50000', '100000'], 'Train steps in the table.')


def main(argv: Sequence[str]) -> None:
  """Reads the groups, writes <output>.png and <output>.md, prints the table.

  Args:
    argv: Must be only the program name.

  Raises:
    app.UsageError: For positional arguments or a --runs without "label=directory".
  """
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  args = flags.FLAGS
  groups = {}
  for spec in args.runs:
    label, sep, directory = spec.rpartition('=')  # Labels may hold '=' ("N = 10").
    if not sep:
      raise app.UsageError(f'--runs={spec!r}: expected "label=directory".')
    groups[label] = read_group(directory)
  table = markdown_table(groups, [int(s) for s in args.table_steps])
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with open(args.output + '.md', 'w') as f:
    f.write(table)
  plot(groups, args.title, args.output + '.png')
  print(table)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
