"""S_n actions: group axioms for every action, masks, uniformity of random elements."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sympe_jax import checks, graphs
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


# ----------------------------------------------------------------------------- validation

BAD_PERMS = [[0, 1, 2, 9], [0, 0, 0, 0], [-1, 0, 1, 2], [3, 2, 1, 1]]


def _small_batch():
    """A padded batch of 4 node slots: graph 0 (nodes 0, 1, joined), graph 1 (node 2), padding (node 3)."""
    g0 = graphs.from_adjacency(np.array([[0, 1], [1, 0]]), np.arange(4.0).reshape(2, 2))
    g1 = graphs.from_adjacency(np.zeros((1, 1)), np.array([[4.0, 5.0]]))
    return graphs.pad(graphs.batch([g0, g1]), n_node=4, n_edge=3, n_graph=3)


BATCH = _small_batch()
VALID = jnp.array([1, 0, 2, 3])  # a permutation of 4 nodes that keeps the graphs of _small_batch()


def _uses(g):
    """Every public function of one permutation g of 4 nodes, on small fixed inputs."""
    x = jnp.arange(8.0).reshape(4, 2)
    return {
        "act_on_nodes": lambda: P.act_on_nodes(g, x),
        "act_on_nodes_int": lambda: P.act_on_nodes(g, jnp.arange(4)),
        "act_on_dense": lambda: P.act_on_dense(g, jnp.ones((4, 4, 1))),
        "act_on_edges": lambda: P.act_on_edges(g, jnp.array([0, 1, 3]), jnp.array([1, 2, 0])),
        "inverse": lambda: P.inverse(g),
        "compose_g": lambda: P.compose(g, P.identity(4)),
        "compose_h": lambda: P.compose(jnp.array([1, 0, 3, 2]), g),
        "act_on_graphs_tuple": lambda: P.act_on_graphs_tuple(g, BATCH),
    }


def _assert_poisoned(out, what):
    for leaf in jax.tree.leaves(out):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.floating):
            assert np.isnan(leaf).all(), what
        elif np.issubdtype(leaf.dtype, np.integer) and leaf.size:
            assert (leaf == -1).all(), (what, leaf)


@pytest.mark.parametrize("bad", BAD_PERMS)
def test_non_permutations_raise_eagerly(bad):
    """Bug: act_on_nodes([0, 1, 2, 9], x) gave x[[0, 1, 2, 0]] and [0, 0, 0, 0] copied node 0 everywhere."""
    for name, fn in _uses(jnp.array(bad)).items():
        with pytest.raises(ValueError, match=r"not a permutation of 0\.\.3: an entry is repeated, negative or >= 4"):
            fn()


def test_non_permutations_poison_every_output_under_jit():
    """Bug: under jit a non-permutation (or the all -1 poison) gave finite node features and valid-looking edges."""
    jitted = {name: jax.jit(lambda g, name=name: _uses(g)[name]()) for name in _uses(P.identity(4))}
    for bad in BAD_PERMS + [[-1, -1, -1, -1]]:
        for name, fn in jitted.items():
            out = fn(jnp.array(bad))
            if name == "act_on_graphs_tuple":  # every node feature and edge index, not n_node/n_edge
                out = (out.nodes, out.senders, out.receivers)
            _assert_poisoned(out, (bad, name))
    for name, fn in jitted.items():  # a valid permutation is untouched
        for a, b in zip(jax.tree.leaves(fn(VALID)), jax.tree.leaves(_uses(VALID)[name]())):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="not a permutation"):
        checks.checked(jitted["act_on_nodes"])(jnp.array([0, 1, 2, 9]))


def test_edges_out_of_range():
    """Bug: act_on_edges read g at a sender 4 or -1 of a 4-node graph (clamped/wrapped), a finite wrong edge."""
    g = jnp.array([1, 0, 3, 2])
    for senders in ([0, 4], [-1, 0]):
        with pytest.raises(ValueError, match=r"outside the node indices 0\.\.3"):
            P.act_on_edges(g, jnp.array(senders), jnp.array([1, 2]))
        with pytest.raises(ValueError, match=r"outside the node indices 0\.\.3"):
            P.act_on_edges(g, jnp.array([1, 2]), jnp.array(senders))
        out = jax.jit(P.act_on_edges)(g, jnp.array(senders), jnp.array([1, 2]))
        np.testing.assert_array_equal(np.stack(out), -1)
    with pytest.raises(TypeError, match="integer dtypes"):
        P.act_on_edges(g, jnp.array([0.0, 1.0]), jnp.array([1, 2]))
    with pytest.raises(ValueError, match="outside the node indices"):
        P.act_on_graphs_tuple(VALID, BATCH._replace(senders=jnp.array([0, 1, 7])))


def test_graphs_tuple_permutation_must_keep_nodes_in_their_graph():
    """Bug: a permutation moving a node to another graph of the batch silently merged the graphs."""
    across = jnp.array([2, 1, 0, 3])  # swaps node 0 (graph 0) and node 2 (graph 1)
    with pytest.raises(ValueError, match="moves a node to another graph"):
        P.act_on_graphs_tuple(across, BATCH)
    out = jax.jit(P.act_on_graphs_tuple)(across, BATCH)
    assert np.isnan(out.nodes).all() and (np.asarray(out.senders) == -1).all()
    np.testing.assert_array_equal(out.n_node, BATCH.n_node)
    assert np.isfinite(jax.jit(P.act_on_graphs_tuple)(VALID, BATCH).nodes).all()
