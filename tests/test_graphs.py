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
