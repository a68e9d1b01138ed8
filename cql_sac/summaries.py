"""Reads the scalars a cql_sac_train_eval run wrote for TensorBoard (train/ and eval/)."""

import collections
import glob
import os
from typing import Dict, List, Tuple

import tensorflow as tf


def read_scalars(log_dir: str) -> Dict[str, List[Tuple[int, float]]]:
  """Reads every scalar summary of the event files directly in `log_dir`.

  Args:
    log_dir: A TensorBoard log directory, e.g. `<root_dir>/eval`.

  Returns:
    {tag: [(step, value), ...]} sorted by step; a step logged twice (e.g. after a
    resume) keeps its last value. Empty if `log_dir` has no event files.
  """
  scalars = collections.defaultdict(dict)
  for path in sorted(glob.glob(os.path.join(log_dir, 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.HasField('tensor'):
          if value.tensor.tensor_shape.dim:  # Histograms and other non-scalars.
            continue
          scalars[value.tag][event.step] = float(tf.make_ndarray(value.tensor))
        elif value.HasField('simple_value'):
          scalars[value.tag][event.step] = value.simple_value
  return {tag: sorted(points.items()) for tag, points in scalars.items()}
