"""Plots a cql_sac_train_eval run's training curve and prints what its evaluations show.

    python tools/plot_training_curve.py --root_dir=runs/quickstart/train \
      --output=docs/quickstart_training_curve.png --env_name=hopper-medium-v2 \
      --dataset_mean_return=94.07 --behavior_return=1310.8

Left: the evaluation return of the greedy policy in the real environment against the
train step, with reference lines for the untrained policy (step 0), the final policy, the
dataset's mean episode return and the behaviour policy's return (those given). Right: the
critic's TD loss and the CQL gap from train/. Printed: those returns, their D4RL
normalized scores, and a verdict that claims only what they show (`verdict`).
"""

import argparse
import os
from typing import Optional, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from cql_sac.summaries import read_scalars  # pylint: disable=g-import-not-at-top


def verdict(step0_return: float, final_return: float, dataset_mean_return: float,
            behavior_return: Optional[float] = None) -> str:
  """One sentence comparing the final policy with the untrained one, the data and the behaviour.

  "Clearly improved" needs at least twice the step-0 return (and a positive one).

  Args:
    step0_return: Mean return of the untrained greedy policy (the step-0 evaluation).
    final_return: Mean return of the final greedy policy.
    dataset_mean_return: The dataset's mean episode return.
    behavior_return: The behaviour policy's return, if known.

  Returns:
    The sentence.
  """
  if final_return >= 2 * step0_return and final_return > 0:
    ratio = final_return / step0_return if step0_return > 0 else float('inf')
    change = f'clearly improved on the untrained policy ({ratio:.1f}x its return)'
  elif final_return > step0_return:
    change = 'improved on the untrained policy, but by less than 2x'
  else:
    change = 'did NOT improve on the untrained policy'
  data = 'above' if final_return > dataset_mean_return else 'NOT above'
  text = f'Training {change}; the final policy is {data} the dataset\'s mean episode return'
  if behavior_return is not None:
    text += (' and above' if final_return > behavior_return else ' and below') + (
        ' the behaviour policy\'s return')
  return text + '.'


def plot(root_dir: str, output: str, dataset_mean_return: Optional[float] = None,
         behavior_return: Optional[float] = None) -> Tuple[float, float]:
  """Writes the training-curve figure of the run in `root_dir` to `output` (PNG).

  Args:
    root_dir: The run's --root_dir.
    output: Path of the PNG to write.
    dataset_mean_return: The dataset's mean episode return, drawn as a line; None: none.
    behavior_return: The behaviour policy's return, drawn as a line; None: none.

  Returns:
    (step-0 return, final return): the first and last evaluations' mean returns.

  Raises:
    ValueError: If `root_dir` has no evaluation summaries.
  """
  evals = read_scalars(os.path.join(root_dir, 'eval'))
  train = read_scalars(os.path.join(root_dir, 'train'))
  if 'Metrics/AverageReturn' not in evals:
    raise ValueError(f'No Metrics/AverageReturn in {root_dir}/eval: is it a root_dir of '
                     'cql_sac_train_eval with evaluation on?')
  figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
  steps, returns = zip(*evals['Metrics/AverageReturn'])
  left.plot(steps, returns, 'o-', label='CQL-SAC greedy policy')
  references = [(returns[0], 'untrained (step 0)', 'tab:red', ':'),
                (returns[-1], 'final', 'tab:blue', ':'),
                (dataset_mean_return, 'dataset mean episode', 'gray', '--'),
                (behavior_return, 'behaviour policy', 'tab:green', '--')]
  for value, label, color, style in references:
    if value is not None:
      left.axhline(value, color=color, linestyle=style, label=f'{label}: {value:.0f}')
  left.set(xlabel='train step', ylabel='average episode return', title='Evaluation')
  left.legend()
  for tag in ('Losses/critic_loss', 'Losses/cql_loss'):
    if tag in train:
      steps, values = zip(*train[tag])
      right.plot(steps, values, label=tag.split('/')[-1])
  right.set(xlabel='train step', ylabel='loss', title='Training')
  right.legend()
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  figure.savefig(output, dpi=100)
  return returns[0], returns[-1]


def main() -> None:
  """Parses the command line and writes the figure."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root_dir', required=True, help='--root_dir of the run.')
  parser.add_argument('--output', required=True, help='PNG file to write.')
  parser.add_argument('--dataset_mean_return', type=float, default=None,
                      help='Draw the dataset\'s mean episode return as a reference line.')
  parser.add_argument('--behavior_return', type=float, default=None,
                      help='Draw the behaviour policy\'s return as a reference line.')
  parser.add_argument('--env_name', default=None,
                      help='D4RL name: also print D4RL normalized scores and a verdict.')
  args = parser.parse_args()
  step0, final = plot(args.root_dir, args.output, args.dataset_mean_return,
                      args.behavior_return)
  print(f'Wrote {args.output}')
  if args.env_name and args.dataset_mean_return is not None:
    from cql_sac import tasks  # pylint: disable=import-outside-toplevel

    rows = [('untrained policy (step 0)', step0), ('final policy', final),
            ('dataset mean episode', args.dataset_mean_return)]
    if args.behavior_return is not None:
      rows.append(('behaviour policy', args.behavior_return))
    for name, value in rows:
      score = tasks.d4rl_normalized_score(args.env_name, value)
      print(f'{name:>27}: return {value:8.1f}, D4RL normalized {score:5.1f}')
    print(verdict(step0, final, args.dataset_mean_return, args.behavior_return))


if __name__ == '__main__':
  main()
