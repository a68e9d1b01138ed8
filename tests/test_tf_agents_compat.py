"""tf_agents' own CqlSacAgent test file, run against this project's agent.

The file is loaded from the installed tf-agents (`tf_agents/agents/cql/cql_sac_agent_test.py`,
not copied) and its module-level name `cql_sac_agent` is rebound to
`cql_sac.agents.cql_sac_agent`: every test constructs and calls our `CqlSacAgent` through
tf_agents' constructor arguments and extension points (`_cql_loss`,
`_critic_loss_with_optional_entropy_term`, `actor_loss`, `_get_cql_alpha`, `train`), with
tf_agents' mocks and its recurrent networks.

Three groups:
  * PASSING: run unchanged, must pass.
  * RANDOM_STREAM: the expected numbers come from tf_agents' stateful random stream (global
    seed, seed streams), which this agent replaces by stateless draws seeded by the train
    step (exact resume). These run unchanged except that `assertAllClose` records the
    compared values instead of failing; every other assertion of the test still applies
    (train-step counter, sign of the Lagrange loss), and the recorded values must be finite
    and of the expected shape: the recurrent tests train. The recorded comparisons that do
    not depend on the draws (`DRAW_FREE`) must match.
  * DESIGN: testActorLoss1, the behaviour-cloning log-likelihood. tf_agents takes it from
    the actor network called directly, this agent from the training policy's distribution
    (as the CQL authors' code); the test's mock policy (log-density 10 everywhere) and its
    mock network disagree, so the two differ there; checked to be the policy's value.
"""
import importlib.util
import os
import unittest

import numpy as np
import pytest
import tensorflow as tf
import tf_agents

from cql_sac.agents import cql_sac_agent

TF_AGENTS_TEST = os.path.join(os.path.dirname(tf_agents.__file__), 'agents', 'cql',
                              'cql_sac_agent_test.py')

PASSING = ('testActorLoss0', 'testAgentTrajectoryTrain', 'testAgentTransitionTrain',
           'testCriticLoss0', 'testCriticLoss1')
RANDOM_STREAM_REASON = ("expected numbers from tf_agents' stateful random stream; this agent "
                        "draws statelessly, seeded by the train step")
RANDOM_STREAM = ('testCqlLoss0', 'testCqlLoss1', 'testCriticLoss2', 'testCriticLoss3',
                 'testTrainWithLagrange0', 'testTrainWithLagrange1', 'testTrainWithLagrange2',
                 'testTrainWithRnn0', 'testTrainWithRnn1', 'testTrainWithRnn2',
                 'testTrainWithRnn3')
DESIGN = ('testActorLoss1',)
# Recorded comparisons of RANDOM_STREAM tests that do not depend on the draws and must still
# match: α' at steps one and two of the Lagrange tests (one Adam step moves log α' by the
# learning rate whatever the gradient's size).
DRAW_FREE = {f'testTrainWithLagrange{i}': (1, 3) for i in range(3)}


@pytest.fixture(scope='module')
def tf_agents_tests():
  """The installed test module with `cql_sac_agent` pointing at this project's agent.

  Importing it turns on Keras' TF random generator; the previous setting is restored.
  """
  was_enabled = tf.keras.backend.experimental.is_tf_random_generator_enabled()
  spec = importlib.util.spec_from_file_location('tf_agents_cql_sac_agent_test', TF_AGENTS_TEST)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  module.cql_sac_agent = cql_sac_agent
  yield module
  if not was_enabled:
    tf.keras.backend.experimental.disable_tf_random_generator()


def _run(test_case) -> unittest.TestResult:
  result = unittest.TestResult()
  test_case.run(result)
  return result


def _recording(module, name: str, recorded: list):
  """The test `name` with `assertAllClose(a, b)` appending (a, b) to `recorded` instead."""

  class Recording(module.CqlSacAgentTest):

    def assertAllClose(self, a, b, *args, **kwargs):  # pylint: disable=invalid-name
      del args, kwargs
      recorded.append((np.asarray(a, np.float64), np.asarray(b, np.float64)))

  return Recording(name)


def _problems(result: unittest.TestResult) -> str:
  return '\n'.join(text for _, text in result.errors + result.failures)


def test_every_tf_agents_test_is_listed(tf_agents_tests):
  names = unittest.defaultTestLoader.getTestCaseNames(tf_agents_tests.CqlSacAgentTest)
  assert sorted(n for n in names if n != 'test_session') == sorted(
      PASSING + RANDOM_STREAM + DESIGN)


@pytest.mark.parametrize('name', PASSING)
def test_passes_unchanged(tf_agents_tests, name):
  result = _run(tf_agents_tests.CqlSacAgentTest(name))
  assert result.wasSuccessful(), _problems(result)


@pytest.mark.parametrize('name', RANDOM_STREAM)
def test_runs_with_random_stream_values_recorded(tf_agents_tests, name):
  recorded = []
  result = _run(_recording(tf_agents_tests, name, recorded))
  assert result.wasSuccessful(), _problems(result)
  assert recorded, RANDOM_STREAM_REASON
  for ours, expected in recorded:
    assert ours.shape == expected.shape and np.all(np.isfinite(ours)), (ours, expected)
  for index in DRAW_FREE.get(name, ()):
    np.testing.assert_allclose(*recorded[index], rtol=2e-5, atol=2e-5)


def test_bc_log_likelihood_comes_from_the_training_policy(tf_agents_tests):
  recorded = []
  result = _run(_recording(tf_agents_tests, 'testActorLoss1', recorded))
  assert result.wasSuccessful(), _problems(result)
  # BC step: α·log π(a|s) − log π(a_data|s) with the mock policy's log-density 10 for both.
  assert [(float(a), float(b)) for a, b in recorded] == [(pytest.approx(0.0, abs=1e-6),
                                                          pytest.approx(13.404237))]
