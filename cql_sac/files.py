"""Writing a run's small text files whole: the run record, the configuration record, the
checkpoint list and the selection table (`write_file_atomically`)."""

import os


def write_file_atomically(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to `path` through `path`.tmp and a rename: a reader, or a run killed
  during the write, sees the old file or the new one, never half of one.

  Args:
    path: The file to write; its directory exists.
    text: The whole content.

  Raises:
    OSError: If the directory cannot be written (the old file is left as it was).
  """
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(path + '.tmp', path)
