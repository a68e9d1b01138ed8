"""Installs cql-sac: `pip install -e .` after the two-step pinned install (see README).

The pins live in requirements.txt (TensorFlow stack) and requirements-sim.txt
(simulators and tools) and are read from there. They are installed in two steps on
purpose: tf-agents 0.19.0 pins typing-extensions==4.5.0 while gymnasium 1.x needs
>=4.12, so one resolver run over both sets fails; installed one after the other they
work (pip reports the conflict). Hence `install_requires` carries only the first set
and the second is the `sim` extra, to be installed as its own step:

    pip install -r requirements.txt && pip install -r requirements-sim.txt
    pip install --no-deps -e .
"""
import os

import setuptools

_HERE = os.path.dirname(os.path.abspath(__file__))


def _requirements(file_name):
  """Returns the requirement lines of `file_name`, without comments."""
  with open(os.path.join(_HERE, file_name)) as f:
    lines = (line.split('#', 1)[0].strip() for line in f)
    return [line for line in lines if line]


def _version():
  """Returns cql_sac.__version__ without importing the package."""
  with open(os.path.join(_HERE, 'cql_sac', '__init__.py')) as f:
    for line in f:
      if line.startswith('__version__'):
        return line.split('=', 1)[1].strip().strip('"\'')
  raise RuntimeError('cql_sac/__init__.py has no __version__')


setuptools.setup(
    name='cql-sac',
    version=_version(),
    description='Conservative Q-Learning (CQL-SAC) for offline continuous control on '
    'TF-Agents, trained from D4RL datasets in RLDS/TFDS form.',
    packages=setuptools.find_packages(include=['cql_sac', 'cql_sac.*']),
    package_data={'cql_sac.recording': ['behavior/*.npz', 'behavior/README.md']},
    python_requires='>=3.11,<3.12',
    install_requires=_requirements('requirements.txt'),
    extras_require={'sim': _requirements('requirements-sim.txt')},
    entry_points={
        'console_scripts': [
            'cql_sac_train_eval = cql_sac.train_eval:run',
            'cql_sac_eval = cql_sac.eval:run',
            'cql_sac_select = cql_sac.select:run',
            'cql_sac_make_dataset = cql_sac.recording.make_dataset:main',
            'cql_sac_reverb_server = cql_sac.datasets.reverb_server:main',
            'cql_sac_make_behavior = cql_sac.recording.make_behavior:run',
        ],
    },
)
