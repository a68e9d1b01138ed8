"""The exported XLA learner, run by JAX alone, equals TensorFlow's own XLA call.

benchmarks/xla_export.py writes a tiny configuration (64-unit networks, K=3, batches sampled
inside the loop, and stacked batches); benchmarks/xla_run.py compiles it with jaxlib in its
own venv (.venv-jax: no TensorFlow) and compares the losses and every updated variable with
TensorFlow's outputs, elementwise to rtol 1e-5 (atol 1e-6). That venv has neither TensorFlow
nor cql_sac, so the run also shows xla_run.py needs neither.
"""
import json
import os
import subprocess

import pytest

from benchmarks import xla_export

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def jax_python():
  subprocess.run(['bash', os.path.join(REPO, 'tools', 'setup_jax.sh')], check=True,
                 timeout=900)
  return os.path.join(REPO, '.venv-jax', 'bin', 'python')


@pytest.mark.parametrize('sampling', ['in_loop', 'stacked'])
@pytest.mark.slow
def test_jax_run_of_the_export_equals_tensorflow_xla(tmp_path, jax_python, sampling):
  names = xla_export.export_grid(
      str(tmp_path), 'halfcheetah-medium-v2', actor='64x64', critics=['64x64'],
      batch_sizes=[64], compute_dtypes=['float32'], steps_per_call=[3],
      precisions=['default'], sampling=sampling, num_cql_samples=4, dataset_episodes=2,
      reference_max_k=3, reference_elements=0, time_calls=0)
  manifest = json.load(open(tmp_path / names[0] / 'manifest.json'))
  updated = [o for o in manifest['outputs'] if o['updates_parameter'] is not None]
  # Every network and Adam variable of the agent, and the train step, is updated in place.
  assert len(updated) > 60 and 'loss/loss' in [o['name'] for o in manifest['outputs']]
  out = tmp_path / 'result.json'
  run = subprocess.run([jax_python, os.path.join(REPO, 'benchmarks', 'xla_run.py'),
                        str(tmp_path), '--calls=1', f'--output_json={out}'],
                       capture_output=True, text=True, timeout=600,
                       env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  (result,) = json.load(open(out))['results']
  assert result['platform'] == 'cpu'
  check = result['check']
  assert check['passed'] and tuple(check['strict_tolerance']) == (1e-5, 1e-6), check
  assert result['steps_per_s'] > 0

