"""MultiActionCriticNetwork: TF-Agents' concat critic, computed per state."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.agents.ddpg import critic_network
from tf_agents.specs import tensor_spec

from cql_sac.critic_network import MultiActionCriticNetwork
from tests.agents import agent_fixtures as fx

O, A, B, M = 5, 3, 4, 7
SPECS = (tensor_spec.TensorSpec([O], tf.float32), tensor_spec.TensorSpec([A], tf.float32))


def _numpy_q(network, observation, actions):
  """ReLU MLP on concat(observation, action) from the weights alone, float64."""
  x = np.concatenate([np.broadcast_to(observation[:, None], actions.shape[:2] + (O,)),
                      actions], axis=-1)
  *hidden, (value_kernel, value_bias) = fx.layers(network)
  for kernel, bias in hidden:
    x = np.maximum(x @ kernel + bias, 0.0)
  return (x @ value_kernel + value_bias)[..., 0]


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(B, O)), rng.uniform(-1, 1, size=(B, M, A))


def test_action_sets_match_numpy_mlp_on_concatenated_inputs():
  network = MultiActionCriticNetwork(SPECS, (16, 8))
  network.create_variables()
  for v in network.trainable_variables:  # Non-zero biases, so their use is checked too.
    v.assign(v + 0.1)
  observation, actions = _inputs()
  q = network.q_for_action_sets(tf.constant(observation, tf.float32),
                                tf.constant(actions, tf.float32))
  assert q.shape == (B, M) and q.dtype == tf.float32
  np.testing.assert_allclose(q.numpy(), _numpy_q(network, observation, actions),
                             rtol=1e-5, atol=1e-5)
  single, state = network((tf.constant(observation, tf.float32),
                           tf.constant(actions[:, 0], tf.float32)))
  np.testing.assert_allclose(single.numpy(), q.numpy()[:, 0], rtol=1e-6)
  assert state == ()


def test_same_variables_and_outputs_as_tf_agents_critic_network():
  ours = MultiActionCriticNetwork(SPECS, (16, 8))
  theirs = critic_network.CriticNetwork(SPECS, joint_fc_layer_params=(16, 8))
  ours.create_variables()
  theirs.create_variables()
  assert ([v.shape for v in ours.trainable_variables]
          == [v.shape for v in theirs.trainable_variables])
  for source, target in zip(theirs.trainable_variables, ours.trainable_variables):
    target.assign(source + 0.05)
    source.assign(source + 0.05)
  observation, actions = (tf.constant(x[:, 0] if x.ndim == 3 else x, tf.float32)
                          for x in _inputs(1))
  np.testing.assert_allclose(ours((observation, actions))[0].numpy(),
                             theirs((observation, actions))[0].numpy(), rtol=1e-5, atol=1e-6)


def test_bfloat16_runs_later_matmuls_in_bfloat16_and_returns_float32():
  network = MultiActionCriticNetwork(SPECS, (16, 8), compute_dtype='bfloat16')
  network.create_variables()
  assert {v.dtype for v in network.variables} == {tf.float32}
  graph = tf.function(network.q_for_action_sets).get_concrete_function(
      tf.TensorSpec([None, O]), tf.TensorSpec([None, None, A])).graph
  matmul_dtypes = [op.get_attr('T') for op in graph.get_operations()
                   if op.type in ('MatMul', 'BatchMatMulV2')]
  # First layer (observation and action matmuls) in float32; layer 2 and the output in bfloat16.
  assert sorted(matmul_dtypes, key=str) == [tf.bfloat16] * 2 + [tf.float32] * 2
  observation, actions = _inputs(2)
  q = network.q_for_action_sets(tf.constant(observation, tf.float32),
                                tf.constant(actions, tf.float32))
  assert q.dtype == tf.float32
  np.testing.assert_allclose(q.numpy(), _numpy_q(network, observation, actions),
                             rtol=0.05, atol=0.05)


def test_bfloat16_hidden_matmuls_are_not_followed_by_a_bias_add():
  # A BiasAdd/AddV2 right after a MatMul lets TensorFlow's remapper fuse them into oneDNN's
  # inner-product kernel, about 3x slower than its AMX matmul in bfloat16 (critic_network.py).
  network = MultiActionCriticNetwork(SPECS, (16, 8, 8), compute_dtype='bfloat16')
  network.create_variables()
  graph = tf.function(network.q_for_action_sets).get_concrete_function(
      tf.TensorSpec([None, O]), tf.TensorSpec([None, None, A])).graph
  hidden_matmuls = [op for op in graph.get_operations()
                    if op.type == 'MatMul' and op.get_attr('T') == tf.bfloat16
                    and op.outputs[0].shape[-1] != 1]
  assert len(hidden_matmuls) == 2  # Layers 2 and 3 (the first is float32).
  for op in hidden_matmuls:
    assert [consumer.type for consumer in op.outputs[0].consumers()] == ['Reshape']


@pytest.mark.parametrize('specs,layers,dtype,message', [
    ({'a': SPECS[0]}, (8,), 'float32', 'must be an .observation_spec, action_spec. pair'),
    ((tensor_spec.TensorSpec([2, 2], tf.float32), SPECS[1]), (8,), 'float32',
     'rank-1 float observation spec.*Flatten'),
    ((SPECS[0], tensor_spec.TensorSpec([A], tf.int32)), (8,), 'float32',
     'rank-1 float action spec'),
    (SPECS, (), 'float32', 'at least one hidden layer'),
    (SPECS, (8,), 'float16', "compute_dtype must be one of .* 'float16'"),
])
def test_bad_arguments_raise(specs, layers, dtype, message):
  with pytest.raises(ValueError, match=message):
    MultiActionCriticNetwork(specs, layers, compute_dtype=dtype)


@pytest.mark.parametrize('dtype, tolerance', [('float32', 1e-5), ('bfloat16', 5e-2)])
def test_layer_norm_matches_numpy_mlp_with_layer_normalization(dtype, tolerance):
  network = MultiActionCriticNetwork(SPECS, (16, 8), compute_dtype=dtype, layer_norm=True)
  network.create_variables()
  rng = np.random.default_rng(3)
  for v in network.trainable_variables:  # Non-trivial scales and offsets, so both are used.
    v.assign(v + rng.normal(0.0, 0.3, v.shape))
  dense = [v for v in network.trainable_variables if 'layer_norm' not in v.name]
  scales = [v.numpy() for v in network.trainable_variables if 'layer_norm/gamma' in v.name]
  offsets = [v.numpy() for v in network.trainable_variables if 'layer_norm/beta' in v.name]
  assert len(scales) == len(offsets) == 2
  observation, actions = _inputs(2)
  x = np.concatenate([np.broadcast_to(observation[:, None], actions.shape[:2] + (O,)),
                      actions], axis=-1)
  *hidden, (value_kernel, value_bias) = fx.layers(dense)
  for (kernel, bias), scale, offset in zip(hidden, scales, offsets):
    h = x @ kernel + bias
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
    x = np.maximum(h * scale + offset, 0.0)
  expected = (x @ value_kernel + value_bias)[..., 0]
  q = network.q_for_action_sets(tf.constant(observation, tf.float32),
                                tf.constant(actions, tf.float32))
  assert q.dtype == tf.float32
  np.testing.assert_allclose(q.numpy(), expected, rtol=tolerance, atol=tolerance)
  copy = network.copy(name='Copy')  # Target critics are copies: the option must carry over.
  copy.create_variables()
  assert len(copy.trainable_variables) == len(network.trainable_variables)
