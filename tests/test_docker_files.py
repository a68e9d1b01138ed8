"""Static checks of tools/docker (no Docker needed; building the images is not part of CI).

The Dockerfiles must only COPY and run files that exist in the repository, and the CPU and
GPU images must be installed by the same steps (they differ in build-arg defaults and
environment only).
"""
import os
import re
import shlex

import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DOCKER_DIR = os.path.join(_REPO, 'tools', 'docker')
_DOCKERFILES = ('Dockerfile', 'Dockerfile.gpu')
# Build args that may appear in COPY sources; they are empty by default.
_OPTIONAL_SOURCES = ('${EXTRA_CA_CERT}',)


def _instructions(dockerfile):
  """Returns the (KEYWORD, arguments) of `dockerfile`, continuation lines joined."""
  with open(os.path.join(_DOCKER_DIR, dockerfile)) as f:
    text = f.read()
  lines = [line for line in text.splitlines() if not line.lstrip().startswith('#')]
  joined = re.sub(r'\\\n', ' ', '\n'.join(lines))
  result = []
  for line in joined.splitlines():
    if line.strip():
      keyword, _, arguments = line.strip().partition(' ')
      result.append((keyword.upper(), ' '.join(arguments.split())))
  return result


def _copy_sources(dockerfile):
  """Returns the source paths of every COPY in `dockerfile`, without optional build args."""
  sources = []
  for keyword, arguments in _instructions(dockerfile):
    if keyword == 'COPY':
      paths = [p for p in shlex.split(arguments) if not p.startswith('--')][:-1]
      sources += [p for p in paths if p not in _OPTIONAL_SOURCES]
  return sources


@pytest.mark.parametrize('dockerfile', _DOCKERFILES)
def test_copied_files_exist(dockerfile):
  sources = _copy_sources(dockerfile)
  assert 'requirements.txt' in sources and 'cql_sac' in sources
  missing = [p for p in sources if not os.path.exists(os.path.join(_REPO, p))]
  assert not missing, f'{dockerfile} copies files the repository lacks: {missing}'


@pytest.mark.parametrize('dockerfile', _DOCKERFILES)
def test_run_steps_use_copied_files_that_exist(dockerfile):
  # The RUN steps may only use scripts that a COPY put into the image.
  sources = _copy_sources(dockerfile)
  runs = [arguments for keyword, arguments in _instructions(dockerfile) if keyword == 'RUN']
  assert runs
  for run in runs:
    for path in re.findall(r'[\w./-]+\.(?:sh|py|txt)\b', run):
      assert os.path.exists(os.path.join(_REPO, path)), f'{dockerfile}: RUN uses {path}'
      assert any(path == s or path.startswith(s.rstrip('/') + '/') for s in sources), (
          f'{dockerfile}: RUN uses {path}, which no COPY puts into the image')


def test_cpu_and_gpu_images_use_the_same_install_steps():
  steps = {d: [(k, a) for k, a in _instructions(d) if k in ('FROM', 'WORKDIR', 'COPY', 'RUN',
                                                            'CMD', 'ENTRYPOINT')]
           for d in _DOCKERFILES}
  assert steps['Dockerfile'] == steps['Dockerfile.gpu']


def test_build_args_differ_only_in_tensorflow_extras():
  args = {d: {a for k, a in _instructions(d) if k == 'ARG'} for d in _DOCKERFILES}
  assert args['Dockerfile'] - args['Dockerfile.gpu'] == {'TENSORFLOW_EXTRAS='}
  assert args['Dockerfile.gpu'] - args['Dockerfile'] == {'TENSORFLOW_EXTRAS=and-cuda'}


def test_install_script_uses_files_that_exist():
  # install.sh runs the project's setup.sh and reads the tensorflow pin for the GPU extras.
  # Paths are relative to the repository root, where install.sh runs.
  with open(os.path.join(_DOCKER_DIR, 'install.sh')) as f:
    commands = [line for line in f if not re.match(r'\s*(#|echo )', line)]
  paths = re.findall(r'[\w./-]+\.(?:sh|txt)\b', ''.join(commands))
  assert 'tools/setup.sh' in paths and 'requirements.txt' in paths
  for path in paths:
    assert os.path.exists(os.path.join(_REPO, path)), f'install.sh uses {path}'
  with open(os.path.join(_REPO, 'requirements.txt')) as f:
    assert re.search(r'^tensorflow==[\d.]+\s*(#.*)?$', f.read(), re.MULTILINE), (
        'install.sh installs tensorflow[and-cuda] at the version of the tensorflow== line')


def test_build_script_and_readme_name_existing_dockerfiles():
  for name in ('build.sh', 'README.md'):
    with open(os.path.join(_DOCKER_DIR, name)) as f:
      text = f.read()
    named = set(re.findall(r'tools/docker/(Dockerfile[\w.]*)', text))
    named |= set(re.findall(r'dockerfile=(Dockerfile[\w.]*)', text))
    assert named, f'{name} names no Dockerfile'
    assert all(os.path.exists(os.path.join(_DOCKER_DIR, d)) for d in named), (name, named)
