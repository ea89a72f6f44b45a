"""The checkers themselves: calibrated on equal laws, and they reject different ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sympe_jax.testing import assert_equivariant, assert_same_law, chi2_homogeneity, ks_two_sample


def test_ks_and_chi2_match_known_values():
    rng = np.random.default_rng(0)
    _, p_same = ks_two_sample(rng.normal(size=2000), rng.normal(size=2000))
    _, p_shift = ks_two_sample(rng.normal(size=2000), rng.normal(0.2, size=2000))
    assert p_same > 0.01 and p_shift < 1e-4
    stat, dof, p = chi2_homogeneity(np.array([0] * 50 + [1] * 50), np.array([0] * 50 + [1] * 50))
    assert stat == 0 and dof == 1 and p == pytest.approx(1.0)


def test_false_alarm_rate_is_near_alpha():
    rng = np.random.default_rng(1)
    rejections = 0
    for _ in range(200):
        try:
            assert_same_law(rng.integers(0, 4, 400), rng.integers(0, 4, 400), alpha=0.05)
        except AssertionError:
            rejections += 1
    assert rejections < 25  # about 10 expected


def test_different_laws_are_rejected():
    rng = np.random.default_rng(2)
    with pytest.raises(AssertionError, match="laws differ"):
        assert_same_law(rng.normal(size=(3000, 3)), rng.normal(size=(3000, 3)) * [1, 1, 1.2])
    with pytest.raises(AssertionError, match="laws differ"):
        assert_same_law(rng.integers(0, 4, 3000), rng.integers(0, 5, 3000))
    with pytest.raises(ValueError, match="shapes"):
        assert_same_law(np.zeros((5, 2)), np.zeros((5, 3)))


def test_assert_equivariant_tolerances_accept_numpy_scalars_and_reject_bools():
    """Bug: a tolerance of True was silently taken as 1.0 (every deviation below 1 passes)."""
    x = jnp.arange(4.0)
    kw = dict(sample_element=lambda k: jax.random.permutation(k, 4), act_in=lambda g, v: v[g],
              act_out=lambda g, v: v[g], num_elements=2)
    assert_equivariant(lambda v: 2 * v, jax.random.key(0), x, atol=np.float32(1e-5), rtol=np.asarray(0.0), **kw)
    for name in ("atol", "rtol"):
        with pytest.raises(TypeError, match=name):
            assert_equivariant(lambda v: 2 * v, jax.random.key(0), x, **{name: True}, **kw)
