import jax
import numpy as np

from jbatch.data import shuffle


def test_is_a_permutation_for_awkward_sizes():
  for n in (1, 2, 3, 7, 100, 257, 4096, 135_844):
    p = np.asarray(shuffle.permutation(jax.random.key(3), n))
    np.testing.assert_array_equal(np.sort(p), np.arange(n))


def test_depends_on_key_only():
  a = shuffle.permutation(jax.random.key(0), 1000)
  b = shuffle.permutation(jax.random.key(0), 1000)
  c = shuffle.permutation(jax.random.key(1), 1000)
  np.testing.assert_array_equal(a, b)
  assert (np.asarray(a) != np.asarray(c)).mean() > 0.9


def test_positions_are_uniform():
  # Where each of 10 items lands over 3000 keys: a chi-square test against uniform.
  n, trials = 10, 3000
  keys = jax.random.split(jax.random.key(7), trials)
  perms = np.asarray(jax.vmap(lambda k: shuffle.permutation(k, n))(keys))
  counts = np.zeros((n, n))
  for p in perms:
    counts[np.arange(n), p] += 1
  expected = trials / n
  chi2_per_dof = ((counts - expected) ** 2 / expected).sum() / (n - 1) ** 2
  assert chi2_per_dof < 1.5  # 81 dof: 1.5 is far in the tail for a uniform shuffle
