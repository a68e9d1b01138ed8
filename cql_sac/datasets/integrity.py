"""Finds the damaged file of an RLDS/TFDS dataset that TensorFlow failed to read.

TFDS stores an RLDS dataset as TFRecord files of one record per episode, each record with
CRC32C checksums of its length and data. A flipped byte or a truncated file surfaces as a
`tf.errors.DataLossError` ("corrupted record at 2977551", "truncated record at ...") in the
middle of reading, naming neither the file nor the episode. `describe_damage` reads each of
the dataset's files on its own to find them and says how to get the data back.
"""

import glob
import os
import re
from typing import List, Optional, Tuple

import tensorflow as tf
import tensorflow_datasets as tfds


def describe_damage(dataset_name: str, data_dir: Optional[str], error: Exception) -> str:
  """One line naming the damaged file and record of a dataset, and how to replace it.

  Call it after reading the dataset raised `error` (a `tf.errors.OpError`); it reads the
  dataset's TFRecord files once more, one at a time, up to the first unreadable record.

  Args:
    dataset_name: As `cql_sac.datasets.loading.load_episodes`: a directory written by this
      project, or a TFDS name.
    data_dir: The TFDS data directory of a TFDS name (None: TFDS's default).
    error: What reading raised.

  Returns:
    "file <path> is damaged at record <i> (episode <i> of that file; <error>). Fix: ..."
    with the command that writes the data again; or, when no single file can be blamed,
    the error and the same fix.
  """
  directory = _dataset_directory(dataset_name, data_dir)
  if tf.io.gfile.isdir(dataset_name):
    fix = (f'record the dataset again (cql_sac_make_dataset --output_dir=... with the options '
           f'it was made with) or copy an intact {directory} from where it came from')
  else:
    fix = (f'delete {directory or "its TFDS folder"} and download/prepare {dataset_name} '
           f'again (tfds build {dataset_name}'
           f'{f" --data_dir={data_dir}" if data_dir else ""}, on a machine with internet)')
  damaged = _first_damaged_record(_record_files(directory)) if directory else None
  if damaged is None:
    return f'it cannot be read ({_first_line(error)}). Fix: {fix}.'
  path, index, file_error = damaged
  return (f'file {path} is damaged at record {index} (episode {index} of that file; '
          f'{file_error}). Fix: {fix}.')


def _first_line(error: Exception) -> str:
  """'<type>: <first line of the message>', without TensorFlow's op annotations."""
  message = str(error).splitlines()[0] if str(error) else ''
  message = re.sub(r'\{\{.*?\}\}\s*', '', message)  # {{function_node ...}}
  message = re.sub(r'\s*\[Op:.*$', '', message)  # [Op:IteratorGetNext] name:
  return f'{type(error).__name__}: {message}'


def _dataset_directory(dataset_name: str, data_dir: Optional[str]) -> Optional[str]:
  """The directory holding the dataset's files, None if TFDS cannot say."""
  if tf.io.gfile.isdir(dataset_name):
    return dataset_name
  try:
    return tfds.builder(dataset_name, data_dir=data_dir).data_dir
  except Exception:  # pylint: disable=broad-except  # Only to name a folder in a message.
    return None


def _record_files(directory: str) -> List[str]:
  """The dataset's TFRecord files (TFDS names them '<name>-<split>.tfrecord-NNNNN-of-NNNNN')."""
  return sorted(glob.glob(os.path.join(directory, '*.tfrecord*')))


def _first_damaged_record(paths: List[str]) -> Optional[Tuple[str, int, str]]:
  """(path, index of the first unreadable record, the error) of the first damaged file."""
  for path in paths:
    index = 0
    try:
      for _ in tf.data.TFRecordDataset(path).as_numpy_iterator():
        index += 1
    except tf.errors.OpError as e:
      return path, index, _first_line(e)
  return None
