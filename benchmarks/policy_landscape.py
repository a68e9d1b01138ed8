r"""How a saved policy's real score changes when its weights move: at random, or along training.

Issue 35 asks why a good Hopper gait is lost within 10,000 steps. This prints two measurements
of a `cql_sac_train_eval` run's saved greedy policy (the averaged actor's where there is one,
as `cql_sac_select` reads it), each scored in the real environment:

  random directions  each variable w moved to w + r·‖w‖·ξ/‖ξ‖, ξ ~ N(0, I) per variable, for
                     every radius r in `--radii` and `--directions` draws: is the score on a
                     cliff that any small move crosses?
  training line      the weights (1 − t)·w_A + t·w_B between two saved checkpoints A < B of
                     the run, t = 0, 0.1, ..., 1: where along the move training made does the
                     score change, and how far (relative L2 distance ‖w_B − w_A‖/‖w_A‖) is it?

Every point is scored on the same `--episodes` identically seeded episodes (D4RL normalized
score, mean over episodes), so two points differ only by the weights.

    python -m benchmarks.policy_landscape --root_dir=runs/quality/.../seed1 \
      --steps=60000 --lines=60000:80000 --lines=70000:80000 \
      --output=benchmarks/results/policy_landscape_hopper_medium_replay

writes <output>.md (the two tables) and <output>.json (every point).
"""

import dataclasses
import json
import os
from typing import Dict, List, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
from tf_agents.policies import py_tf_eager_policy

from cql_sac import eval as cql_eval
from cql_sac import select
from cql_sac.files import write_file_atomically
from cql_sac.run_record import read_run_record

_RADII = (0.0025, 0.005, 0.01, 0.02)
_CHANGED = 10.0  # Normalized points: a move counts as changing the score beyond this.


def perturbed(weights: Sequence[np.ndarray], radius: float,
              rng: np.random.Generator) -> List[np.ndarray]:
  """Each array w moved to w + radius·‖w‖·ξ/‖ξ‖, ξ ~ N(0, I) of w's shape (float32 out).

  Args:
    weights: The policy's variables' values, any shapes.
    radius: r >= 0, the move's L2 norm relative to each variable's own.
    rng: The draws' generator.
  """
  moved = []
  for w in weights:
    xi = rng.normal(size=w.shape)
    norm = np.linalg.norm(xi)
    step = radius * np.linalg.norm(w) * xi / norm if norm > 0 else 0.0 * xi
    moved.append((w + step).astype(np.float32))
  return moved


def relative_distance(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
  """‖b − a‖/‖a‖ over all the arrays together (L2, as one flattened vector)."""
  return float(np.sqrt(sum(np.sum((y - x) ** 2) for x, y in zip(a, b))
                       / sum(np.sum(x ** 2) for x in a)))


@dataclasses.dataclass
class PolicyScorer:
  """A run's saved greedy policy whose weights can be set, scored on fixed episodes.

  Attributes:
    policy: The SavedModel policy (it batches the Actor's single time steps).
    variables: Its trainable float32 variables.
    checkpoints: {step: checkpoint path} of the saved policies.
    env_name: The run's D4RL environment name.
    episodes: Episodes per score.
    seed: The environment's seed; every score uses the same episodes.
  """
  policy: py_tf_eager_policy.SavedModelPyTFEagerPolicy
  variables: List[tf.Variable]
  checkpoints: Dict[int, str]
  env_name: str
  episodes: int
  seed: int

  def weights_at(self, step: int) -> List[np.ndarray]:
    """The variables' values saved at `step`. Raises ValueError for a step not saved."""
    if step not in self.checkpoints:
      raise ValueError(f'No policy checkpoint at step {step}: the run saved '
                       f'{sorted(self.checkpoints)}; pass one of them.')
    self.policy.update_from_checkpoint(self.checkpoints[step])
    return [v.numpy() for v in self.variables]

  def score(self, weights: Sequence[np.ndarray]) -> float:
    """The mean D4RL normalized score over the episodes with the policy's weights set."""
    for variable, value in zip(self.variables, weights):
      variable.assign(value)
    env = cql_eval.load_env(self.env_name, seed=self.seed)
    train_step = tf.Variable(0, dtype=tf.int64)
    eval_actor = cql_eval.make_eval_actor(env, self.policy, self.env_name, self.episodes,
                                          train_step)
    eval_actor.run()
    return cql_eval.metric_results(eval_actor)[cql_eval.NORMALIZED_SCORE_METRIC]


def load_scorer(root_dir: str, episodes: int, seed: int) -> PolicyScorer:
  """The run's saved greedy policy as a `PolicyScorer`.

  Raises:
    select.SelectionError: If root_dir has no saved policies or no run record.
  """
  saved = select.find_saved_policies(root_dir)
  record = read_run_record(root_dir)
  if record is None:
    raise select.SelectionError(f'{root_dir} has no run_record.json: pass the root_dir of a '
                                'cql_sac_train_eval run.')
  policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(
      saved.saved_model_dir, load_specs_from_pbtxt=True)
  variables = [v for v in policy.variables() if v.trainable and v.dtype == tf.float32]
  return PolicyScorer(policy, variables, saved.checkpoints, record['env_name'], episodes, seed)


def random_directions(scorer: PolicyScorer, step: int, radii: Sequence[float],
                      directions: int, seed: int) -> dict:
  """{'step', 'score', 'radii': {r: [score per direction]}} at one saved step."""
  base = scorer.weights_at(step)
  rng = np.random.default_rng(seed)
  return {'step': step, 'score': scorer.score(base),
          'radii': {str(r): [scorer.score(perturbed(base, r, rng)) for _ in range(directions)]
                    for r in radii}}


def training_line(scorer: PolicyScorer, start: int, end: int, points: int) -> dict:
  """{'start', 'end', 'distance', 't', 'scores'} along (1 − t)·w_start + t·w_end."""
  a, b = scorer.weights_at(start), scorer.weights_at(end)
  ts = np.linspace(0.0, 1.0, points)
  return {'start': start, 'end': end, 'distance': relative_distance(a, b), 't': ts.tolist(),
          'scores': [scorer.score([((1 - t) * x + t * y).astype(np.float32)
                                   for x, y in zip(a, b)]) for t in ts]}


def markdown(root_dir: str, random_rows: Sequence[dict], lines: Sequence[dict],
             episodes: int) -> str:
  """The two tables as Markdown."""
  out = [f'Run `{root_dir}`; every score is the D4RL normalized score over the same {episodes} '
         'identically seeded episodes.', '']
  if random_rows:
    radii = list(random_rows[0]['radii'])
    out += ['| step | score | ' + ' | '.join(f'r = {r}: mean, min (moved > {_CHANGED:g})'
                                               for r in radii) + ' |',
            '|---:|---:|' + '---|' * len(radii)]
    for row in random_rows:
      cells = []
      for r in radii:
        scores = np.asarray(row['radii'][r])
        moved = int(np.sum(np.abs(scores - row['score']) > _CHANGED))
        cells.append(f'{scores.mean():.1f}, {scores.min():.1f} ({moved}/{scores.size})')
      out.append(f'| {row["step"]:,} | {row["score"]:.1f} | ' + ' | '.join(cells) + ' |')
    out.append('')
  if lines:
    ts = lines[0]['t']
    out += ['| from → to | ‖Δw‖/‖w‖ | ' + ' | '.join(f't = {t:.1f}' for t in ts) + ' |',
            '|---|---:|' + '---:|' * len(ts)]
    for line in lines:
      out.append(f'| {line["start"]:,} → {line["end"]:,} | {line["distance"]:.3f} | '
                 + ' | '.join(f'{s:.1f}' for s in line['scores']) + ' |')
  return '\n'.join(out) + '\n'


def main(argv: Sequence[str]) -> None:
  del argv
  f = flags.FLAGS
  pairs = []
  for text in f.lines:
    parts = text.split(':')
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) >= int(parts[1]):
      raise app.UsageError(f'--lines={text} is not START:END with START < END, two saved '
                           'steps, e.g. --lines=60000:80000.')
    pairs.append((int(parts[0]), int(parts[1])))
  if not f.steps and not pairs:
    raise app.UsageError('Pass --steps (random directions) or --lines (training line), or both.')
  if f.episodes < 1 or f.directions < 1 or f.points < 2 or min(f.radii) < 0:
    raise app.UsageError('--episodes and --directions must be >= 1, --points >= 2 and every '
                         f'--radii >= 0; got {f.episodes}, {f.directions}, {f.points}, '
                         f'{f.radii}.')
  try:
    scorer = load_scorer(f.root_dir, f.episodes, f.seed)
    for step in list(f.steps) + [s for pair in pairs for s in pair]:
      scorer.weights_at(step)  # Every step is checked before the first episode.
  except (select.SelectionError, ValueError) as e:
    raise app.UsageError(str(e)) from e
  random_rows = [random_directions(scorer, s, f.radii, f.directions, f.seed) for s in f.steps]
  lines = [training_line(scorer, a, b, f.points) for a, b in pairs]
  text = markdown(f.root_dir, random_rows, lines, f.episodes)
  print(text)
  if f.output:
    os.makedirs(os.path.dirname(os.path.abspath(f.output)), exist_ok=True)
    write_file_atomically(f.output + '.md', text)
    write_file_atomically(f.output + '.json', json.dumps(
        {'root_dir': f.root_dir, 'episodes': f.episodes, 'seed': f.seed,
         'random_directions': random_rows, 'training_lines': lines}, indent=1))


def define_flags() -> None:
  flags.DEFINE_string('root_dir', None, 'A cql_sac_train_eval run directory.', required=True)
  flags.DEFINE_multi_integer('steps', [], 'Saved steps to move in random directions.')
  flags.DEFINE_multi_string('lines', [], 'START:END pairs of saved steps; repeat.')
  flags.DEFINE_multi_float('radii', list(_RADII), 'Relative radii of the random moves; repeat.')
  flags.DEFINE_integer('directions', 4, 'Random directions per radius.')
  flags.DEFINE_integer('points', 11, 'Points along each training line, ends included.')
  flags.DEFINE_integer('episodes', 2, 'Episodes per score.')
  flags.DEFINE_integer('seed', 100, 'Seed of the episodes and of the random directions.')
  flags.DEFINE_string('output', None, 'Write <output>.md and <output>.json.')


if __name__ == '__main__':
  define_flags()
  app.run(main)
