"""SymPE encodings and baselines: equivariance in law, symmetry breaking, bad input."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import sympe_jax as sp
from sympe_jax import encodings as E
from sympe_jax import graphs
from sympe_jax import jraph as spj
from sympe_jax.groups import lattice, permutation
from sympe_jax.testing import assert_equivariant_in_law


def _cycle(n=6, pad=2):
    a = np.pad(nx.to_numpy_array(nx.cycle_graph(n), dtype=np.float32), ((0, pad), (0, pad)))
    return jnp.asarray(a), jnp.arange(n + pad) < n


GRAPH_ACT_IN = lambda g, x: (permutation.act_on_dense(g, x[0]), permutation.act_on_nodes(g, x[1]))


@pytest.mark.parametrize("name", ["noise", "randperm", "laplacian", "sympe", "sympe_learned"])
def test_graph_encodings_are_equivariant_in_law(name):
    # Bug caught: an encoding that reads node indices (e.g. ties broken by index, eigh's sign).
    adj, mask = _cycle()
    adj = adj.at[0, 3].set(1.0).at[3, 0].set(1.0)  # a chord: fewer automorphisms, unequal orbits
    enc = E.graph_encoding(name, n_max=10, features=3)
    params = enc.init(jax.random.key(0))
    sampler = lambda k, x: enc.apply(k, params, x[0], x[1])
    g = permutation.random_element(jax.random.key(5), 8, mask)
    assert_equivariant_in_law(sampler, jax.random.key(2), (adj, mask), g,
                              act_in=GRAPH_ACT_IN, act_out=permutation.act_on_nodes, num_samples=3000)


def test_deterministic_positions_fail_the_law_test():
    adj, mask = _cycle()
    v = jax.random.normal(jax.random.key(0), (10, 3))
    sampler = lambda k, x: E.graph_sympe(v, jnp.arange(8), x[1])  # node i gets v[i]: not equivariant
    g = jnp.array([1, 2, 3, 4, 5, 0, 6, 7])
    with pytest.raises(AssertionError, match="laws differ"):
        assert_equivariant_in_law(sampler, jax.random.key(2), (adj, mask), g,
                                  act_in=GRAPH_ACT_IN, act_out=permutation.act_on_nodes, num_samples=500)


def test_sympe_breaks_symmetry_differently_per_key_and_is_reproducible():
    adj, mask = _cycle()
    enc = E.graph_encoding("sympe", n_max=8, features=4)
    params = enc.init(jax.random.key(0))
    run = jax.jit(lambda k: enc.apply(k, params, adj, mask))
    a, b = run(jax.random.key(3)), run(jax.random.key(4))
    np.testing.assert_array_equal(a, run(jax.random.key(3)))
    assert not np.allclose(a, b)
    # every node gets a distinct row: the symmetry of the cycle is fully broken
    assert len(np.unique(np.asarray(a[:6]).round(5), axis=0)) == 6
    np.testing.assert_array_equal(a[6:], 0)


def test_straight_through_sympe_is_the_same_sample_with_a_gradient_for_the_scores():
    adj, mask = _cycle()
    v = jax.random.normal(jax.random.key(0), (8, 3))
    target = jax.random.normal(jax.random.key(1), (8, 3))
    scores = jnp.array([0.2, 0.5, 0.2, 0.9, 0.4, 0.7, 0.0, 0.0])   # nodes 0 and 2 tie
    key = jax.random.key(3)
    st = lambda v_, s: E.straight_through_sympe(key, v_, s, mask, temperature=0.1)
    hard = lambda v_, s: E.sample_graph_sympe(key, v_, s, mask)
    np.testing.assert_array_equal(st(v, scores), hard(v, scores))                     # exactly the same value
    np.testing.assert_array_equal(jax.jit(st)(v, scores), hard(v, scores))
    loss = lambda f: lambda v_, s: jnp.sum((f(v_, s) - target) ** 2)
    gv_st, gs_st = jax.grad(loss(st), (0, 1))(v, scores)
    gv_hard, gs_hard = jax.grad(loss(hard), (0, 1))(v, scores)
    np.testing.assert_array_equal(gs_hard, 0)            # the sort alone passes nothing to the scorer
    assert float(jnp.abs(gs_st[:6]).min()) > 0           # every real node's score gets a gradient
    np.testing.assert_array_equal(gs_st[6:], 0)          # padding gets none
    np.testing.assert_allclose(gv_st, gv_hard, atol=1e-6)   # v trains as in plain SymPE


def test_graph_larger_than_table_is_an_error_never_a_wrap_around():
    adj, mask = _cycle(n=6, pad=0)
    enc = E.graph_encoding("sympe", n_max=4, features=2)
    params = {"v": jnp.ones((4, 2))}
    with pytest.raises(ValueError, match="n_max = 4"):
        enc.apply(jax.random.key(0), params, adj, mask)
    out = jax.jit(lambda k: enc.apply(k, params, adj, mask))(jax.random.key(0))
    assert np.all(np.isnan(out))
    with pytest.raises(ValueError, match="n_max = 4"):
        sp.checked(jax.jit(lambda k: enc.apply(k, params, adj, mask)))(jax.random.key(0))


def test_bad_ranks_and_scores():
    v = jnp.ones((5, 2))
    with pytest.raises(TypeError, match="integer"):
        E.graph_sympe(v, jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="0..n_real-1"):
        E.graph_sympe(v, jnp.array([0, 3]))
    with pytest.raises(ValueError, match="finite"):
        E.sample_graph_sympe(jax.random.key(0), v, jnp.array([0.0, jnp.nan]))
    out = jax.jit(E.sample_graph_sympe)(jax.random.key(0), v, jnp.array([0.0, jnp.nan]))
    assert np.all(np.isnan(out))


def test_lattice_sympe_is_equivariant_in_law():
    L = 3
    v = jax.random.normal(jax.random.key(0), (L, L, 2))
    scores = jnp.asarray(np.random.default_rng(0).integers(0, 2, size=(8, L, L)), jnp.float32)
    sampler = lambda k, s: E.sample_lattice_sympe(k, v, s)[0]
    g = lattice.element_from_index(40, L)
    assert_equivariant_in_law(sampler, jax.random.key(1), scores, g,
                              act_in=lattice.act_on_lifted, act_out=lattice.act_on_field, num_samples=4000)


def test_lattice_sympe_on_constant_input_samples_all_of_p4m():
    # Bug caught: an argmax that breaks ties by index (one element only) or misses elements.
    L = 4
    x = jnp.ones((L, L, 5))
    enc = E.lattice_encoding("sympe", L=L, features=2)
    params = enc.init(jax.random.key(0))
    outs = jax.vmap(lambda k: enc.apply(k, params, x))(jax.random.split(jax.random.key(2), 2000))
    assert outs.shape == (2000, L, L, 2)
    assert len(np.unique(np.asarray(outs).round(5).reshape(2000, -1), axis=0)) == 8 * L * L
    noise = E.lattice_encoding("noise", L=L, features=3)
    assert noise.apply(jax.random.key(0), noise.init(jax.random.key(0)), x).shape == (L, L, 3)
    none = E.lattice_encoding("none", L=L)
    assert none.features == 0 and none.apply(jax.random.key(0), {}, x).shape == (L, L, 0)
    with pytest.raises(ValueError, match="lifted"):
        E.sample_lattice_sympe(jax.random.key(0), jnp.ones((L, L, 2)), jnp.ones((4, L, L)))
    with pytest.raises(ValueError, match="L = 4"):
        E.sample_lattice_sympe(jax.random.key(0), jnp.ones((5, 5, 2)), jnp.ones((8, L, L)))
    with pytest.raises(ValueError, match=r"\[\.\.\., 4, 4, c\]"):
        enc.apply(jax.random.key(0), params, jnp.ones((5, 5, 1)))
    with pytest.raises(ValueError, match="lifted maps of shape"):
        enc.apply(jax.random.key(0), params, x, scores=jnp.ones((4, L, L)))


# ----------------------------------------------------------------------------- the registry contract

_BATCH_ADJ = np.stack([np.pad(nx.to_numpy_array(nx.cycle_graph(6), dtype=np.float32), ((0, 2), (0, 2)))] * 2)
_BATCH_MASK = np.stack([np.arange(8) < 6] * 2)


def _apply(enc, key, adj, mask, **kw):
    return enc.apply(key, enc.init(jax.random.key(7)), adj, mask, **kw)


@pytest.mark.parametrize("name", ["noise", "randperm", "laplacian", "sympe", "sympe_learned"])
def test_batch_of_two_identical_graphs_gets_two_independent_samples(name):
    # Bug caught: one key reused for every item of a batch (identical graphs, identical encodings).
    enc = E.graph_encoding(name, n_max=8, features=3)
    out = np.asarray(jax.jit(lambda k: _apply(enc, k, _BATCH_ADJ, _BATCH_MASK))(jax.random.key(1)))
    assert out.shape == (2, 8, 3)
    assert not np.allclose(out[0], out[1])
    np.testing.assert_array_equal(out[:, 6:], 0)                      # padding nodes get zeros


@pytest.mark.parametrize("name", ["randperm", "laplacian", "sympe", "exact"])
def test_batched_apply_is_the_per_item_apply_with_split_keys(name):
    # The documented convention: item b of a batch uses jax.random.split(key, B)[b].
    enc = E.graph_encoding(name, n_max=8, features=3)
    params = enc.init(jax.random.key(7))
    adj = jnp.asarray(_BATCH_ADJ).at[1, 0, 3].set(1.0).at[1, 3, 0].set(1.0)
    ranks = jnp.stack([jnp.arange(8), jnp.array([1, 0, 2, 3, 4, 5, 6, 7])]).astype(jnp.int32)
    kw = (lambda b: {"ranks": ranks if b is None else ranks[b]}) if enc.needs_ranks else (lambda b: {})
    key = jax.random.key(3)
    batched = enc.apply(key, params, adj[None], jnp.asarray(_BATCH_MASK)[None],
                        **{k: v[None] for k, v in kw(None).items()})           # leading axes (1, 2)
    assert batched.shape == (1, 2, 8, 3)
    keys = jax.random.split(key, 2)
    for b in range(2):
        np.testing.assert_allclose(batched[0, b], enc.apply(keys[b], params, adj[b], _BATCH_MASK[b], **kw(b)),
                                   rtol=0, atol=1e-6)


def test_registry_rejects_bad_names_and_inputs():
    with pytest.raises(ValueError, match="unknown graph encoding 'sympee'.*'sympe'"):
        E.graph_encoding("sympee", n_max=4, features=2)
    with pytest.raises(ValueError, match="unknown lattice encoding"):
        E.lattice_encoding("randperm", L=4, features=2)
    with pytest.raises(ValueError, match="features >= 1"):
        E.graph_encoding("sympe", n_max=4, features=0)
    with pytest.raises(ValueError, match="n_max >= 1"):
        E.graph_encoding("randperm", features=2)
    with pytest.raises(ValueError, match="atol"):
        E.graph_encoding("sympe", n_max=4, features=2, atol=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        E.graph_encoding("sympe_learned", n_max=4, features=2, temperature=0.0)
    enc = E.graph_encoding("sympe", n_max=8, features=2)
    params = enc.init(jax.random.key(0))
    with pytest.raises(TypeError, match="boolean"):
        enc.apply(jax.random.key(0), params, _BATCH_ADJ, _BATCH_MASK.astype(np.int32))
    with pytest.raises(ValueError, match="adjacency must have shape"):
        enc.apply(jax.random.key(0), params, _BATCH_ADJ[:, :7], _BATCH_MASK)
    with pytest.raises(ValueError, match="needs scores or an adjacency"):
        enc.apply(jax.random.key(0), params, None, _BATCH_MASK)
    with pytest.raises(ValueError, match="scores must have the mask's shape"):
        enc.apply(jax.random.key(0), params, None, _BATCH_MASK, scores=jnp.zeros((2, 7)))
    with pytest.raises(ValueError, match="needs ranks="):
        _apply(E.graph_encoding("exact", n_max=8, features=2), jax.random.key(0), _BATCH_ADJ, _BATCH_MASK)
    with pytest.raises(ValueError, match="needs the adjacency"):
        _apply(E.graph_encoding("laplacian", features=2), jax.random.key(0), None, _BATCH_MASK)


def test_given_scores_replace_the_default_and_need_no_adjacency():
    enc = E.graph_encoding("sympe", n_max=8, features=2)
    params = enc.init(jax.random.key(0))
    scores = jnp.tile(jnp.arange(8.0), (2, 1))                     # all distinct: ranks = identity
    out = enc.apply(jax.random.key(1), params, None, _BATCH_MASK, scores=scores)
    expected = np.where(_BATCH_MASK[..., None], np.asarray(params["v"])[None], 0.0)
    np.testing.assert_array_equal(out, expected)
    # the default score ties every node of a cycle: another key, another ordering
    a = enc.apply(jax.random.key(1), params, _BATCH_ADJ, _BATCH_MASK)
    assert not np.allclose(a, expected)


# ----------------------------------------------------------------------------- invalid values poison outputs


def test_lattice_sympe_with_non_finite_scores_is_nan_under_jit():
    """Bug: NaN/Inf lifted scores gave element [-1, L-1, L-1] (a valid reflection) or a finite argmax: a finite encoding."""
    L = 3
    enc = E.lattice_encoding("sympe", L=L, features=2)
    params = enc.init(jax.random.key(0))
    x = jnp.ones((2, L, L, 1))
    apply = jax.jit(lambda k, s: enc.apply(k, params, x, scores=s))
    sample = jax.jit(lambda k, s: E.sample_lattice_sympe(k, params["v"], s))
    for bad in (np.nan, np.inf):
        scores = jnp.zeros((2, 8, L, L)).at[0, 5, 1, 2].set(bad)          # item 0 invalid, item 1 valid
        out = np.asarray(apply(jax.random.key(1), scores))
        assert np.all(np.isnan(out[0])) and np.all(np.isfinite(out[1]))
        pe, g = sample(jax.random.key(1), scores[0])
        assert np.all(np.isnan(pe))
        np.testing.assert_array_equal(g, -1)
        with pytest.raises(ValueError, match="finite"):
            E.sample_lattice_sympe(jax.random.key(1), params["v"], scores[0])


def test_ranks_must_be_a_permutation_ranking_the_real_nodes_first():
    """Bug: repeated ranks [0, 0, 0, 0] gave every node v[0]; a padding node could take a real node's row."""
    v = jnp.arange(10.0).reshape(5, 2)
    mask = jnp.array([True, True, True, False])
    run = jax.jit(E.graph_sympe)
    for ranks in ([0, 0, 0, 3], [0, 0, 0, 0], [0, 1, 2, 9], [-1, 1, 2, 3], [0, 1, 3, 2], [0, 1, 2, 2], [1, 2, 0, 0]):
        ranks = jnp.array(ranks)
        with pytest.raises(ValueError, match="permutation of 0..n-1 giving the real nodes 0..n_real-1"):
            E.graph_sympe(v, ranks, mask)
        assert np.all(np.isnan(run(v, ranks, mask))), ranks
    np.testing.assert_array_equal(run(v, jnp.array([2, 0, 1, 3]), mask), [[4, 5], [0, 1], [2, 3], [0, 0]])
    mask_anywhere = jnp.array([True, False, True, True])
    np.testing.assert_array_equal(run(v, jnp.array([0, 3, 2, 1]), mask_anywhere), [[0, 1], [0, 0], [4, 5], [2, 3]])
    # through the registry ("exact": ranks supplied by the caller), under jit and through sp.checked
    enc = E.graph_encoding("exact", n_max=8, features=2)
    params = enc.init(jax.random.key(0))
    ranks = jnp.stack([jnp.arange(8), jnp.zeros(8, int)]).astype(jnp.int32)
    apply = jax.jit(lambda r: enc.apply(jax.random.key(0), params, None, jnp.asarray(_BATCH_MASK), ranks=r))
    out = np.asarray(apply(ranks))
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))
    with pytest.raises(ValueError, match="permutation"):
        sp.checked(apply)(ranks)


def _bad_adjacencies():
    """float[4, 8, 8] C6 plus padding: a self-loop, a one-way edge, a NaN entry, and the valid graph."""
    adj = _BATCH_ADJ[0]
    loop, one_way, nan = adj.copy(), adj.copy(), adj.copy()
    loop[2, 2] = 1.0
    one_way[0, 1] = 0.0
    nan[1, 4] = nan[4, 1] = np.nan
    return jnp.asarray(np.stack([loop, one_way, nan, adj])), jnp.asarray(np.stack([_BATCH_MASK[0]] * 4))


@pytest.mark.parametrize("kind", ["jit", "eager_vmap"])
@pytest.mark.parametrize("name", ["laplacian", "sympe", "sympe_learned"])
def test_encodings_of_a_non_simple_adjacency_are_nan(name, kind):
    """Bug: a self-loop, one-way or NaN adjacency under jit/vmap gave the finite encoding of another graph."""
    enc = E.graph_encoding(name, n_max=8, features=3)
    params = enc.init(jax.random.key(0))
    apply = lambda k, a, m: enc.apply(k, params, a, m)        # batched apply: a vmap over the graphs
    if kind == "eager_vmap":                                   # eagerly the first bad graph raises
        with pytest.raises(ValueError, match=r"batch item \(0,\): adjacency has a self-loop"):
            apply(jax.random.key(1), *_bad_adjacencies())
        apply = jax.vmap(lambda k, a, m: enc.apply(k, params, a, m), in_axes=(None, 0, 0))
    out = np.asarray((jax.jit(apply) if kind == "jit" else apply)(jax.random.key(1), *_bad_adjacencies()))
    assert np.all(np.isnan(out[:3]))
    assert np.all(np.isfinite(out[3]))


# ----------------------------------------------------------------------------- tolerances


def test_registry_tolerances_accept_numpy_scalars_and_reject_bools():
    """Bug: np.float32 tolerances and 0-d arrays were rejected ("must be a finite number"); True was taken as 1.0."""
    f32, key = np.float32, jax.random.key(1)
    for name, kw in [("sympe", {"atol": f32(1e-5), "init_scale": f32(0.5)}), ("noise", {"noise_scale": f32(2.0)}),
                     ("sympe_learned", {"temperature": f32(0.1), "atol": jnp.asarray(1e-5)}),
                     ("laplacian", {"eigen_tol": np.asarray(1e-4)})]:
        enc = E.graph_encoding(name, n_max=8, features=3, **kw)
        plain = E.graph_encoding(name, n_max=8, features=3, **{k: float(v) for k, v in kw.items()})
        np.testing.assert_array_equal(_apply(enc, key, _BATCH_ADJ, _BATCH_MASK), _apply(plain, key, _BATCH_ADJ, _BATCH_MASK))
        for arg in kw:
            with pytest.raises(TypeError, match=arg):
                E.graph_encoding(name, n_max=8, features=3, **{arg: True})
    for name, kw in [("sympe", {"atol": np.asarray(0.0), "init_scale": f32(1.0)}), ("noise", {"noise_scale": f32(2.0)})]:
        enc = E.lattice_encoding(name, L=3, features=2, **kw)
        plain = E.lattice_encoding(name, L=3, features=2, **{k: float(v) for k, v in kw.items()})
        x = jnp.ones((3, 3, 1))
        np.testing.assert_array_equal(enc.apply(key, enc.init(key), x), plain.apply(key, plain.init(key), x))
        for arg in kw:
            with pytest.raises(TypeError, match=arg):
                E.lattice_encoding(name, L=3, features=2, **{arg: True})


# ----------------------------------------------------------------------------- randomness per item


def _two_identical_graphs():
    gs = [graphs.from_adjacency(_BATCH_ADJ[0, :6, :6]) for _ in range(2)]
    return graphs.pad(graphs.batch(gs), 16, 40, 3)


@pytest.mark.parametrize("name", ["noise", "randperm", "laplacian", "sympe", "sympe_learned"])
def test_jraph_encode_gives_two_identical_graphs_two_independent_samples(name):
    """Bug: randomness drawn once per batch and broadcast to every graph (identical graphs, identical channels)."""
    enc = E.graph_encoding(name, n_max=8, features=3)
    graph = _two_identical_graphs()
    out = np.asarray(jax.jit(lambda k: spj.encode(enc, k, enc.init(jax.random.key(7)), graph, n_max=8))(jax.random.key(1)))
    assert np.all(np.isfinite(out[:12])) and not np.allclose(out[:6], out[6:12])
    np.testing.assert_array_equal(out[12:], 0)


@pytest.mark.parametrize("name", ["noise", "sympe"])
def test_batch_of_two_identical_lattices_gets_two_independent_samples(name):
    """Bug: randomness drawn once per batch and broadcast to every lattice."""
    enc = E.lattice_encoding(name, L=4, features=2)
    x = jnp.ones((2, 4, 4, 1))
    out = np.asarray(jax.jit(lambda k: enc.apply(k, enc.init(jax.random.key(7)), x))(jax.random.key(1)))
    assert out.shape == (2, 4, 4, 2) and not np.allclose(out[0], out[1])


def test_an_eager_batched_call_raises_naming_the_bad_item():
    """Bug: a batched apply runs its items under vmap, where bad values only poison, so an eager
    call on a batch returned NaN where the same call on one graph raises."""
    enc = sp.graph_encoding("sympe", n_max=4, features=2)
    params = enc.init(jax.random.key(0))
    mask = jnp.ones((2, 3, 4), bool)
    scores = jnp.zeros((2, 3, 4)).at[1, 2, 0].set(jnp.inf)
    with pytest.raises(ValueError, match=r"batch item \(1, 2\).*finite"):
        enc.apply(jax.random.key(1), params, None, mask, scores=scores)
    out = jax.jit(lambda s: enc.apply(jax.random.key(1), params, None, mask, scores=s))(scores)
    assert np.isnan(out[1, 2]).all() and np.isfinite(np.delete(out.reshape(6, 4, 2), 5, 0)).all()
