"""sympe_jax.jraph: encodings of padded GraphsTuple batches, aligned with graph.nodes."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from sympe_jax import encodings as E
from sympe_jax import features, graphs
from sympe_jax import jraph as spj
from sympe_jax.groups import permutation
from sympe_jax.testing import assert_equivariant_in_law


def _batch(*nx_graphs, n_node=16, n_edge=64):
    gs = [graphs.from_adjacency(nx.to_numpy_array(g, dtype=np.float32)) for g in nx_graphs]
    return graphs.pad(graphs.batch(gs), n_node, n_edge, len(gs) + 1)


@pytest.mark.parametrize("name", ["noise", "randperm", "laplacian", "sympe"])
def test_encode_is_the_dense_core_mapped_to_nodes(name):
    # Convention: graph b of the batch is dense block b, with key split(key, G)[b] (G = graph slots).
    graph = _batch(nx.cycle_graph(5), nx.path_graph(4))
    enc = E.graph_encoding(name, n_max=6, features=3)
    params = enc.init(jax.random.key(0))
    key = jax.random.key(1)
    out = jax.jit(lambda k: spj.encode(enc, k, params, graph, n_max=6))(key)
    adjacency, mask = graphs.to_dense(graph, 6)
    dense = enc.apply(key, params, adjacency, mask)
    assert out.shape == (16, 3)
    np.testing.assert_allclose(out[:5], dense[0, :5], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[5:9], dense[1, :4], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out[9:], 0)                                  # padding nodes


def test_node_scores_and_features_are_the_dense_ones():
    graph = _batch(nx.cycle_graph(5), nx.star_graph(3))
    adjacency, mask = graphs.to_dense(graph, 6)
    dense = jax.vmap(features.invariant_node_scores)(adjacency, mask)
    scores = spj.node_scores(graph, 6)
    np.testing.assert_allclose(scores[:5], dense[0, :5], atol=1e-6)
    np.testing.assert_allclose(scores[5:9], dense[1, :4], atol=1e-6)
    assert spj.structural_node_features(graph, 6).shape == (16, 9)


def _relabel(g, graph):
    """Move node i of the first graph to position g[i] (padding nodes stay)."""
    return graph._replace(senders=g[graph.senders], receivers=g[graph.receivers])


def test_encode_is_equivariant_in_law_under_node_relabelling():
    # Bug caught: node channels computed in node-slot order instead of per-node.
    nxg = nx.cycle_graph(6)
    nxg.add_edge(0, 3)
    graph = _batch(nxg, n_node=8, n_edge=20)
    enc = E.graph_encoding("sympe", n_max=6, features=2)
    params = enc.init(jax.random.key(0))
    g = jnp.concatenate([permutation.random_element(jax.random.key(4), 6), jnp.arange(6, 8)]).astype(jnp.int32)
    sampler = lambda k, gr: spj.encode(enc, k, params, gr, n_max=6)
    assert_equivariant_in_law(sampler, jax.random.key(2), graph, g, act_in=_relabel,
                              act_out=permutation.act_on_nodes, num_samples=3000)


def test_to_dense_under_jit_with_a_closed_over_numpy_batch_and_no_truncation():
    graph = _batch(nx.cycle_graph(5), nx.path_graph(4))
    adjacency, mask = jax.jit(lambda: graphs.to_dense(graph, 6))()          # was a tracer error
    np.testing.assert_array_equal(adjacency[0, :5, :5], nx.to_numpy_array(nx.cycle_graph(5)))
    assert mask.sum() == 9
    with pytest.raises(ValueError, match="more than n_max = 4"):          # was silently truncated
        graphs.to_dense(graph, 4)


def test_encode_needs_a_key_for_random_encodings():
    graph = _batch(nx.cycle_graph(5))
    enc = E.graph_encoding("sympe", n_max=6, features=2)
    with pytest.raises(ValueError, match="PRNG key"):
        spj.encode(enc, None, enc.init(jax.random.key(0)), graph, n_max=6)
    exact = E.graph_encoding("exact", n_max=6, features=2)
    ranks = jnp.tile(jnp.arange(6, dtype=jnp.int32), (2, 1))
    out = spj.encode(exact, None, {"v": jnp.eye(6, 2)}, graph, n_max=6, ranks=ranks)
    np.testing.assert_array_equal(out[:5], np.eye(6, 2)[:5])


def test_encode_rejects_invalid_batches_and_poisons_under_jit():
    """Bug: an edge across graphs, a graph larger than n_max or an unpadded batch gave finite channels."""
    graph = _batch(nx.cycle_graph(5), nx.path_graph(4))
    across = graph._replace(senders=np.where(np.arange(graph.senders.shape[0]) == 0, 6, graph.senders))
    unpadded = graphs.batch([graphs.from_adjacency(nx.to_numpy_array(g)) for g in (nx.cycle_graph(5), nx.path_graph(4))])
    key = jax.random.key(1)
    sympe, noise = (E.graph_encoding(name, n_max=6, features=3) for name in ("sympe", "noise"))
    params = sympe.init(jax.random.key(0))
    for bad, n_max, message in [(across, 6, "its own graph"), (graph, 4, "more than n_max = 4"),
                                (unpadded, 6, "is the batch unpadded")]:
        for enc in (sympe, noise):
            with pytest.raises(ValueError, match=message):
                spj.encode(enc, key, params, bad, n_max=n_max)
    with pytest.raises(ValueError, match="its own graph"):
        spj.node_scores(across, 6)
    out = jax.jit(lambda k, g: spj.encode(sympe, k, params, g, n_max=6))(key, across)
    assert bool(jnp.all(jnp.isnan(out)))
    out = jax.jit(lambda k, g: spj.encode(noise, k, {}, g, n_max=4))(key, graph)     # no dense adjacency on this path
    assert bool(jnp.all(jnp.isnan(out)))
