r"""Exports the compiled K-step CQL-SAC learner as XLA HLO, with its arguments and TF's outputs.

TensorFlow side of the GPU measurement (runs here; `benchmarks/xla_run.py` runs the export with
JAX alone, where TensorFlow cannot go). For every configuration of the grid (critic sizes x
batch sizes x compute dtypes x K x precisions) it builds `FusedLearner`'s loop, compiled with
XLA (`tf.function(jit_compile=True)`), for a D4RL environment's shapes, and writes
`<output_dir>/<config>/`:

  module.hlo.pb.gz   the HloModuleProto (`experimental_get_compiler_ir(stage='hlo_serialized')`)
  index.json         (in <output_dir>) every configuration's name in the order of export,
                     which `xla_run.py` follows: list the most important values first
  manifest.json      the configuration; every HLO parameter in order (name, shape, dtype, the
                     array file holding its value) and every output (name, shape, dtype, the
                     parameter it updates in place); TensorFlow's own XLA steps/s
  reference.npz      TensorFlow's XLA outputs after one call from those arguments (losses
                     [K] and every updated variable; with --reference_elements, each output's
                     first elements only), for K <= --reference_max_k

Arguments are the agent's variables (networks, Adam slots, log α, train step, seed) and either
the whole dataset (`--sampling=in_loop`: each step samples its batch inside the loop with the
agent's stateless RNG, `FusedLearner.train_on_replay`) or K stacked batches (`stacked`). Arrays
are stored once under `<output_dir>/arrays/<sha1>.npy` and shared by every configuration that
uses them (the dataset, the initial variables of one network size, zero Adam slots).

K is a compile-time constant of the module (the loop's loss arrays have K entries), so each K
is its own export. `--precisions=highest` exports the float32 matmuls with HIGHEST precision
(TensorFlow lowers them so when TensorFloat-32 is off), the variant to compare with a GPU's
TF32 default.

    python -m benchmarks.xla_export --output_dir=runs/xla --critics=256x256,256x256x256 \
        --batch_sizes=256,1024 --compute_dtypes=float32,bfloat16 --steps_per_call=1,10,100,1000
"""

import gzip
import hashlib
import itertools
import json
import os
import re
import time
from typing import Dict, List, Sequence

import gin
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from tf_agents.utils import nest_utils

from benchmarks import data_throughput
from benchmarks import kumar20_agent
from cql_sac import learner as learner_lib
from cql_sac.agents import cql_sac_agent
from cql_sac import tasks as d4rl
from cql_sac.datasets import replay as replay_lib

FORMAT_VERSION = 1
# HLO element types of the arrays that can be arguments or outputs, as NumPy dtype names.
HLO_DTYPES = {'f32': 'float32', 'f64': 'float64', 's32': 'int32', 's64': 'int64',
              'u32': 'uint32', 'u64': 'uint64', 'pred': 'bool', 'bf16': 'bfloat16'}
_SHAPE = re.compile(r'(\w+)\[([\d,]*)\]')


def parse_shapes(layout: str) -> List[Dict]:
  """Shapes and dtypes of one side of an HLO entry computation layout.

  Args:
    layout: e.g. '(f32[3]{0}, s32[], s64[])' (parameters or the result tuple).

  Returns:
    [{'dtype': NumPy dtype name, 'shape': [dims]}, ...] in order.

  Raises:
    ValueError: for an element type outside `HLO_DTYPES`.
  """
  shapes = []
  for element_type, dims in _SHAPE.findall(layout):
    if element_type not in HLO_DTYPES:
      raise ValueError(f'HLO element type {element_type} has no NumPy dtype here; extend '
                       'HLO_DTYPES.')
    shapes.append({'dtype': HLO_DTYPES[element_type],
                   'shape': [int(d) for d in dims.split(',') if d]})
  return shapes


def module_signature(hlo_text: str):
  """(parameter shapes, output shapes, {output index: parameter index}) of an HLO module.

  Args:
    hlo_text: the module as text (`stage='hlo'`): its header holds `input_output_alias` and
      `entry_computation_layout={(params)->(outputs)}`.
  """
  header = hlo_text.split('\n', 1)[0]
  layout = re.search(r'entry_computation_layout=\{\((.*)\)->\((.*)\)\}', header)
  aliases = {int(output): int(parameter) for output, parameter in
             re.findall(r'\{(\d+)\}: \((\d+), \{\}', header)}
  return parse_shapes(layout.group(1)), parse_shapes(layout.group(2)), aliases


class ArrayStore:
  """Writes arrays once, under `<root>/arrays/<sha1 of dtype, shape and bytes>.npy`."""

  def __init__(self, root: str):
    self.root = root
    os.makedirs(os.path.join(root, 'arrays'), exist_ok=True)

  def put(self, array: np.ndarray) -> str:
    """Stores `array` (unless already there); returns its path relative to the root."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha1(f'{array.dtype.str}{array.shape}'.encode() + array.tobytes())
    relative = os.path.join('arrays', digest.hexdigest() + '.npy')
    path = os.path.join(self.root, relative)
    if not os.path.exists(path):
      np.save(path, array)
    return relative


def _variables_by_handle(agent) -> Dict[int, tf.Variable]:
  """id(handle) -> variable, for every variable the agent's train step can touch."""
  variables = list(agent.variables) + [agent.train_step_counter]
  for optimizer in (agent._actor_optimizer, agent._critic_optimizer,  # pylint: disable=protected-access
                    agent._alpha_optimizer, getattr(agent, '_cql_alpha_optimizer', None)):  # pylint: disable=protected-access
    if optimizer is not None:
      variables += list(optimizer.variables() if callable(optimizer.variables)
                        else optimizer.variables)
      # Keras' OptimizerV2 keeps learning_rate, beta_1 and beta_2 as variables of its own.
      variables += [v for v in getattr(optimizer, '_hyper', {}).values()
                    if isinstance(v, tf.Variable)]
  return {id(v.handle): v for v in variables}


def _named_inputs(function, args, agent) -> List:
  """[(name, tensor or variable)] of the compiled loop's inputs, in HLO parameter order.

  The loop's tensor arguments (the data, flattened with their nest paths, and K), then what it
  captures: the agent's variables (by name) and any captured tensor.

  Raises:
    ValueError: if the loop captures a variable the agent does not own.
  """
  concrete = function.get_concrete_function(*args)
  data, num_steps = args[0], args[-1]
  inputs = [(f'data/{path}', tensor)
            for path, tensor in nest_utils.flatten_with_joined_paths(data)]
  inputs.append(('num_steps', num_steps))
  by_handle = _variables_by_handle(agent)
  for index, capture in enumerate(concrete.captured_inputs):
    if capture.dtype == tf.resource:
      variable = by_handle.get(id(capture))
      if variable is None:
        raise ValueError(f'Captured variable {index} of the loop is not one of the agent\'s.')
      inputs.append((variable.name, variable))
    else:
      inputs.append((f'captured_tensor_{index}', capture))
  seen = {}
  for index, (name, value) in enumerate(inputs):  # The four critics share layer names.
    seen[name] = seen.get(name, 0) + 1
    if seen[name] > 1:
      inputs[index] = (f'{name}#{seen[name] - 1}', value)
  return inputs


def export(fused: learner_lib.FusedLearner, sampling: str, data, batch_size: int,
           num_steps: int, directory: str, store: ArrayStore, config: Dict,
           reference_max_k: int, reference_elements: int, time_calls: int) -> Dict:
  """Writes one configuration's module, manifest and reference (module docstring).

  Args:
    fused: a `FusedLearner` with `jit_compile=True` over a fresh agent.
    sampling: 'in_loop' (data: `ReplayTensors`) or 'stacked' (data: Trajectory [K, B, 2]).
    data: the loop's data argument.
    batch_size: B (used by 'in_loop').
    num_steps: K.
    directory: where the files go.
    store: the shared `ArrayStore`.
    config: the configuration, written into the manifest.
    reference_max_k: the largest K that gets a reference.
    reference_elements: 0 for full reference outputs, else the first elements of each.
    time_calls: timed TensorFlow XLA calls after the reference one (0: none).

  Returns:
    The manifest.

  Raises:
    ValueError: if the module's parameters do not match the loop's inputs.
  """
  os.makedirs(directory, exist_ok=True)
  if sampling == 'in_loop':
    function = fused.sampled_train_steps
    args = (data, batch_size, tf.constant(num_steps))
  else:
    function = fused.stacked_train_steps
    args = (data, tf.constant(num_steps))
  compiler_ir = function.experimental_get_compiler_ir(*args)
  parameter_shapes, output_shapes, aliases = module_signature(compiler_ir(stage='hlo'))
  inputs = _named_inputs(function, args, fused.agent)
  if len(inputs) == len(parameter_shapes) + 1:  # K became a compile-time constant.
    inputs = [(name, value) for name, value in inputs if name != 'num_steps']
  parameters = []
  for (name, value), shape in zip(inputs, parameter_shapes):
    array = value.numpy()
    if list(array.shape) != shape['shape'] or array.dtype.name != shape['dtype']:
      raise ValueError(f'HLO parameter {len(parameters)} is {shape}, but the loop input '
                       f'{name} is {array.dtype.name}{list(array.shape)}.')
    parameters.append(dict(name=name, file=store.put(array), **shape))
  if len(parameters) != len(parameter_shapes):
    raise ValueError(f'{len(parameter_shapes)} HLO parameters, {len(inputs)} loop inputs.')
  with gzip.open(os.path.join(directory, 'module.hlo.pb.gz'), 'wb') as f:
    f.write(compiler_ir(stage='hlo_serialized'))

  loss_names = [f'loss/{path}' for path, _ in nest_utils.flatten_with_joined_paths(
      function.get_concrete_function(*args).structured_outputs)]
  outputs = []
  for index, shape in enumerate(output_shapes):
    updates = aliases.get(index)
    name = parameters[updates]['name'] if updates is not None else loss_names[index]
    outputs.append(dict(name=name, updates_parameter=updates, **shape))

  manifest = dict(format_version=FORMAT_VERSION, config=config, parameters=parameters,
                  outputs=outputs, reference=None)
  if num_steps <= reference_max_k:
    losses = function(*args)  # TensorFlow's own XLA executable, from the saved arguments.
    values = [np.asarray(x) for x in tf.nest.flatten(losses)] + [
        inputs[out['updates_parameter']][1].numpy() for out in outputs
        if out['updates_parameter'] is not None]
    if reference_elements:
      values = [v.reshape(-1)[:reference_elements] for v in values]
    np.savez(os.path.join(directory, 'reference.npz'),
             **{f'o{i:04d}': v for i, v in enumerate(values)})
    manifest['reference'] = dict(file='reference.npz', elements=reference_elements or None)
  if time_calls:
    function(*args)[0].numpy()  # Warm (compiles if the reference did not).
    start = time.perf_counter()
    for _ in range(time_calls):
      result = function(*args)
    result[0].numpy()
    manifest['tensorflow_xla_steps_per_s'] = time_calls * num_steps / (
        time.perf_counter() - start)
  with open(os.path.join(directory, 'manifest.json'), 'w') as f:
    json.dump(manifest, f, indent=1)
  return manifest


def _layers(text: str) -> tuple:
  return tuple(int(w) for w in text.split('x'))


def export_grid(output_dir: str, env_name: str, actor: str, critics: Sequence[str],
                batch_sizes: Sequence[int], compute_dtypes: Sequence[str],
                steps_per_call: Sequence[int], precisions: Sequence[str], sampling: str,
                num_cql_samples: int, dataset_episodes: int, reference_max_k: int,
                reference_elements: int, time_calls: int, seed: int = 0) -> List[str]:
  """Exports every configuration of the grid; returns their directory names.

  Args mirror the flags. 'highest' precision is exported for float32 critics only (bfloat16
  matmuls have no TF32 mode).
  """
  info = d4rl.get_dataset_info(env_name)  # The shapes, without building the simulator.
  observation_dim, action_dim = info.observation_dim, info.action_dim
  steps = data_throughput.halfcheetah_shaped_steps(
      dataset_episodes, seed, observation_dim=observation_dim, action_dim=action_dim)
  replay = replay_lib.build_in_memory_replay(steps)
  store = ArrayStore(output_dir)
  names = []
  for critic, batch_size, dtype, k, precision in itertools.product(
      critics, batch_sizes, compute_dtypes, steps_per_call, precisions):
    if precision == 'highest' and dtype != 'float32':
      continue
    name = f'{sampling}_c{critic}_b{batch_size}_{dtype}_k{k}' + (
        '_highest' if precision == 'highest' else '')
    tf.config.experimental.enable_tensor_float_32_execution(precision != 'highest')
    tf.keras.utils.set_random_seed(seed)  # The same initial variables for every K.
    agent = kumar20_agent.make_agent(cql_sac_agent.CqlSacAgent, _layers(critic), dtype,
                             observation_dim, action_dim, _layers(actor), num_cql_samples)
    fused = learner_lib.FusedLearner(agent, k, jit_compile=True)
    if sampling == 'in_loop':
      data = replay.tensors
    else:
      data = tf.nest.map_structure(
          lambda *x: tf.stack(x),
          *[replay_lib.sample_uniform(replay.tensors, batch_size, tf.constant([seed, i]))
            for i in range(k)])
    config = dict(env_name=env_name, observation_dim=observation_dim, action_dim=action_dim,
                  actor=actor, critic=critic, batch_size=batch_size, compute_dtype=dtype,
                  steps_per_call=k, precision=precision, sampling=sampling,
                  num_cql_samples=num_cql_samples, dataset_transitions=replay.num_items,
                  gin_config=gin.config_str())
    started = time.perf_counter()
    manifest = export(fused, sampling, data, batch_size, k, os.path.join(output_dir, name),
                      store, config, reference_max_k, reference_elements, time_calls)
    rate = manifest.get('tensorflow_xla_steps_per_s')
    print(f'{name}: {len(manifest["parameters"])} parameters, {len(manifest["outputs"])} '
          f'outputs, {time.perf_counter() - started:.0f} s'
          + (f', TensorFlow XLA {rate:.1f} steps/s' if rate else ''), flush=True)
    names.append(name)
    _add_to_index(output_dir, name)
  tf.config.experimental.enable_tensor_float_32_execution(True)
  return names


def _add_to_index(output_dir: str, name: str) -> None:
  """Appends `name` to `<output_dir>/index.json`, the order in which xla_run.py runs them."""
  path = os.path.join(output_dir, 'index.json')
  names = json.load(open(path)) if os.path.exists(path) else []
  if name not in names:
    with open(path, 'w') as f:
      json.dump(names + [name], f, indent=1)


def main(argv):
  del argv
  gin.parse_config(flags.FLAGS.gin_bindings)
  export_grid(flags.FLAGS.output_dir, flags.FLAGS.env_name, flags.FLAGS.actor,
              flags.FLAGS.critics, [int(b) for b in flags.FLAGS.batch_sizes],
              flags.FLAGS.compute_dtypes, [int(k) for k in flags.FLAGS.steps_per_call],
              flags.FLAGS.precisions, flags.FLAGS.sampling, flags.FLAGS.num_cql_samples,
              flags.FLAGS.dataset_episodes, flags.FLAGS.reference_max_k,
              flags.FLAGS.reference_elements, flags.FLAGS.time_calls)


if __name__ == '__main__':
  flags.DEFINE_string('output_dir', None, 'Directory of the export.', required=True)
  flags.DEFINE_string('env_name', 'halfcheetah-medium-v2', 'D4RL name giving the shapes.')
  flags.DEFINE_string('actor', '256x256', 'Actor hidden layers.')
  flags.DEFINE_list('critics', ['256x256'], 'Critic hidden layers, e.g. 256x256,256x256x256.')
  flags.DEFINE_list('batch_sizes', ['256'], 'Batch sizes B.')
  flags.DEFINE_list('compute_dtypes', ['float32'], 'Critic matmul dtypes (float32, bfloat16).')
  flags.DEFINE_list('steps_per_call', ['10'], 'K values (one module each).')
  flags.DEFINE_list('precisions', ['default'], "'default' and/or 'highest' (float32 only).")
  flags.DEFINE_enum('sampling', 'in_loop', ['in_loop', 'stacked'],
                    'Batches sampled inside the loop from the dataset, or K stacked batches.')
  flags.DEFINE_integer('num_cql_samples', 10, 'N.')
  flags.DEFINE_integer('dataset_episodes', 100, 'Random episodes of 1000 transitions.')
  flags.DEFINE_integer('reference_max_k', 10, 'Largest K that gets TensorFlow\'s outputs.')
  flags.DEFINE_integer('reference_elements', 0,
                       'Keep only the first elements of each reference output (0: all).')
  flags.DEFINE_integer('time_calls', 0, 'Timed TensorFlow XLA calls per configuration.')
  flags.DEFINE_multi_string('gin_bindings', [], 'Agent options, e.g. '
                            '"CqlSacAgent.softmax_temperature = 1.0".')
  app.run(main)
