"""Behaviour policies shipped as NumPy weights: a TF-Agents SAC actor run without TensorFlow.

A policy saved by `cql_sac_make_behavior` is a TF-Agents SavedModel (megabytes, and loading it
needs TensorFlow and the distribution type specs registered). Its actor is small: an
`ActorDistributionNetwork` (ReLU MLP) with a `TanhNormalProjectionNetwork` head. This module
writes that actor's weights to a `.npz` file (`export_actor_weights`) and runs the greedy
action, tanh(loc) scaled to the action bounds (the mode TF-Agents' `GreedyPolicy` takes of
the squashed Normal), in NumPy, with the "imperfect demonstrations" noise of Fujimoto et al.
2019 (BCQ, section 6): with probability `random_action_probability` a uniform-random action,
otherwise the greedy action plus N(0, action_noise^2) noise, clipped to the bounds; and, as
D4RL's medium-replay mixes its SAC episodes with uniform-random ones, whole episodes of
uniform-random actions with probability `random_episode_probability` (`NoisyActorPolicy`, a
TF-Agents `PyPolicy` that `cql_sac.recording.collect.write_dataset` runs).

The `.npz` holds `kernel_<i>`, `bias_<i>` float32 for i = 0..L-1 (hidden layers, then the
projection layer, whose 2A outputs are [loc, log-scale]) and `action_minimum`,
`action_maximum` float32 [A].
"""

import os
from typing import Dict, Optional

import numpy as np
from tf_agents.policies import py_policy
from tf_agents.specs import array_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

# The embedded Hopper behaviour policy (README.md beside it gives its provenance).
HOPPER_MEDIUM_ACTOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'behavior',
                                   'hopper_medium_actor.npz')
# Its greedy policy's mean return in Hopper-v4 (11 episodes, seed 0; behavior/README.md).
HOPPER_MEDIUM_GREEDY_RETURN = 1310.8
_ACTOR_SCOPE = 'ActorDistributionNetwork/'


def export_actor_weights(policy_dir: str, path: str) -> None:
  """Writes the actor weights of a TF-Agents policy SavedModel to a `.npz` file.

  Args:
    policy_dir: A PolicySaver directory of a policy whose actor is an
      `ActorDistributionNetwork` with a `TanhNormalProjectionNetwork` head (SAC's and
      CQL-SAC's, e.g. `<output_dir>/policies/medium` of cql_sac_make_behavior).
    path: The `.npz` file to write (format in the module docstring).

  Raises:
    ValueError: If the SavedModel holds no such actor.
  """
  # Only export needs TensorFlow; the loader reads the specs PolicySaver wrote beside it.
  from tf_agents.policies import py_tf_eager_policy  # pylint: disable=import-outside-toplevel

  policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(policy_dir, load_specs_from_pbtxt=True)
  variables = [v for v in policy.variables() if v.name.startswith(_ACTOR_SCOPE)]
  kernels = [v.numpy() for v in variables if v.name.endswith('/kernel:0')]
  biases = [v.numpy() for v in variables if v.name.endswith('/bias:0')]
  if not kernels or len(kernels) != len(biases) or len(variables) != 2 * len(kernels):
    raise ValueError(f'{policy_dir} holds no ActorDistributionNetwork actor (its variables: '
                     f'{[v.name for v in policy.variables()]}). Pass the SavedModel of a '
                     'SAC or CQL-SAC policy.')
  spec = policy.action_spec
  arrays = {f'kernel_{i}': k for i, k in enumerate(kernels)}
  arrays.update({f'bias_{i}': b for i, b in enumerate(biases)})
  arrays['action_minimum'] = np.broadcast_to(spec.minimum, spec.shape).astype(np.float32)
  arrays['action_maximum'] = np.broadcast_to(spec.maximum, spec.shape).astype(np.float32)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  np.savez(path, **arrays)


def load_actor_weights(path: str) -> Dict[str, np.ndarray]:
  """Reads a `.npz` written by `export_actor_weights`.

  Raises:
    ValueError: If the file lacks the layers or the action bounds.
  """
  with np.load(path) as data:
    weights = {name: data[name].astype(np.float32) for name in data.files}
  if 'kernel_0' not in weights or 'action_minimum' not in weights:
    raise ValueError(f'{path} is not an actor weights file of cql_sac (keys: '
                     f'{sorted(weights)}). Write one with export_actor_weights.')
  return weights


def greedy_actions(weights: Dict[str, np.ndarray], observations: np.ndarray) -> np.ndarray:
  """The greedy (mode) actions of the actor: tanh(loc) mapped onto the action bounds.

  Args:
    weights: From `load_actor_weights`.
    observations: float32 [B, O].

  Returns:
    float32 [B, A], inside [action_minimum, action_maximum].
  """
  num_layers = sum(name.startswith('kernel_') for name in weights)
  hidden = np.asarray(observations, np.float32)
  for i in range(num_layers - 1):
    hidden = np.maximum(hidden @ weights[f'kernel_{i}'] + weights[f'bias_{i}'], 0.0)
  out = hidden @ weights[f'kernel_{num_layers - 1}'] + weights[f'bias_{num_layers - 1}']
  loc = out[:, :out.shape[1] // 2]
  low, high = weights['action_minimum'], weights['action_maximum']
  return (low + (np.tanh(loc) + 1.0) * 0.5 * (high - low)).astype(np.float32)


class NoisyActorPolicy(py_policy.PyPolicy):
  """The greedy actor of a `.npz` file with Gaussian noise and uniform-random actions.

  Per episode (drawn in `get_initial_state`, which the caller invokes at each reset): with
  probability `random_episode_probability` every action of the episode is uniform over the
  bounds. Per step of the other episodes: with probability `random_action_probability` a
  uniform action, otherwise clip(greedy(o) + N(0, action_noise^2 I), bounds) (BCQ's imperfect
  demonstrations, Fujimoto et al. 2019, section 6, use 0.3 for both). The policy state is a
  bool scalar, True in a random episode. Actions float32 [A].
  """

  def __init__(self, time_step_spec: ts.TimeStep, action_spec: array_spec.BoundedArraySpec,
               weights_path: str, action_noise: float = 0.0,
               random_action_probability: float = 0.0, random_episode_probability: float = 0.0,
               seed: Optional[int] = None):
    """Loads the actor.

    Args:
      time_step_spec: The environment's TimeStep spec (observation float32 [O]).
      action_spec: The environment's bounded float32 action spec [A].
      weights_path: A `.npz` of `export_actor_weights`.
      action_noise: Standard deviation of the Gaussian action noise, in action units, >= 0.
      random_action_probability: Probability of a uniform-random action, in [0, 1].
      random_episode_probability: Probability of a whole uniform-random episode, in [0, 1].
      seed: Seeds the noise; None for a random seed.

    Raises:
      ValueError: For noise out of range, or weights whose sizes do not fit the specs.
    """
    probabilities = (random_action_probability, random_episode_probability)
    if action_noise < 0 or not all(0 <= p <= 1 for p in probabilities):
      raise ValueError(f'action_noise must be >= 0 and random_action_probability and '
                       f'random_episode_probability in [0, 1], got {action_noise} and '
                       f'{probabilities}.')
    super().__init__(time_step_spec, action_spec,
                     policy_state_spec=array_spec.ArraySpec((), np.bool_))
    self._weights = load_actor_weights(weights_path)
    observation_dim = time_step_spec.observation.shape[0]
    action_dim = action_spec.shape[0]
    if (self._weights['kernel_0'].shape[0] != observation_dim
        or self._weights['action_minimum'].shape != (action_dim,)):
      raise ValueError(
          f'{weights_path} is an actor for observations of size '
          f'{self._weights["kernel_0"].shape[0]} and {self._weights["action_minimum"].size} '
          f'actions; the environment has {observation_dim} and {action_dim}. Use the actor '
          'of this environment.')
    self._action_noise = action_noise
    self._random_action_probability = random_action_probability
    self._random_episode_probability = random_episode_probability
    self._rng = np.random.default_rng(seed)

  def _get_initial_state(self, batch_size: Optional[int]) -> np.ndarray:
    """Draws whether the episode that starts is uniform-random (bool scalar)."""
    del batch_size  # Unbatched.
    return np.array(self._rng.random() < self._random_episode_probability)

  def _action(self, time_step: ts.TimeStep, policy_state, seed=None) -> policy_step.PolicyStep:
    low, high = self._weights['action_minimum'], self._weights['action_maximum']
    if policy_state or self._rng.random() < self._random_action_probability:
      action = self._rng.uniform(low, high)
    else:
      action = greedy_actions(self._weights, time_step.observation[None])[0]
      action = np.clip(action + self._action_noise * self._rng.standard_normal(action.shape),
                       low, high)
    return policy_step.PolicyStep(action.astype(np.float32), policy_state, ())
