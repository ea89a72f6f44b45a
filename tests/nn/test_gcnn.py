"""Exact p4m equivariance of the G-CNN layers, checked for every element of p4m at L = 4 and 5.

Speed: random inputs and parameters come from numpy (parameter shapes from ``jax.eval_shape``),
so the only XLA compilations are the forward passes (PRNG kernels compile slowly on CPU).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sympe_jax.groups import lattice
from sympe_jax.nn import gcnn

N_SCALARS = 2  # scalar channels after the 4 bond channels


def _act_on_input(g, x, bond_channels=True):
    """g . x for a site field whose first 4 channels are bonds (else all scalars)."""
    if not bond_channels:
        return lattice.act_on_field(g, x)
    return jnp.concatenate([lattice.act_on_bonds(g, x[..., :4]),
                            lattice.act_on_field(g, x[..., 4:])], axis=-1)


def _normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _random_input(seed, L):
    """Non-constant (not even consistent) bonds plus scalar channels: (L, L, 4 + N_SCALARS)."""
    return _normal(seed, (L, L, 4 + N_SCALARS))


def _random_params(module, x, seed):
    """Random values (all non-zero, so zero-initialized heads are exercised) for every parameter."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)
    leaves, tree = jax.tree_util.tree_flatten(shapes)
    rng = np.random.default_rng(seed)
    values = [(rng.standard_normal(s.shape) / np.sqrt(max(1, np.prod(s.shape[:-1])))).astype(
        np.float32) + (1.0 if len(s.shape) == 1 else 0.0) for s in leaves]
    return jax.tree_util.tree_unflatten(tree, [jnp.asarray(v) for v in values])


_ALL_ELEMENTS = {}  # act -> jitted vmap over elements (compiled once per act and shape)


def _over_elements(act):
    if act not in _ALL_ELEMENTS:
        _ALL_ELEMENTS[act] = jax.jit(jax.vmap(act, in_axes=(0, None)))
    return _ALL_ELEMENTS[act]


def _act_on_scalars(g, x):
    return _act_on_input(g, x, bond_channels=False)


def _errors(apply, x, act_in, act_out, L):
    """Per-element ``max |apply(g . x) - g . apply(x)| / max |apply(x)|``: float[8 L^2].

    Entry i is for ``lattice.elements(L)[i]`` (the first L^2 are the pure translations). The
    model runs once on a batch of ``1 + 8 L^2`` inputs: x and its transforms by every element.
    """
    gs = lattice.elements(L)
    xs = _over_elements(act_in)(gs, x)
    out = jax.jit(apply)(jnp.concatenate([x[None], xs]))
    y, ys = out[0], out[1:]
    expected = _over_elements(act_out)(gs, y)
    diff = np.abs(np.asarray(ys) - np.asarray(expected)).reshape(gs.shape[0], -1)
    scale = float(np.max(np.abs(np.asarray(y))))
    assert scale > 1e-3, "degenerate output: the check would be vacuous"
    return diff.max(axis=1) / scale


def _max_error(apply, x, act_in, act_out, L):
    """Max over all 8 L^2 elements of :func:`_errors`."""
    return float(np.max(_errors(apply, x, act_in, act_out, L)))


@pytest.mark.parametrize("bond_channels", [True, False])
def test_lifting_conv_equivariant(bond_channels):
    L = 4
    x = _random_input(0, L)
    layer = gcnn.LiftingConv(3, kernel_size=3, bond_channels=bond_channels)
    params = _random_params(layer, x, 1)
    apply = lambda z: layer.apply(params, z)
    assert jax.eval_shape(apply, x).shape == (8, L, L, 3)
    act_in = _act_on_input if bond_channels else _act_on_scalars
    err = _max_error(apply, x, act_in, lattice.act_on_lifted, L)
    assert err < 1e-5


def test_lifting_conv_negative_control_bonds_as_scalars():
    """Treating the bond channels as scalars breaks equivariance: the test can fail."""
    L = 4
    x = _random_input(0, L)
    layer = gcnn.LiftingConv(3, bond_channels=False)
    params = _random_params(layer, x, 1)
    err = _max_error(lambda z: layer.apply(params, z), x, _act_on_input, lattice.act_on_lifted, L)
    assert err > 1e-2


def test_group_conv_equivariant():
    L = 4
    F = _normal(0, (8, L, L, 3))
    layer = gcnn.GroupConv(2, kernel_size=3)
    params = _random_params(layer, F, 1)
    apply = lambda z: layer.apply(params, z)
    assert jax.eval_shape(apply, F).shape == (8, L, L, 2)
    err = _max_error(apply, F, lattice.act_on_lifted, lattice.act_on_lifted, L)
    assert err < 1e-5


def test_pool_d4_invariant():
    L = 4
    F = _normal(0, (8, L, L, 2))
    for mode in ("mean", "max"):
        pool = gcnn.PoolD4(mode)
        apply = lambda z, pool=pool: pool.apply({}, z)
        assert _max_error(apply, F, lattice.act_on_lifted, lattice.act_on_field, L) < 1e-6


@pytest.mark.parametrize("L, norm", [(4, "layer"), (4, "global"), (5, "layer")])
def test_gcnn_equivariant_all_elements(L, norm):
    x = _random_input(0, L)
    model = gcnn.GCNN(features=(6, 6, 6), kernel_size=3, bond_channels=True, out="logits",
                      norm=norm)
    params = _random_params(model, x, 1)
    assert jax.eval_shape(model.apply, params, x).shape == (L, L)
    err = _max_error(lambda z: model.apply(params, z), x, _act_on_input, lattice.act_on_field, L)
    assert err < 1e-5

    scorer = gcnn.GCNN(features=(6, 6), bond_channels=True, out="lifted_scores", norm=norm,
                       pool="max")
    sparams = _random_params(scorer, x, 2)
    assert jax.eval_shape(scorer.apply, sparams, x).shape == (8, L, L)
    err = _max_error(lambda z: scorer.apply(sparams, z), x, _act_on_input, lattice.act_on_lifted,
                     L)
    assert err < 1e-5


def test_gcnn_zero_head_batching_and_constant_input():
    L = 4
    xb = _normal(0, (2, 3, L, L, 5))
    const = jnp.broadcast_to(jnp.array([1.0, -0.5, 1.0, -0.5, 0.3]), (L, L, 5))
    model = gcnn.GCNN(features=(4, 4), out="logits")
    # the real initializers (an "rbg" key: threefry kernels are slow to compile on CPU)
    params = jax.jit(model.init)(jax.random.key(0, impl="rbg"), xb[0, 0])
    scorer = gcnn.GCNN(features=(6, 6), out="lifted_scores")
    sparams = _random_params(scorer, xb[0, 0], 1)

    @jax.jit
    def run():
        return (model.apply(params, xb), scorer.apply(sparams, xb), scorer.apply(sparams, xb[1, 2]),
                scorer.apply(sparams, const))

    logits, yb, y12, s = run()
    assert logits.shape == (2, 3, L, L)
    np.testing.assert_array_equal(logits, 0.0)  # zero-initialized head: zero logits at init
    assert yb.shape == (2, 3, 8, L, L)
    np.testing.assert_allclose(yb[1, 2], y12, rtol=1e-5, atol=1e-5)
    # a constant input (fixed by all translations) gives translation-invariant scores
    np.testing.assert_allclose(s, jnp.broadcast_to(s[:, :1, :1], s.shape), rtol=1e-5, atol=1e-6)


class _Plain(nn.Module):
    """Negative control: a circular conv, optionally with absolute-coordinate channels."""

    use_coords: bool

    @nn.compact
    def __call__(self, x):
        if self.use_coords:
            L = x.shape[-2]
            coords = jnp.stack(jnp.meshgrid(jnp.arange(L), jnp.arange(L), indexing="ij"), -1) / L
            x = jnp.concatenate([x, jnp.broadcast_to(coords, x.shape[:-1] + (2,))], axis=-1)
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)], mode="wrap")
        return nn.Conv(1, (3, 3), padding="VALID")(x)[..., 0]


@pytest.mark.parametrize("use_coords", [True, False])
def test_negative_control_plain_conv_fails(use_coords):
    L = 4
    x = _random_input(0, L)
    model = _Plain(use_coords)
    params = _random_params(model, x, 1)
    err = _errors(lambda z: model.apply(params, z), x, _act_on_input, lattice.act_on_field, L)
    assert err.max() > 1e-2
    # circular padding alone keeps translation equivariance (reference note); coordinates break it
    translations = err[: L * L]  # elements with d = 0
    assert (translations.max() > 1e-2) if use_coords else (translations.max() < 1e-5)


def test_filter_banks_identity_and_shapes():
    psi = _normal(0, (3, 3, 6, 2))
    bank = gcnn.lifting_filter_bank(psi, bond_channels=True)
    assert bank.shape == (3, 3, 6, 16)
    np.testing.assert_array_equal(bank.reshape(3, 3, 6, 8, 2)[..., 0, :], psi)  # d = 0: identity
    # d = 1 (rotation by +90 degrees): psi(R^-1 u) with R^-1 (1, 0) = (0, -1), and the bond
    # channel of direction k feeds direction k + 1 (R e_k = e_{k+1})
    w1 = np.asarray(bank.reshape(3, 3, 6, 8, 2)[..., 1, :])
    np.testing.assert_array_equal(w1[2, 1, [1, 2, 3, 0, 4, 5]], psi[1, 0])
    gpsi = _normal(1, (8, 3, 3, 2, 5))
    gbank = gcnn.group_filter_bank(gpsi)
    assert gbank.shape == (3, 3, 16, 40)
    np.testing.assert_array_equal(
        gbank.reshape(3, 3, 8, 2, 8, 5)[..., 0, :], np.transpose(gpsi, (1, 2, 0, 3, 4)))


def test_bad_input(key):
    x = jnp.zeros((4, 4, 3))
    init = lambda m, z: jax.eval_shape(m.init, key, z)
    with pytest.raises(ValueError, match="at least 4"):
        init(gcnn.LiftingConv(2, bond_channels=True), x)
    with pytest.raises(ValueError, match="odd"):
        init(gcnn.LiftingConv(2, kernel_size=2), x)
    with pytest.raises(ValueError, match="site field"):
        init(gcnn.LiftingConv(2), jnp.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="lifted"):
        init(gcnn.GroupConv(2), jnp.zeros((7, 4, 4, 3)))
    with pytest.raises(ValueError, match="out"):
        init(gcnn.GCNN(features=(2,), out="spins"), jnp.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="norm"):
        init(gcnn.GCNN(features=(2,), norm="batch"), jnp.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="mode"):
        gcnn.PoolD4("sum").apply({}, jnp.zeros((8, 4, 4, 1)))
