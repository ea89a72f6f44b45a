"""DiGress graph transformer: S_n-equivariance, masking, padding independence, the attention
formulas against a NumPy re-derivation, dropout, and the paper configuration's size.

One tiny model and one jitted forward are shared (one compile per variant).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sympe_jax.groups import permutation as P
from sympe_jax.testing import assert_equivariant

from experiments.digress_qm9 import graph_transformer as gt

B, N = 3, 7
DX, DE, DY = 4, 5, 6             # class channels of X and E, channels of y
EXTRA_X, EXTRA_E = 3, 2          # further input channels inside X and E (features)
PE_NODE, PE_EDGE = 3, 2          # extra_node / extra_edge (SymPE) channels
CONFIG = gt.GraphTransformerConfig(n_layers=2, mlp_X=16, mlp_E=12, mlp_y=12, dx=16, de=8, dy=8, n_head=4,
                                   dim_ffX=16, dim_ffE=12, dim_ffy=24, dropout=0.1, out_dim_X=DX, out_dim_E=DE)
NET = gt.TransformerNet(CONFIG)


def _sym(a):
    return 0.5 * (a + jnp.swapaxes(a, 1, 2))


def _inputs(key, masks):
    """Random inputs; padded slots hold garbage (they must not matter)."""
    ks = jax.random.split(key, 8)
    X = jnp.concatenate([jax.nn.one_hot(jax.random.randint(ks[0], (B, N), 0, DX), DX),
                         jax.random.normal(ks[1], (B, N, EXTRA_X))], -1)
    e_idx = jax.random.randint(ks[2], (B, N, N), 0, DE)
    e_idx = jnp.triu(e_idx, 1) + jnp.swapaxes(jnp.triu(e_idx, 1), 1, 2)
    E = jnp.concatenate([jax.nn.one_hot(e_idx, DE), _sym(jax.random.normal(ks[3], (B, N, N, EXTRA_E)))], -1)
    E = E * (1.0 - jnp.eye(N))[None, :, :, None]
    y = jax.random.normal(ks[4], (B, DY))
    extra_node = jax.random.normal(ks[5], (B, N, PE_NODE))
    extra_edge = jax.random.normal(ks[6], (B, N, N, PE_EDGE))   # not symmetric on purpose
    return dict(X=X, E=E, y=y, node_mask=masks, extra_node=extra_node, extra_edge=extra_edge)


def _masks():
    """Real nodes at scattered positions: 7, 4 and 1 real nodes."""
    m = np.zeros((B, N), bool)
    m[0] = True
    m[1, [0, 2, 5, 6]] = True
    m[2, 3] = True
    return jnp.asarray(m)


@functools.partial(jax.jit, static_argnames="deterministic")
def _forward(params, key, inp, deterministic=True):
    return NET(params, key, inp["X"], inp["E"], inp["y"], inp["node_mask"], inp["extra_node"], inp["extra_edge"],
               deterministic=deterministic)


@pytest.fixture(scope="module")
def setup():
    inp = _inputs(jax.random.key(1), _masks())
    params = NET.init(jax.random.key(2), inp["X"], inp["E"], inp["y"], inp["node_mask"],
                               inp["extra_node"], inp["extra_edge"])
    return inp, params


def _act(g, inp):
    """Permute every graph of the batch by its own permutation g[b] (padding moves too)."""
    nodes = jax.vmap(P.act_on_nodes)
    pairs = jax.vmap(P.act_on_dense)
    return dict(X=nodes(g, inp["X"]), E=pairs(g, inp["E"]), y=inp["y"], node_mask=nodes(g, inp["node_mask"]),
                extra_node=nodes(g, inp["extra_node"]), extra_edge=pairs(g, inp["extra_edge"]))


def test_transformer_is_permutation_equivariant(setup):
    inp, params = setup
    assert_equivariant(lambda x: _forward(params, None, x), jax.random.key(3), inp,
                       sample_element=lambda k: jax.vmap(lambda kk: P.random_element(kk, N))(jax.random.split(k, B)),
                       act_in=_act,
                       act_out=lambda g, out: (jax.vmap(P.act_on_nodes)(g, out[0]), jax.vmap(P.act_on_dense)(g, out[1]),
                                               out[2]),
                       num_elements=4, atol=1e-4, rtol=1e-4)


def test_equivariance_checker_catches_a_positional_leak(setup):
    inp, params = setup
    leak = lambda x: _forward(params, None, dict(x, extra_node=x["extra_node"] + jnp.arange(N)[None, :, None]))  # noqa: E731
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(leak, jax.random.key(3), inp,
                           sample_element=lambda k: jax.vmap(lambda kk: P.random_element(kk, N))(jax.random.split(k, B)),
                           act_in=_act,
                           act_out=lambda g, out: (jax.vmap(P.act_on_nodes)(g, out[0]),
                                                   jax.vmap(P.act_on_dense)(g, out[1]), out[2]),
                           num_elements=2, atol=1e-4, rtol=1e-4)


def test_outputs_are_masked_symmetric_and_independent_of_padding(setup):
    inp, params = setup
    X, E, y = _forward(params, None, inp)
    mask = np.asarray(inp["node_mask"])
    pair = mask[:, :, None] & mask[:, None, :]
    X, E = np.asarray(X), np.asarray(E)
    assert X.shape == (B, N, DX) and E.shape == (B, N, N, DE) and y.shape == (B, 0)
    assert np.all(X[~mask] == 0) and np.all(E[~pair] == 0)
    assert np.all(E[:, np.arange(N), np.arange(N)] == 0)
    np.testing.assert_allclose(E, np.swapaxes(E, 1, 2), atol=1e-6)
    assert np.all(np.isfinite(X)) and np.all(np.abs(X[mask]) > 0)

    # Overwrite every padded slot (nodes and pairs touching them) with new garbage.
    other = _inputs(jax.random.key(9), inp["node_mask"])
    m = inp["node_mask"]
    p = m[:, :, None] & m[:, None, :]
    mixed = dict(inp)
    for name in ("X", "extra_node"):
        mixed[name] = jnp.where(m[..., None], inp[name], other[name])
    for name in ("E", "extra_edge"):
        mixed[name] = jnp.where(p[..., None], inp[name], other[name])
    X2, E2, _ = _forward(params, None, mixed)
    np.testing.assert_allclose(np.asarray(X2), X, atol=1e-5)
    np.testing.assert_allclose(np.asarray(E2), E, atol=1e-5)


def test_dropout_is_driven_by_the_key(setup):
    inp, params = setup
    det = _forward(params, None, inp)
    a = _forward(params, jax.random.key(4), inp, deterministic=False)
    b = _forward(params, jax.random.key(4), inp, deterministic=False)
    c = _forward(params, jax.random.key(5), inp, deterministic=False)
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert not np.allclose(np.asarray(a[0]), np.asarray(c[0]))
    assert not np.allclose(np.asarray(a[0]), np.asarray(det[0]))
    np.testing.assert_allclose(np.asarray(a[1]), np.asarray(jnp.swapaxes(a[1], 1, 2)), atol=1e-6)
    with pytest.raises(ValueError, match="PRNG key"):
        NET(params, None, inp["X"], inp["E"], inp["y"], inp["node_mask"], deterministic=False)


def _numpy_node_edge_block(p, X, E, y, mask, n_head):
    """NodeEdgeBlock for one graph, written from the formulas of digress-qm9.md 1.2."""
    lin = lambda q, v: v @ np.asarray(q["kernel"]) + np.asarray(q["bias"])  # noqa: E731
    n, dx = X.shape
    df = dx // n_head
    xm = mask[:, None].astype(float)
    pm = (mask[:, None] & mask[None, :])[..., None].astype(float)
    Q, K, V = (lin(p[k], X) * xm for k in ("q", "k", "v"))
    out_E = np.zeros((n, n, dx))
    Yall = np.zeros((n, n, dx))
    for i in range(n):
        for j in range(n):
            Yij = Q[i] * K[j] / math.sqrt(df)
            Yij = Yij * (lin(p["e_mul"], E[i, j]) * pm[i, j] + 1) + lin(p["e_add"], E[i, j]) * pm[i, j]
            Yall[i, j] = Yij
            out_E[i, j] = lin(p["y_e_add"], y) + (lin(p["y_e_mul"], y) + 1) * Yij
    new_E = lin(p["e_out"], out_E) * pm
    new_X = np.zeros((n, dx))
    for i in range(n):
        for c in range(dx):          # softmax over real keys, separately for each of the dx channels
            s = Yall[i, mask, c]
            w = np.exp(s - s.max())
            new_X[i, c] = np.sum(w / w.sum() * V[mask, c])
    new_X = lin(p["x_out"], lin(p["y_x_add"], y) + (lin(p["y_x_mul"], y) + 1) * new_X) * xm
    Xr, Er = X[mask], E[mask][:, mask].reshape(-1, E.shape[-1])
    stats = lambda a: np.concatenate([a.mean(0), a.min(0), a.max(0), a.var(0)])  # noqa: E731
    new_y = lin(p["y_y"], y) + lin(p["x_y"], stats(Xr)) + lin(p["e_y"], stats(Er))
    new_y = lin(p["y_out_2"], np.maximum(lin(p["y_out_1"], new_y), 0))
    return new_X, new_E, new_y


def test_node_edge_block_matches_the_formulas():
    n, dx, de, dy, h = 5, 8, 3, 4, 2
    block = gt.NodeEdgeBlock(dx, de, dy, h)
    ks = jax.random.split(jax.random.key(6), 4)
    X = jax.random.normal(ks[0], (1, n, dx))
    E = _sym(jax.random.normal(ks[1], (1, n, n, de)))
    y = jax.random.normal(ks[2], (1, dy))
    mask = jnp.asarray([[True, False, True, True, False]])
    params = gt.fast_init(block, ks[3], X, E, y, mask)
    got = jax.jit(block.apply)(params, X, E, y, mask)
    want = _numpy_node_edge_block(params["params"], np.asarray(X[0], np.float64), np.asarray(E[0], np.float64),
                                  np.asarray(y[0], np.float64), np.asarray(mask[0]), h)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g[0]), w, rtol=2e-4, atol=2e-5)


def _reference_param_count(n_layers, dims_in=(12, 5, 13), mlp=(256, 128, 128), dx=256, de=64, dy=64,
                           ff=(256, 128, 2048), out=(4, 5, 0)):
    """The reference's parameter count from its PyTorch layer shapes (y head included)."""
    lin = lambda a, b: a * b + b  # noqa: E731
    block = 3 * lin(dx, dx) + 2 * lin(de, dx) + 4 * lin(dy, dx) + lin(dy, dy) + lin(4 * dx, dy) + lin(4 * de, dy) \
        + lin(dx, dx) + lin(dx, de) + 2 * lin(dy, dy)
    layer = block + lin(dx, ff[0]) + lin(ff[0], dx) + lin(de, ff[1]) + lin(ff[1], de) + lin(dy, ff[2]) \
        + lin(ff[2], dy) + 4 * (dx + de + dy)
    mlp_in = lin(dims_in[0], mlp[0]) + lin(mlp[0], dx) + lin(dims_in[1], mlp[1]) + lin(mlp[1], de) \
        + lin(dims_in[2], mlp[2]) + lin(mlp[2], dy)
    mlp_out = lin(dx, mlp[0]) + lin(mlp[0], out[0]) + lin(de, mlp[1]) + lin(mlp[1], out[1]) \
        + lin(dy, mlp[2]) + lin(mlp[2], out[2])
    return mlp_in + n_layers * layer + mlp_out


def _count(config, dims_in=(12, 5, 13)):
    shapes = (jax.ShapeDtypeStruct((2, 9, dims_in[0]), jnp.float32),
              jax.ShapeDtypeStruct((2, 9, 9, dims_in[1]), jnp.float32),
              jax.ShapeDtypeStruct((2, dims_in[2]), jnp.float32), jax.ShapeDtypeStruct((2, 9), jnp.bool_))
    return gt.count_params(jax.eval_shape(gt.TransformerNet(config).init, jax.random.key(0), *shapes))


def test_paper_configuration_has_the_reference_size():
    dead_y_head = 64 * 128 + 128          # Linear(dy, 128) before the reference's empty y output
    assert _reference_param_count(9) == 8_163_721     # the doc's 8.16 M (and ecosystem.md's exact count)
    assert _reference_param_count(5) == 4_611_977     # the doc's 4.61 M for 5 layers
    assert _count(gt.GraphTransformerConfig.paper()) == 8_163_721 - dead_y_head
    cpu = gt.GraphTransformerConfig.cpu()
    assert _count(cpu) == _reference_param_count(4, dx=128, de=32, dy=32) - (32 * 128 + 128)   # 1.40 M


def test_bad_inputs_are_rejected(setup):
    inp, params = setup
    with pytest.raises(ValueError, match="extra_node"):
        NET(params, None, inp["X"], inp["E"], inp["y"], inp["node_mask"], inp["extra_node"][:, :3])
    with pytest.raises(TypeError, match="boolean"):
        NET(params, None, inp["X"], inp["E"], inp["y"], inp["node_mask"].astype(jnp.int32))
    with pytest.raises(ValueError, match="divisible"):
        gt.GraphTransformerConfig(dx=10, n_head=4)


def test_fast_init_has_the_module_structure_and_torch_bounds(setup):
    inp, params = setup
    shapes = jax.eval_shape(gt.GraphTransformer(CONFIG).init, jax.random.key(0), inp["X"], inp["E"], inp["y"],
                            inp["node_mask"], inp["extra_node"], inp["extra_edge"])
    assert jax.tree.structure(shapes) == jax.tree.structure(params)
    lin = params["params"]["tf_layers_0"]["linX1"]
    bound = 1 / math.sqrt(lin["kernel"].shape[0])
    for v in (lin["kernel"], lin["bias"]):
        assert np.all(np.abs(np.asarray(v)) <= bound) and np.std(np.asarray(v)) > bound / 4
    norm = params["params"]["tf_layers_0"]["normX1"]
    assert np.all(np.asarray(norm["scale"]) == 1) and np.all(np.asarray(norm["bias"]) == 0)


def test_dropout_sites_keep_with_the_right_law():
    shapes = [(64, 50), (3, 1000)]
    drop = gt._Dropouts(0.1, False, jax.random.key(7), shapes)
    a, b = drop(jnp.ones(shapes[0])), drop(jnp.ones(shapes[1]))
    for v in (a, b):
        v = np.asarray(v)
        np.testing.assert_allclose(np.unique(v), [0.0, 1 / 0.9], rtol=1e-6)
        assert abs(np.mean(v == 0) - 0.1) < 0.02
    assert not np.array_equal(np.asarray(a).ravel()[:3000], np.asarray(b).ravel())
    off = gt._Dropouts(0.1, True, None, shapes)
    np.testing.assert_array_equal(np.asarray(off(jnp.ones(shapes[0]))), 1.0)
