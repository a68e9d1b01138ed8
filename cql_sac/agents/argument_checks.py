"""The checks of `CqlSacAgent`'s constructor arguments, in one place.

Each check raises `ValueError` with the argument's name, the value given and what to pass
instead, before the agent builds anything.
"""

from typing import Tuple

import numpy as np
import tensorflow as tf
from tf_agents.specs import tensor_spec


def check_cql_sac_arguments(action_spec, critic_network, actor_network, cql_alpha,
                            num_cql_samples, use_lagrange_cql_alpha: bool, softmax_temperature,
                            log_cql_alpha_clipping, cql_clip_diff_min: float,
                            cql_clip_diff_max: float, max_target_num_samples, num_critics,
                            actor_ema_tau, actor_bc_weight) -> None:
  """Checks the arguments of `CqlSacAgent.__init__` that have a valid range.

  Args:
    action_spec: The agent's action spec.
    critic_network: The first critic network (None is not checked).
    actor_network: The actor network.
    cql_alpha: α' (float or variable); must be > 0 with `use_lagrange_cql_alpha`.
    num_cql_samples: N, an integer >= 1.
    use_lagrange_cql_alpha: Whether α' is learned.
    softmax_temperature: T, a number (or variable) > 0.
    log_cql_alpha_clipping: None or (min, max) with min <= max.
    cql_clip_diff_min: Lower clip of the per-state gap.
    cql_clip_diff_max: Upper clip, >= `cql_clip_diff_min`.
    max_target_num_samples: None or an integer >= 1.
    num_critics: C, an integer >= 2.
    actor_ema_tau: None or a number in (0, 1].
    actor_bc_weight: A number >= 0.

  Raises:
    ValueError: If the action spec is not a single float `BoundedTensorSpec` of rank 1
      with finite bounds, min < max; if `num_cql_samples < 1`, `softmax_temperature <= 0`,
      `cql_alpha <= 0` with `use_lagrange_cql_alpha`, if `log_cql_alpha_clipping` is not
      (min, max) with min <= max, if `cql_clip_diff_min > cql_clip_diff_max`,
      `num_critics < 2`, `max_target_num_samples < 1`, `actor_ema_tau` outside (0, 1],
      `actor_bc_weight` negative or not a number, or if the actor is recurrent (has a
      non-empty `state_spec`) and the critic is not.
  """
  if not cql_clip_diff_min <= cql_clip_diff_max:
    raise ValueError(
        f'cql_clip_diff_min ({cql_clip_diff_min}) must be <= cql_clip_diff_max '
        f'({cql_clip_diff_max}); they bound each state\'s CQL gap.')
  _check_action_spec(action_spec)
  _integer_at_least(
      'num_cql_samples', num_cql_samples, 1,
      'It is the number of policy (and of uniform) action samples per state; '
      '10 is the paper\'s value.')
  _integer_at_least('num_critics', num_critics, 2,
                    'CQL-SAC keeps at least the twin critics of SAC.')
  if max_target_num_samples is not None:
    _integer_at_least('max_target_num_samples', max_target_num_samples, 1,
                      'It is the number of next-state actions of the max backup.')
  _positive_number('softmax_temperature', softmax_temperature)
  if actor_ema_tau is not None and (isinstance(actor_ema_tau, bool) or not isinstance(
      actor_ema_tau, (int, float)) or not 0.0 < actor_ema_tau <= 1.0):
    raise ValueError(f'actor_ema_tau must be None or in (0, 1], got {actor_ema_tau!r}: it is '
                     'the Polyak factor of the averaged actor (e.g. 1e-3).')
  if isinstance(actor_bc_weight, bool) or not isinstance(
      actor_bc_weight, (int, float)) or not actor_bc_weight >= 0.0:
    raise ValueError(f'actor_bc_weight must be a number >= 0, got {actor_bc_weight!r}: it '
                     'weighs the behaviour-cloning term of the actor loss (0: none; '
                     "TD3+BC's is 0.4).")
  if use_lagrange_cql_alpha:
    try:
      _positive_number('cql_alpha', cql_alpha)
    except ValueError as e:
      raise ValueError(
          f'{e} With use_lagrange_cql_alpha=True, cql_alpha is the initial '
          'value of exp(log_cql_alpha).') from None
  if log_cql_alpha_clipping is not None and (
      len(log_cql_alpha_clipping) != 2
      or log_cql_alpha_clipping[0] > log_cql_alpha_clipping[1]):
    raise ValueError(
        'log_cql_alpha_clipping must be a (min, max) pair with min <= max, '
        f'got {log_cql_alpha_clipping!r}.')
  recurrent = lambda net: net is not None and bool(tf.nest.flatten(net.state_spec))
  if recurrent(actor_network) and not recurrent(critic_network):
    raise ValueError(
        'actor_network is recurrent but critic_network is not: the agent trains on '
        'sequences only with a recurrent critic (as tf_agents\' SacAgent). Use '
        'tf_agents.agents.ddpg.critic_rnn_network.CriticRnnNetwork, or a feed-forward '
        'ActorDistributionNetwork.')


def check_state_smoothing_arguments(time_step_spec, critic_network, actor_network, weight,
                                    epsilon, num_samples) -> Tuple[float, float, int]:
  """Checks `CqlSacAgent`'s `actor_state_smoothing_*` arguments; returns them as
  (weight float, epsilon float, num_samples int).

  Args:
    time_step_spec: The agent's `TimeStep` spec.
    critic_network: The first critic network (None is not checked).
    actor_network: The actor network.
    weight: β_s, a number >= 0.
    epsilon: ε, a number > 0.
    num_samples: M, an integer >= 1.

  Raises:
    ValueError: If `weight` is negative or not a number, `epsilon <= 0`, `num_samples < 1`,
      or if `weight > 0` and the actor or the critic is recurrent, or the observation is not
      one rank-1 float tensor.
  """
  if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0.0:
    raise ValueError(f'actor_state_smoothing_weight must be a number >= 0, got {weight!r}: '
                     'it weighs the state-smoothing term of the actor loss (0: none).')
  _positive_number('actor_state_smoothing_epsilon', epsilon)
  _integer_at_least('actor_state_smoothing_samples', num_samples, 1,
                    'It is the number of perturbed states per state.')
  checked = (float(weight), float(epsilon), int(num_samples))
  if not weight > 0:
    return checked
  recurrent = lambda net: net is not None and bool(tf.nest.flatten(net.state_spec))
  if recurrent(actor_network) or recurrent(critic_network):
    raise ValueError('actor_state_smoothing_weight > 0 needs a feed-forward actor and '
                     'critic: set it to 0 for recurrent networks.')
  observation = tf.nest.flatten(time_step_spec.observation)
  if len(observation) != 1 or len(observation[0].shape) != 1 or not tf.as_dtype(
      observation[0].dtype).is_floating:
    raise ValueError('actor_state_smoothing_weight > 0 needs one rank-1 float observation, '
                     f'got {time_step_spec.observation}: flatten the observation or set '
                     'the weight to 0.')
  return checked


def _integer_at_least(name: str, value, minimum: int, meaning: str) -> None:
  """Raises ValueError unless `value` is a (non-bool) integer >= `minimum`."""
  if isinstance(value, bool) or not isinstance(
      value, (int, np.integer)) or value < minimum:
    raise ValueError(
        f'{name} must be an integer >= {minimum}, got {value!r}. {meaning}')


def _positive_number(name: str, value) -> None:
  """Raises ValueError unless `value` (a number or variable) is > 0."""
  number = float(value.numpy() if hasattr(value, 'numpy') else value)
  if not number > 0:
    raise ValueError(
        f'{name} must be > 0, got {number}. Pass a positive float.')


def _check_action_spec(action_spec) -> None:
  """Raises ValueError unless `action_spec` is one rank-1 float bounded spec."""
  flat = tf.nest.flatten(action_spec)
  if len(flat) != 1:
    raise ValueError(
        f'action_spec must be a single BoundedTensorSpec, got {len(flat)} '
        f'specs: {action_spec}. Concatenate the actions into one vector.')
  spec = flat[0]
  if not isinstance(spec, tensor_spec.BoundedTensorSpec):
    raise ValueError(
        f'action_spec must be bounded, got {spec}. CQL samples actions '
        'uniformly within the bounds: use a BoundedTensorSpec with finite '
        'minimum and maximum.')
  if not tf.as_dtype(spec.dtype).is_floating:
    raise ValueError(
        f'action_spec must have a float dtype (continuous actions), got '
        f'{spec.dtype}. Discrete actions are not supported by CQL-SAC.')
  if len(spec.shape) != 1:
    raise ValueError(
        f'action_spec must have rank 1 (shape [A]), got shape {spec.shape}. '
        'Flatten the action.')
  bounds = np.stack(np.broadcast_arrays(spec.minimum, spec.maximum))
  if not np.all(np.isfinite(bounds)) or np.any(bounds[1] <= bounds[0]):
    raise ValueError(
        f'action_spec bounds must be finite with minimum < maximum, got '
        f'minimum={spec.minimum}, maximum={spec.maximum}.')
