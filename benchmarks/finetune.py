r"""Offline-to-online fine-tuning: CQL against Cal-QL on a D4RL-style dataset, 3 seeds.

Each run is `cql_sac_train_eval` with configs/finetune/mujoco.gin (CQL) or
configs/cal_ql/mujoco.gin (Cal-QL) under `benchmarks.quality`'s reduced protocol (64-unit
networks, batch 64, 4 CQL samples, 1% BC warm-up): `--offline_steps` offline train steps,
then `--online_env_steps` online env steps at UTD 1 with batches of half dataset and half
online items; greedy evaluation (`--eval_episodes` episodes) every `--eval_interval` train
steps offline and every `--online_eval_interval` env steps online. It writes to
`--output_dir`:

  finetune_<env>_<dataset>[_<tag>].json  every curve and the rows
  finetune_<env>_<dataset>[_<tag>].md    the table (mean ± std over seeds):
      offline final   the evaluation at the switch (D4RL normalized score)
      online final    the last evaluation
      dip             the lowest evaluation in the first fifth of the online phase minus the
                      offline final (the "unlearning"; Cal-QL's should be smaller)
      Q < G           the share of (dataset state, critic) pairs with Q(s, a ~ π) below the
                      return-to-go at the switch (online/fraction_q_below_return_to_go)
  finetune_<env>_<dataset>[_<tag>].png   score against online env steps, offline finals dashed

    python -m benchmarks.finetune --data_dir=../shared/datasets/hopper --env=hopper \
        --dataset=medium
"""

import json
import os
from typing import Dict, List, Sequence

from absl import app
from absl import flags
from absl import logging
import gin
import numpy as np

from benchmarks.quality import gin_bindings
from benchmarks.quality import read_score_curve
from cql_sac import cli
from cql_sac.summaries import read_scalars
from cql_sac.train_eval import parse_gin_config
from cql_sac.train_eval import train_eval

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'configs')
CONFIGS = {'cql': 'finetune/mujoco.gin', 'cal_ql': 'cal_ql/mujoco.gin'}
_LABELS = {'cql': 'CQL', 'cal_ql': 'Cal-QL'}
_FRACTION_TAG = 'online/fraction_q_below_return_to_go'


def online_curve(curve: Sequence[Sequence[float]], offline_steps: int,
                 updates_per_env_step: int = 1) -> List[List[float]]:
  """[[env steps, score], ...] of the evaluations from the switch on.

  An evaluation at train step t >= offline_steps has seen (t − offline_steps) / UTD online
  env steps (`cql_sac.finetune` trains up to that target after each episode).
  """
  return [[(step - offline_steps) / updates_per_env_step, score] for step, score in curve
          if step >= offline_steps]


def dip(online: Sequence[Sequence[float]], online_env_steps: int) -> float:
  """The lowest evaluation after the switch within the first fifth minus the switch's."""
  window = [score for env_steps, score in online if 0 < env_steps <= online_env_steps / 5]
  if not window:
    raise ValueError('No evaluation in the first fifth of the online phase; lower '
                     '--online_eval_interval.')
  return min(window) - online[0][1]


def summarize(runs: Dict[str, Dict[int, dict]], online_env_steps: int) -> List[dict]:
  """One row per algorithm: offline final, online final, dip, Q < G; mean and std over seeds."""
  rows = []
  for algorithm, by_seed in runs.items():
    values = {'offline_final': [r['online'][0][1] for r in by_seed.values()],
              'online_final': [r['online'][-1][1] for r in by_seed.values()],
              'dip': [dip(r['online'], online_env_steps) for r in by_seed.values()],
              'fraction_q_below_g': [r['fraction_q_below_g'] for r in by_seed.values()]}
    row = {'algorithm': algorithm, 'seeds': len(by_seed)}
    for name, per_seed in values.items():
      row[f'{name}_mean'], row[f'{name}_std'] = float(np.mean(per_seed)), float(np.std(per_seed))
      row[f'{name}_per_seed'] = [float(v) for v in per_seed]
    rows.append(row)
  return rows


def markdown_table(rows: Sequence[dict]) -> str:
  """The rows as a Markdown table."""
  lines = ['| algorithm | seeds | offline final | online final | dip (first fifth) '
           '| Q(s, π) < G(s) at the switch |', '|---|---:|---:|---:|---:|---:|']
  for r in rows:
    cells = [f"{r[f'{name}_mean']:.1f} ± {r[f'{name}_std']:.1f}"
             for name in ('offline_final', 'online_final', 'dip')]
    lines.append(f"| {_LABELS[r['algorithm']]} | {r['seeds']} | {' | '.join(cells)} | "
                 f"{100 * r['fraction_q_below_g_mean']:.1f}% ± "
                 f"{100 * r['fraction_q_below_g_std']:.1f} |")
  return '\n'.join(lines) + '\n'


def plot(runs: Dict[str, Dict[int, dict]], online_env_steps: int, title: str,
         path: str) -> None:
  """Score against online env steps (mean ± std), each offline final as a dashed line."""
  import matplotlib  # pylint: disable=import-outside-toplevel  # Only the plot needs it.
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, ax = plt.subplots(figsize=(6, 4))
  for algorithm, by_seed in runs.items():
    curves = [r['online'] for r in by_seed.values()]
    steps = np.array([env_steps for env_steps, _ in curves[0]])
    scores = np.array([[score for _, score in curve] for curve in curves])
    mean, std = scores.mean(axis=0), scores.std(axis=0)
    line, = ax.plot(steps, mean, label=f'{_LABELS[algorithm]} ({len(curves)} seeds)')
    ax.fill_between(steps, mean - std, mean + std, alpha=0.2, color=line.get_color())
    ax.axhline(mean[0], color=line.get_color(), linestyle='--',
               label=f'{_LABELS[algorithm]} offline final')
  ax.axvspan(0, online_env_steps / 5, color='gray', alpha=0.1, label='first fifth (dip)')
  ax.set_xlabel('online env steps')
  ax.set_ylabel('D4RL normalized score')
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def run_finetune(data_dir: str, env: str, dataset: str, algorithms: Sequence[str],
                 seeds: Sequence[int], offline_steps: int, online_env_steps: int,
                 eval_interval: int, online_eval_interval: int, eval_episodes: int,
                 root_dir: str, output_dir: str, tag: str = '') -> List[dict]:
  """Trains every (algorithm, seed) (resuming finished or interrupted runs), writes outputs.

  Args:
    data_dir: Directory holding `<env>-<dataset>-v2` (cql_sac_make_behavior).
    env: 'hopper', 'halfcheetah' or 'walker2d'.
    dataset: e.g. 'medium'.
    algorithms: Subset of `CONFIGS`.
    seeds: Seeds per algorithm.
    offline_steps: Offline train steps.
    online_env_steps: Online env steps (UTD 1).
    eval_interval: Offline train steps between evaluations.
    online_eval_interval: Online env steps between evaluations.
    eval_episodes: Episodes per evaluation.
    root_dir: Where runs go (`<root_dir>/<algorithm>/seed<seed>`).
    output_dir: Where the JSON, table and figure go.
    tag: Suffix of the output files.

  Returns:
    The table rows (`summarize`).
  """
  env_name = f'{env}-{dataset}-v2'
  runs: Dict[str, Dict[int, dict]] = {}
  for algorithm in algorithms:
    for seed in seeds:
      run_dir = os.path.join(root_dir, algorithm, f'seed{seed}')
      gin.clear_config()
      parse_gin_config([os.path.join(_CONFIG_DIR, CONFIGS[algorithm])],
                       gin_bindings('cql', 'reduced', offline_steps))
      train_eval(root_dir=run_dir, env_name=env_name,
                 dataset_name=os.path.join(data_dir, env_name),
                 num_gradient_updates=offline_steps, online_env_steps=online_env_steps,
                 online_eval_interval=online_eval_interval, eval_interval=eval_interval,
                 eval_episodes=eval_episodes, summary_interval=1000,
                 checkpoint_interval=eval_interval, seed=seed)
      fraction = read_scalars(os.path.join(run_dir, 'online'))[_FRACTION_TAG][0][1]
      curve = read_score_curve(os.path.join(run_dir, 'eval'))
      runs.setdefault(algorithm, {})[seed] = {
          'curve': curve, 'online': online_curve(curve, offline_steps),
          'fraction_q_below_g': fraction}
      logging.info('%s seed %d: %s', algorithm, seed, curve)
  rows = summarize(runs, online_env_steps)
  os.makedirs(output_dir, exist_ok=True)
  stem = os.path.join(output_dir, f'finetune_{env}_{dataset}' + (f'_{tag}' if tag else ''))
  with open(stem + '.json', 'w') as f:
    json.dump({'data_dir': data_dir, 'env_name': env_name, 'protocol': 'reduced',
               'offline_steps': offline_steps, 'online_env_steps': online_env_steps,
               'eval_interval': eval_interval, 'online_eval_interval': online_eval_interval,
               'eval_episodes': eval_episodes, 'runs': runs, 'rows': rows}, f, indent=1)
  with open(stem + '.md', 'w') as f:
    f.write(markdown_table(rows))
  plot(runs, online_env_steps,
       f'{env_name} (project-made data), reduced protocol:\n{offline_steps:,} offline '
       f'steps, then {online_env_steps:,} online env steps', stem + '.png')
  return rows


def _define_flags() -> None:
  """Defines the benchmark's flags."""
  flags.DEFINE_string('data_dir', None, 'Directory with the cql_sac_make_behavior datasets.',
                      required=True)
  flags.DEFINE_enum('env', 'hopper', ['hopper', 'halfcheetah', 'walker2d'], 'Task.')
  flags.DEFINE_string('dataset', 'medium', 'Dataset kind.')
  flags.DEFINE_list('algorithms', list(CONFIGS), f'Of {list(CONFIGS)}.')
  flags.DEFINE_integer('num_seeds', 3, 'Seeds 0..N-1 per algorithm.')
  flags.DEFINE_integer('offline_steps', 40000, 'Offline train steps.')
  flags.DEFINE_integer('online_env_steps', 20000, 'Online env steps (UTD 1).')
  flags.DEFINE_integer('eval_interval', 10000, 'Offline train steps between evaluations.')
  flags.DEFINE_integer('online_eval_interval', 2000, 'Online env steps between evaluations.')
  flags.DEFINE_integer('eval_episodes', 5, 'Episodes per evaluation.')
  flags.DEFINE_string('root_dir', 'runs/finetune', 'Directory for the training runs.')
  flags.DEFINE_string('output_dir', 'benchmarks/results', 'Directory for table and figure.')
  flags.DEFINE_string('tag', '', 'Suffix of the output files and run directory.')


def main(argv: Sequence[str]) -> None:
  """Runs the benchmark and prints the table."""
  args = cli.start_main(argv)
  root_dir = os.path.join(args.root_dir, f'{args.env}_{args.dataset}_{args.offline_steps}_'
                          f'{args.online_env_steps}' + (f'_{args.tag}' if args.tag else ''))
  rows = run_finetune(args.data_dir, args.env, args.dataset, args.algorithms,
                      range(args.num_seeds), args.offline_steps, args.online_env_steps,
                      args.eval_interval, args.online_eval_interval, args.eval_episodes,
                      root_dir, args.output_dir, args.tag)
  print(markdown_table(rows))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
