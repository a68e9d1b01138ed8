"""Returns-to-go for Cal-QL against a direct NumPy sum (1e-6)."""
import numpy as np
import pytest

from cql_sac.datasets import returns
from tests.data import helpers

GAMMA = 0.9


def _direct_returns(rewards, discounts, lengths, scale, shift, failure):
  """G_t = Σ_{k=t}^{n-2} γ^{k-t} (Π_{j=t}^{k-1} d_j) r'_k per episode, written as a sum."""
  out, start = [], 0
  for n in lengths:
    r = scale * (np.asarray(rewards[start:start + n], np.float64) + shift)
    d = np.asarray(discounts[start:start + n], np.float64)
    if n == 1:
      out.append([r[0]])
    elif failure is not None and np.all(r[:-1] == scale * (failure + shift)):
      out.append([scale * (failure + shift) / (1 - GAMMA)] * (n - 1) + [0.0])
    else:
      g = [sum(GAMMA ** (k - t) * np.prod(d[t:k]) * r[k] for k in range(t, n - 1))
           for t in range(n - 1)]
      out.append(g + [0.0])
    start += n
  return np.concatenate(out)


@pytest.mark.parametrize('scale, shift', [(1.0, 0.0), (10.0, -0.5)])
def test_returns_to_go_match_a_direct_sum(scale, shift):
  """A terminal episode (discount 0 into the terminal), a time-limit one (the return stops,
  no bootstrap), a one-step episode, and two sparse ones: all-failure and one success."""
  lengths = [4, 5, 1, 3, 4]
  rng = np.random.default_rng(0)
  rewards = rng.normal(size=sum(lengths)).astype(np.float32)
  rewards[10:13] = 0.0  # Episode 3: rewards 0, 0 (+ the undefined last one): all failure.
  rewards[13:17] = [0.0, 0.0, 1.0, 7.0]  # Episode 4: a success at its last transition.
  discounts = np.ones(sum(lengths), np.float32)
  discounts[2] = 0.0  # Into episode 0's terminal.
  terminal = np.zeros(sum(lengths), bool)
  terminal[3] = True
  steps = helpers.episode_steps(np.zeros((sum(lengths), 2), np.float32), lengths, rewards,
                                discounts, terminal)
  for failure in (None, 0.0):
    got = returns.returns_to_go(steps, GAMMA, scale, shift, sparse_failure_reward=failure)
    want = _direct_returns(rewards, discounts, lengths, scale, shift, failure)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert got.dtype == np.float32
  sparse = returns.returns_to_go(steps, GAMMA, scale, shift, sparse_failure_reward=0.0)
  np.testing.assert_allclose(sparse[10:12], scale * shift / (1 - GAMMA), rtol=1e-6)
  assert sparse[15] == pytest.approx(scale * (1.0 + shift))  # Success episode: discounted.


def test_gamma_must_be_below_one():
  steps = helpers.episode_steps(np.zeros((2, 1), np.float32), [2])
  with pytest.raises(ValueError, match=r'gamma must be in \[0, 1\)'):
    returns.returns_to_go(steps, 1.0)
