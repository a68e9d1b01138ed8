"""Plots a cql_sac_train_eval run's training curve from its TensorBoard event files.

    python tools/plot_training_curve.py --root_dir=runs/quickstart/train \
      --output=docs/quickstart_training_curve.png

Left: the evaluation return of the greedy policy in the real environment against the
train step, with the dataset's mean episode return for reference (if given). Right: the
critic's TD loss and the CQL gap from train/.
"""

import argparse
import collections
import glob
import os
from typing import Dict, List, Optional, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top


def read_scalars(log_dir: str) -> Dict[str, List[Tuple[int, float]]]:
  """Reads every scalar summary of the event files directly in `log_dir`.

  Args:
    log_dir: A TensorBoard log directory, e.g. `<root_dir>/eval`.

  Returns:
    {tag: [(step, value), ...]} sorted by step; a step logged twice (e.g. after a
    resume) keeps its last value.
  """
  scalars = collections.defaultdict(dict)
  for path in sorted(glob.glob(os.path.join(log_dir, 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.HasField('tensor'):
          scalars[value.tag][event.step] = float(tf.make_ndarray(value.tensor))
        elif value.HasField('simple_value'):
          scalars[value.tag][event.step] = value.simple_value
  return {tag: sorted(points.items()) for tag, points in scalars.items()}


def plot(root_dir: str, output: str, dataset_mean_return: Optional[float] = None) -> None:
  """Writes the training-curve figure of the run in `root_dir` to `output` (PNG).

  Args:
    root_dir: The run's --root_dir.
    output: Path of the PNG to write.
    dataset_mean_return: The dataset's mean episode return, drawn as a line; None: none.

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
  if dataset_mean_return is not None:
    left.axhline(dataset_mean_return, color='gray', linestyle='--',
                 label='dataset mean episode return')
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


def main() -> None:
  """Parses the command line and writes the figure."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root_dir', required=True, help='--root_dir of the run.')
  parser.add_argument('--output', required=True, help='PNG file to write.')
  parser.add_argument('--dataset_mean_return', type=float, default=None,
                      help='Draw the dataset\'s mean episode return as a reference line.')
  args = parser.parse_args()
  plot(args.root_dir, args.output, args.dataset_mean_return)
  print(f'Wrote {args.output}')


if __name__ == '__main__':
  main()
