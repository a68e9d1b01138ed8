"""The record a `cql_sac_train_eval` run keeps of its data: root_dir/run_record.json.

It names the environment and dataset, the held-out episodes (`train_eval.holdout_fraction`,
`cql_sac.datasets.holdout`) and what is needed to read the run's critics in environment reward
units (their layers and `make_networks` bindings, the observation normalization, γ, the
effective reward scale and shift), so that `cql_sac_select` can evaluate the saved policies
offline from root_dir alone. The run writes it after its checks, before training, and again on
every resume.
"""

import json
import os
from typing import Any, Dict, Optional

from cql_sac.files import write_file_atomically

RUN_RECORD_FILE = 'run_record.json'


def write_run_record(root_dir: str, record: Dict[str, Any]) -> None:
  """Writes `record` as root_dir/run_record.json, atomically (`write_file_atomically`).

  Args:
    root_dir: The run's directory (exists).
    record: JSON-serializable values.
  """
  write_file_atomically(os.path.join(root_dir, RUN_RECORD_FILE), json.dumps(record, indent=1))


def read_run_record(root_dir: str) -> Optional[Dict[str, Any]]:
  """The run's record, or None if root_dir has none (a run of an earlier version).

  Raises:
    ValueError: If the file exists but is not a JSON object.
  """
  path = os.path.join(root_dir, RUN_RECORD_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f'{path} cannot be read ({e}); it is written by cql_sac_train_eval, '
                     'rerun it with the same --root_dir to rewrite it.') from e
  if not isinstance(record, dict):
    raise ValueError(f'{path} is not a JSON object; rerun cql_sac_train_eval with the same '
                     '--root_dir to rewrite it.')
  return record
