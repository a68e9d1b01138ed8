"""CalQlAgent: the CQL loss with policy-sample Q bounded below by the return-to-go, against
NumPy (1e-5), and exactly CqlSacAgent's loss when the bound is off."""
import numpy as np
import pytest
import tensorflow as tf

from cql_sac.agents import cal_ql_agent
from cql_sac.agents import cql_sac_agent as cql
from tests.agents import agent_fixtures as fx
from tests.agents import numpy_reference as ref
from tests.agents import test_losses_numpy as losses

B, N, A = losses.B, losses.N, losses.A


class InjectedCalQlAgent(fx.InjectedSamplesAgent, cal_ql_agent.CalQlAgent):
  """CalQlAgent with the injected samples of the loss tests."""


def _with_returns(batch, returns):
  return fx.as_trajectory(batch)._replace(
      policy_info={'return_to_go': tf.constant(np.stack([returns, returns], 1), tf.float32)})


def _agents(rng, **kwargs):
  """A Cal-QL agent and a CqlSacAgent with the same weights and injected samples."""
  injected = losses._injected(rng)
  injected[cql._SEED_CQL_NEXT_POLICY] = rng.uniform(-0.9, 0.9, size=(N, B, A))
  agents = []
  for agent_class in (InjectedCalQlAgent, fx.InjectedSamplesAgent):
    agent = fx.make_agent(agent_class, initial_log_alpha=0.3, **kwargs)
    agent.injected = injected
    agents.append(agent)
  calql, plain = agents

  def network_variables(agent):
    networks = (agent._actor_network,) + agent.critics + agent.target_critics
    return [v for network in networks for v in network.variables]

  for source, target in zip(network_variables(calql), network_variables(plain)):
    target.assign(source)
  return calql, plain


@pytest.mark.parametrize('next_state_samples', [False, True])
def test_cal_ql_loss_matches_numpy(next_state_samples):
  rng = np.random.default_rng(0)
  calql, _ = _agents(rng, cql_next_state_samples=next_state_samples)
  batch = fx.random_batch(rng, B)
  critics = losses._critics(calql)
  policy_actions = np.transpose(calql.injected[cql._SEED_CQL_POLICY], [1, 0, 2])
  tiled = np.repeat(batch[0][:, None, :], N, axis=1)
  q_policy = np.stack([ref.q_value(c, tiled, policy_actions) for c in critics])  # [C, B, N]
  returns = np.median(q_policy, axis=(0, 2))  # About half the samples get lifted.
  extra = calql.loss(_with_returns(batch, returns)).extra
  kwargs = dict(temperature=1.0, uniform_log_density=-A * np.log(2.0),
                bounds=losses._bounds(calql), lower_bound=returns)
  if next_state_samples:
    kwargs.update(next_observations=batch[4], next_policy_actions=np.transpose(
        calql.injected[cql._SEED_CQL_NEXT_POLICY], [1, 0, 2]))
  want = ref.cql_loss(critics, fx.layers(calql._actor_network), batch[0], batch[1],
                      policy_actions, calql.injected['uniform'], **kwargs)
  np.testing.assert_allclose(extra.cql_loss.numpy(), want, rtol=1e-5, atol=1e-6)
  q_sets = [q_policy]
  if next_state_samples:
    next_actions = kwargs['next_policy_actions']
    q_sets.append(np.stack([ref.q_value(c, tiled, next_actions) for c in critics]))
  lifted = np.mean([(q < returns[None, :, None]).mean() for q in q_sets])
  np.testing.assert_allclose(extra.bound_rate.numpy(), lifted, rtol=1e-6)
  assert 0.2 < lifted < 0.8
  no_bound = dict(kwargs, lower_bound=None)
  assert abs(want - ref.cql_loss(critics, fx.layers(calql._actor_network), batch[0], batch[1],
                                 policy_actions, calql.injected['uniform'], **no_bound)) > 1e-3


@pytest.mark.parametrize('how', ['minus_infinity', 'calibration_off'])
def test_without_a_bound_the_loss_is_cql_sac_agents_exactly(how):
  rng = np.random.default_rng(1)
  calql, plain = _agents(rng, cql_next_state_samples=True)
  batch = fx.random_batch(rng, B)
  returns = np.full(B, -np.inf) if how == 'minus_infinity' else np.full(B, 1e6)
  if how == 'calibration_off':
    calql.set_calibration(False)
  got, want = calql.loss(_with_returns(batch, returns)), plain.loss(fx.as_trajectory(batch))
  for field in want.extra._fields:
    np.testing.assert_array_equal(getattr(got.extra, field).numpy(),
                                  getattr(want.extra, field).numpy())
  assert got.extra.bound_rate.numpy() == 0.0


def test_train_step_and_missing_returns():
  rng = np.random.default_rng(2)
  calql, _ = _agents(rng)
  batch = fx.random_batch(rng, B)
  info = calql.train(_with_returns(batch, rng.normal(size=B)))
  assert isinstance(info.extra, cal_ql_agent.CalQlLossInfo)
  assert all(np.isfinite(v.numpy()) for v in info.extra)
  with pytest.raises(ValueError, match="CalQlAgent needs each item's return-to-go"):
    calql.train(fx.as_trajectory(batch))
