"""Simulators for D4RL tasks: gymnasium MuJoCo environments as TF-Agents PyEnvironments.

The original D4RL environments need mujoco-py and the old `gym`, which no longer install. Their
successors are the gymnasium `mujoco` environments (locomotion) and gymnasium-robotics (AntMaze).
`load_env` builds the one for a D4RL name with D4RL's observation/action spaces and time limit.

Where these environments differ from the mujoco-py ones D4RL recorded its datasets with:

1. Simulator: the `mujoco` Python bindings (MuJoCo >= 2.3) instead of mujoco-py (MuJoCo 1.5/2.0).
   The models are the same XML files, but contact solver changes between MuJoCo releases make
   trajectories diverge after some steps; returns are comparable, states are not bit-equal.
2. Locomotion version: we use the `-v4` environments, not `-v5`. v4 is the mujoco-bindings port of
   the v2/v3 environments D4RL used and keeps their reward (healthy reward also on the step that
   terminates) and models. v5 changes both: healthy reward only while healthy, and Walker2d-v5
   gives both feet friction 1.9 where D4RL's Walker2d had 0.9 (right) and 1.9 (left). gymnasium
   prints a deprecation warning for v4; we silence it here because the choice is deliberate.
3. Ant: D4RL's 111-dim Ant observation includes the 84 clipped external contact forces
   (`cfrc_ext`); `Ant-v4(use_contact_forces=True)` reproduces that layout (and adds the contact
   cost to the reward, as Ant-v2 did). mujoco-py >= 2.0 is reported to return zero `cfrc_ext`
   (openai/gym issue 1541), so D4RL's `observation[27:]` may be all zero while ours is not.
4. AntMaze: gymnasium-robotics returns a dict observation (27-dim `observation` without x, y;
   2-dim `achieved_goal` = x, y; 2-dim `desired_goal`) in a maze centred on the origin whose rows
   run towards -y. `D4rlAntMazeObservation` returns D4RL's 29-dim vector [x, y, observation] in
   D4RL's frame (origin at the centre of the start cell (1, 1), rows towards +y, 4 m cells) by
   laying out D4RL's evaluation maze (`*_MAZE_TEST`: fixed start and goal cells) upside down in
   gymnasium-robotics and translating x, y; the goal is not part of the observation, as in D4RL.
   Remaining differences: the goal counts as reached within 0.45 m (D4RL: 0.5 m); the episode
   ends there (D4RL eval envs too) with reward 1 on that step; gymnasium-robotics adds uniform
   noise of +-0.25 cell (+-1 m) to the start and goal positions, where D4RL's evaluation reset
   had none on the start cell.
5. Minari tasks (`cql_sac.minari_tasks`): the environment of the dataset's metadata
   (`eval_env_spec`, else `env_spec`) made as minari recovers it, `gym.make(EnvSpec)`; a goal
   Dict observation becomes one vector (`GoalObservationVector`) in the environment's own frame.
   Minari's MuJoCo datasets were recorded in the `-v5` environments, so they evaluate in v5
   (rewards differ from v4 as item 2 says; their normalized scores use the dataset's own
   reference returns, never D4RL's).
6. Observations are cast from float64 to float32, the dtype TFDS stores D4RL observations in, so
   the environment's specs equal the dataset's. Actions are float32 in [-1, 1] in both.

Partially observed variants (`velocities_hidden`): the standard "-P" tasks of the POMDP
literature (Ni et al. 2022, "Recurrent Model-Free RL Can Be a Strong Baseline for Many
POMDPs", after Han et al. 2020) keep the joint positions and drop the velocities. A locomotion
observation is qpos[1:] then qvel, so the positions are its first `POSITION_DIMS` entries;
`positions_only` cuts dataset observations the same way as the wrapped environment.
"""

import warnings
from typing import Any, Optional

import gymnasium as gym
import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from cql_sac import minari_tasks
from cql_sac import tasks

# D4RL's AntMaze evaluation mazes (d4rl/locomotion/maze_env.py U_MAZE_TEST, BIG_MAZE_TEST,
# HARDEST_MAZE_TEST): walls are the gymnasium-robotics maps, plus the (row, col) start and goal.
_ANTMAZE_CELLS = {
    'umaze': ('U_MAZE', (1, 1), (3, 1)),
    'medium': ('MEDIUM_MAZE', (1, 1), (6, 6)),
    'large': ('LARGE_MAZE', (1, 1), (7, 9)),
}
_D4RL_START_CELL = (1, 1)


class GymnasiumEnvironment(py_environment.PyEnvironment):
  """A TF-Agents PyEnvironment around a gymnasium environment with Box spaces.

  TF-Agents' own `GymWrapper` speaks the pre-gymnasium `gym` API (4-tuple `step`), so this class
  maps gymnasium's 5-tuple: `terminated` -> LAST with discount 0 (`ts.termination`),
  `truncated` (time limit) -> LAST with discount 1 (`ts.truncation`). Observations are cast to
  float32, actions to the action space's dtype. Rewards and discounts are float32 scalars.
  """

  def __init__(self, gym_env: gym.Env, seed: Optional[int] = None):
    """Wraps `gym_env`.

    Args:
      gym_env: a gymnasium environment with a Box observation and a Box action space.
      seed: seed of the first `reset` (gymnasium seeds its generator once) and of the
        action space's sampler; None for a random seed.

    Raises:
      ValueError: if a space is not a Box.
    """
    super().__init__(handle_auto_reset=True)
    for space_name in ('observation_space', 'action_space'):
      space = getattr(gym_env, space_name)
      if not isinstance(space, gym.spaces.Box):
        raise ValueError(f'{space_name} of {gym_env} is {space}; only Box spaces are supported. '
                         'Wrap the environment to flatten its observations first.')
    self._env = gym_env
    self._seed = seed
    self._observation_spec = array_spec.ArraySpec(
        gym_env.observation_space.shape, np.float32, name='observation')
    self._action_spec = array_spec.BoundedArraySpec(
        gym_env.action_space.shape, gym_env.action_space.dtype,
        minimum=gym_env.action_space.low, maximum=gym_env.action_space.high, name='action')
    if seed is not None:
      gym_env.action_space.seed(seed)

  @property
  def gym(self) -> gym.Env:
    """The wrapped gymnasium environment."""
    return self._env

  def observation_spec(self) -> array_spec.ArraySpec:
    """float32 observation spec with the gymnasium space's shape, named 'observation'."""
    return self._observation_spec

  def action_spec(self) -> array_spec.BoundedArraySpec:
    """Bounded action spec (the Box's dtype, low and high), named 'action'."""
    return self._action_spec

  def _reset(self) -> ts.TimeStep:
    observation, _ = self._env.reset(seed=self._seed)
    self._seed = None  # Seed only the first episode; later resets continue the generator.
    return ts.restart(self._observation(observation))

  def _step(self, action: np.ndarray) -> ts.TimeStep:
    observation, reward, terminated, truncated, _ = self._env.step(
        np.asarray(action, dtype=self._action_spec.dtype))
    observation = self._observation(observation)
    reward = np.asarray(reward, dtype=np.float32)
    if terminated:
      return ts.termination(observation, reward)
    if truncated:
      return ts.truncation(observation, reward)
    return ts.transition(observation, reward)

  def _observation(self, observation: Any) -> np.ndarray:
    return np.asarray(observation, dtype=np.float32)

  def close(self) -> None:
    """Closes the gymnasium environment."""
    self._env.close()


class D4rlAntMazeObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
  """Turns gymnasium-robotics' AntMaze dict observation into D4RL's 29-dim vector.

  Output: float64 [x, y, z, quaternion (4), 8 joint angles, 14 velocities] with x, y in D4RL's
  maze frame (metres; origin at the centre of start cell (1, 1), row index along +y). Expects a
  maze laid out by `make_gym_env`, i.e. D4RL's map with its rows reversed. Recorded in the
  environment's spec (`RecordConstructorArgs`), so `gym.make(env.spec)` rebuilds it, as
  Minari datasets written here need (`cql_sac.datasets.minari_writing`).
  """

  def __init__(self, env: gym.Env):
    """Wraps an AntMaze environment.

    Args:
      env: a gymnasium-robotics AntMaze environment (dict observation) built with a row-reversed
        D4RL maze map.
    """
    gym.utils.RecordConstructorArgs.__init__(self)
    gym.ObservationWrapper.__init__(self, env)
    maze = env.unwrapped.maze
    scaling = maze.maze_size_scaling
    # gymnasium cell centre: x = (col + .5) s - x_c, y = y_c - (row' + .5) s with row' the
    # reversed row; D4RL: x = (col - 1) s, y = (row - 1) s. Both are translations by:
    self._offset = np.array([
        maze.x_map_center - (_D4RL_START_CELL[1] + 0.5) * scaling,
        maze.y_map_center - (_D4RL_START_CELL[0] + 0.5) * scaling,
    ])
    dim = 2 + env.observation_space['observation'].shape[0]
    self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float64)

  def observation(self, observation: dict) -> np.ndarray:
    """Returns [achieved_goal + offset, observation] as a float64 vector."""
    return np.concatenate([observation['achieved_goal'] + self._offset,
                           observation['observation']])


class GoalObservationVector(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
  """Turns a goal Dict observation into [achieved_goal, observation, desired_goal].

  The layout of `cql_sac.minari_tasks.flatten_goal_observation`, which the Minari reader
  applies to the dataset's observations; no change of frame (the data was recorded in this
  environment).
  """

  def __init__(self, env: gym.Env):
    """Wraps an environment whose observation space is a Dict of the goal keys' Boxes."""
    gym.utils.RecordConstructorArgs.__init__(self)
    gym.ObservationWrapper.__init__(self, env)
    spaces = env.observation_space
    low = minari_tasks.flatten_goal_observation({k: spaces[k].low for k in spaces.keys()})
    high = minari_tasks.flatten_goal_observation({k: spaces[k].high for k in spaces.keys()})
    self.observation_space = gym.spaces.Box(low, high, dtype=np.float64)

  def observation(self, observation: dict) -> np.ndarray:
    """Returns the flattened float64 vector."""
    return minari_tasks.flatten_goal_observation(observation).astype(np.float64)


def _make_minari_env(env_name: str, max_episode_steps: Optional[int]) -> gym.Env:
  """The evaluation environment of a Minari task (module docstring, item 5)."""
  task = minari_tasks.read_task(env_name)
  # The spec's entry point imports its module (gymnasium_robotics for the mazes) itself.
  spec = gym.envs.registration.EnvSpec.from_json(task.env_spec_json)
  env = gym.make(spec, max_episode_steps=max_episode_steps or task.max_episode_steps)
  return GoalObservationVector(env) if task.observation_keys else env


def _antmaze_map(maze: str) -> list:
  """D4RL's evaluation maze for `maze`, rows reversed, with 'r'/'g' start and goal cells."""
  from gymnasium_robotics.envs.maze import maps  # pylint: disable=g-import-not-at-top
  walls, (start_row, start_col), (goal_row, goal_col) = _ANTMAZE_CELLS[maze]
  layout = [list(row) for row in getattr(maps, walls)]
  layout[start_row][start_col] = maps.RESET
  layout[goal_row][goal_col] = maps.GOAL
  return layout[::-1]


def make_gym_env(env_name: str, max_episode_steps: Optional[int] = None) -> gym.Env:
  """Builds the gymnasium environment for a D4RL task (float64 observations, Box spaces).

  Args:
    env_name: D4RL name, e.g. 'hopper-medium-v2' or 'antmaze-medium-play-v0', or a Minari task
      name ('minari:<dataset_id>' or a dataset directory; module docstring, item 5).
    max_episode_steps: time limit in steps; None uses D4RL's (1000, AntMaze umaze 700) or the
      Minari dataset's. Tests and quick datasets may shorten it.

  Returns:
    A gymnasium environment wrapped in `TimeLimit`.

  Raises:
    ValueError: if `env_name` is unknown (the message lists the closest names) or
      `max_episode_steps` is not positive.
  """
  if max_episode_steps is not None and max_episode_steps <= 0:
    raise ValueError(f'max_episode_steps must be positive, got {max_episode_steps}.')
  if minari_tasks.is_minari_name(env_name):
    return _make_minari_env(env_name, max_episode_steps)
  info = tasks.get_dataset_info(env_name)
  if max_episode_steps is None:
    max_episode_steps = info.max_episode_steps
  with warnings.catch_warnings():
    warnings.filterwarnings('ignore', message='.*is out of date.*')  # v4 on purpose, see above.
    if info.is_antmaze:
      import gymnasium_robotics  # pylint: disable=g-import-not-at-top
      gym.register_envs(gymnasium_robotics)
      env = gym.make(info.gym_env_id, maze_map=_antmaze_map(info.maze), continuing_task=False,
                     reset_target=False, max_episode_steps=max_episode_steps)
      return D4rlAntMazeObservation(env)
    kwargs = {'use_contact_forces': True} if info.gym_env_id.startswith('Ant-') else {}
    return gym.make(info.gym_env_id, max_episode_steps=max_episode_steps, **kwargs)


# Leading observation entries that are positions (qpos[1:]) in the gymnasium -v4 tasks.
POSITION_DIMS = {'Hopper-v4': 5, 'HalfCheetah-v4': 8, 'Walker2d-v4': 8}


def position_dims(env_name: str) -> int:
  """Number of leading observation entries that are positions, P, for a D4RL task.

  Args:
    env_name: D4RL name, e.g. 'hopper-medium-v2'.

  Returns:
    P (Hopper 5 of 11, HalfCheetah 8 of 17, Walker2d 8 of 17).

  Raises:
    ValueError: For a task without a velocity-hidden variant (Ant, AntMaze) or an unknown
      name.
  """
  gym_env_id = tasks.get_dataset_info(env_name).gym_env_id
  if gym_env_id not in POSITION_DIMS:
    raise ValueError(f'{env_name} has no velocity-hidden variant (defined for '
                     f'{sorted(POSITION_DIMS)}); unset velocities_hidden.')
  return POSITION_DIMS[gym_env_id]


def positions_only(observations: np.ndarray, env_name: str) -> np.ndarray:
  """The positions of locomotion observations, velocities dropped ("-P" tasks).

  Args:
    observations: float [..., O] full observations of task `env_name`.
    env_name: D4RL name.

  Returns:
    float [..., P], the first P = `position_dims(env_name)` entries (same dtype).

  Raises:
    ValueError: As `position_dims`.
  """
  return observations[..., :position_dims(env_name)]


class PositionsOnly(gym.ObservationWrapper):
  """Keeps the first P observation entries (positions), as `positions_only`."""

  def __init__(self, env: gym.Env, num_positions: int):
    super().__init__(env)
    space = env.observation_space
    self.observation_space = gym.spaces.Box(space.low[:num_positions],
                                            space.high[:num_positions], dtype=space.dtype)
    self._num_positions = num_positions

  def observation(self, observation: np.ndarray) -> np.ndarray:
    return observation[:self._num_positions]


def load_env(env_name: str, seed: Optional[int] = None,
             max_episode_steps: Optional[int] = None,
             velocities_hidden: bool = False) -> GymnasiumEnvironment:
  """Returns the real MuJoCo simulation of a D4RL task as a TF-Agents PyEnvironment.

  Specs: observation ArraySpec float32 [obs_dim] (named 'observation'), action
  BoundedArraySpec float32 [A] in [-1, 1] (named 'action'); time steps carry float32 scalar reward
  and discount (0 at termination, 1 at the time limit) and int32 step_type. These equal the
  specs of the TFDS D4RL dataset of the same name (see the module docstring for the differences
  from the mujoco-py environments).

  Args:
    env_name: D4RL name, e.g. 'hopper-medium-v2'.
    seed: seed for the first reset and the action-space sampler; None for random.
    max_episode_steps: time limit override; None uses D4RL's.
    velocities_hidden: Observe the positions only (`PositionsOnly`, float32 [P]).

  Returns:
    A `GymnasiumEnvironment` (auto-resets after a LAST step).

  Raises:
    ValueError: if `env_name` is unknown (the message lists the closest known names), or
      has no velocity-hidden variant.
  """
  gym_env = make_gym_env(env_name, max_episode_steps)
  if velocities_hidden:
    gym_env = PositionsOnly(gym_env, position_dims(env_name))
  return GymnasiumEnvironment(gym_env, seed=seed)
