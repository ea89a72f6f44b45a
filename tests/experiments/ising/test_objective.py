"""The training objective of the Ising experiment: the relaxed (spherical) energy, the entropy of
the product law, their schedules, and the antiferromagnetic share of the training data."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.ising import data as ising
from experiments.ising import main as ising_main

L = 4
_x = np.arange(L)
MODES = {   # the four ordered patterns at L = 4, [x, y] indexing, and their energy per site at h = 0
    "uniform": (np.ones((L, L)), lambda jx, jy: -(jx + jy)),
    "alternating_x": (np.broadcast_to((-1.0) ** _x[:, None], (L, L)), lambda jx, jy: jx - jy),
    "alternating_y": (np.broadcast_to((-1.0) ** _x[None, :], (L, L)), lambda jx, jy: jy - jx),
    "checkerboard": ((-1.0) ** (_x[:, None] + _x[None, :]), lambda jx, jy: jx + jy),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [0.3, 50.0])
def test_relaxed_energy_of_a_fourier_mode_is_its_eigenvalue_at_any_scale(mode, scale):
    """Bug to catch: logits not normalized to unit mean square (the energy would scale with them),
    or normalized over the wrong axes."""
    pattern, formula = MODES[mode]
    jx, jy = np.float32(-1.3), np.float32(0.4)
    bonds = ising.constant_bonds(jx, jy, L)
    e = ising.relaxed_energy(jnp.asarray(scale * pattern, jnp.float32), bonds, 0.0, eps=0.0)
    np.testing.assert_allclose(float(e), formula(jx, jy), rtol=1e-5)


def test_relaxed_energy_normalizes_each_item_of_a_batch_alone():
    """Bug to catch: the mean square taken over the batch, so one large item shrinks the others."""
    pattern = MODES["checkerboard"][0]
    logits = jnp.asarray(np.stack([0.01 * pattern, 100.0 * pattern]), jnp.float32)
    jx = jy = np.array([-1.0, -1.0], np.float32)
    e = ising.relaxed_energy(logits, ising.constant_bonds(jx, jy, L), 0.0, eps=0.0)
    np.testing.assert_allclose(np.asarray(e), [-2.0, -2.0], rtol=1e-5)


def test_relaxed_energy_is_bounded_below_by_the_ground_mode():
    """The Rayleigh quotient: at h = 0 no field of unit mean square goes below the lowest mode
    (this is what makes every other mode a saddle rather than a minimum)."""
    rng = np.random.default_rng(0)
    jx, jy = rng.uniform(-3, 3, 64).astype(np.float32), rng.uniform(-3, 3, 64).astype(np.float32)
    logits = jnp.asarray(rng.standard_normal((64, L, L)), jnp.float32)
    e = np.asarray(ising.relaxed_energy(logits, ising.constant_bonds(jx, jy, L), 0.0, eps=0.0))
    lowest = np.min([f(jx, jy) for _, f in MODES.values()], axis=0)
    assert np.all(e >= lowest - 1e-5) and np.all(e < -lowest + 1e-5)


def test_relaxed_energy_is_finite_at_zero_logits():
    """The zero-initialized head starts at all-zero logits: eps keeps the value and gradient finite."""
    import jax
    bonds = ising.constant_bonds(np.float32(1.0), np.float32(-1.0), L)
    g = jax.grad(lambda z: ising.relaxed_energy(z, bonds, 0.5))(jnp.zeros((L, L)))
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g).max()) > 0


def test_entropy_from_logits():
    """Against the documented formula -p log p - (1 - p) log(1 - p), and finite where p rounds to 0 or 1."""
    z = np.array([-30.0, -2.0, 0.0, 0.5, 3.0, 1e4, -1e4], np.float32)
    got = np.asarray(ising.entropy_from_logits(z))
    p = 1 / (1 + np.exp(-z[:5].astype(np.float64)))
    np.testing.assert_allclose(got[:5], -p * np.log(p) - (1 - p) * np.log1p(-p), rtol=1e-5, atol=1e-12)
    assert got[2] == pytest.approx(np.log(2)) and np.all(np.isfinite(got)) and got[5] == got[6] == 0.0


def _cfg(**kw):
    return dataclasses.replace(ising_main.Config(), num_steps=100, **kw)


def test_relax_weight_schedule():
    """1 for the first relax_fraction of the steps, a linear crossover over relax_ramp, then 0."""
    cfg = _cfg(relax_fraction=0.4, relax_ramp=0.2)
    w = [ising_main.relax_weight(cfg, i) for i in (0, 39, 40, 50, 60, 99)]
    np.testing.assert_allclose(w, [1, 1, 1, 0.5, 0, 0])
    assert ising_main.relax_weight(_cfg(relax_fraction=0.0), 0) == 0.0
    assert [ising_main.relax_weight(_cfg(relax_fraction=0.4, relax_ramp=0.0), i) for i in (39, 40)] == [1.0, 0.0]


def test_temperature_schedule():
    cfg = _cfg(anneal_temperature=2.0, anneal_fraction=0.5)
    np.testing.assert_allclose([ising_main.temperature(cfg, i) for i in (0, 25, 50, 99)], [2.0, 1.0, 0.0, 0.0])
    assert ising_main.temperature(_cfg(anneal_temperature=0.0), 0) == 0.0


def test_antiferro_fraction_adds_checkerboard_hamiltonians_and_keeps_the_old_draws_at_zero():
    """Bug to catch: a zero fraction that still consumes random numbers (old records would no
    longer reproduce), or a fraction that is not the share of antiferromagnetic draws."""
    n = 4000
    old = ising_main.sample_train_params(np.random.default_rng([3, 7]), n, 0.5)
    zero = ising_main.sample_train_params(np.random.default_rng([3, 7]), n, 0.5, 0.0)
    for a, b in zip(old, zero):
        np.testing.assert_array_equal(a, b)
    jx, jy, h = ising_main.sample_train_params(np.random.default_rng([3, 7]), n, 0.5, 0.3)
    np.testing.assert_array_equal(h, old[2])
    changed = (jx != old[0]) | (jy != old[1])
    assert abs(changed.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)
    assert np.all((jx[changed] < 0) & (jy[changed] < 0) & (jx[changed] >= -3) & (jy[changed] >= -3))
    jx, jy, _ = ising_main.sample_train_params(np.random.default_rng(0), 64, 0.5, 1.0)
    assert np.all((jx < 0) & (jy < 0))


def test_boundary_fraction_draws_near_boundary_hamiltonians_from_both_sides():
    """Bugs to catch: boundary draws that are not within the margin, a share that is not
    ``boundary_fraction``, a zero fraction that consumes random numbers, and a law lopsided
    across a boundary (e.g. keeping only one phase's side): near the column-stripe / checkerboard
    boundary J_y = 0 (J_x < 0, |J_x| > |J_y|) the two sides must get the same share."""
    n = 20000
    old = ising_main.sample_train_params(np.random.default_rng([3, 7]), n, 1.0, 0.3)
    # the draws of the code before boundary_fraction existed (recorded runs must reproduce)
    first = ising_main.sample_train_params(np.random.default_rng([3, 7]), 3, 1.0, 0.3, 0.0)
    np.testing.assert_allclose(np.stack(first), [[-2.8645549, 2.9909401, -0.1540308],
                                                [0.5502822, 1.8502107, -2.4692051],
                                                [0.9213135, 0.5895289, 0.1788598]], rtol=1e-6)
    jx, jy, h = ising_main.sample_train_params(np.random.default_rng([3, 7]), n, 1.0, 0.3, 0.25, 0.4)
    changed = (jx != old[0]) | (jy != old[1]) | (h != old[2])
    assert abs(changed.mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)
    margin = np.asarray(ising.phase_margin(jx, jy, h))
    assert margin[changed].max() < 0.4
    assert (margin[~changed] >= 0.4).mean() > 0.8       # the plane law's share of far Hamiltonians
    bjx, bjy, bh = ising_main.near_boundary_params(np.random.default_rng(1), n, 0.4)
    assert np.all(np.asarray(ising.phase_margin(bjx, bjy, bh)) < 0.4)
    assert bjx.min() >= -3 and bjx.max() <= 3 and bh.min() >= 0 and bh.max() <= 2
    side = (bjx < -1) & (np.abs(bjy) < 0.5)              # near J_y = 0 with a strong antiferromagnetic J_x
    pos = (bjy[side] > 0).mean()
    assert side.sum() > 500 and abs(pos - 0.5) < 4 * np.sqrt(0.25 / side.sum())
    with pytest.raises(ValueError, match="margin must be > 0"):
        ising_main.near_boundary_params(np.random.default_rng(1), 4, 0.0)


def test_stripes_on_an_antiferromagnet_trap_the_expected_energy_but_not_the_relaxed_one():
    """The mechanism the relaxed warm-up addresses (docs/ising.md): on an antiferromagnetic
    Hamiltonian with |J_x| > |J_y|, saturated stripes are a local minimum of the expected energy
    of independent spins (moving any mean into the cube raises it, and so does any small move that
    stays in the cube), while the relaxed energy at the same stripes decreases along the
    checkerboard (a saddle, not a minimum)."""
    jx, jy, h = np.float32(-2.0), np.float32(-0.5), np.float32(0.3)
    bonds = ising.constant_bonds(jx, jy, L)
    stripes, checker = MODES["alternating_x"][0], MODES["checkerboard"][0]
    e0 = float(ising.expected_energy(jnp.asarray(stripes, jnp.float32), bonds, h))
    rng = np.random.default_rng(0)
    for _ in range(200):                      # random small moves into the cube [-1, 1]^(L x L)
        step = -np.sign(stripes) * rng.uniform(0, 0.05, (L, L)) * (rng.random((L, L)) < 0.5)
        assert float(ising.expected_energy(jnp.asarray(stripes + step, jnp.float32), bonds, h)) > e0
    assert e0 > float(ising.e_min(jx, jy, h))   # and yet not the ground state (the checkerboard is)
    relaxed = lambda t: float(ising.relaxed_energy(jnp.asarray(10 * (np.cos(t) * stripes + np.sin(t) * checker),
                                                               jnp.float32), bonds, 0.0, eps=0.0))
    assert relaxed(0.05) < relaxed(0.0) and relaxed(np.pi / 2) == pytest.approx(float(jx + jy))
