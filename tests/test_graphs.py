"""The jraph door: every jraph function we use, padding and message passing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sympe_jax import graphs
from sympe_jax.checks import checked


def _two_graphs():
    tri = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    edge = np.array([[0, 1], [1, 0]])
    return graphs.batch([graphs.from_adjacency(tri), graphs.from_adjacency(edge)]), [tri, edge]


def test_batch_pad_masks_and_dense_roundtrip():
    batch, adjs = _two_graphs()
    padded = graphs.pad(batch, n_node=8, n_edge=12, n_graph=3)
    np.testing.assert_array_equal(graphs.node_mask(padded), [1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(graphs.edge_mask(padded), [1] * 8 + [0] * 4)
    np.testing.assert_array_equal(graphs.graph_mask(padded), [1, 1, 0])
    np.testing.assert_array_equal(graphs.node_graph_index(padded), [0, 0, 0, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(graphs.local_node_index(padded), [0, 1, 2, 0, 1, 0, 1, 2])
    dense, mask = graphs.to_dense(padded, n_max=4)
    np.testing.assert_array_equal(dense[0, :3, :3], adjs[0])
    np.testing.assert_array_equal(dense[1, :2, :2], adjs[1])
    assert float(dense[2].sum()) == 0 and float(dense[0, 3].sum()) == 0
    np.testing.assert_array_equal(mask[:2].sum(1), [3, 2])
    assert not bool(mask[2].any())


def test_aggregate_ignores_padding():
    batch, _ = _two_graphs()
    padded = graphs.pad(batch, n_node=7, n_edge=11, n_graph=3)
    ones = jnp.ones((padded.senders.shape[0], 1))
    deg = graphs.aggregate(padded, ones)
    np.testing.assert_array_equal(deg[:, 0], [2, 2, 2, 1, 1, 0, 0])
    mean = graphs.aggregate(padded, ones, reduce="mean")
    np.testing.assert_array_equal(mean[:, 0], [1, 1, 1, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="reduce"):
        graphs.aggregate(padded, ones, reduce="max")


def test_bad_graphs_raise_clear_errors():
    with pytest.raises(ValueError, match="self-loop"):
        graphs.from_adjacency(np.eye(3))
    with pytest.raises(ValueError, match="square"):
        graphs.from_adjacency(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        graphs.from_adjacency(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="equal length"):
        graphs.validate_edges(3, [0, 1], [1])
    with pytest.raises(ValueError, match="0..2"):
        graphs.validate_edges(3, [0, 5], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        graphs.batch([])
    batch, _ = _two_graphs()
    with pytest.raises(ValueError, match="budget"):
        graphs.pad(batch, n_node=5, n_edge=12, n_graph=3)


def test_nodes_to_dense_and_back():
    batch, adjs = _two_graphs()
    padded = graphs.pad(batch, n_node=8, n_edge=12, n_graph=4)  # graph 2 pads, graph 3 is empty
    values = jnp.arange(16.0).reshape(8, 2)
    dense, mask = graphs.nodes_to_dense(padded, values, n_max=4)
    assert dense.shape == (4, 4, 2) and mask.shape == (4, 4)
    np.testing.assert_array_equal(dense[0, :3], values[:3])
    np.testing.assert_array_equal(dense[1, :2], values[3:5])
    np.testing.assert_array_equal(mask.sum(1), [3, 2, 0, 0])
    assert float(jnp.abs(dense[~mask]).sum()) == 0
    # num_graphs keeps the leading graph slots (drops the padding graph), and agrees with to_dense
    dense2, mask2 = graphs.nodes_to_dense(padded, values, n_max=3, num_graphs=2)
    np.testing.assert_array_equal(dense2, dense[:2, :3])
    np.testing.assert_array_equal(mask2, graphs.to_dense(padded, n_max=3)[1][:2])
    # back to node slots: real nodes recovered, padding nodes 0
    back = graphs.dense_to_nodes(padded, dense2)
    np.testing.assert_array_equal(back[:5], values[:5])
    assert float(jnp.abs(back[5:]).sum()) == 0
    # the same under jit, with the graph an argument or a closed-over NumPy batch
    jitted = jax.jit(lambda g, v: graphs.nodes_to_dense(g, v, 3, 2))
    np.testing.assert_array_equal(jitted(padded, values)[0], dense2)
    closed = jax.jit(lambda v: graphs.dense_to_nodes(padded, graphs.nodes_to_dense(padded, v, 3, 2)[0]))
    np.testing.assert_array_equal(closed(values), back)


def test_nodes_to_dense_rejects_bad_input():
    batch, _ = _two_graphs()
    padded = graphs.pad(batch, n_node=8, n_edge=12, n_graph=3)
    values = jnp.ones((8, 1))
    with pytest.raises(ValueError, match="more than n_max = 2"):
        graphs.nodes_to_dense(padded, values, n_max=2)
    with pytest.raises(ValueError, match="drop real graphs"):
        graphs.nodes_to_dense(padded, values, n_max=3, num_graphs=1)
    with pytest.raises(ValueError, match="one row per node slot"):
        graphs.nodes_to_dense(padded, jnp.ones((7, 1)), n_max=3)
    with pytest.raises(ValueError, match="num_graphs"):
        graphs.nodes_to_dense(padded, values, n_max=3, num_graphs=5)
    with pytest.raises(ValueError, match="more than n_max"):
        checked(jax.jit(lambda g, v: graphs.nodes_to_dense(g, v, 2)))(padded, values)
    with pytest.raises(ValueError, match=r"\[B, n_max"):
        graphs.dense_to_nodes(padded, jnp.ones(3))


def test_complete_message_graph_carries_the_adjacency_as_edge_feature():
    adj = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.uint8)
    g = graphs.from_adjacency(adj, complete=True)
    assert int(g.n_edge[0]) == 6 and g.edges.shape == (6, 1) and g.edges.dtype == np.float32
    assert sorted(zip(g.senders.tolist(), g.receivers.tolist())) == [(i, j) for i in range(3) for j in range(3) if i != j]
    np.testing.assert_array_equal(g.edges[:, 0], adj[g.senders, g.receivers])
    assert graphs.from_adjacency(adj).edges is None  # the sparse graph is unchanged
    with pytest.raises(ValueError, match="self-loop"):
        graphs.from_adjacency(np.eye(3), complete=True, allow_self_loops=True)


def _padded():
    batch, _ = _two_graphs()          # triangle: nodes 0-2, edges 0-5; one edge: nodes 3-4, edges 6-7
    return graphs.pad(batch, n_node=8, n_edge=12, n_graph=3)    # padding: nodes 5-7, edges 8-11 at node 5


def _edit(graph, field, index, value):
    arr = np.array(getattr(graph, field))
    arr[index] = value
    return graph._replace(**{field: arr})


BAD_BATCHES = {   # name: (corruption of _padded(), the error it must name)
    "n_node sum": (lambda g: g._replace(n_node=np.array([3, 2, 2], np.int32)), "n_node sums to 7 but the batch has 8"),
    "negative n_node": (lambda g: g._replace(n_node=np.array([3, -1, 6], np.int32)), "must be >= 0"),
    "n_edge sum": (lambda g: g._replace(n_edge=np.array([6, 2, 3], np.int32)), "n_edge sums to 11 but the batch has 12"),
    "sender too large": (lambda g: _edit(g, "senders", 0, 8), r"node indices must lie in 0\.\.7"),
    "negative receiver": (lambda g: _edit(g, "receivers", 1, -1), r"node indices must lie in 0\.\.7"),
    "edge across graphs": (lambda g: _edit(g, "senders", 0, 3), "join two nodes of its own graph"),
    "edge listed in another graph": (lambda g: _edit(_edit(g, "senders", 6, 0), "receivers", 6, 1),
                                     "listed in graph 1 .* its own graph"),
    "edge in the padding graph": (lambda g: _edit(_edit(g, "senders", 8, 6), "receivers", 8, 7), "is the batch unpadded"),
}


def _outputs(g):
    """Every value output of the module's batch functions (n_max = 4)."""
    values, messages = jnp.ones((8, 2)), jnp.ones((12, 2))
    return (graphs.to_dense(g, 4)[0], graphs.nodes_to_dense(g, values, 4)[0],
            graphs.dense_to_nodes(g, jnp.ones((3, 4, 2))), graphs.aggregate(g, messages),
            graphs.node_graph_index(g), graphs.local_node_index(g))


@pytest.mark.parametrize("name", list(BAD_BATCHES))
def test_invalid_batches_raise_eagerly_and_poison_under_jit(name):
    """Bug: counts that do not add up, edges out of range or across graphs, and a non-padding
    edge in the padding graph were silently accepted (wrong adjacency, nodes, aggregates)."""
    corrupt, message = BAD_BATCHES[name]
    bad = corrupt(_padded())
    for fn in (lambda g: graphs.to_dense(g, 4), lambda g: graphs.nodes_to_dense(g, jnp.ones(8), 4),
               lambda g: graphs.dense_to_nodes(g, jnp.ones((3, 4))), lambda g: graphs.aggregate(g, jnp.ones(12)),
               graphs.node_mask, graphs.edge_mask, graphs.graph_mask, graphs.node_graph_index,
               graphs.local_node_index):
        with pytest.raises(ValueError, match=message):
            fn(bad)
    with pytest.raises(ValueError, match=message):
        graphs.validate_batch(bad)
    jitted = jax.jit(_outputs)
    for out in jitted(bad):                                      # plain jit: poisoned, never finite
        assert bool(jnp.all(jnp.isnan(out))) if out.dtype.kind == "f" else bool(jnp.all(out == -1)), name
    with pytest.raises(ValueError, match=message):
        checked(jitted)(bad)
    good = jitted(_padded())                                     # the same compiled function on a valid batch
    assert all(bool(jnp.all(out >= 0)) for out in good)


def test_graphs_larger_than_n_max_poison_under_plain_jit():
    """Bug: under plain jit, a graph larger than n_max was silently truncated to n_max nodes."""
    padded = _padded()                                           # the triangle has 3 nodes > n_max = 2
    adjacency, mask = jax.jit(lambda g: graphs.to_dense(g, 2))(padded)
    assert bool(jnp.all(jnp.isnan(adjacency)))
    dense, _ = jax.jit(lambda g: graphs.nodes_to_dense(g, jnp.arange(8.0), 2))(padded)
    assert bool(jnp.all(jnp.isnan(dense)))
    assert bool(jnp.all(jax.jit(graphs.nodes_to_dense, static_argnums=2)(padded, jnp.arange(8), 2)[0] == -1))
    assert bool(jnp.all(jnp.isnan(jax.jit(graphs.dense_to_nodes)(padded, jnp.ones((3, 2))))))
    for fn in (lambda g: graphs.to_dense(g, 2), lambda g: graphs.dense_to_nodes(g, jnp.ones((3, 2)))):
        with pytest.raises(ValueError, match="graph 0 has 3 nodes, more than n_max = 2"):
            fn(padded)
        with pytest.raises(ValueError, match="more than n_max = 2"):
            checked(jax.jit(fn))(padded)


def test_unpadded_batches_are_rejected():
    """Bug: the last real graph of an unpadded batch was taken as padding, its nodes and edges dropped."""
    tri, edge = (graphs.from_adjacency(a) for a in _two_graphs()[1])
    unpadded = graphs.batch([tri, edge])
    for fn in (lambda g: graphs.to_dense(g, 4), graphs.node_mask, lambda g: graphs.aggregate(g, jnp.ones(8))):
        with pytest.raises(ValueError, match=r"graph 1 is taken as padding .* edge 3 -> 4.*graphs\.pad"):
            fn(unpadded)
    assert bool(jnp.all(jnp.isnan(jax.jit(lambda g: graphs.to_dense(g, 4)[0])(unpadded))))
    with pytest.raises(ValueError, match="at least 2 graphs"):   # a single graph is never a padded batch
        graphs.to_dense(tri, 4)
    # padded batches whose padding graph has no edge pass, as do edgeless real graphs
    lone = graphs.from_adjacency(np.zeros((1, 1)))
    padded = graphs.pad(graphs.batch([tri, lone]), n_node=5, n_edge=6, n_graph=3)
    np.testing.assert_array_equal(graphs.to_dense(padded, 3)[1].sum(1), [3, 1, 0])
    loops = np.array([6, 6, 7, 7], np.int32)                  # padding nodes permuted: loops off the first one
    moved = _padded()._replace(senders=np.r_[_padded().senders[:8], loops], receivers=np.r_[_padded().receivers[:8], loops])
    np.testing.assert_array_equal(graphs.to_dense(moved, 4)[0], graphs.to_dense(_padded(), 4)[0])
    # the documented limit: an unpadded batch ending with an edgeless graph looks padded
    np.testing.assert_array_equal(graphs.graph_mask(graphs.batch([tri, lone])), [True, False])


def test_static_batch_errors():
    padded = _padded()
    with pytest.raises(TypeError, match="integer"):
        graphs.to_dense(padded._replace(senders=padded.senders.astype(np.float32)), 4)
    with pytest.raises(ValueError, match="equal length"):
        graphs.aggregate(padded._replace(receivers=padded.receivers[:-1]), jnp.ones(12))
    with pytest.raises(ValueError, match="one row per edge"):
        graphs.aggregate(padded, jnp.ones(11))
    with pytest.raises(ValueError, match="one row per edge"):
        graphs.to_dense(padded, 4, edge_values=jnp.ones(11))
    with pytest.raises(ValueError, match="concrete"):
        jax.jit(lambda g: graphs.node_graph_index(g))(padded._replace(nodes=None))
