"""Train-step speed of CQL-SAC paths, against tf_agents' CqlSacAgent, in one run.

HalfCheetah shapes (observation 17, action 6), batch 256, N=10 CQL samples,
actor 256x256, critics 256x256 and the reference's 256x256x256. For each
critic size it times, as the median of --repeats timed runs after a warm-up:

  reference          tf_agents' CqlSacAgent, `agent.train` in a tf.function
  reference_learner  the same inside tf_agents' Learner (its tf.while_loop)
  single             cql_sac's CqlSacAgent, `agent.train` in a tf.function
  fused_K            cql_sac's FusedLearner, K steps per call (float32)
  fused_K_xla        the same compiled with XLA
  fused_K_bf16       the same with bfloat16 critic matmuls
  reverb_K[_bf16]    end to end: Reverb replay -> stacked batches -> FusedLearner
  in_memory_K        end to end from the in-memory tf.data sampler
  in_loop_K[_bf16]   end to end, each batch sampled inside the compiled loop
                     (`FusedLearner.train_on_replay`, `train_eval.sample_in_loop`)
  option_*_K         fused_K with one anchor option on: `next_state` (3N CQL samples,
                     CORL/JaxCQL), `max_backup` (max-target backup over N samples),
                     `critics5` (an ensemble of C = 5 critics, JRL)

plus a large float32 (and bfloat16) matmul, the device's reachable FLOP/s.
The repeats go round-robin over all paths, so drifting background load
affects every path alike (the ratios stay fair on a shared machine).
Each path's FLOP/s is the algorithm's FLOPs per step (`step_flops`, about
5.1 GFLOP with 256x256 critics) times its steps/s. Each path's CPU time per step (all
threads of this process) is reported too: on a shared virtual machine it moves less with
other tenants' load than wall time does. Prints a table and JSON; not a test.

  python -m benchmarks.speed [--repeats=3] [--critic_sizes=256x256,256x256x256]
      [--fused_k=1,10,100,1000] [--only=REGEX] [--output_json=benchmarks/results/speed.json]
"""

import json
import os
import re
import statistics
import tempfile
import time
from typing import Callable, Dict, Tuple

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from tf_agents.agents.cql import cql_sac_agent as reference_cql
from tf_agents.train import learner as tf_agents_learner

from benchmarks import data_throughput
from benchmarks import kumar20_agent
from cql_sac import learner as learner_lib
from cql_sac.agents import cql_sac_agent
from cql_sac.datasets import replay as replay_lib

_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed runs per path (median).')
_CRITIC_SIZES = flags.DEFINE_list('critic_sizes', ['256x256', '256x256x256'],
                                  'Critic hidden layers, e.g. 256x256.')
_FUSED_K = flags.DEFINE_list('fused_k', ['1', '10', '100', '1000'],
                             'Steps per call of the fused learner.')
_E2E_K = flags.DEFINE_integer('end_to_end_k', 100, 'K of the end-to-end paths.')
_STEPS = flags.DEFINE_integer('min_steps', 60, 'Minimum train steps per timed run.')
_DATASET_EPISODES = flags.DEFINE_integer(
    'dataset_episodes', 100, 'Episodes of 1000 transitions in the replay.')
_OUTPUT = flags.DEFINE_string('output_json', None, 'Also write the JSON here.')
_ONLY = flags.DEFINE_string('only', None, 'Time only the paths whose name matches this regex '
                            '(the reference is always timed).')

BATCH = 256
N, OBS, ACT = (kumar20_agent.NUM_CQL_SAMPLES, kumar20_agent.OBSERVATION_DIM,
               kumar20_agent.ACTION_DIM)
make_agent = kumar20_agent.make_agent


def _batch(agent, seed=0):
  """A random Trajectory [B, 2] with the agent's collect spec."""
  rng = np.random.default_rng(seed)
  b = BATCH
  return agent.collect_data_spec._replace(
      step_type=tf.ones([b, 2], tf.int32),
      observation=tf.constant(rng.normal(size=(b, 2, OBS)), tf.float32),
      action=tf.constant(rng.uniform(-0.9, 0.9, (b, 2, ACT)), tf.float32),
      policy_info=(), next_step_type=tf.ones([b, 2], tf.int32),
      reward=tf.constant(rng.normal(size=(b, 2)), tf.float32),
      discount=tf.ones([b, 2]))


def _mlp_macs(widths) -> int:
  """Multiply-adds of one row through dense layers widths[0] -> ... -> widths[-1]."""
  return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def step_flops(critic_layers, num_critics: int = 2, next_state_samples: bool = False,
               max_backup_samples: int = 1) -> float:
  """Float operations of one CQL-SAC train step's algorithm (2 per multiply-add).

  The same count for every path (the work the math needs, not what an
  implementation spends): the critic step runs the C critics forward and
  backward (3x forward) on B(2N+1) rows (B(3N+1) with next-state samples) and the
  target critics forward on B rows (B·M with a max backup over M samples); the actor
  step runs the actor and, to the actions, the C critics on B rows forward and
  backward; the policy is evaluated on B rows four times (next states, CQL samples,
  actor and alpha steps; five with next-state samples) and differentiated once.
  Elementwise work is left out.
  """
  critic = _mlp_macs((OBS + ACT,) + tuple(critic_layers) + (1,))
  actor = _mlp_macs((OBS, 256, 256, 2 * ACT))
  c = num_critics
  rows = BATCH * ((3 if next_state_samples else 2) * N + 1)
  macs = (3 * c * critic * rows + c * critic * BATCH * max_backup_samples  # critic step
          + 3 * c * critic * BATCH  # actor step through the critics
          + (4 + int(next_state_samples) + 2) * actor * BATCH)  # policy evaluations, backward
  return 2.0 * macs


# The anchor options timed as `option_<name>_K`: (agent arguments, `step_flops` arguments).
OPTION_PATHS = {
    'next_state': (dict(cql_next_state_samples=True), dict(next_state_samples=True)),
    'max_backup': (dict(max_target_backup=True), dict(max_backup_samples=N)),
    'critics5': (dict(num_critics=5), dict(num_critics=5)),
}


def _loop(call, steps_per_call):
  """A run of at least --min_steps train steps; returns the steps it did."""
  calls = max(1, -(-_STEPS.value // steps_per_call))

  def run():
    for _ in range(calls):
      result = call()
    tf.nest.map_structure(lambda x: x.numpy(), result)
    return calls * steps_per_call
  return run


def _round_robin(runs: Dict[str, Callable[[], int]], repeats: int
                 ) -> Dict[str, Tuple[float, float]]:
  """(median steps/s, median CPU ms per step) of each run; repeats interleave the runs, so
  drifting background load affects all of them alike.

  CPU time is this process's (all threads, `time.process_time`): on a virtual machine it
  leaves out the time the host gave the cores to others, so it varies less than the rate.
  """
  for name, run in runs.items():  # Warm-up: tracing, compilation, prefetch.
    run()
    print(f'  warmed up {name}', flush=True)
  rates = {name: [] for name in runs}
  cpu_ms = {name: [] for name in runs}
  for _ in range(repeats):
    for name, run in runs.items():
      start, cpu_start = time.perf_counter(), time.process_time()
      steps = run()
      rates[name].append(steps / (time.perf_counter() - start))
      cpu_ms[name].append((time.process_time() - cpu_start) * 1e3 / steps)
  return {name: (statistics.median(rates[name]), statistics.median(cpu_ms[name]))
          for name in runs}


def _matmul_run(dtype) -> Callable[[], int]:
  """Five 4096x4096 matmuls per run."""
  a = tf.cast(tf.random.normal([4096, 4096]), dtype)
  matmul = tf.function(lambda a: tf.reduce_sum(tf.cast(a @ a, tf.float32)))

  def run():
    for _ in range(5):
      result = matmul(a)
    result.numpy()
    return 5
  return run


def _critic_size_runs(critic_layers, replays, work_dir: str) -> Dict[str, Callable]:
  """Every path's run for one critic size, keyed by path name; the Learner writes under
  `work_dir`."""
  runs = {}
  reference = make_agent(reference_cql.CqlSacAgent, critic_layers)
  experience = _batch(reference)
  runs['reference'] = _loop(
      lambda f=tf.function(reference.train): f(experience), 1)

  reference = make_agent(reference_cql.CqlSacAgent, critic_layers)
  dataset = tf.data.Dataset.from_tensors((experience, tf.zeros([]))).repeat()
  learner = tf_agents_learner.Learner(
      os.path.join(work_dir, 'x'.join(map(str, critic_layers))),
      reference.train_step_counter, reference,
      experience_dataset_fn=lambda: dataset, summary_interval=10**9,
      run_optimizer_variable_init=False)
  k = _E2E_K.value
  runs['reference_learner'] = _loop(lambda: learner.run(iterations=k), k)

  ours = tf.function(make_agent(cql_sac_agent.CqlSacAgent, critic_layers).train)
  runs['single'] = _loop(lambda: ours(experience), 1)

  variants = [(int(k), False, 'float32') for k in _FUSED_K.value]
  variants += [(_E2E_K.value, True, 'float32'),
               (_E2E_K.value, False, 'bfloat16')]
  for k, jit, dtype in variants:
    fused = learner_lib.FusedLearner(
        make_agent(cql_sac_agent.CqlSacAgent, critic_layers, dtype), k,
        jit_compile=jit)
    stacked = tf.nest.map_structure(lambda x, k=k: tf.stack([x] * k),
                                    experience)
    name = f'fused_{k}' + ('_xla' if jit else '') + (
        '_bf16' if dtype == 'bfloat16' else '')
    runs[name] = _loop(lambda f=fused, x=stacked: f.train(x), k)

  for source, dtype in (('reverb', 'float32'), ('reverb', 'bfloat16'),
                        ('in_memory', 'float32')):
    fused = learner_lib.FusedLearner(
        make_agent(cql_sac_agent.CqlSacAgent, critic_layers, dtype), k)
    iterator = iter(learner_lib.stack_batches(
        replays[source].as_dataset(BATCH, prefetch=2), k, prefetch=1))
    name = f'{source}_{k}' + ('_bf16' if dtype == 'bfloat16' else '')
    runs[name] = _loop(lambda f=fused, it=iterator: f.run(it), k)

  for dtype in ('float32', 'bfloat16'):
    fused = learner_lib.FusedLearner(
        make_agent(cql_sac_agent.CqlSacAgent, critic_layers, dtype), k)
    name = f'in_loop_{k}' + ('_bf16' if dtype == 'bfloat16' else '')
    runs[name] = _loop(
        lambda f=fused: f.train_on_replay(replays['in_memory'], BATCH, k), k)

  for option, (agent_options, _) in OPTION_PATHS.items():
    fused = learner_lib.FusedLearner(
        make_agent(cql_sac_agent.CqlSacAgent, critic_layers, **agent_options), k)
    stacked = tf.nest.map_structure(lambda x: tf.stack([x] * k), experience)
    runs[f'option_{option}_{k}'] = _loop(lambda f=fused, x=stacked: f.train(x), k)
  return runs


def _path_flops(critic_layers, path: str) -> float:
  """`step_flops` of a path: the options' work for `option_*` paths."""
  option = re.match(r'option_(.+)_\d+$', path)
  return step_flops(critic_layers, **(OPTION_PATHS[option.group(1)][1] if option else {}))


def main(_):
  print(f'devices: {[d.name for d in tf.config.list_logical_devices()]}')
  episodes = data_throughput.halfcheetah_shaped_steps(_DATASET_EPISODES.value)
  replays = {'reverb': replay_lib.build_replay(episodes),
             'in_memory': replay_lib.build_in_memory_replay(episodes)}
  runs = {'matmul_float32': _matmul_run(tf.float32),
          'matmul_bfloat16': _matmul_run(tf.bfloat16)}
  with tempfile.TemporaryDirectory() as work_dir:
    for size in _CRITIC_SIZES.value:
      critic_layers = tuple(int(w) for w in size.split('x'))
      for name, run in _critic_size_runs(critic_layers, replays, work_dir).items():
        if name == 'reference' or not _ONLY.value or re.search(_ONLY.value, name):
          runs[(critic_layers, name)] = run
    rates = _round_robin(runs, _REPEATS.value)
  matmul = {dtype: rates.pop(f'matmul_{dtype}')[0] * 2 * 4096**3 / 1e9
            for dtype in ('float32', 'bfloat16')}
  print(f'matmul 4096^2: float32 {matmul["float32"]:.0f} GFLOP/s, '
        f'bfloat16 {matmul["bfloat16"]:.0f} GFLOP/s')
  rows = [dict(path=name, critic=critic_layers, steps_per_s=rate, cpu_ms_per_step=cpu_ms,
               step_gflop=_path_flops(critic_layers, name) / 1e9,
               gflops=rate * _path_flops(critic_layers, name) / 1e9)
          for (critic_layers, name), (rate, cpu_ms) in rates.items()]
  for replay in replays.values():
    replay.close()

  print(f'\n{"critic":<12} {"path":<22} {"steps/s":>9} {"x ref":>7} {"GFLOP/step":>10} '
        f'{"GFLOP/s":>8} {"of matmul":>9} {"CPU ms/step":>12} {"ref CPU / CPU":>13}')
  for row in rows:
    ref = next(r for r in rows if r['critic'] == row['critic']
               and r['path'] == 'reference')
    row['ratio_to_reference'] = row['steps_per_s'] / ref['steps_per_s']
    row['cpu_ratio_to_reference'] = ref['cpu_ms_per_step'] / row['cpu_ms_per_step']
    peak = matmul['bfloat16' if row['path'].endswith('bf16') else 'float32']
    row['fraction_of_matmul'] = row['gflops'] / peak
    size = 'x'.join(map(str, row['critic']))
    print(f'{size:<12} {row["path"]:<22} {row["steps_per_s"]:9.1f} '
          f'{row["ratio_to_reference"]:7.2f} {row["step_gflop"]:10.2f} {row["gflops"]:8.1f} '
          f'{row["fraction_of_matmul"]:9.2f} {row["cpu_ms_per_step"]:12.1f} '
          f'{row["cpu_ratio_to_reference"]:13.2f}')
  result = dict(device=os.uname().machine, cpu_count=os.cpu_count(),
                gpus=[d.name for d in tf.config.list_logical_devices('GPU')],
                batch_size=BATCH, num_cql_samples=N,
                matmul_gflops=matmul, rows=rows)
  print(json.dumps(result))
  if _OUTPUT.value:
    os.makedirs(os.path.dirname(_OUTPUT.value) or '.', exist_ok=True)
    with open(_OUTPUT.value, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
