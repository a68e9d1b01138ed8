r"""Runs exports of `benchmarks.xla_export` with JAX alone: checks them, times them, prints JSON.

NumPy and JAX only (no TensorFlow, no cql_sac), for Python 3.11 here and the GPU machine's 3.12:
the exported HloModuleProto is converted to StableHLO (`hlo_to_stablehlo`), compiled for
JAX's default backend and executed through PJRT. For each export directory it

  1. compiles the module (seconds reported);
  2. runs one call from the exported arguments and compares its outputs with TensorFlow's own
     XLA outputs (`reference.npz`): strictly, every output elementwise (`STRICT_TOLERANCE`,
     what CI asserts), and the losses alone (`LOSS_TOLERANCE`, what a different XLA build
     keeps at full size); on a GPU float32 matmuls may run in TF32, so the `_highest`
     exports, lowered with HIGHEST precision, are the like-for-like check;
  3. times `--calls` further calls that train on, each call's updated variables feeding the
     next (what a training loop does; only the aliased variables are donated, the dataset
     stays on the device), after `--warmup` untimed calls; steps/s = K·calls / seconds.

    python benchmarks/xla_run.py runs/xla [--calls=5] [--output_json=out.json] [--only=k10]
        [--time_budget_s=420]

`jax_enable_x64` is on (the train step counter and seeds are int64). Verdicts: "ok" (strict),
"losses ok" (the losses within `LOSS_TOLERANCE`, some variable elements outside the strict
tolerance; the worst variable's relative L2 difference is printed), "FAILED" (exit status 1).
"""

import argparse
import gzip
import json
import os
import re
import sys
import time

import jax
import jax.extend
import numpy as np

jax.config.update('jax_enable_x64', True)
from jax._src.lib import xla_client  # pylint: disable=g-import-not-at-top

# (rtol, atol) of the strict check: every output (the losses [K] and every updated variable)
# elementwise, |x - ref| <= atol + rtol·|ref|. What the CI test asserts for its tiny export.
STRICT_TOLERANCE = (1e-5, 1e-6)
# (rtol, atol) of the losses-only check, by critic compute dtype. Another XLA build (jaxlib's
# CPU or GPU backend vs TensorFlow 2.15's) sums float32 reductions in another order; Adam
# amplifies that elementwise where a gradient is of the size of its epsilon (the update
# lr·g/(|g| + 1e-7) moves by up to lr), so at full size single Adam moments of critic biases
# can differ by percents while the losses agree to ~1e-5, drifting apart over the steps (256x256x256
# critics, batch 256, jaxlib 0.10 CPU: the critic loss of step 8 of 10 at 2e-4 relative).
# bfloat16 matmuls also round at other places after other fusions.
LOSS_TOLERANCE = {'float32': (1e-3, 1e-6), 'bfloat16': (1e-2, 1e-4)}


def load_export(directory: str):
  """(manifest, HLO proto bytes, argument arrays) of one export directory."""
  with open(os.path.join(directory, 'manifest.json')) as f:
    manifest = json.load(f)
  with gzip.open(os.path.join(directory, 'module.hlo.pb.gz'), 'rb') as f:
    proto = f.read()
  root = os.path.dirname(os.path.abspath(directory))
  arrays = [np.load(os.path.join(root, p['file'])) for p in manifest['parameters']]
  return manifest, proto, arrays


def compile_module(proto: bytes, backend):
  """Compiles an HloModuleProto for the first device of `backend`; a PJRT executable."""
  module = xla_client._xla.mlir.hlo_to_stablehlo(proto)  # pylint: disable=protected-access
  options = xla_client.CompileOptions()
  devices = backend.local_devices()[:1]
  if hasattr(backend, 'compile_and_load'):
    try:
      return backend.compile_and_load(module, devices, options)
    except TypeError:  # Versions that take a DeviceList.
      return backend.compile_and_load(module, xla_client.DeviceList(tuple(devices)), options)
  return backend.compile(module, options)


def _device_arrays(arrays, device):
  return [jax.device_put(a, device) for a in arrays]


def check(outputs, manifest, directory: str):
  """Compares one call's outputs with TensorFlow's reference; a result dict.

  Keys: passed (the strict check, `STRICT_TOLERANCE`), losses_passed (`LOSS_TOLERANCE`),
  max_relative_difference (elementwise, over all outputs), max_relative_l2_difference
  (||x - ref|| / ||ref|| of the worst variable), failed_outputs (of the strict check).
  """
  reference = manifest.get('reference')
  if not reference:
    return {'checked': False}
  expected = np.load(os.path.join(directory, reference['file']))
  rtol, atol = STRICT_TOLERANCE
  loss_rtol, loss_atol = LOSS_TOLERANCE[manifest['config'].get('compute_dtype', 'float32')]
  worst, worst_l2, failures, losses_passed = 0.0, 0.0, [], True
  for index, (output, spec) in enumerate(zip(outputs, manifest['outputs'])):
    want = expected[f'o{index:04d}']
    got = np.asarray(output).reshape(-1)[:want.size].reshape(want.shape)
    if spec['dtype'] not in ('float32', 'float64', 'bfloat16'):
      if not np.array_equal(got, want):
        failures.append(spec['name'])
        losses_passed = False
      continue
    want = want.astype(np.float64)
    difference = np.abs(got.astype(np.float64) - want)
    worst = max(worst, float((difference / np.maximum(np.abs(want), atol / rtol)).max(
        initial=0.0)))
    if (difference > atol + rtol * np.abs(want)).any():
      failures.append(spec['name'])
    if spec['updates_parameter'] is None:
      losses_passed &= bool((difference <= loss_atol + loss_rtol * np.abs(want)).all())
    else:
      worst_l2 = max(worst_l2, float(np.linalg.norm(difference) / max(
          np.linalg.norm(want), atol)))
  return {'checked': True, 'passed': not failures, 'losses_passed': losses_passed,
          'strict_tolerance': STRICT_TOLERANCE, 'loss_tolerance': (loss_rtol, loss_atol),
          'max_relative_difference': worst, 'max_relative_l2_difference': worst_l2,
          'failed_outputs': failures}


def run_export(directory: str, calls: int, warmup: int):
  """Compiles, checks and times one export; returns its result dict."""
  manifest, proto, arrays = load_export(directory)
  backend = jax.extend.backend.get_backend()
  device = backend.local_devices()[0]
  started = time.perf_counter()
  executable = compile_module(proto, backend)
  compile_s = time.perf_counter() - started
  updates = {i: spec['updates_parameter'] for i, spec in enumerate(manifest['outputs'])
             if spec['updates_parameter'] is not None}

  def call(arguments):
    outputs = executable.execute(arguments)
    for output in outputs:
      output.block_until_ready()
    next_arguments = list(arguments)
    for output_index, parameter in updates.items():
      next_arguments[parameter] = outputs[output_index]
    return outputs, next_arguments

  outputs, arguments = call(_device_arrays(arrays, device))
  result = dict(name=os.path.basename(os.path.normpath(directory)), config=manifest['config'],
                platform=backend.platform, device=str(device), compile_s=compile_s,
                check=check([np.asarray(o) for o in outputs], manifest, directory))
  for _ in range(warmup):
    _, arguments = call(arguments)
  started = time.perf_counter()
  for _ in range(calls):
    _, arguments = call(arguments)
  seconds = time.perf_counter() - started
  k = manifest['config']['steps_per_call']
  result.update(calls=calls, seconds=seconds, steps_per_s=k * calls / seconds if calls else None)
  if manifest.get('tensorflow_xla_steps_per_s'):
    result['tensorflow_xla_steps_per_s'] = manifest['tensorflow_xla_steps_per_s']
  return result


def export_directories(path: str, only: str):
  """The export directories at `path` (one export, or a grid's folder), names containing
  the regular expression `only`, in the grid's order (`index.json`, most important first) or by name."""
  if os.path.exists(os.path.join(path, 'manifest.json')):
    return [path]
  index = os.path.join(path, 'index.json')
  if os.path.exists(index):
    with open(index) as f:
      names = json.load(f)
  else:
    names = sorted(os.listdir(path))
  return [os.path.join(path, name) for name in names
          if os.path.exists(os.path.join(path, name, 'manifest.json')) and re.search(only, name)]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('path', help='an export directory, or a folder of them')
  parser.add_argument('--calls', type=int, default=5, help='timed calls per export')
  parser.add_argument('--warmup', type=int, default=1, help='untimed calls after the check')
  parser.add_argument('--only', default='', help='run exports whose name matches this regex')
  parser.add_argument('--output_json', help='also write the results here (after each export)')
  parser.add_argument('--time_budget_s', type=float, default=float('inf'),
                      help='start no export after this many seconds')
  args = parser.parse_args(argv)
  results, started = [], time.perf_counter()
  print(f'jax {jax.__version__}, backend {jax.extend.backend.get_backend().platform}, '
        f'devices {jax.devices()}', flush=True)
  print(f'{"export":<44} {"compile s":>9} {"steps/s":>9} {"TF XLA":>8}  check')
  directories = export_directories(args.path, args.only)
  for directory in directories:
    if time.perf_counter() - started > args.time_budget_s:
      print(f'time budget spent: {len(directories) - len(results)} exports not run')
      break
    result = run_export(directory, args.calls, args.warmup)
    results.append(result)
    if args.output_json:
      with open(args.output_json, 'w') as f:
        json.dump(dict(jax_version=jax.__version__, results=results), f, indent=1)
    checked = result['check']
    if not checked['checked']:
      verdict = 'not checked'
    else:
      verdict = ('ok' if checked['passed'] else
                 'losses ok' if checked['losses_passed'] else 'FAILED')
      verdict += (f' {checked["max_relative_difference"]:.1e}'
                  f' L2 {checked["max_relative_l2_difference"]:.1e}')
    tf_rate = result.get('tensorflow_xla_steps_per_s')
    print(f'{result["name"]:<44} {result["compile_s"]:9.1f} {result["steps_per_s"]:9.1f} '
          f'{tf_rate if tf_rate else float("nan"):8.1f}  {verdict}', flush=True)
  print(json.dumps(dict(jax_version=jax.__version__, results=results)))
  return 0 if all(r['check'].get('losses_passed', True) for r in results) else 1


if __name__ == '__main__':
  sys.exit(main())
