"""S_n actions: group axioms for every action, masks, uniformity of random elements."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sympe_jax import graphs
from sympe_jax.groups import permutation as P
from sympe_jax.testing import chi2_homogeneity

SETTINGS = settings(deadline=None, max_examples=12)


def _perm(rng, n):
    return jnp.asarray(rng.permutation(n), jnp.int32)


@SETTINGS
@given(n=st.integers(1, 12), seed=st.integers(0, 2**31 - 1), extra=st.sampled_from([(), (3,), (2, 2)]))
def test_axioms_nodes_dense_edges(n, seed, extra):
    rng = np.random.default_rng(seed)
    g, h = _perm(rng, n), _perm(rng, n)
    x = jnp.asarray(rng.normal(size=(n,) + extra), jnp.float32)
    a = jnp.asarray(rng.normal(size=(n, n) + extra), jnp.float32)
    e = rng.integers(0, n, size=(2, 2 * n))
    gh = P.compose(g, h)
    # identity, composition, inverse
    np.testing.assert_array_equal(P.act_on_nodes(P.identity(n), x), x)
    np.testing.assert_array_equal(P.act_on_nodes(gh, x), P.act_on_nodes(g, P.act_on_nodes(h, x)))
    np.testing.assert_array_equal(P.act_on_nodes(P.inverse(g), P.act_on_nodes(g, x)), x)
    np.testing.assert_array_equal(P.act_on_dense(P.identity(n), a), a)
    np.testing.assert_array_equal(P.act_on_dense(gh, a), P.act_on_dense(g, P.act_on_dense(h, a)))
    np.testing.assert_array_equal(P.act_on_dense(P.inverse(g), P.act_on_dense(g, a)), a)
    s1, r1 = P.act_on_edges(gh, *e)
    s2, r2 = P.act_on_edges(g, *P.act_on_edges(h, *e))
    np.testing.assert_array_equal(np.stack([s1, r1]), np.stack([s2, r2]))
    np.testing.assert_array_equal(np.stack(P.act_on_edges(P.inverse(g), *P.act_on_edges(g, *e))), e)
    # the convention itself: node i moves to position g[i]
    np.testing.assert_array_equal(P.act_on_nodes(g, x)[g], x)
    np.testing.assert_array_equal(P.act_on_dense(g, a)[g[:, None], g[None, :]], a)
    assert bool(P.is_permutation(gh))


def test_edges_and_dense_agree():
    rng = np.random.default_rng(0)
    n = 7
    adj = np.triu((rng.random((n, n)) < 0.4), 1)
    adj = (adj | adj.T).astype(np.float32)
    g = _perm(rng, n)
    s, r = P.act_on_edges(g, *np.nonzero(adj))
    moved = np.zeros_like(adj)
    moved[np.asarray(s), np.asarray(r)] = 1
    np.testing.assert_array_equal(moved, P.act_on_dense(g, adj))


def test_is_permutation_rejects_non_permutations():
    assert not bool(P.is_permutation(jnp.array([0, 0, 1])))
    assert not bool(P.is_permutation(jnp.array([0, 3, 1])))
    with pytest.raises(TypeError, match="integer dtype"):
        P.act_on_nodes(jnp.array([0.0, 1.0]), jnp.ones(2))
    with pytest.raises(ValueError, match="does not match"):
        P.act_on_nodes(jnp.array([0, 1]), jnp.ones(3))


def test_random_element_masked_fixes_padding_and_is_uniform():
    mask = jnp.array([True, False, True, True, False])
    keys = jax.random.split(jax.random.key(0), 6000)
    gs = np.asarray(jax.vmap(lambda k: P.random_element(k, 5, mask))(keys))
    assert np.all(gs[:, 1] == 1) and np.all(gs[:, 4] == 4)
    assert all(sorted(g[[0, 2, 3]]) == [0, 2, 3] for g in gs[:50])
    # all 3! arrangements of the real nodes, equally often
    rng = np.random.default_rng(1)
    uniform = np.asarray([rng.permutation([0, 2, 3]) for _ in range(6000)])
    _, _, p = chi2_homogeneity(gs[:, [0, 2, 3]], uniform)
    assert len(np.unique(gs[:, [0, 2, 3]], axis=0)) == 6 and p > 1e-3


def _batch():
    g1 = graphs.from_adjacency(np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0]]), np.arange(3.0)[:, None])
    g2 = graphs.from_adjacency(np.array([[0, 1], [1, 0]]), np.arange(3.0, 5.0)[:, None])
    return graphs.pad(graphs.batch([g1, g2]), n_node=8, n_edge=10, n_graph=3)


def test_graphs_tuple_action_keeps_graphs_and_padding():
    batch = _batch()
    mask = graphs.node_mask(batch)
    seg = np.asarray(graphs.node_graph_index(batch))
    for k in jax.random.split(jax.random.key(1), 20):
        g = P.random_graphs_tuple_element(k, batch, mask)
        assert bool(P.is_permutation(g))
        np.testing.assert_array_equal(seg[np.asarray(g)], seg)  # nodes stay in their graph
        np.testing.assert_array_equal(np.asarray(g)[~np.asarray(mask)], np.nonzero(~np.asarray(mask))[0])
        moved = P.act_on_graphs_tuple(g, batch)
        # edges still connect the same features: compare edge feature pairs as sets
        before = {(float(batch.nodes[s, 0]), float(batch.nodes[r, 0])) for s, r in zip(batch.senders, batch.receivers)}
        after = {(float(moved.nodes[s, 0]), float(moved.nodes[r, 0])) for s, r in zip(moved.senders, moved.receivers)}
        assert before == after
        h = P.random_graphs_tuple_element(jax.random.fold_in(k, 1), batch, mask)
        two = P.act_on_graphs_tuple(g, P.act_on_graphs_tuple(h, batch))
        one = P.act_on_graphs_tuple(P.compose(g, h), batch)
        np.testing.assert_array_equal(two.nodes, one.nodes)
        np.testing.assert_array_equal(two.senders, one.senders)
