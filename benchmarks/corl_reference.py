r"""CORL's own CQL code as the reference row of the quality benchmark, on the project's data.

Runs `train()` of CORL's `algorithms/offline/cql.py` (corl-team/CORL; the project pins
commit eeeeef2671235fcce3a3eb255576a207d78840e6) unmodified, in-process, on a dataset of
`--data_dir` (written by `cql_sac_make_behavior`, the data `benchmarks.quality` trains on),
evaluated in the same gymnasium MuJoCo `-v4` environment as ours, and writes beside the
quality benchmark's files in `--output_dir`:

  corl_<env>_<dataset>_<steps>[_tag].json  every curve in `benchmarks.quality`'s layout:
      {'curves': {dataset: {'corl_own_code': {seed: [[train step, D4RL normalized score],
      ...]}}}, 'rows': quality.summarize(...), 'dataset_scores', ...} plus 'corl' (checkout,
      commit, TrainConfig overrides, width) and 'runs' (per seed: every evaluation's episode
      returns, CORL's training losses every `--train_log_interval` steps, wall times, steps/s)
  corl_<env>_<dataset>_<steps>[_tag].md    `benchmarks.stability`'s table: last per seed, last
      and best (mean ± std over seeds), last / best, swing, one evaluation's noise

CORL's files are not part of this repository: pass the path of a CORL checkout (`git clone`
of corl-team/CORL, `git checkout eeeeef2`) as `--corl_dir`. The checkout's
`algorithms/offline/cql.py` and `configs/offline/cql/<env>/<dataset>_v2.yaml` are read, never
written; a checkout whose cql.py or configs differ from its git commit is refused.

Two processes, two virtual environments (CORL needs PyTorch, our data reader TensorFlow):

1. This script, run with the project's `.venv`: exports the RLDS dataset to
   `<root_dir>/<steps>[_tag]/<env>-<dataset>-v2.npz` in D4RL's `qlearning_dataset` layout (`export_dataset`:
   exactly the transitions our learner trains on), then, per seed,
2. starts `--corl_python` (default `.venv-corl/bin/python`: torch, numpy, gymnasium[mujoco],
   pyrallis) on this same file with `--run_spec`, which installs three stand-ins in
   `sys.modules` before importing CORL's cql.py (`install_shims`):
   * `d4rl`: `qlearning_dataset(env)` returns the exported transitions; the environments'
     `get_normalized_score` uses D4RL's reference returns from `cql_sac.tasks`;
   * `gym`: `gym.make('<env>-<dataset>-v2')` is the gymnasium `-v4` environment (D4RL's
     1000-step time limit) behind the old gym 0.23 API CORL speaks (`OldGymEnv`);
   * `wandb`: records what CORL logs (`WandbRecorder`), nothing is sent anywhere;
   then calls CORL's `train()` with `sys.argv` set as for `python cql.py
   --config_path=<CORL's yaml for the dataset> --<field>=<value> ...` (its `@pyrallis.wrap()`
   parses them) with the overrides below. Its stdout goes to `<run>/corl.log`, its result to
   `<run>/result.json`, with <run> = `<root_dir>/<steps>[_tag]/<env>-<dataset>-v2/seed<k>`; a
   finished seed with the same spec is reused when the script is run again. The yaml's
   buffer_size 1e7 makes CORL allocate about 2 GB per process (hopper 1.8 GB resident).

What is overridden (everything else is CORL's `configs/offline/cql/<env>/<dataset>_v2.yaml`,
e.g. for hopper and halfcheetah medium-replay: cql_alpha 10, cql_n_actions 10, policy_lr 3e-5,
qf_lr 3e-4, orthogonal_init, normalize states, no reward normalization, buffer_size 1e7):

  TrainConfig field   value                  why
  device              cpu                    no GPU here
  seed                --first_seed (0) ..    one run per seed
                      + --num_seeds - 1
  max_timesteps       --num_steps (100,000)  the reduced protocol's length
  eval_freq           --eval_interval (10,000)
  n_episodes          --eval_episodes (10)
  batch_size          --batch_size (64)      the reduced protocol's batch
  any field           --set FIELD=VALUE      e.g. --set cql_n_actions=4 (our reduced N)

and one thing that is no TrainConfig field: CORL's networks are 3 x 256 (cql.py's
`TanhGaussianPolicy` and `FullyConnectedQFunction` write `nn.Linear(..., 256)`). With
`--width` W != 256 (default 64, the reduced protocol's) the name `nn` in the imported cql.py
module is bound to a copy of `torch.nn` whose `Linear` turns every 256 in or out feature count
into W (`width_nn`); a self-check builds both networks and verifies every layer's shape.
`--width=256` leaves CORL's module untouched.

PyTorch runs on `--torch_threads` threads (default 1). On this project's 2-core machine shared
with other jobs (load ~7), CORL's update at width 64, batch 64 ran 28 steps/s on one thread and
0.46 steps/s on two (the OpenMP threads wait on each other for cores); on an idle machine 2 may
be faster: measure before changing it.

What differs from CORL's published runs, besides these overrides: the data (project-made, not
D4RL's files), the simulator (MuJoCo >= 2.3 bindings instead of mujoco-py; see
`cql_sac/envs.py`), and CORL has no evaluation at step 0 (its curves start at
`eval_interval`; ours start at 0). CORL evaluates the deterministic actor (tanh of the mean) for
`n_episodes` episodes after `env.seed(seed)`, i.e. from the same initial states each time.

    .venv/bin/python -m benchmarks.corl_reference --corl_dir=/work/corl \
        --data_dir=../shared/datasets/hopper --env=hopper --dataset=medium-replay --num_seeds=3

The PyTorch environment (not the project's .venv; gitignored):

    python3 -m venv .venv-corl
    .venv-corl/bin/pip install torch numpy 'gymnasium[mujoco]==1.4.*' pyrallis
"""

import argparse
import ast
import dataclasses
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

ALGORITHM = 'corl_own_code'
CORL_COMMIT = 'eeeeef2671235fcce3a3eb255576a207d78840e6'
CORL_SCRIPT = os.path.join('algorithms', 'offline', 'cql.py')
CORL_HIDDEN_WIDTH = 256  # cql.py's hard-coded nn.Linear(..., 256).
SCORE_KEY = 'd4rl_normalized_score'  # What cql.py's train() logs after each evaluation.
# D4RL's qlearning_dataset keys (d4rl/__init__.py), plus the timeouts of D4RL's files.
QLEARNING_KEYS = ('observations', 'actions', 'next_observations', 'rewards', 'terminals')
NPZ_KEYS = QLEARNING_KEYS + ('timeouts',)
ENVS = ('hopper', 'halfcheetah', 'walker2d')
DATASETS = ('medium', 'medium-replay', 'medium-expert', 'expert', 'random', 'full-replay')
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CORL_PYTHON = os.path.join(_REPO_ROOT, '.venv-corl', 'bin', 'python')


class CorlReferenceError(ValueError):
  """A wrong argument or checkout; the message is one line that says what to fix."""


# ----------------------------------------------------------------------------------------------
# The CORL checkout (read only; no torch, no TensorFlow).


def corl_paths(corl_dir: str, env: str, dataset: str) -> Tuple[str, str]:
  """The two CORL files a run reads.

  Args:
    corl_dir: A CORL checkout.
    env: 'hopper', 'halfcheetah' or 'walker2d'.
    dataset: D4RL dataset kind, e.g. 'medium-replay'.

  Returns:
    (path of algorithms/offline/cql.py, path of configs/offline/cql/<env>/<dataset>_v2.yaml
    with the dataset's '-' written '_', e.g. medium_replay_v2.yaml).

  Raises:
    CorlReferenceError: If either file is missing.
  """
  script = os.path.join(corl_dir, CORL_SCRIPT)
  if not os.path.isfile(script):
    raise CorlReferenceError(
        f'--corl_dir={corl_dir!r} is no CORL checkout: {CORL_SCRIPT} is not there (clone '
        f'corl-team/CORL and check out {CORL_COMMIT[:7]}).')
  config = os.path.join(corl_dir, 'configs', 'offline', 'cql', env,
                        f"{dataset.replace('-', '_')}_v2.yaml")
  if not os.path.isfile(config):
    raise CorlReferenceError(f'CORL has no CQL config for {env}-{dataset}-v2: {config} is '
                             'missing.')
  return script, config


def train_config_fields(script: str) -> Dict[str, str]:
  """The fields of CORL's `TrainConfig` dataclass, read from the source without importing it.

  Args:
    script: Path of CORL's algorithms/offline/cql.py.

  Returns:
    {field name: its annotation as source text}, in declaration order.

  Raises:
    CorlReferenceError: If the file defines no `TrainConfig` class.
  """
  with open(script) as f:
    tree = ast.parse(f.read(), script)
  for node in tree.body:
    if isinstance(node, ast.ClassDef) and node.name == 'TrainConfig':
      return {item.target.id: ast.unparse(item.annotation) for item in node.body
              if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
  raise CorlReferenceError(f'{script} defines no TrainConfig: not CORL\'s offline cql.py.')


def _git(corl_dir: str, *args: str) -> Optional[str]:
  """Output of `git -C corl_dir args`, or None where git fails (no repository, no git)."""
  try:
    return subprocess.run(['git', '-C', corl_dir, *args], check=True, capture_output=True,
                          text=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None


def corl_provenance(corl_dir: str, files: Sequence[str]) -> Dict[str, Any]:
  """Which CORL code a run uses, and a check that it is unmodified.

  Args:
    corl_dir: A CORL checkout.
    files: Paths inside it that a run reads (cql.py, the yaml).

  Returns:
    {'corl_dir': absolute path, 'commit': HEAD's hash, or None where corl_dir is not the top
    of a git work tree, 'sha256': {relative path: hex digest}}.

  Raises:
    CorlReferenceError: If git reports a change to one of `files` against HEAD.
  """
  relative = [os.path.relpath(path, corl_dir) for path in files]
  top = _git(corl_dir, 'rev-parse', '--show-toplevel')
  own = top is not None and os.path.realpath(top) == os.path.realpath(corl_dir)
  commit = _git(corl_dir, 'rev-parse', 'HEAD') if own else None  # Not an enclosing repo's.
  if commit is not None:
    changed = _git(corl_dir, 'status', '--porcelain', '--', *relative)
    if changed:
      raise CorlReferenceError(
          f'--corl_dir={corl_dir!r} is modified ({changed.splitlines()[0].strip()}); this '
          f'benchmark runs CORL\'s own code: git -C {corl_dir} checkout -- {" ".join(relative)}')
  digests = {}
  for rel in relative:
    with open(os.path.join(corl_dir, rel), 'rb') as f:
      digests[rel] = hashlib.sha256(f.read()).hexdigest()
  return {'corl_dir': os.path.abspath(corl_dir), 'commit': commit, 'sha256': digests}


def config_overrides(fields: Mapping[str, str], seed: int, num_steps: int, eval_interval: int,
                     eval_episodes: int, batch_size: int,
                     extra: Sequence[str] = ()) -> Dict[str, str]:
  """The TrainConfig values a run sets over CORL's yaml (module docstring), as pyrallis text.

  Args:
    fields: `train_config_fields` of the checkout.
    seed: CORL's `seed`.
    num_steps: `max_timesteps`, train steps.
    eval_interval: `eval_freq`, train steps between evaluations.
    eval_episodes: `n_episodes`, episodes per evaluation.
    batch_size: `batch_size`.
    extra: 'FIELD=VALUE' strings (`--set`), applied last.

  Returns:
    {TrainConfig field: value as pyrallis parses it from `--field=value`}.

  Raises:
    CorlReferenceError: For a value out of range, an `extra` without '=', or a field that
      CORL's TrainConfig does not have.
  """
  for name, value in (('num_steps', num_steps), ('eval_interval', eval_interval),
                      ('eval_episodes', eval_episodes), ('batch_size', batch_size)):
    if value < 1:
      raise CorlReferenceError(f'--{name} must be at least 1, got {value}.')
  overrides = {'device': 'cpu', 'seed': str(seed), 'max_timesteps': str(num_steps),
               'eval_freq': str(eval_interval), 'n_episodes': str(eval_episodes),
               'batch_size': str(batch_size)}
  for item in extra:
    name, sep, value = item.partition('=')
    if not sep:
      raise CorlReferenceError(f'--set {item!r}: expected FIELD=VALUE, e.g. cql_n_actions=4.')
    overrides[name.strip()] = value.strip()
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise CorlReferenceError(f'CORL\'s TrainConfig has no field {", ".join(unknown)}; it has '
                             f'{", ".join(fields)}.')
  return overrides


# ----------------------------------------------------------------------------------------------
# Step 1 (the project's .venv): the dataset in D4RL's qlearning_dataset layout.


def export_dataset(dataset_dir: str, env_name: str, output_path: str) -> Dict[str, Any]:
  """Writes the transitions our learner trains on as D4RL `qlearning_dataset` arrays.

  The transitions are `cql_sac.datasets.transitions.to_trajectory_steps`' items (every pair of
  consecutive steps of an episode; one-step episodes, which have no next observation, give
  none), i.e. the replay `train_eval` fills, without a reward shift or action clipping:

    observations       float32 [T, obs_dim]  o_t
    actions            float32 [T, A]        a_t, in [-1, 1]
    rewards            float32 [T]           r_t, environment units
    next_observations  float32 [T, obs_dim]  o_{t+1} (recorded, also after a time limit)
    terminals          bool [T]              o_{t+1} is a terminal state (RLDS discount 0)
    timeouts           bool [T]              o_{t+1} ends its episode without being terminal
                                             (time limit, or the recording's end)

  Unlike D4RL's `qlearning_dataset`, which pairs o_t with the file's next row and therefore
  drops each timed-out episode's last transition, every transition is kept with its true
  next observation: CORL trains on the same transitions as we do.

  Args:
    dataset_dir: RLDS/TFDS directory written by this project (`cql_sac.datasets.loading`).
    env_name: Its D4RL name, e.g. 'hopper-medium-replay-v2'.
    output_path: The .npz file to write (its directory is created).

  Returns:
    The metadata the CORL process needs and the JSON records: env_name, dataset_dir,
    gym_env_id, max_episode_steps, ref_min_score, ref_max_score (D4RL's, `cql_sac.tasks`),
    observation_dim, action_dim, dataset_score (mean episode return as a D4RL normalized
    score, as `benchmarks.quality` reports it), num_episodes, num_transitions, num_terminals,
    num_timeouts.

  Raises:
    ValueError: For an unknown env_name, a dataset recorded in another environment, one that
      fails `cql_sac.datasets.validation.validate_episodes`, or non-binary discounts.
  """
  # TensorFlow only here: the CORL process imports this file without it.
  from cql_sac import envs  # pylint: disable=import-outside-toplevel
  from cql_sac import tasks  # pylint: disable=import-outside-toplevel
  from cql_sac.datasets import loading  # pylint: disable=import-outside-toplevel
  from cql_sac.datasets import steps as steps_lib  # pylint: disable=import-outside-toplevel
  from cql_sac.datasets import transitions  # pylint: disable=import-outside-toplevel
  from cql_sac.datasets import validation  # pylint: disable=import-outside-toplevel
  from tf_agents.trajectories import time_step as ts  # pylint: disable=import-outside-toplevel

  info = tasks.get_dataset_info(env_name)
  recorded = loading.recorded_env_name(dataset_dir)
  if recorded is not None and recorded != env_name:
    raise ValueError(f'{dataset_dir} was recorded in {recorded}, not {env_name}.')
  steps = steps_lib.read_episode_steps(loading.load_episodes(dataset_dir), dataset_dir)
  env = envs.load_env(env_name)
  stats = validation.validate_episodes(steps, dataset_dir, env.observation_spec(),
                                       env.action_spec())
  env.close()
  converted = transitions.to_trajectory_steps(steps, pad_end_of_episodes=False)
  traj, first, second = converted.trajectory, converted.items[:, 0], converted.items[:, 1]
  discount = traj.discount[first]
  if not np.isin(discount, (0.0, 1.0)).all():
    raise ValueError(f'{dataset_dir}: discounts other than 0 and 1; D4RL\'s terminals are '
                     'binary.')
  terminals = discount == 0
  episode_ends = traj.next_step_type[first] == ts.StepType.LAST  # o_{t+1} ends the episode.
  arrays = {
      'observations': traj.observation[first].astype(np.float32),
      'actions': traj.action[first].astype(np.float32),
      'next_observations': traj.observation[second].astype(np.float32),
      'rewards': traj.reward[first].astype(np.float32),
      'terminals': terminals,
      'timeouts': episode_ends & ~terminals,
  }
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  partial = f'{output_path}.{os.getpid()}.partial.npz'  # Parallel seeds export it too.
  np.savez(partial, **arrays)
  os.replace(partial, output_path)
  return {
      'env_name': env_name, 'dataset_dir': os.path.abspath(dataset_dir),
      'gym_env_id': info.gym_env_id, 'max_episode_steps': info.max_episode_steps,
      'ref_min_score': info.ref_min_score, 'ref_max_score': info.ref_max_score,
      'observation_dim': info.observation_dim, 'action_dim': info.action_dim,
      'dataset_score': tasks.d4rl_normalized_score(env_name, stats.mean_episode_return),
      'num_episodes': stats.num_episodes, 'num_transitions': int(len(first)),
      'num_terminals': int(terminals.sum()), 'num_timeouts': int(arrays['timeouts'].sum())}


# ----------------------------------------------------------------------------------------------
# Step 2 (the CORL process: numpy and gymnasium here, torch only in `run_corl`): the shims.


@dataclasses.dataclass(frozen=True)
class OfflineTask:
  """What `gym.make(env_name)` and `d4rl` need to know about one task.

  Attributes:
    env_name: D4RL name, e.g. 'hopper-medium-replay-v2', as CORL's yaml gives `env`.
    gym_env_id: gymnasium environment, e.g. 'Hopper-v4' (`cql_sac.tasks`).
    max_episode_steps: D4RL's time limit (1000 for locomotion).
    ref_min_score: D4RL's random-policy return (normalized score 0).
    ref_max_score: D4RL's expert return (normalized score 1 in `get_normalized_score`).
    dataset_path: The .npz written by `export_dataset`.
  """
  env_name: str
  gym_env_id: str
  max_episode_steps: int
  ref_min_score: float
  ref_max_score: float
  dataset_path: str = ''

  def normalized_score(self, episode_return: float) -> float:
    """D4RL's `get_normalized_score`: (R - ref_min) / (ref_max - ref_min), not times 100."""
    return (episode_return - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


class OldGymEnv:
  """A gymnasium MuJoCo environment behind the gym 0.23 API that CORL's cql.py calls.

  As D4RL's `gym.make('<task>-<dataset>-v2')` (an `OfflineEnv` in gym's `TimeLimit`):

    reset() -> observation                 float64 [obs_dim]
    step(action) -> (observation, reward, done, info)
        done = terminated or truncated; at the time limit gym 0.23's TimeLimit sets
        info['TimeLimit.truncated'] = not terminated (a terminal state on the last allowed
        step counts as terminal, not as a timeout)
    seed(seed) -> [seed]                   the next reset reseeds the simulator's generator
                                           (gymnasium `reset(seed=...)`), later resets go on
                                           drawing from it, as gym's `env.seed` did
    observation_space, action_space        gymnasium Boxes (`.seed`, `.shape`, `.high`)
    get_normalized_score(R), get_dataset() D4RL's OfflineEnv methods

  Each episode's undiscounted return is recorded (`evaluations`), grouped by `seed` call: CORL's
  `eval_actor` seeds the environment at the start of every evaluation and only evaluations
  step it.
  """

  def __init__(self, task: OfflineTask):
    """Builds `gymnasium.make(task.gym_env_id, max_episode_steps=task.max_episode_steps)`, the
    environment `cql_sac.envs.make_gym_env` builds for a locomotion task.

    Args:
      task: The task.
    """
    import gymnasium  # pylint: disable=import-outside-toplevel
    self.task = task
    self._env = gymnasium.make(task.gym_env_id, max_episode_steps=task.max_episode_steps)
    self.observation_space = self._env.observation_space
    self.action_space = self._env.action_space
    self._max_episode_steps = task.max_episode_steps
    self._pending_seed: Optional[int] = None
    self._episode_return: Optional[float] = None
    # One entry per `seed` call: {'seed', 'start' (time.monotonic()), 'returns': [...]}.
    self.evaluations: List[Dict[str, Any]] = []

  @property
  def unwrapped(self) -> 'OldGymEnv':
    """This environment (gym's `unwrapped`)."""
    return self

  @property
  def gymnasium_env(self) -> Any:
    """The wrapped gymnasium environment."""
    return self._env

  def seed(self, seed: Optional[int] = None) -> List[Optional[int]]:
    """Makes the next reset start the generator from `seed`; opens a new evaluation record."""
    self._pending_seed = seed
    self.evaluations.append({'seed': seed, 'start': time.monotonic(), 'returns': []})
    return [seed]

  def reset(self, **kwargs) -> np.ndarray:
    """Starts an episode; returns its first observation (float64 [obs_dim])."""
    seed = kwargs.pop('seed', None)
    seed = self._pending_seed if seed is None else seed
    self._pending_seed = None
    observation, _ = self._env.reset(seed=seed)
    self._episode_return = 0.0
    return observation

  def step(self, action) -> Tuple[np.ndarray, float, bool, Dict[str, Any]]:
    """One step with the old API; see the class docstring for `done` and the info keys."""
    observation, reward, terminated, truncated, info = self._env.step(
        np.asarray(action, dtype=self.action_space.dtype))
    done = bool(terminated or truncated)
    info = dict(info)
    if truncated:
      info['TimeLimit.truncated'] = not terminated
    if self._episode_return is not None:
      self._episode_return += float(reward)
      if done:
        if not self.evaluations:
          self.evaluations.append({'seed': None, 'start': time.monotonic(), 'returns': []})
        self.evaluations[-1]['returns'].append(self._episode_return)
        self._episode_return = None
    return observation, float(reward), done, info

  def get_normalized_score(self, score: float) -> float:
    """D4RL's normalized score of a return, 0 random and 1 expert (CORL multiplies by 100)."""
    return self.task.normalized_score(score)

  def get_dataset(self) -> Dict[str, np.ndarray]:
    """The exported arrays (`export_dataset`), as D4RL's `OfflineEnv.get_dataset`."""
    with np.load(self.task.dataset_path) as data:
      return {key: data[key] for key in data.files}

  def close(self) -> None:
    """Closes the gymnasium environment."""
    self._env.close()


class Wrapper:
  """gym 0.23's `Wrapper`: forwards what it does not define (but private names) to `env`."""

  def __init__(self, env):
    self.env = env

  def __getattr__(self, name: str):
    if name.startswith('_'):
      raise AttributeError(f'accessing private attribute {name!r} is prohibited')
    return getattr(self.env, name)

  @property
  def unwrapped(self):
    """The innermost environment."""
    return self.env.unwrapped

  def reset(self, **kwargs):
    """Resets the wrapped environment."""
    return self.env.reset(**kwargs)

  def step(self, action):
    """Steps the wrapped environment."""
    return self.env.step(action)


class TransformObservation(Wrapper):
  """gym 0.23's `TransformObservation(env, f)`: f applied to reset's and step's observation."""

  def __init__(self, env, f: Callable[[Any], Any]):
    super().__init__(env)
    self.f = f

  def reset(self, **kwargs):
    return self.f(self.env.reset(**kwargs))

  def step(self, action):
    observation, reward, done, info = self.env.step(action)
    return self.f(observation), reward, done, info


class TransformReward(Wrapper):
  """gym 0.23's `TransformReward(env, f)`: f applied to step's reward."""

  def __init__(self, env, f: Callable[[float], float]):
    super().__init__(env)
    self.f = f

  def step(self, action):
    observation, reward, done, info = self.env.step(action)
    return observation, self.f(reward), done, info


def qlearning_dataset(env, dataset: Optional[Dict[str, np.ndarray]] = None,
                      terminate_on_end: bool = False, **kwargs) -> Dict[str, np.ndarray]:
  """D4RL's `qlearning_dataset` for an exported dataset (`export_dataset`).

  Args:
    env: An `OldGymEnv` (or a wrapper of one); its `get_dataset()` is read when `dataset` is
      None.
    dataset: Arrays with `NPZ_KEYS`, instead of the environment's.
    terminate_on_end: Ignored: the export holds every transition with its true next
      observation, so there is no last row to drop.
    **kwargs: Ignored, as D4RL passes them on to `get_dataset`.

  Returns:
    D4RL's five keys: observations, actions, next_observations float32 [T, ...], rewards
    float32 [T], terminals bool [T].

  Raises:
    KeyError: If the arrays lack next_observations (not an export of this script).
  """
  del terminate_on_end, kwargs
  data = env.get_dataset() if dataset is None else dataset
  missing = [key for key in QLEARNING_KEYS if key not in data]
  if missing:
    raise KeyError(f'Dataset arrays lack {missing}: write them with export_dataset.')
  return {key: np.array(data[key]) for key in QLEARNING_KEYS}


class WandbRecorder:
  """Keeps what CORL logs to wandb: every evaluation, the training losses every so often.

  Attributes:
    config: The config dict given to `init`.
    init_kwargs: `init`'s other arguments (project, group, name, id).
    records: [(step, {key: value}, time.monotonic())] in logging order; a dict with
      `SCORE_KEY` is always kept, any other when `step % train_log_interval == 0`.
    num_logged: How many `log` calls there were.
    last_step: The step of the latest `log` call (-1 before it).
    first_log_time: time.monotonic() of the first `log` call (None before it).
    last_log_time: time.monotonic() of the latest `log` call.
    finished: Whether `finish` was called.
  """

  def __init__(self, train_log_interval: int = 1):
    """Starts empty.

    Args:
      train_log_interval: Keep training dicts of steps divisible by this (1: all).
    """
    self.train_log_interval = max(int(train_log_interval), 1)
    self.config: Dict[str, Any] = {}
    self.init_kwargs: Dict[str, Any] = {}
    self.records: List[Tuple[int, Dict[str, float], float]] = []
    self.num_logged = 0
    self.last_step = -1
    self.first_log_time: Optional[float] = None
    self.last_log_time: Optional[float] = None
    self.finished = False

  def init(self, config=None, **kwargs) -> types.SimpleNamespace:
    """wandb.init: remembers the config; returns a run whose `save()` does nothing."""
    self.config = dict(config or {})
    self.init_kwargs = kwargs
    return types.SimpleNamespace(save=lambda *args, **kw: None, config=self.config, **kwargs)

  def log(self, data: Mapping[str, Any], step: Optional[int] = None, commit=None) -> None:
    """wandb.log: records `data` at `step` (the previous step + 1 when None)."""
    del commit
    now = time.monotonic()
    self.num_logged += 1
    if self.first_log_time is None:
      self.first_log_time = now
    self.last_log_time = now
    step = self.last_step + 1 if step is None else int(step)
    self.last_step = step
    if SCORE_KEY in data or step % self.train_log_interval == 0:
      self.records.append((step, {k: float(v) for k, v in data.items()}, now))

  def finish(self, *args, **kwargs) -> None:
    """wandb.finish."""
    del args, kwargs
    self.finished = True

  def curve(self, key: str = SCORE_KEY) -> List[List[float]]:
    """[[step, value], ...] of every record holding `key`, in logging order."""
    return [[step, data[key]] for step, data, _ in self.records if key in data]


def make_shim_modules(tasks: Mapping[str, OfflineTask], recorder: WandbRecorder,
                      made: Optional[List[OldGymEnv]] = None) -> Dict[str, types.ModuleType]:
  """The `gym`, `gym.wrappers`, `d4rl` and `wandb` modules that CORL's cql.py imports.

  Args:
    tasks: {D4RL name: OfflineTask} that `gym.make` knows.
    recorder: Receives wandb's init/log/finish.
    made: Each environment `gym.make` builds is appended here.

  Returns:
    {module name: module}, for `sys.modules`.
  """
  made = [] if made is None else made

  def make(env_name: str, **kwargs) -> OldGymEnv:
    """gym.make for the registered D4RL names."""
    del kwargs
    if env_name not in tasks:
      raise KeyError(f'gym.make({env_name!r}): only {sorted(tasks)} are registered here.')
    env = OldGymEnv(tasks[env_name])
    made.append(env)
    return env

  def get_normalized_score(env_name: str, score: float) -> float:
    """d4rl.get_normalized_score."""
    return tasks[env_name].normalized_score(score)

  wrappers = types.ModuleType('gym.wrappers')
  wrappers.TransformObservation = TransformObservation
  wrappers.TransformReward = TransformReward
  gym = types.ModuleType('gym')
  gym.__doc__ = 'gym 0.23 API over gymnasium (benchmarks/corl_reference.py).'
  gym.make, gym.Env, gym.Wrapper, gym.wrappers = make, OldGymEnv, Wrapper, wrappers
  d4rl = types.ModuleType('d4rl')
  d4rl.__doc__ = 'D4RL stand-in for exported datasets (benchmarks/corl_reference.py).'
  d4rl.qlearning_dataset, d4rl.get_normalized_score = qlearning_dataset, get_normalized_score
  wandb = types.ModuleType('wandb')
  wandb.__doc__ = 'wandb stand-in that records (benchmarks/corl_reference.py).'

  def init(*args, **kwargs):
    wandb.run = recorder.init(*args, **kwargs)
    return wandb.run

  wandb.init, wandb.log, wandb.finish, wandb.run = init, recorder.log, recorder.finish, None
  return {'gym': gym, 'gym.wrappers': wrappers, 'd4rl': d4rl, 'wandb': wandb}


def width_nn(width: int) -> types.ModuleType:
  """A copy of `torch.nn` whose `Linear` makes CORL's 256-unit layers `width` units wide.

  Bound to the name `nn` in the imported cql.py module, it changes only the layers that module
  builds after import (its networks' constructors look `nn.Linear` up when called); `Linear`
  subclasses `torch.nn.Linear`, so CORL's `isinstance(submodule, nn.Linear)` in
  `init_module_weights` still holds.

  Args:
    width: Hidden units per layer.

  Returns:
    The module.
  """
  import torch  # pylint: disable=import-outside-toplevel

  class Linear(torch.nn.Linear):
    """torch.nn.Linear with in/out feature counts of 256 replaced by the width."""

    def __init__(self, in_features: int, out_features: int, *args, **kwargs):
      super().__init__(width if in_features == CORL_HIDDEN_WIDTH else in_features,
                       width if out_features == CORL_HIDDEN_WIDTH else out_features,
                       *args, **kwargs)

  module = types.ModuleType(f'torch.nn (CORL hidden width {width})')
  module.__dict__.update({k: v for k, v in vars(torch.nn).items() if not k.startswith('__')})
  module.Linear = Linear
  return module


def _layer_shapes(network) -> List[Tuple[int, int]]:
  """(in, out) features of every Linear layer of a torch module, in order."""
  import torch  # pylint: disable=import-outside-toplevel
  return [(m.in_features, m.out_features) for m in network.modules()
          if isinstance(m, torch.nn.Linear)]


def _check_widths(cql, obs_dim: int, action_dim: int, width: int) -> None:
  """Builds CORL's actor and critic as train() does and checks every layer's shape."""
  actor = cql.TanhGaussianPolicy(obs_dim, action_dim, 1.0, orthogonal_init=True)
  critic = cql.FullyConnectedQFunction(obs_dim, action_dim, True, 3)
  expected = {
      'actor': [(obs_dim, width), (width, width), (width, width), (width, 2 * action_dim)],
      'critic': [(obs_dim + action_dim, width), (width, width), (width, width), (width, 1)]}
  for name, network in (('actor', actor), ('critic', critic)):
    if _layer_shapes(network) != expected[name]:
      raise RuntimeError(f'CORL {name} layers {_layer_shapes(network)}, expected '
                         f'{expected[name]}: the width patch does not fit this cql.py.')


def install_shims(modules: Mapping[str, types.ModuleType]) -> Dict[str, Any]:
  """Puts `modules` into `sys.modules`; returns what was there, for `restore_modules`."""
  previous = {name: sys.modules.get(name) for name in modules}
  sys.modules.update(modules)
  return previous


def restore_modules(previous: Mapping[str, Any]) -> None:
  """Undoes `install_shims`."""
  for name, module in previous.items():
    if module is None:
      sys.modules.pop(name, None)
    else:
      sys.modules[name] = module


def _evaluations(recorder: WandbRecorder, env: Optional[OldGymEnv]) -> List[Dict[str, Any]]:
  """Pairs each logged score with the episode returns and duration of its evaluation.

  CORL's `eval_actor` seeds the environment at the start of every evaluation and train() logs
  the score right after it, so a score's evaluation is the last `seed` call before it (train()
  also seeds once at the start, through `set_seed`; that record holds no episode).
  """
  groups = env.evaluations if env is not None else []
  evaluations = []
  for step, data, logged in recorder.records:
    if SCORE_KEY not in data:
      continue
    before = [group for group in groups if group['start'] <= logged]
    group = before[-1] if before else None
    evaluations.append({
        'step': step, 'score': data[SCORE_KEY],
        'returns': list(group['returns']) if group else [],
        'seconds': logged - group['start'] if group else float('nan')})
  return evaluations


def run_corl(spec: Mapping[str, Any]) -> Dict[str, Any]:
  """Runs CORL's `train()` in this process with the shims; returns what it logged.

  Args:
    spec: From `run_spec`: corl_script, corl_config (yaml), overrides {field: text}, width,
      task (OfflineTask's fields), train_log_interval, torch_threads.

  Returns:
    {'curve': [[step, normalized score (0-100)], ...], 'evaluations': [{'step', 'score',
    'returns' (per episode, environment units), 'seconds'}], 'train_log': [[step, {loss:
    value}], ...], 'config': CORL's TrainConfig as run, 'wall_seconds' (all of train()),
    'eval_seconds' (the evaluations), 'setup_seconds' (before the first train step),
    'train_steps_per_second' (between the first and the last logged step, evaluations
    left out), 'torch', 'torch_threads', 'width'}.

  Raises:
    RuntimeError: If the width patch does not fit, or CORL logged no score.
  """
  import torch  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(int(spec['torch_threads']))
  task = OfflineTask(**spec['task'])
  recorder = WandbRecorder(spec['train_log_interval'])
  made: List[OldGymEnv] = []
  previous = install_shims(make_shim_modules({task.env_name: task}, recorder, made))
  try:
    module_spec = importlib.util.spec_from_file_location('corl_offline_cql',
                                                         spec['corl_script'])
    cql = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(cql)
    width = int(spec['width'])
    if width != CORL_HIDDEN_WIDTH:
      cql.nn = width_nn(width)
      probe = OldGymEnv(task)
      _check_widths(cql, probe.observation_space.shape[0], probe.action_space.shape[0], width)
      probe.close()
    # As `python cql.py --config_path=<yaml> --field=value ...`: CORL's @pyrallis.wrap()
    # parses sys.argv (pyrallis 0.3.1's wrapper ignores arguments passed to train()).
    argv = sys.argv
    sys.argv = [spec['corl_script'], f"--config_path={spec['corl_config']}",
                *(f'--{k}={v}' for k, v in spec['overrides'].items())]
    start = time.monotonic()
    try:
      cql.train()
    finally:
      sys.argv = argv
    wall = time.monotonic() - start
  finally:
    restore_modules(previous)
  config = recorder.config  # dataclasses.asdict(TrainConfig) as train() ran it.
  evaluations = _evaluations(recorder, made[0] if made else None)
  if not evaluations:
    raise RuntimeError('CORL logged no d4rl_normalized_score: fewer steps than eval_freq?')
  eval_seconds = float(np.nansum([e['seconds'] for e in evaluations]))
  # From the first train step's log to the last log, less the evaluations: the setup (dataset,
  # the 1e7-row replay buffer, networks) is not training.
  train_seconds = recorder.last_log_time - recorder.first_log_time - eval_seconds
  return {
      'curve': recorder.curve(), 'evaluations': evaluations,
      'train_log': [[step, data] for step, data, _ in recorder.records
                    if SCORE_KEY not in data],
      'config': {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                 for k, v in config.items()},
      'wall_seconds': wall, 'eval_seconds': eval_seconds,
      'setup_seconds': recorder.first_log_time - start,
      'train_steps_per_second': (config['max_timesteps'] - 1) / max(train_seconds, 1e-9),
      'torch': torch.__version__, 'torch_threads': torch.get_num_threads(), 'width': width}


# ----------------------------------------------------------------------------------------------
# The parent: export, one CORL process per seed, the JSON and the table.


def run_spec(script: str, config: str, overrides: Mapping[str, str], width: int,
             meta: Mapping[str, Any], npz_path: str, train_log_interval: int,
             torch_threads: int) -> Dict[str, Any]:
  """The JSON-able description of one CORL run that `run_corl` executes.

  Args:
    script: CORL's cql.py.
    config: CORL's yaml for the dataset.
    overrides: `config_overrides`.
    width: Hidden units of CORL's networks (256: unpatched).
    meta: `export_dataset`'s metadata.
    npz_path: The exported dataset.
    train_log_interval: Steps between kept training-loss records.
    torch_threads: `torch.set_num_threads`.

  Returns:
    The spec.
  """
  task = OfflineTask(meta['env_name'], meta['gym_env_id'], int(meta['max_episode_steps']),
                     float(meta['ref_min_score']), float(meta['ref_max_score']),
                     os.path.abspath(npz_path))
  return {'corl_script': os.path.abspath(script), 'corl_config': os.path.abspath(config),
          'overrides': dict(overrides), 'width': int(width), 'task': dataclasses.asdict(task),
          'train_log_interval': int(train_log_interval), 'torch_threads': int(torch_threads)}


def run_seed(spec: Mapping[str, Any], run_dir: str, corl_python: str) -> Dict[str, Any]:
  """Runs one seed in a `corl_python` process, or reuses its finished result.

  Writes run_dir/spec.json, run_dir/corl.log (the process's stdout and stderr) and
  run_dir/result.json (`run_corl`'s return value plus the spec).

  Args:
    spec: `run_spec`.
    run_dir: The seed's directory.
    corl_python: Python of the PyTorch environment.

  Returns:
    The result.

  Raises:
    CorlReferenceError: If the process fails (the message names its log).
  """
  os.makedirs(run_dir, exist_ok=True)
  result_path = os.path.join(run_dir, 'result.json')
  if os.path.exists(result_path):
    with open(result_path) as f:
      result = json.load(f)
    if result.get('spec') == json.loads(json.dumps(spec)):
      return result
  spec_path = os.path.join(run_dir, 'spec.json')
  with open(spec_path, 'w') as f:
    json.dump(spec, f, indent=1)
  log_path = os.path.join(run_dir, 'corl.log')
  env = dict(os.environ, OMP_NUM_THREADS=str(spec['torch_threads']))
  with open(log_path, 'w') as log:
    code = subprocess.call([corl_python, os.path.abspath(__file__), '--run_spec', spec_path],
                           stdout=log, stderr=subprocess.STDOUT, env=env)
  if code != 0 or not os.path.exists(result_path):
    with open(log_path) as f:
      lines = [line.strip() for line in f if line.strip()]
    raise CorlReferenceError(f'CORL run failed (exit {code}): {lines[-1] if lines else ""} '
                             f'(log: {log_path}).')
  with open(result_path) as f:
    return json.load(f)


def _steps_label(num_steps: int) -> str:
  """'100k' for 100000, '1M' for 1000000 (as benchmarks.quality names its files)."""
  return f'{num_steps // 1000000}M' if num_steps % 1000000 == 0 else f'{num_steps / 1000:g}k'


def output_stem(output_dir: str, env: str, dataset: str, num_steps: int, tag: str = '') -> str:
  """`<output_dir>/corl_<env>_<dataset>_<steps>[_tag]` (no extension)."""
  name = f'corl_{env}_{dataset}_{_steps_label(num_steps)}'
  return os.path.join(output_dir, f'{name}_{tag}' if tag else name)


def label(width: int, batch_size: int, commit: Optional[str], extra: Sequence[str]) -> str:
  """The table's row name, e.g. "CORL's own code (eeeeef2, width 64, batch 64)"."""
  parts = [commit[:7] if commit else 'no git', f'width {width}', f'batch {batch_size}',
           *extra]
  return f"CORL's own code ({', '.join(parts)})"


def write_outputs(results: Mapping[int, Mapping[str, Any]], meta: Mapping[str, Any],
                  dataset: str, settings: Mapping[str, Any], stem: str,
                  row_label: str) -> Tuple[Dict[str, Any], str]:
  """Writes `<stem>.json` (quality's layout) and `<stem>.md` (stability's table).

  Args:
    results: {seed: `run_corl` result}.
    meta: `export_dataset`'s metadata.
    dataset: Dataset kind, e.g. 'medium-replay' (the curves' key).
    settings: Recorded as they are: num_steps, eval_interval, eval_episodes, protocol,
      data_dir, extra_bindings, corl.
    stem: Output path without extension.
    row_label: The table's row name.

  Returns:
    (the JSON object, the Markdown table).
  """
  from benchmarks import quality  # pylint: disable=import-outside-toplevel
  from benchmarks import stability  # pylint: disable=import-outside-toplevel

  curves = {dataset: {ALGORITHM: {seed: [list(point) for point in r['curve']]
                                  for seed, r in sorted(results.items())}}}
  dataset_scores = {dataset: meta['dataset_score']}
  points = 100.0 / (meta['ref_max_score'] - meta['ref_min_score'])
  seed_curves = {}
  for seed, r in sorted(results.items()):
    evaluations = r['evaluations']
    noise = [np.std(e['returns']) / np.sqrt(len(e['returns'])) * points if e['returns']
             else np.nan for e in evaluations]
    seed_curves[f'seed{seed}'] = stability.SeedCurve(
        np.array([e['step'] for e in evaluations]), np.array([e['score'] for e in evaluations]),
        np.array(noise, dtype=float))
  table = stability.markdown_table({row_label: stability.summarize(seed_curves)})
  output = {**settings, 'algorithm': ALGORITHM, 'dataset_scores': dataset_scores,
            'curves': curves, 'rows': quality.summarize(curves, dataset_scores),
            'dataset': {k: meta[k] for k in ('env_name', 'dataset_dir', 'num_episodes',
                                             'num_transitions', 'num_terminals',
                                             'num_timeouts')},
            'runs': {seed: {k: r[k] for k in ('evaluations', 'train_log', 'config',
                                              'wall_seconds', 'eval_seconds', 'setup_seconds',
                                              'train_steps_per_second', 'torch',
                                              'torch_threads', 'width')}
                     for seed, r in sorted(results.items())}}
  os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
  with open(stem + '.json', 'w') as f:
    json.dump(output, f, indent=1)
  with open(stem + '.md', 'w') as f:
    f.write(table)
  return output, table


def run_reference(args: argparse.Namespace) -> str:
  """Checks the arguments, exports the data, runs every seed, writes the outputs.

  Args:
    args: Parsed `_parser()` arguments.

  Returns:
    The Markdown table.

  Raises:
    CorlReferenceError: For a wrong --corl_dir, --corl_python, --data_dir or override, or a
      failed CORL run.
  """
  script, config = corl_paths(args.corl_dir, args.env, args.dataset)
  fields = train_config_fields(script)
  provenance = corl_provenance(args.corl_dir, [script, config])
  if not os.path.isfile(args.corl_python):
    raise CorlReferenceError(
        f'--corl_python={args.corl_python!r} does not exist: python3 -m venv .venv-corl && '
        ".venv-corl/bin/pip install torch numpy 'gymnasium[mujoco]==1.4.*' pyrallis")
  if args.width < 1 or args.num_seeds < 1 or args.first_seed < 0:
    raise CorlReferenceError(f'--width and --num_seeds must be positive and --first_seed >= 0, '
                             f'got {args.width}, {args.num_seeds} and {args.first_seed}.')
  env_name = f'{args.env}-{args.dataset}-v2'
  dataset_dir = os.path.join(args.data_dir, env_name)
  if not os.path.isdir(dataset_dir):
    raise CorlReferenceError(f'No dataset {dataset_dir}: --data_dir must hold {env_name}/ '
                             '(cql_sac_make_behavior writes it).')
  if provenance['commit'] not in (None, CORL_COMMIT):
    print(f'Note: CORL at {provenance["commit"]}, the project pins {CORL_COMMIT}.')
  root = os.path.join(args.root_dir, _steps_label(args.num_steps) + (
      f'_{args.tag}' if args.tag else ''))
  npz_path = os.path.join(root, f'{env_name}.npz')
  meta = export_dataset(dataset_dir, env_name, npz_path)
  print(f'{env_name}: {meta["num_transitions"]:,} transitions ({meta["num_terminals"]:,} '
        f'terminal, {meta["num_timeouts"]:,} timeouts) -> {npz_path}')
  results = {}
  for seed in range(args.first_seed, args.first_seed + args.num_seeds):
    overrides = config_overrides(fields, seed, args.num_steps, args.eval_interval,
                                 args.eval_episodes, args.batch_size, args.set)
    spec = run_spec(script, config, overrides, args.width, meta, npz_path,
                    args.train_log_interval, args.torch_threads)
    run_dir = os.path.join(root, env_name, f'seed{seed}')
    results[seed] = run_seed(spec, run_dir, args.corl_python)
    r = results[seed]
    print(f'seed {seed}: {r["train_steps_per_second"]:.1f} train steps/s, scores '
          + ', '.join(f'{step}: {score:.1f}' for step, score in r['curve']))
  reduced = args.width == 64 and args.batch_size == 64
  settings = {'protocol': 'reduced' if reduced else 'custom', 'num_steps': args.num_steps,
              'eval_interval': args.eval_interval, 'eval_episodes': args.eval_episodes,
              'data_dir': args.data_dir, 'extra_bindings': list(args.set),
              'corl': {**provenance, 'overrides': {k: v for k, v in overrides.items()
                                                   if k != 'seed'},
                       'width': args.width}}
  _, table = write_outputs(results, meta, args.dataset, settings,
                           output_stem(args.output_dir, args.env, args.dataset,
                                       args.num_steps, args.tag),
                           label(args.width, args.batch_size, provenance['commit'], args.set))
  return table


def _parser() -> argparse.ArgumentParser:
  """The command line (argparse: the CORL process has no absl)."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--corl_dir', help='A CORL checkout (unmodified).')
  parser.add_argument('--data_dir', help='Holds <env>-<dataset>-v2/ RLDS directories.')
  parser.add_argument('--env', choices=ENVS, default='hopper')
  parser.add_argument('--dataset', choices=DATASETS, default='medium-replay')
  parser.add_argument('--num_seeds', type=int, default=3,
                      help='Seeds first_seed .. first_seed + N - 1.')
  parser.add_argument('--first_seed', type=int, default=0,
                      help='The first seed; finished seeds are reused by a later call that '
                      'names them all (so seeds can run in parallel processes).')
  parser.add_argument('--num_steps', type=int, default=100000, help='max_timesteps.')
  parser.add_argument('--eval_interval', type=int, default=10000, help='eval_freq.')
  parser.add_argument('--eval_episodes', type=int, default=10, help='n_episodes.')
  parser.add_argument('--batch_size', type=int, default=64, help='batch_size.')
  parser.add_argument('--width', type=int, default=64,
                      help='Hidden units of CORL\'s networks (256: CORL\'s own).')
  parser.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                      help='Another TrainConfig override, e.g. cql_n_actions=4; repeat.')
  parser.add_argument('--root_dir', default='runs/corl_reference',
                      help='Exported data and per-seed runs go under <root_dir>/<steps>[_tag].')
  parser.add_argument('--output_dir', default='benchmarks/results')
  parser.add_argument('--tag', default='', help='Suffix of the output files.')
  parser.add_argument('--corl_python', default=DEFAULT_CORL_PYTHON,
                      help='Python with torch, gymnasium[mujoco], pyrallis.')
  parser.add_argument('--torch_threads', type=int, default=1,
                      help='torch.set_num_threads (see the module docstring).')
  parser.add_argument('--train_log_interval', type=int, default=1000,
                      help='Steps between kept records of CORL\'s training losses.')
  parser.add_argument('--run_spec', help=argparse.SUPPRESS)  # The CORL process's entry.
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Entry point of both processes; returns the exit code."""
  args = _parser().parse_args(argv)
  if args.run_spec:
    with open(args.run_spec) as f:
      spec = json.load(f)
    result = run_corl(spec)
    result['spec'] = spec
    with open(os.path.join(os.path.dirname(args.run_spec), 'result.json'), 'w') as f:
      json.dump(result, f, indent=1)
    return 0
  if not args.corl_dir or not args.data_dir:
    _parser().error('--corl_dir and --data_dir are required.')
  try:
    print(run_reference(args))
  except CorlReferenceError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  if __package__ in (None, ''):  # Run as a file (the CORL process): the repository importable.
    sys.path.insert(0, _REPO_ROOT)
  sys.exit(main())
