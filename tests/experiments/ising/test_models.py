"""Lattice models: the no-symmetry-breaking theorem, SymPE's equivariant law, shapes and errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sympe_jax import encodings
from sympe_jax.groups import lattice
from sympe_jax.testing import assert_equivariant_in_law

from experiments.ising import data as ising
from experiments.ising.models import METHODS, LatticeModel

L = 4


def _perturbed(params, key, scale=0.5):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _act_input(g, x):
    """p4m on [B, L, L, 5] inputs: bonds move as bonds, h as a scalar."""
    one = lambda xi: jnp.concatenate([lattice.act_on_bonds(g, xi[..., :4]), lattice.act_on_field(g, xi[..., 4:])], -1)
    return jax.vmap(one)(x)


def test_gcnn_without_symmetry_breaking_never_beats_e_inv():
    """Theorem: a p4m-equivariant model fed constant couplings outputs one law at every site,
    so its expected energy is at least e_inv (the best product law with constant mean)."""
    model = LatticeModel(method="none", features=(4, 4))
    params = jax.jit(model.init)(jax.random.key(0), jax.random.key(1), jnp.zeros((1, L, L, 5)))
    rng = np.random.default_rng(0)
    jx, jy = rng.uniform(-3, 3, 64).astype(np.float32), rng.uniform(-3, 3, 64).astype(np.float32)
    h = rng.uniform(0, 2, 64).astype(np.float32)
    x = ising.to_input(jx, jy, h, L)
    apply = jax.jit(model.apply)
    for k in range(4):  # several random (non-zero-head) parameter draws
        p = _perturbed(params, jax.random.key(10 + k), scale=1.0)
        logits = apply(p, jax.random.key(2), x)
        np.testing.assert_allclose(logits, jnp.broadcast_to(logits[:, :1, :1], logits.shape), atol=1e-4)
        e = ising.expected_energy(ising.mean_from_logits(logits), ising.constant_bonds(jx, jy, L), h[:, None, None])
        assert np.all(np.asarray(e) >= np.asarray(ising.e_inv(jx, jy, h)) - 1e-5)


def test_sympe_breaks_the_symmetry_of_a_constant_input():
    model = LatticeModel(method="sympe", features=(4, 4), scorer_features=(2,))
    x = ising.to_input(jnp.array([1.0]), jnp.array([-2.0]), jnp.array([0.3]), L)
    params = _perturbed(jax.jit(model.init)(jax.random.key(0), jax.random.key(1), x), jax.random.key(3))
    logits = jax.vmap(lambda k: model.apply(params, k, x)[0])(jax.random.split(jax.random.key(4), 64))
    assert float(jnp.std(logits[0])) > 1e-3  # sites differ within a sample
    assert len(np.unique(np.asarray(logits).round(4).reshape(64, -1), axis=0)) > 16  # samples differ


@pytest.mark.parametrize("method,sign_scale", [("sympe", 0.0), ("noise", 0.0), ("sympe", 0.3)])
def test_output_law_is_equivariant_on_a_partly_symmetric_input(method, sign_scale):
    """Bugs to catch: a symmetry breaking whose law does not move with the input, and (sign_scale)
    bond-sign channels that read the bond directions instead of their D4-invariant scalars."""
    # Couplings alternating along x: the stabilizer keeps even x shifts, all y shifts, reflections.
    j_right = jnp.tile(jnp.array([1.0, -0.5])[:, None], (L // 2, L))
    bonds = ising.bond_field(j_right, jnp.full((L, L), 0.7))
    x = jnp.concatenate([bonds, jnp.full((L, L, 1), 0.2)], -1)[None]
    model = LatticeModel(method=method, features=(3, 3), scorer_features=(2,), pe_features=2, sign_scale=sign_scale)
    params = _perturbed(jax.jit(model.init)(jax.random.key(0), jax.random.key(1), x), jax.random.key(5))
    sampler = lambda k, xx: model.apply(params, k, xx)[0]
    g = jnp.array([1, 1, 2])  # a rotation that does not fix x
    assert_equivariant_in_law(sampler, jax.random.key(6), x, g, act_in=_act_input, act_out=lattice.act_on_field,
                              num_samples=1500)


def test_deterministic_argmax_fails_the_law_test():
    # negative control: jnp.argmax picks the first maximum, which is not an equivariant choice
    v = jax.random.normal(jax.random.key(0), (L, L, 2))
    scores = jnp.zeros((8, L, L))
    sampler = lambda k, s: encodings.lattice_sympe(lattice.element_from_index(jnp.argmax(s), L), v)
    with pytest.raises(AssertionError, match="laws differ"):
        assert_equivariant_in_law(sampler, jax.random.key(1), scores, jnp.array([0, 1, 0]),
                                  act_in=lattice.act_on_lifted, act_out=lattice.act_on_field, num_samples=300)


@pytest.mark.parametrize("method", METHODS)
def test_shapes_and_bad_input(method):
    model = LatticeModel(method=method, features=(2,), scorer_features=(2,), pe_features=2)
    x = jnp.zeros((2, L, L, 5))
    params = jax.jit(model.init)(jax.random.key(0), jax.random.key(1), x)
    assert jax.jit(model.apply)(params, jax.random.key(2), x).shape == (2, L, L)
    with pytest.raises(ValueError, match="B, L, L"):
        model.apply(params, jax.random.key(2), jnp.zeros((L, L, 5)))


def test_unknown_method():
    with pytest.raises(ValueError, match="method"):
        LatticeModel(method="magic").init(jax.random.key(0), jax.random.key(1), jnp.zeros((1, L, L, 5)))


@pytest.mark.parametrize("method", ["none", "noise", "sympe"])
def test_identical_lattices_of_a_batch_get_independent_channels(method):
    """Bug: the noise channels or SymPE's g~ drawn once and broadcast to every lattice of the batch."""
    x = jnp.tile(ising.to_input(jnp.array([1.0]), jnp.array([-2.0]), jnp.array([0.3]), L), (2, 1, 1, 1))
    model = LatticeModel(method=method, features=(2,), scorer_features=(2,), pe_features=2)
    params = _perturbed(jax.jit(model.init)(jax.random.key(0), jax.random.key(1), x), jax.random.key(3))
    logits = jax.jit(jax.vmap(lambda k: model.apply(params, k, x)))(jax.random.split(jax.random.key(4), 16))
    same = np.all(np.isclose(logits[:, 0], logits[:, 1], atol=1e-4), axis=(1, 2)).sum()
    if method == "none":
        assert same == 16       # the control: nothing random, identical lattices, identical logits
    elif method == "noise":
        assert same == 0
    else:                       # constant couplings tie all 8 L^2 elements: independent g~ agree w.p. 1/128
        assert same <= 3, same


def test_bond_invariants_are_p4m_invariant_and_read_the_couplings():
    """Bug to catch: a D4-dependent "invariant" (e.g. R - U) would make invariant_inputs break equivariance."""
    from experiments.ising.models import bond_invariants
    from sympe_jax.groups import lattice
    bonds = jax.random.normal(jax.random.key(3), (4, 4, 4))
    x = jnp.concatenate([bonds, jnp.ones((4, 4, 1))], -1)
    for d in range(8):
        g = jnp.array([d, 1, 2])
        moved = jnp.concatenate([lattice.act_on_bonds(g, bonds), jnp.ones((4, 4, 1))], -1)
        np.testing.assert_allclose(bond_invariants(moved), lattice.act_on_field(g, bond_invariants(x)), atol=1e-6)
    const = ising.to_input(jnp.array([2.0]), jnp.array([-3.0]), jnp.array([0.5]), 4)
    np.testing.assert_allclose(bond_invariants(const)[0, 0, 0], [-1.0, 5.0])


def test_the_cpu_preset_feeds_the_bond_signs_and_the_demo_does_not():
    """Bug to catch: ``sign_scale`` not threaded from the config to the model (or the model
    ignoring it): the backbone's lifting kernel must see 2 more input channels."""
    from experiments.ising import main as ising_main
    x = jnp.zeros((1, L, L, 5))

    def lifting_inputs(cfg):
        params = ising_main.make_model(cfg, "sympe").init(jax.random.key(0), jax.random.key(1), x)
        return params["params"]["backbone"]["lift"]["kernel"].shape[-2]     # [k, k, c_in, features]

    cpu, demo = ising_main.PRESETS["cpu"], ising_main.PRESETS["demo"]
    assert (cpu.sign_scale, demo.sign_scale) == (0.3, 0.0)
    assert lifting_inputs(dataclasses.replace(cpu, L=L)) == lifting_inputs(dataclasses.replace(demo, L=L)) + 2
    with pytest.raises(ValueError, match="sign_scale"):
        LatticeModel(sign_scale=-1.0).init(jax.random.key(0), jax.random.key(1), x)
