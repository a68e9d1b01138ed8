r"""Runs exports of `benchmarks.xla_export` with JAX alone: checks them, times them, prints JSON.

NumPy and JAX only (no TensorFlow, no cql_sac), for Python 3.11 here and the GPU machine's 3.12:
the exported HloModuleProto is converted to StableHLO (`hlo_to_stablehlo`), compiled for
JAX's default backend and executed through PJRT. For each export directory it

  1. compiles the module (seconds reported);
  2. runs one call from the exported arguments and compares every output (losses [K] and the
     updated variables) with TensorFlow's own XLA outputs (`reference.npz`), elementwise:
     |x - ref| <= atol + rtol·|ref|, with the tolerance of the backend (`TOLERANCES`: CPU
     1e-5; a GPU may run float32 matmuls in TF32, so its difference is reported and the
     `_highest` exports compiled with HIGHEST precision are the like-for-like check;
     bfloat16 exports on their losses, `BFLOAT16_TOLERANCE`);
  3. times `--calls` further calls that train on, each call's updated variables feeding the
     next (what a training loop does; only the aliased variables are donated, the dataset
     stays on the device), after `--warmup` untimed calls; steps/s = K·calls / seconds.

    python benchmarks/xla_run.py runs/xla [--calls=5] [--output_json=out.json] [--only=k10]
        [--time_budget_s=420]

`jax_enable_x64` is on (the train step counter and seeds are int64). Exit status 1 when a
check fails.
"""

import argparse
import gzip
import json
import os
import sys
import time

import jax
import jax.extend
import numpy as np

jax.config.update('jax_enable_x64', True)
from jax._src.lib import xla_client  # pylint: disable=g-import-not-at-top

# (rtol, atol) of the elementwise check per backend platform, float32 exports.
TOLERANCES = {'cpu': (1e-5, 1e-6), 'gpu': (1e-5, 1e-6), 'cuda': (1e-5, 1e-6),
              'rocm': (1e-5, 1e-6)}
# bfloat16 critic matmuls round differently under another XLA build (fusions change where
# float32 values are rounded to bfloat16's 8 bits, and Adam's first updates, about lr·sign(g),
# flip with the sign of near-zero gradients): the losses are checked with this (rtol, atol)
# and the variables' largest difference, relative to each variable's scale, is reported.
BFLOAT16_TOLERANCE = (1e-2, 1e-4)


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


def check(outputs, manifest, directory: str, platform: str):
  """Compares one call's outputs with TensorFlow's reference; a result dict."""
  reference = manifest.get('reference')
  if not reference:
    return {'checked': False}
  expected = np.load(os.path.join(directory, reference['file']))
  bfloat16 = manifest['config'].get('compute_dtype') == 'bfloat16'
  rtol, atol = BFLOAT16_TOLERANCE if bfloat16 else TOLERANCES.get(platform, (1e-5, 1e-6))
  worst, worst_variable, failures = 0.0, 0.0, []
  for index, (output, spec) in enumerate(zip(outputs, manifest['outputs'])):
    want = expected[f'o{index:04d}']
    got = np.asarray(output).reshape(-1)[:want.size].reshape(want.shape)
    if spec['dtype'] not in ('float32', 'float64', 'bfloat16'):
      if not np.array_equal(got, want):
        failures.append(spec['name'])
      continue
    difference = np.abs(got.astype(np.float64) - want.astype(np.float64))
    if bfloat16 and spec['updates_parameter'] is not None:
      scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
      worst_variable = max(worst_variable, float(difference.max(initial=0.0)) / scale)
      continue
    relative = difference / np.maximum(np.abs(want), atol / rtol)
    worst = max(worst, float(relative.max(initial=0.0)))
    if (difference > atol + rtol * np.abs(want)).any():
      failures.append(spec['name'])
  result = {'checked': True, 'rtol': rtol, 'atol': atol, 'max_relative_difference': worst,
            'failed_outputs': failures, 'passed': not failures}
  if bfloat16:
    result['checked_outputs'] = 'losses'
    result['max_variable_difference_of_scale'] = worst_variable
  return result


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
                check=check([np.asarray(o) for o in outputs], manifest, directory,
                            backend.platform))
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
  `only`, in the grid's order (`index.json`, most important first) or by name."""
  if os.path.exists(os.path.join(path, 'manifest.json')):
    return [path]
  index = os.path.join(path, 'index.json')
  if os.path.exists(index):
    with open(index) as f:
      names = json.load(f)
  else:
    names = sorted(os.listdir(path))
  return [os.path.join(path, name) for name in names
          if os.path.exists(os.path.join(path, name, 'manifest.json')) and only in name]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('path', help='an export directory, or a folder of them')
  parser.add_argument('--calls', type=int, default=5, help='timed calls per export')
  parser.add_argument('--warmup', type=int, default=1, help='untimed calls after the check')
  parser.add_argument('--only', default='', help='run exports whose name contains this')
  parser.add_argument('--output_json', help='also write the results here (after each export)')
  parser.add_argument('--time_budget_s', type=float, default=float('inf'),
                      help='start no export after this many seconds')
  args = parser.parse_args(argv)
  results, started = [], time.perf_counter()
  print(f'jax {jax.__version__}, backend {jax.extend.backend.get_backend().platform}, '
        f'devices {jax.devices()}', flush=True)
  print(f'{"export":<44} {"compile s":>9} {"steps/s":>9} {"TF XLA":>8} {"check":>22}')
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
    verdict = ('not checked' if not checked['checked'] else
               f'{"ok" if checked["passed"] else "FAILED"} {checked["max_relative_difference"]:.1e}')
    tf_rate = result.get('tensorflow_xla_steps_per_s')
    print(f'{result["name"]:<44} {result["compile_s"]:9.1f} {result["steps_per_s"]:9.1f} '
          f'{tf_rate if tf_rate else float("nan"):8.1f} {verdict:>22}', flush=True)
  print(json.dumps(dict(jax_version=jax.__version__, results=results)))
  return 0 if all(r['check'].get('passed', True) for r in results) else 1


if __name__ == '__main__':
  sys.exit(main())
