"""Tests for experiments.ising.data: brute force at L = 4 (all 2^16 states) and p4m invariance."""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sympe_jax.groups import lattice

from experiments.ising import data as ising

L = 4


@pytest.fixture(scope="module")
def all_states():
    """float32[2^16, 4, 4]: every spin configuration at L = 4."""
    bits = (np.arange(2 ** (L * L))[:, None] >> np.arange(L * L)) & 1
    return (2.0 * bits - 1.0).reshape(-1, L, L).astype(np.float32)


@pytest.fixture(scope="module")
def params():
    """(jx, jy, h) float32[P] covering the paper law, the grid corners, h = 0 and negative J."""
    paper = ising.sample_params(jax.random.key(1), 200)
    u = np.random.default_rng(2).uniform(-3.0, 3.0, (200, 3)).astype(np.float32)
    corners = np.array(list(itertools.product([-3.0, 0.0, 3.0], [-3.0, 0.0, 3.0],
                                              [0.0, 0.5, 2.0, -1.5])), np.float32)
    special = np.array([[1.0, -1.0, 2.0], [1.0, -1.0, 1.99], [-1.0, 1.0, 0.0], [-1.0, -1.0, 0.0],
                        [-0.5, -0.25, 1.0], [1.0, -3.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    jx = np.concatenate([np.asarray(paper.jx), u[:, 0], u[:100, 0], corners[:, 0], special[:, 0]])
    jy = np.concatenate([np.asarray(paper.jy), u[:, 1], u[:100, 1], corners[:, 1], special[:, 1]])
    h = np.concatenate([np.asarray(paper.h), u[:, 2], np.zeros(100), corners[:, 2], special[:, 2]])
    return jx.astype(np.float32), jy.astype(np.float32), h.astype(np.float32)


@pytest.fixture(scope="module")
def brute(all_states, params):
    """float64[P, 2^16] energies per site of all states (energy is linear in (jx, jy, h))."""
    feats = np.stack([np.asarray(ising.energy_const(all_states, 1.0, 0.0, 0.0)),
                      np.asarray(ising.energy_const(all_states, 0.0, 1.0, 0.0)),
                      np.asarray(ising.energy_const(all_states, 0.0, 0.0, 1.0))], axis=0)
    return np.stack(params, axis=1).astype(np.float64) @ feats.astype(np.float64)


def _naive_energy(spins, bonds, h):
    """Loop implementation of the documented formula (float64)."""
    E = 0.0
    for x in range(L):
        for y in range(L):
            s = spins[x, y]
            E -= bonds[x, y, 0] * s * spins[(x + 1) % L, y]
            E -= bonds[x, y, 1] * s * spins[x, (y + 1) % L]
            E -= h[x, y] * s
    return E / L ** 2


def _normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _random_bonds(seed):
    """A random non-constant, consistent bond field (L, L, 4)."""
    return ising.bond_field(_normal(seed, (L, L)), _normal(seed + 1, (L, L)))


def _random_spins(seed):
    return np.sign(_normal(seed, (L, L))).astype(np.float32)


# ------------------------------------------------------------------------------- parameters


def test_sample_params_law(key):
    p = ising.sample_params(key, 4000)
    for v in p:
        assert v.shape == (4000,) and v.dtype == jnp.float32
    jx, jy, h = map(np.asarray, p)
    swapped = jx != 1.0
    assert np.all((jx == 1.0) | (jy == 1.0))
    other = np.where(swapped, jx, jy)
    assert other.min() >= -3 and other.max() <= 3 and h.min() >= 0 and h.max() <= 2
    assert 0.45 < swapped.mean() < 0.55
    # phase fractions under the paper law: ferro 1/2 + 1/12, stripes 5/12
    phase = np.asarray(ising.ground_state_phase(jx, jy, h))
    stripes = np.isin(phase, [ising.ROW_STRIPES, ising.COLUMN_STRIPES]).mean()
    assert abs(stripes - 5 / 12) < 0.04
    assert np.all(phase[swapped & (phase != ising.FERRO)] == ising.COLUMN_STRIPES)


def test_grid_params():
    p = ising.grid_params(jnp.array([-1.0, 0.0, 2.0]), jnp.array([5.0, 6.0]), 0.5)
    assert p.jx.shape == p.jy.shape == p.h.shape == (6,)
    np.testing.assert_array_equal(np.asarray(p.jx).reshape(3, 2), [[-1, -1], [0, 0], [2, 2]])
    np.testing.assert_array_equal(np.asarray(p.jy).reshape(3, 2), [[5, 6]] * 3)
    np.testing.assert_array_equal(p.h, 0.5)


def test_to_input():
    x = ising.to_input(0.5, -2.0, 1.5, 4)
    assert x.shape == (4, 4, 5) and x.dtype == jnp.float32
    np.testing.assert_array_equal(x, np.broadcast_to([0.5, -2.0, 0.5, -2.0, 1.5], (4, 4, 5)))
    xb = ising.to_input(jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0]), 0.0, 6)
    assert xb.shape == (2, 6, 6, 5)
    np.testing.assert_array_equal(xb[1, 2, 3], [2.0, 4.0, 2.0, 4.0, 0.0])
    # an odd rotation swaps the two couplings: p4m acting on the input = swapping (jx, jy)
    g = jnp.array([1, 2, 3], jnp.int32)
    np.testing.assert_array_equal(jax.jit(lattice.act_on_bonds)(g, x[..., :4]),
                                  ising.to_input(-2.0, 0.5, 1.5, 4)[..., :4])


# ---------------------------------------------------------------------------------- energies


def test_energy_matches_naive_loop():
    spins = _random_spins(0)
    bonds = np.asarray(_random_bonds(1))
    h = _normal(3, (L, L))
    np.testing.assert_allclose(ising.energy(spins, bonds, h), _naive_energy(spins, bonds, h),
                               rtol=1e-5, atol=1e-6)
    # all-up ferro: e = -(jx + jy) - h; batched constant version
    np.testing.assert_allclose(ising.energy_const(np.ones((L, L)), 0.7, -0.2, 0.3), -0.8, rtol=1e-6)
    e = ising.energy_const(np.stack([np.ones((L, L)), -np.ones((L, L))]), jnp.array([1.0, 2.0]),
                           jnp.array([1.0, 1.0]), jnp.array([0.5, 0.5]))
    np.testing.assert_allclose(e, [-2.5, -2.5], rtol=1e-6)


def test_e_min_brute_force(brute, params):
    jx, jy, h = params
    np.testing.assert_allclose(brute.min(axis=1), ising.e_min(jx, jy, h), atol=1e-5, rtol=0)


def test_ground_state_and_phase_brute_force(brute, all_states, params):
    jx, jy, h = params
    gs = ising.ground_state(jx, jy, h, L)
    np.testing.assert_allclose(ising.energy_const(gs, jx, jy, h), ising.e_min(jx, jy, h),
                               atol=1e-5)
    phase = np.asarray(ising.ground_state_phase(jx, jy, h))
    np.testing.assert_array_equal(ising.classify(gs), phase)
    # away from phase boundaries and degeneracies, a brute-force minimizer has the same phase
    A = np.maximum(-jx, 0) + np.maximum(-jy, 0)
    generic = (np.abs(np.abs(h) - 2 * A) > 1e-3) & (np.abs(jx) > 1e-3) & (np.abs(jy) > 1e-3)
    argmin = all_states[brute.argmin(axis=1)]
    np.testing.assert_array_equal(np.asarray(ising.classify(argmin))[generic], phase[generic])
    assert set(phase[generic]) == {0, 1, 2, 3}


def test_ordered_energies_are_the_patterns_energies_and_the_margin_their_gap(params):
    """Bug: a stripe pattern's energy with J_x and J_y swapped, or the field counted on a
    zero-magnetization state, or the margin taken against the wrong state."""
    jx, jy, h = params
    e = np.asarray(ising.ordered_energies(jx, jy, h))
    pats = ising._patterns(L)
    signs = np.where(h < 0, -1.0, 1.0)
    for k in range(4):
        spins = pats[k][None] * (signs[:, None, None] if k == 0 else 1.0)
        np.testing.assert_allclose(e[:, k], ising.energy_const(spins, jx, jy, h), atol=1e-5, rtol=0)
    np.testing.assert_allclose(e.min(axis=1), ising.e_min(jx, jy, h), atol=1e-5, rtol=0)
    margin = np.asarray(ising.phase_margin(jx, jy, h))
    srt = np.sort(e, axis=1)
    np.testing.assert_allclose(margin, srt[:, 1] - srt[:, 0], atol=1e-6, rtol=0)
    # on a boundary the margin is 0: J_y = 0 with J_x < 0 and a weak field (checkerboard = column stripes)
    np.testing.assert_allclose(ising.phase_margin(-1.5, 0.0, 0.5), 0.0, atol=1e-6)
    np.testing.assert_allclose(ising.phase_margin(-1.0, -1.0, 1.0), 2.0, atol=1e-6)   # checkerboard -2, stripes 0, ferro 1


def test_e_inv_matches_product_law_grid(params):
    jx, jy, h = params
    m = np.linspace(-1.0, 1.0, 20001, dtype=np.float32)
    mfield = np.broadcast_to(m[:, None, None], (m.size, L, L))
    unit = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]  # (jx, jy, h)
    feats = np.stack([np.asarray(ising.expected_energy(mfield, ising.constant_bonds(a, b, L), c))
                      for a, b, c in unit], axis=0)
    grid_min = (np.stack(params, 1).astype(np.float64) @ feats.astype(np.float64)).min(axis=1)
    einv = np.asarray(ising.e_inv(jx, jy, h))
    np.testing.assert_allclose(einv, grid_min, atol=1e-5, rtol=0)
    emin = np.asarray(ising.e_min(jx, jy, h))
    assert np.all(einv >= emin - 1e-6)
    phase = np.asarray(ising.ground_state_phase(jx, jy, h))
    A = np.maximum(-jx, 0) + np.maximum(-jy, 0)
    ordered = (phase != ising.FERRO) & (2 * A - np.abs(h) > 1e-3)
    assert ordered.sum() > 50
    assert np.all(einv[ordered] > emin[ordered] + 1e-4)
    stripes = np.isin(phase, [ising.ROW_STRIPES, ising.COLUMN_STRIPES]) & ordered
    j_af = np.minimum(jx, jy)
    small = stripes & (np.maximum(jx, jy) == 1) & (j_af >= -1)  # paper law with |J_y| <= 1
    gap = 2 * np.abs(j_af) - np.abs(h)  # reference: gap 2|J_y| - h
    np.testing.assert_allclose((einv - emin)[small], gap[small], atol=1e-5)


def test_expected_energy_is_product_law_expectation(all_states):
    m = np.random.default_rng(0).uniform(-0.9, 0.9, (L, L))
    bonds = _random_bonds(1)
    h = _normal(3, (L, L))
    probs = np.prod((1.0 + all_states * m) / 2.0, axis=(1, 2))
    exact = probs @ np.asarray(ising.energy(all_states, bonds, h), np.float64)
    np.testing.assert_allclose(ising.expected_energy(m.astype(np.float32), bonds, h), exact,
                               rtol=1e-4, atol=1e-5)
    # at m in {-1, +1} it is the energy; gradients are finite
    s = all_states[12345]
    np.testing.assert_allclose(ising.expected_energy(s, bonds, h), ising.energy(s, bonds, h))
    logits = jnp.zeros((L, L))
    grad = jax.grad(lambda z: ising.expected_energy(ising.mean_from_logits(z), bonds, h))(logits)
    assert np.all(np.isfinite(grad))
    g_inv = jax.grad(lambda a: ising.e_inv(a[0], a[1], a[2]))(jnp.array([1.0, -1.0, 0.0]))
    assert np.all(np.isfinite(g_inv))


def test_energy_p4m_invariance():
    # jnp arrays: lattice.act_on_field indexes its argument with traced indices
    spins = jnp.asarray(_random_spins(0))
    bonds = _random_bonds(1)
    h = jnp.asarray(_normal(3, (L, L)))
    e0 = ising.energy(spins, bonds, h)

    @jax.jit
    @partial(jax.vmap, in_axes=(0, None))
    def transformed(g, b):
        return ising.energy(lattice.act_on_field(g, spins), lattice.act_on_bonds(g, b),
                            lattice.act_on_field(g, h))

    es = transformed(lattice.elements(L), bonds)
    assert es.shape == (8 * L * L,)
    np.testing.assert_allclose(es, e0, rtol=1e-5, atol=1e-6)
    # negative control: an inconsistent bond field is not invariant under reflections
    bad = bonds.at[..., 2].set(3.0 * _normal(7, (L, L)))
    es_bad = transformed(lattice.elements(L), bad)
    assert np.max(np.abs(es_bad - ising.energy(spins, bad, h))) > 1e-2


# ------------------------------------------------------------------------------- classify


def test_classify_patterns():
    x, y = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    cases = {
        ising.FERRO: -np.ones((6, 6)),
        ising.ANTIFERRO: -(-1.0) ** (x + y),
        ising.ROW_STRIPES: (-1.0) ** y,  # sigma depends only on y: rows (fixed y) are uniform
        ising.COLUMN_STRIPES: -(-1.0) ** x,
    }
    for label, s in cases.items():
        assert int(ising.classify(s)) == label, ising.PHASES[label]
    noisy = cases[ising.ROW_STRIPES].copy()
    noisy[2, 3] *= -1
    assert int(ising.classify(noisy)) == ising.NO_ORDER
    period4 = np.where((y // 2) % 2 == 0, 1.0, -1.0)
    assert int(ising.classify(period4)) == ising.NO_ORDER
    batch = np.stack(list(cases.values()) + [noisy])
    np.testing.assert_array_equal(ising.classify(batch), [0, 1, 2, 3, 4])
    assert ising.PHASES[ising.NO_ORDER] == "no order" and len(ising.PHASES) == 5
    # row stripes are the ground state for J_x > 0 > J_y (reference)
    assert int(ising.ground_state_phase(1.0, -1.0, 0.5)) == ising.ROW_STRIPES
    assert int(ising.ground_state_phase(-1.0, 1.0, 0.5)) == ising.COLUMN_STRIPES
    assert int(ising.ground_state_phase(-1.0, -1.0, 0.5)) == ising.ANTIFERRO
    assert int(ising.ground_state_phase(1.0, -1.0, 2.5)) == ising.FERRO


# ------------------------------------------------------------------------------ bad input


def test_bad_input():
    s = np.ones((4, 4))
    with pytest.raises(ValueError, match="shape"):
        ising.energy(np.ones((4, 5)), ising.constant_bonds(1.0, 1.0, 4))
    with pytest.raises(ValueError, match="bond"):
        ising.energy(s, np.ones((4, 4, 3)))
    with pytest.raises(ValueError, match="h"):
        ising.energy(s, ising.constant_bonds(1.0, 1.0, 4), np.ones((3,)))
    with pytest.raises(ValueError, match="finite"):
        ising.energy(s, ising.constant_bonds(1.0, np.nan, 4))
    with pytest.raises(ValueError, match="finite"):
        ising.expected_energy(s, ising.constant_bonds(1.0, 1.0, 4), np.inf)
    with pytest.raises(ValueError, match="finite"):
        ising.to_input(1.0, np.inf, 0.0, 4)
    with pytest.raises(ValueError, match="finite"):
        ising.e_min(1.0, 1.0, np.nan)
    with pytest.raises(ValueError, match="odd L"):
        ising.to_input(1.0, -1.0, 0.0, 5)
    with pytest.raises(ValueError, match="odd L"):
        ising.e_min(-1.0, 1.0, 0.0, L=5)
    with pytest.raises(ValueError, match="odd L"):
        ising.ground_state(1.0, -0.1, 0.0, 3)
    assert ising.to_input(1.0, 2.0, 0.0, 5).shape == (5, 5, 5)  # ferro: odd L is fine
    assert ising.to_input(1.0, -1.0, 0.0, 5, allow_frustrated=True).shape == (5, 5, 5)
    with pytest.raises(ValueError, match="L"):
        ising.to_input(1.0, 1.0, 0.0, 1)
    with pytest.raises(ValueError, match="1-D"):
        ising.grid_params(np.ones((2, 2)), np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        ising.classify(np.ones((3, 4)))
    # checks on values are skipped under jit (no tracer errors)
    f = jax.jit(lambda b: ising.energy(s, b, 0.0))
    assert np.isfinite(f(ising.constant_bonds(1.0, 1.0, 4)))
