"""Writes the Minari test fixtures with the real `minari` package (not the project's writer).

Run in a separate environment (minari 0.5.3 needs numpy < 2; see README.md beside this file):

  python3.11 -m venv /tmp/venv-minari
  /tmp/venv-minari/bin/pip install "minari[hdf5]==0.5.3" "gymnasium[mujoco]" \
      "gymnasium-robotics==1.4.2" numpy==1.26.4
  /tmp/venv-minari/bin/python tests/data/minari/make_fixtures.py tests/data/minari

Writes, under the output directory (a Minari datasets root):

* cql_sac_test/hopper-random-v0: Hopper-v5 with a 30-step time limit and uniform-random actions,
  seed 0, 12 episodes, no infos: some fall (termination), the others reach the limit (truncation).
  ref_min_score / ref_max_score are D4RL's Hopper constants, passed explicitly.
* cql_sac_test/pointmaze-umaze-random-v0: PointMaze_UMaze-v3 (Dict observation: observation,
  achieved_goal, desired_goal) with a 30-step time limit, random actions, 4 episodes, with
  infos, no reference scores.
"""

import json
import os
import shutil
import sys
import tempfile

import gymnasium as gym
import gymnasium_robotics
import minari
from minari import DataCollector

gym.register_envs(gymnasium_robotics)


def _record(env_id: str, dataset_id: str, num_episodes: int, max_episode_steps: int,
            record_infos: bool, **create_kwargs) -> None:
  env = DataCollector(gym.make(env_id, max_episode_steps=max_episode_steps),
                      record_infos=record_infos)
  env.action_space.seed(0)
  for episode in range(num_episodes):
    env.reset(seed=episode)
    while True:
      _, _, terminated, truncated, _ = env.step(env.action_space.sample())
      if terminated or truncated:
        break
  env.create_dataset(dataset_id=dataset_id, algorithm_name='uniform random actions',
                     author='cql-sac tests', description=f'{env_id} test fixture',
                     **create_kwargs)
  env.close()


def main(output_root: str) -> None:
  """Writes both fixtures under `output_root` (an existing fixture is replaced)."""
  with tempfile.TemporaryDirectory() as scratch:
    os.environ['MINARI_DATASETS_PATH'] = scratch
    _record('Hopper-v5', 'cql_sac_test/hopper-random-v0', 12, 30, False,  # reset/step infos
            ref_min_score=-20.272305, ref_max_score=3234.3)
    _record('PointMaze_UMaze-v3', 'cql_sac_test/pointmaze-umaze-random-v0', 4, 30, True)
    for dataset_id in ('cql_sac_test/hopper-random-v0', 'cql_sac_test/pointmaze-umaze-random-v0'):
      dataset = minari.load_dataset(dataset_id)
      print(dataset_id, dataset.total_episodes, 'episodes', dataset.total_steps, 'steps',
            json.dumps({int(e.id): (bool(e.terminations[-1]), bool(e.truncations[-1]))
                        for e in dataset.iterate_episodes()}))
      target = os.path.join(output_root, dataset_id)
      shutil.rmtree(target, ignore_errors=True)
      shutil.copytree(os.path.join(scratch, dataset_id), target)


if __name__ == '__main__':
  main(sys.argv[1])
