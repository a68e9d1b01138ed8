r"""Learning quality: CQL-SAC against behaviour cloning on D4RL-style datasets, 3 seeds.

For each dataset `<data_dir>/<env>-<dataset>-v2` (written by `cql_sac_make_behavior`, or a D4RL
file converted by `cql_sac_make_dataset --from_hdf5` into such a directory) this
trains CQL (the domain's gin file: configs/mujoco_medium.gin, mujoco_medium_replay.gin, ...)
and behaviour cloning through the same binary and data path (`train_eval` with
`bc_steps = num_gradient_updates`: the actor loss is α·log π(a|s) − log π(a_data|s) throughout,
so the critics never steer the actor) — and, with `--algorithms=...,cql_bf16`, CQL with bfloat16
critic matmuls (`make_networks.compute_dtype = 'bfloat16'`) for the mixed-precision learning
comparison, with `tf_agents_cql` tf_agents' own CqlSacAgent in the same binary, config and
data path (`train_eval.agent_class`), the reference row, and with `corl_cql`, `jaxcql_cql`,
`jrl_cql` the anchor recipes (configs/<anchor>/mujoco.gin instead of the dataset's file; under
the reduced protocol their own depths at width 64), and with `cql_recurrent` the recurrent
networks of configs/mujoco_recurrent.gin (on the velocity-hidden task with
`--gin_bindings='train_eval.velocities_hidden = True'`) — evaluates the greedy policy for 10 episodes in the real
environment at step 0 and every `eval_interval` steps, and writes to `--output_dir`:

  quality_<env>_<protocol>_<steps>.json  every curve (D4RL normalized score per evaluation)
  quality_<env>_<protocol>_<steps>.md    the table: last and best normalized score, mean ± std
                                         over seeds, next to the dataset's mean episode score
  quality_<env>_<protocol>_<steps>.png   the curves (mean ± std over seeds)

Protocols:
  full     the published setting: 256-unit networks (critics 3 layers), batch 256, 10 CQL
           samples, 1M steps, evaluation every 10,000 steps; needs a GPU (`--use_gpu`).
  reduced  for 2 CPU cores: 64-unit networks, batch 64, 4 CQL samples, `--num_steps` steps
           (default 100,000: CQL's slower start is not read as failure; ~6 minutes per Hopper
           run), evaluation every `--eval_interval` (default 10,000); CQL's BC warm-up keeps
           the full protocol's share (10,000 of 1M steps = 1%).

    python -m benchmarks.quality --data_dir=runs/behavior_hopper --env=hopper \
        --protocol=reduced
"""

import inspect
import json
import os
from typing import Dict, List, Mapping, Sequence

from absl import app
from absl import flags
from absl import logging
import gin
import numpy as np

from cql_sac import cli
from cql_sac import eval as cql_eval
from cql_sac import tasks as d4rl
from cql_sac.summaries import read_scalars
from cql_sac.train_eval import parse_gin_config
from cql_sac.train_eval import train_eval

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'configs')
GIN_FILES = {'medium': 'mujoco_medium.gin', 'medium-replay': 'mujoco_medium_replay.gin',
             'medium-expert': 'mujoco_medium_expert.gin', 'random': 'mujoco_medium.gin'}
# The anchor recipes (configs/<anchor>/mujoco.gin) and the recurrent networks
# (mujoco_recurrent.gin, medium datasets) replace the dataset's gin file.
RECIPE_FILES = {'cql_recurrent': 'mujoco_recurrent.gin',
                'corl_cql': 'corl/mujoco.gin', 'jaxcql_cql': 'jaxcql/mujoco.gin',
                'jrl_cql': 'jrl/mujoco.gin'}
ALGORITHMS = ('cql', 'bc', 'cql_bf16', 'tf_agents_cql') + tuple(RECIPE_FILES)
# tf_agents' own CqlSacAgent in the same binary, config and data path: the reference row.
_TF_AGENTS_BINDINGS = ('train_eval.agent_class = @tf_agents.agents.cql.cql_sac_agent.CqlSacAgent',)
# CQL with bfloat16 critic matmuls (float32 variables and losses): the mixed-precision
# learning comparison.
_BF16_BINDINGS = ("make_networks.compute_dtype = 'bfloat16'",)
# BC's settings on every dataset: the base the dataset files started from (the actor and
# temperature settings only matter to BC; its critics never steer the actor).
_BC_GIN_FILE = 'mujoco.gin'
_REDUCED_WIDTH = 64
_REDUCED_BATCH_SIZE = 64
_REDUCED_NUM_CQL_SAMPLES = 4  # Unless the config binds train_eval.num_cql_samples itself.
_SCORE_TAG = f'Metrics/{cql_eval.NORMALIZED_SCORE_METRIC}'

# Curves: {dataset: {algorithm: {seed: [(train step, normalized score), ...]}}}
Curves = Dict[str, Dict[str, Dict[int, List[List[float]]]]]


def config_file(algorithm: str, dataset: str) -> str:
  """The gin file of a run: the recipe's for a recipe algorithm, `mujoco.gin` for BC, else
  the dataset's (`GIN_FILES`)."""
  if algorithm in RECIPE_FILES:
    return os.path.join(_CONFIG_DIR, RECIPE_FILES[algorithm])
  return os.path.join(_CONFIG_DIR, _BC_GIN_FILE if algorithm == 'bc' else GIN_FILES[dataset])


def _protocol_bindings(path: str, protocol: str, num_steps: int) -> List[str]:
  """A config's protocol bindings: under 'reduced' its depths at width 64, batch 64 and
  N = 4 unless it binds `num_cql_samples`; under both its BC share of `num_steps`.

  Parses the config to read its layers, `bc_steps`, `num_gradient_updates` (train_eval's
  defaults where it sets none) and whether it binds `num_cql_samples`, then clears gin's
  configuration.
  """
  gin.clear_config()
  parse_gin_config([path], [])
  defaults = inspect.signature(train_eval).parameters

  def bound(name):
    try:
      return gin.query_parameter(f'train_eval.{name}')
    except ValueError:
      return None

  def value(name):
    binding = bound(name)
    return defaults[name].default if binding is None else binding

  actor, critic = value('actor_fc_layers'), value('critic_joint_fc_layers')
  bc_steps = round(value('bc_steps') * num_steps / value('num_gradient_updates'))
  binds_samples = bound('num_cql_samples') is not None
  gin.clear_config()
  bindings = []
  if protocol == 'reduced':
    bindings = [f'train_eval.actor_fc_layers = {(_REDUCED_WIDTH,) * len(actor)}',
                f'train_eval.critic_joint_fc_layers = {(_REDUCED_WIDTH,) * len(critic)}',
                f'train_eval.batch_size = {_REDUCED_BATCH_SIZE}']
    if not binds_samples:
      bindings.append(f'train_eval.num_cql_samples = {_REDUCED_NUM_CQL_SAMPLES}')
  return bindings + [f'train_eval.bc_steps = {bc_steps}']


def gin_bindings(algorithm: str, protocol: str, num_steps: int,
                 dataset: str = 'medium') -> List[str]:
  """The gin bindings that make a run CQL, BC or an anchor recipe under a protocol.

  Args:
    algorithm: 'cql', 'bc', 'cql_bf16' (CQL with bfloat16 critic compute),
      'tf_agents_cql' (CQL with tf_agents' own CqlSacAgent), or a recipe of `RECIPE_FILES`.
      Each keeps its config's depths (at width 64 under the reduced protocol) and its BC
      share of the steps; BC trains the actor by behaviour cloning for every step.
    protocol: 'reduced' or 'full'.
    num_steps: Train steps of the run.
    dataset: The dataset kind ('medium', 'medium-replay', ...), which picks the config.

  Returns:
    Bindings to apply after the run's gin file (`config_file`); this clears gin's
    configuration.

  Raises:
    ValueError: For an unknown algorithm, protocol or dataset kind.
  """
  if algorithm not in ALGORITHMS or protocol not in ('reduced', 'full') or (
      dataset not in GIN_FILES):
    raise ValueError(f'Unknown algorithm {algorithm!r}, protocol {protocol!r} or dataset '
                     f'{dataset!r}.')
  *bindings, bc_share = _protocol_bindings(config_file(algorithm, dataset), protocol,
                                           num_steps)
  if algorithm == 'cql_bf16':
    bindings += _BF16_BINDINGS
  if algorithm == 'tf_agents_cql':
    bindings += _TF_AGENTS_BINDINGS
  return bindings + [f'train_eval.bc_steps = {num_steps}' if algorithm == 'bc' else bc_share]


def read_score_curve(eval_dir: str) -> List[List[float]]:
  """Reads the normalized-score evaluations `train_eval` wrote under `<root_dir>/eval`.

  Args:
    eval_dir: The run's eval/ summary directory.

  Returns:
    [[train step, normalized score], ...] sorted by step (the last write wins for a step).
  """
  return [[step, score] for step, score in read_scalars(eval_dir).get(_SCORE_TAG, [])]


def summarize(curves: Curves, dataset_scores: Mapping[str, float]) -> List[Dict[str, float]]:
  """Turns curves into table rows: last and best normalized score, mean and std over seeds.

  "Last" is each seed's final evaluation, "best" its best evaluation (CORL's definitions).

  Args:
    curves: {dataset: {algorithm: {seed: [[step, score], ...]}}}.
    dataset_scores: {dataset: its mean episode return as a D4RL normalized score}.

  Returns:
    One dict per (dataset, algorithm): dataset, algorithm, seeds, steps, last_mean, last_std,
    best_mean, best_std, dataset_score.
  """
  rows = []
  for dataset, by_algorithm in curves.items():
    for algorithm, by_seed in by_algorithm.items():
      last = [curve[-1][1] for curve in by_seed.values()]
      best = [max(score for _, score in curve) for curve in by_seed.values()]
      rows.append({
          'dataset': dataset, 'algorithm': algorithm, 'seeds': len(by_seed),
          'steps': int(max(curve[-1][0] for curve in by_seed.values())),
          'last_mean': float(np.mean(last)), 'last_std': float(np.std(last)),
          'best_mean': float(np.mean(best)), 'best_std': float(np.std(best)),
          'dataset_score': dataset_scores[dataset]})
  return rows


_LABELS = {'cql': 'CQL', 'bc': 'BC', 'cql_bf16': 'CQL (bfloat16)',
           'tf_agents_cql': "CQL (tf_agents' agent)", 'corl_cql': "CQL (CORL's recipe)",
           'jaxcql_cql': "CQL (JaxCQL's recipe)", 'jrl_cql': "CQL (JRL's recipe)",
           'cql_recurrent': 'CQL (recurrent)'}


def _label(algorithm: str) -> str:
  """An algorithm's name in tables and legends, e.g. 'CQL (bfloat16)'."""
  return _LABELS[algorithm]


def markdown_table(rows: Sequence[Mapping[str, float]]) -> str:
  """Formats `summarize` rows as a Markdown table.

  Args:
    rows: From `summarize`.

  Returns:
    The table, one line per row, with a header.
  """
  lines = ['| dataset | algorithm | seeds | steps | last (mean ± std) | best (mean ± std) '
           '| dataset mean episode score |', '|---|---|---:|---:|---:|---:|---:|']
  for r in rows:
    lines.append(f"| {r['dataset']} | {_label(r['algorithm'])} | {r['seeds']} | {r['steps']:,} "
                 f"| {r['last_mean']:.1f} ± {r['last_std']:.1f} "
                 f"| {r['best_mean']:.1f} ± {r['best_std']:.1f} | {r['dataset_score']:.1f} |")
  return '\n'.join(lines) + '\n'


def plot_curves(curves: Curves, dataset_scores: Mapping[str, float], title: str,
                path: str) -> None:
  """Saves one panel per dataset: mean ± std normalized score over seeds per algorithm.

  Args:
    curves: As for `summarize`; every seed of an algorithm is evaluated at the same steps.
    dataset_scores: {dataset: mean episode score}, drawn as a dashed line.
    title: Figure title.
    path: PNG file to write.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel  # Only the plot needs it.
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
  for ax, (dataset, by_algorithm) in zip(axes[0], curves.items()):
    for algorithm, by_seed in by_algorithm.items():
      steps = np.array([step for step, _ in next(iter(by_seed.values()))])
      scores = np.array([[score for _, score in curve] for curve in by_seed.values()])
      mean, std = scores.mean(axis=0), scores.std(axis=0)
      ax.plot(steps, mean, label=f'{_label(algorithm)} ({len(by_seed)} seeds)')
      ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.axhline(dataset_scores[dataset], color='gray', linestyle='--', label='dataset mean')
    ax.set_title(dataset)
    ax.set_xlabel('train step')
    ax.set_ylabel('D4RL normalized score')
    ax.legend()
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _steps_label(num_steps: int) -> str:
  """'5k' for 5000, '1M' for 1000000: names a protocol's outputs by its length."""
  return f'{num_steps // 1000000}M' if num_steps % 1000000 == 0 else f'{num_steps / 1000:g}k'


def _with_tag(name: str, tag: str) -> str:
  """`name_tag`, or `name` when `tag` is empty: keeps tagged studies' files apart."""
  return f'{name}_{tag}' if tag else name


def run_quality(data_dir: str, env: str, datasets: Sequence[str], algorithms: Sequence[str],
                seeds: Sequence[int], protocol: str, num_steps: int, eval_interval: int,
                eval_episodes: int, root_dir: str, output_dir: str,
                use_gpu: bool = False, extra_bindings: Sequence[str] = (),
                tag: str = '', summary_interval: int = 0,
                save_every_eval: bool = False) -> List[Dict[str, float]]:
  """Trains every (dataset, algorithm, seed), then writes the JSON, table and figure.

  Args:
    data_dir: Directory holding `<env>-<dataset>-v2` datasets (cql_sac_make_behavior).
    env: 'hopper', 'halfcheetah' or 'walker2d'.
    datasets: Dataset kinds, e.g. ['medium', 'medium-replay'].
    algorithms: Subset of ALGORITHMS.
    seeds: Seeds per configuration.
    protocol: 'reduced' or 'full'.
    num_steps: Train steps per run.
    eval_interval: Train steps between evaluations.
    eval_episodes: Episodes per evaluation.
    root_dir: Where the runs go (`<root_dir>/<dataset>/<algorithm>/seed<seed>`); a finished
      run found there is reused, so give each protocol and length its own.
    output_dir: Where the JSON, Markdown table and PNG go.
    use_gpu: Train on the GPU.
    extra_bindings: Gin bindings applied to every run after the algorithm's, e.g. a
      hyperparameter under study.
    tag: Appended to the output file names (and the figure title), so that runs with
      `extra_bindings` do not overwrite the plain ones.
    summary_interval: Train steps between training summaries (with
      `train_eval.debug_summaries = True`, the Q values and gaps a diagnosis reads); 0 means
      `eval_interval`.
    save_every_eval: Save a policy and a train checkpoint at every evaluation and keep them
      all, for `cql_sac_select` and `benchmarks.ope_validation`; False: at the end only.

  Returns:
    The table rows (`summarize`).
  """
  curves: Curves = {}
  dataset_scores = {}
  for dataset in datasets:
    env_name = f'{env}-{dataset}-v2'
    for algorithm in algorithms:
      for seed in seeds:
        run_dir = os.path.join(root_dir, dataset, algorithm, f'seed{seed}')
        bindings = gin_bindings(algorithm, protocol, num_steps, dataset) + list(extra_bindings)
        gin.clear_config()
        parse_gin_config([config_file(algorithm, dataset)], bindings)
        result = train_eval(
            root_dir=run_dir, env_name=env_name,
            dataset_name=os.path.join(data_dir, env_name), num_gradient_updates=num_steps,
            eval_interval=eval_interval, eval_episodes=eval_episodes,
            **_save_intervals(save_every_eval, num_steps, eval_interval),
            summary_interval=summary_interval or max(eval_interval, 1), seed=seed, use_gpu=use_gpu)
        dataset_scores[dataset] = d4rl.d4rl_normalized_score(
            env_name, result.dataset_mean_episode_return)
        curve = read_score_curve(os.path.join(run_dir, 'eval'))
        curves.setdefault(dataset, {}).setdefault(algorithm, {})[seed] = curve
        logging.info('%s %s seed %d: %s', dataset, algorithm, seed, curve)
  rows = summarize(curves, dataset_scores)
  os.makedirs(output_dir, exist_ok=True)
  stem = os.path.join(output_dir,
                      _with_tag(f'quality_{env}_{protocol}_{_steps_label(num_steps)}', tag))
  with open(stem + '.json', 'w') as f:
    json.dump({'protocol': protocol, 'num_steps': num_steps, 'eval_interval': eval_interval,
               'eval_episodes': eval_episodes, 'data_dir': data_dir,
               'extra_bindings': list(extra_bindings),
               'dataset_scores': dataset_scores, 'curves': curves, 'rows': rows}, f, indent=1)
  with open(stem + '.md', 'w') as f:
    f.write(markdown_table(rows))
  plot_curves(curves, dataset_scores,
              f'{env}, project-generated datasets, {protocol} protocol ({num_steps:,} steps)'
              + (f', {tag}' if tag else ''),
              stem + '.png')
  return rows


def _save_intervals(save_every_eval: bool, num_steps: int, eval_interval: int) -> Dict[str, int]:
  """train_eval's policy and checkpoint intervals: at the end, or at every evaluation (all
  kept)."""
  if not save_every_eval:
    return dict(checkpoint_interval=num_steps, policy_save_interval=num_steps)
  return dict(checkpoint_interval=eval_interval, policy_save_interval=eval_interval,
              max_checkpoints_to_keep=num_steps // eval_interval + 1)


def _define_flags() -> None:
  """Defines the benchmark's flags."""
  flags.DEFINE_string('data_dir', None, 'Directory with the cql_sac_make_behavior datasets.',
                      required=True)
  flags.DEFINE_enum('env', 'hopper', ['hopper', 'halfcheetah', 'walker2d'], 'Task.')
  flags.DEFINE_list('datasets', ['medium', 'medium-replay'], 'Dataset kinds.')
  flags.DEFINE_list('algorithms', ['cql', 'bc'], f'Algorithms to train, of {ALGORITHMS}.')
  flags.DEFINE_integer('num_seeds', 3, 'Seeds per configuration: first_seed .. '
                       'first_seed + N - 1.', lower_bound=1)
  flags.DEFINE_integer('first_seed', 0, 'The first seed; finished runs of other seeds are reused '
                       'by a later call that names them all.', lower_bound=0)
  flags.DEFINE_enum('protocol', 'reduced', ['reduced', 'full'], 'See the module docstring.')
  flags.DEFINE_integer('num_steps', None, 'Train steps (default: reduced 100,000, full 1M).')
  flags.DEFINE_integer('eval_interval', None, 'Steps between evaluations (default 10,000).')
  flags.DEFINE_integer('eval_episodes', 10, 'Episodes per evaluation.')
  flags.DEFINE_string('root_dir', 'runs/quality', 'Directory for the training runs.')
  flags.DEFINE_string('output_dir', 'benchmarks/results', 'Directory for table and figure.')
  flags.DEFINE_bool('gpu', False, 'Train on the GPU.')
  flags.DEFINE_multi_string('gin_bindings', [], 'Extra gin bindings for every run, e.g. '
                            '"train_eval.cql_alpha = 5.0"; give them a --tag.')
  flags.DEFINE_string('tag', '', 'Suffix of the output files and run directory.')
  flags.DEFINE_integer('summary_interval', 0, 'Train steps between training summaries '
                       '(0: the evaluation interval).')
  flags.DEFINE_bool('save_every_eval', False, 'Save a policy and a train checkpoint at every '
                    'evaluation (for cql_sac_select and benchmarks.ope_validation).')


def main(argv: Sequence[str]) -> None:
  """Runs the benchmark and prints the table.

  Args:
    argv: Command-line arguments left after flag parsing (must be none).
  """
  args = cli.start_main(argv)
  full = args.protocol == 'full'
  num_steps = args.num_steps or (1000000 if full else 100000)
  rows = run_quality(
      args.data_dir, args.env, args.datasets, args.algorithms,
      range(args.first_seed, args.first_seed + args.num_seeds),
      args.protocol, num_steps, args.eval_interval or 10000,
      args.eval_episodes,
      os.path.join(args.root_dir,  # One directory per task: runs of two tasks never meet.
                   _with_tag(f'{args.env}_{args.protocol}_{num_steps}', args.tag)),
      args.output_dir,
      use_gpu=args.gpu, extra_bindings=args.gin_bindings, tag=args.tag,
      summary_interval=args.summary_interval, save_every_eval=args.save_every_eval)
  print(markdown_table(rows))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
