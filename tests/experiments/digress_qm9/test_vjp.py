"""The graph transformer's hand-written VJPs and its ``bits16`` dropout (issue #22).

Bugs these tests catch: a VJP that drops a term (e.g. the softmax's ``- a_ij sum_k a_ik g_k``
part, the FiLM gradient of y, the masked keys of a graph with no real node) or transposes the
weight gradient; a ``bits16`` drop probability off the documented one; masks that depend on
the rest of the batch (what moved the dropout draw between devices under data parallelism).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.digress_qm9 import graph_transformer as gt


def _close(a, b, rtol=2e-5, atol=2e-5):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("k, f", [(3, 7), (7, 3)])          # both branches of the weight gradient
def test_dense_vjp_matches_autodiff(k, f):
    kx, kk, kb, kg = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(kx, (2, 3, 3, k))
    kernel, bias = jax.random.normal(kk, (k, f)), jax.random.normal(kb, (f,))
    g = jax.random.normal(kg, (2, 3, 3, f))
    out, vjp = jax.vjp(gt.dense, x, kernel, bias)
    out_ref, vjp_ref = jax.vjp(lambda x, w, b: jnp.matmul(x, w) + b, x, kernel, bias)
    _close(out, out_ref)
    _close(vjp(g), vjp_ref(g))


def _attention_inputs(key, B=3, n=4, dx=6, masked=True):
    ks = jax.random.split(key, 9)
    node_mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], bool)[:B, :n]   # last graph: no real node
    xm = node_mask[..., None].astype(jnp.float32) if masked else 1.0
    pair = (node_mask[:, :, None] & node_mask[:, None, :])[..., None].astype(jnp.float32) if masked else 1.0
    Q, K, V = (jax.random.normal(k, (B, n, dx)) * xm for k in ks[:3])
    EM = jax.random.normal(ks[3], (B, n, n, 2 * dx)) * pair                       # [E_mul, E_add]
    y_add, y_mul = (jax.random.normal(k, (B, dx)) for k in ks[5:7])
    gE, gV = jax.random.normal(ks[7], (B, n, n, dx)), jax.random.normal(ks[8], (B, n, dx))
    return (Q, K, V, EM, y_add, y_mul, node_mask.astype(jnp.float32)), (gE, gV)


@pytest.mark.parametrize("n_head, masked, unroll", [(1, True, 16), (2, True, 16), (3, True, 16), (2, False, 16),
                                                     (2, True, 0), (2, False, 0)])
def test_attention_core_vjp_matches_autodiff(monkeypatch, n_head, masked, unroll):
    """``masked=False``: content in padded slots too (the masked keys must get no gradient);
    ``unroll=0``: the reductions over the node axes as ``jnp.sum`` / ``jnp.max`` (longer graphs)."""
    monkeypatch.setattr(gt, "_UNROLL", unroll)
    args, cot = _attention_inputs(jax.random.key(1), masked=masked)
    out, vjp = jax.vjp(lambda *a: gt.attention_core(*a, n_head), *args)
    out_ref, vjp_ref = jax.vjp(lambda *a: gt.attention_core_reference(*a, n_head), *args)
    _close(out, out_ref)
    grads, grads_ref = vjp(cot), vjp_ref(cot)
    _close(grads[:6], grads_ref[:6])
    assert not np.any(np.asarray(grads[6]))          # the key mask is not differentiated


@pytest.mark.parametrize("unroll", [16, 0])
@pytest.mark.parametrize("axis", [1, 2])
def test_reduce_matches_numpy(monkeypatch, unroll, axis):
    """Both forms of the node-axis reductions, on a shape whose two node axes differ."""
    monkeypatch.setattr(gt, "_UNROLL", unroll)
    x = np.asarray(jax.random.normal(jax.random.key(4), (2, 3, 5, 4)))
    np.testing.assert_allclose(np.asarray(gt._reduce(jnp.asarray(x), axis)), x.sum(axis), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(gt._reduce(jnp.asarray(x), axis, jnp.maximum)), x.max(axis))


def test_attention_core_under_jit_and_second_cotangent_only():
    """Only the weighted-V output used (the edge output's cotangent is zero), under jit."""
    args, _ = _attention_inputs(jax.random.key(2))
    loss = lambda f: lambda *a: jnp.sum(jnp.sin(f(*a, args[6], 2)[1]))  # noqa: E731
    g = jax.jit(jax.grad(loss(gt.attention_core), argnums=tuple(range(6))))(*args[:6])
    g_ref = jax.grad(loss(gt.attention_core_reference), argnums=tuple(range(6)))(*args[:6])
    _close(g, g_ref)


def _graph(B=3, n=5, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.arange(n)[None] < np.array([5, 3, 4])[:B, None]
    X = rng.normal(size=(B, n, 6)).astype(np.float32) * mask[..., None]
    E = rng.normal(size=(B, n, n, 5)).astype(np.float32)
    E = (E + E.transpose(0, 2, 1, 3)) / 2 * (mask[:, :, None] & mask[:, None, :])[..., None]
    y = rng.normal(size=(B, 3)).astype(np.float32)
    return jnp.asarray(X), jnp.asarray(E), jnp.asarray(y), jnp.asarray(mask)


TINY = dict(n_layers=2, dx=8, de=4, dy=4, n_head=2, mlp_X=8, mlp_E=4, mlp_y=4, dim_ffX=8, dim_ffE=4, dim_ffy=8,
            out_dim_X=4, out_dim_E=5)


@pytest.mark.parametrize("dropout_rng", gt.DROPOUT_RNGS)
def test_network_gradients_match_plain_code(monkeypatch, dropout_rng):
    """The whole network with the hand-written VJPs against jax.grad of the same code with the
    plain functions (same dropout masks: the same key)."""
    X, E, y, mask = _graph()
    net = gt.TransformerNet(gt.GraphTransformerConfig(**TINY, dropout_rng=dropout_rng))
    params = net.init(jax.random.key(0), X, E, y, mask)

    def loss(p):
        Xl, El, _ = net(p, jax.random.key(3), X, E, y, mask, deterministic=False)
        return jnp.sum(jnp.sin(Xl)) + jnp.sum(jnp.cos(El))

    value, grads = jax.value_and_grad(loss)(params)
    monkeypatch.setattr(gt, "dense", lambda x, w, b: jnp.matmul(x, w) + b)
    monkeypatch.setattr(gt, "attention_core", gt.attention_core_reference)
    value_ref, grads_ref = jax.value_and_grad(loss)(params)
    np.testing.assert_allclose(float(value), float(value_ref), rtol=1e-5)
    _close(grads, grads_ref, rtol=1e-4, atol=1e-5)


def _keep_masks(dropout_rng, B, key, shapes):
    drop = gt._Dropouts(0.1, False, key, [(B, *s) for s in shapes], dropout_rng)
    return [np.asarray(drop(jnp.ones((B, *s)))) != 0 for s in shapes]


def test_bits16_drop_probability_and_scale():
    rate = 0.1
    threshold = round(rate * 65536)
    p_drop = threshold / 65536                                   # 0.1000061...
    shapes = [(9, 64), (9, 9, 16), (2048,), (5,)]                # sizes not all multiples of 4
    drop = gt._Dropouts(rate, False, jax.random.key(7), [(64, *s) for s in shapes], "bits16")
    outs = [np.asarray(drop(jnp.ones((64, *s)))) for s in shapes]
    kept = np.concatenate([o.ravel() for o in outs])
    values = np.unique(kept)
    np.testing.assert_allclose(values, [0.0, 1.0 / (1.0 - p_drop)], rtol=1e-6)
    N = kept.size
    frac = np.mean(kept == 0)
    sd = math.sqrt(p_drop * (1 - p_drop) / N)
    assert abs(frac - p_drop) < 5 * sd, (frac, p_drop, sd)
    assert abs(np.mean(kept) - 1.0) < 5 * sd / (1 - p_drop)      # expectation preserved
    # neighbouring entries are not correlated (each 32-bit word gives two of them)
    flat = (outs[0] == 0).reshape(64, -1).astype(np.float64)
    corr = np.mean((flat[:, 1:] - p_drop) * (flat[:, :-1] - p_drop)) / (p_drop * (1 - p_drop))
    assert abs(corr) < 5 / math.sqrt(flat[:, 1:].size), corr


def test_bits16_masks_of_a_molecule_do_not_depend_on_the_rest_of_the_batch():
    """Per-molecule draws: molecule b's masks are the same in a batch of 2 and of 5 (so a
    batch-sharded step draws them locally). The flat ``uniform`` draw does not have this."""
    shapes = [(4, 8), (4, 4, 3), (7,)]
    key = jax.random.key(11)
    small, large = _keep_masks("bits16", 2, key, shapes), _keep_masks("bits16", 5, key, shapes)
    for a, b in zip(small, large):
        np.testing.assert_array_equal(a, b[:2])
    flat_small, flat_large = _keep_masks("uniform", 2, key, shapes), _keep_masks("uniform", 5, key, shapes)
    assert any(not np.array_equal(a, b[:2]) for a, b in zip(flat_small, flat_large))


def test_bits16_differs_from_uniform_and_default_is_uniform():
    assert gt.GraphTransformerConfig().dropout_rng == "uniform"
    with pytest.raises(ValueError, match="dropout_rng"):
        gt.GraphTransformerConfig(dropout_rng="bits8")
    shapes = [(6, 5)]
    a = _keep_masks("uniform", 3, jax.random.key(0), shapes)[0]
    b = _keep_masks("bits16", 3, jax.random.key(0), shapes)[0]
    assert not np.array_equal(a, b)


def test_bits16_masks_follow_the_documented_word_layout():
    """Site k's entries (row-major) are ``u >= round(0.1 * 2^16)`` for u = the low halves of its
    threefry words w0, then their high halves, then the same of w1, cut to the site's size; a
    layout bug (halves interleaved, sites overlapping) gives other masks from the same words."""
    B, shapes, key = 3, [(5, 3), (2, 2, 7), (6,)], jax.random.key(5)
    masks = _keep_masks("bits16", B, key, shapes)
    blocks = [-(-math.prod(s) // 4) for s in shapes]
    w0, w1 = (np.asarray(w) for w in gt._random_words(key, B, sum(blocks)))
    threshold, lo = round(0.1 * 65536), 0
    for shape, nb, mask in zip(shapes, blocks, masks):
        a, b = w0[:, lo:lo + nb], w1[:, lo:lo + nb]
        u = np.concatenate([a & 0xFFFF, a >> 16, b & 0xFFFF, b >> 16], axis=1)[:, :math.prod(shape)]
        np.testing.assert_array_equal(mask, (u >= threshold).reshape(B, *shape))
        lo += nb
