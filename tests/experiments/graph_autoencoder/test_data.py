"""Benchmark datasets (identical to the EGNN generator) and the fixed-budget batcher."""

import random

import numpy as np
import pytest

from sympe_jax import graphs

from experiments.graph_autoencoder import data as er


def _is_simple(adj):
    binary = set(np.unique(adj)) <= {0, 1}
    return adj.dtype == np.uint8 and binary and np.array_equal(adj, adj.T) and not adj.diagonal().any()


def test_erdos_renyi_equal_sizes_simple_and_seeded():
    adjs = er.erdos_renyi_dataset(40, seed=5)
    assert len(adjs) == 40 and all(_is_simple(a) for a in adjs)
    np.testing.assert_array_equal(np.bincount([a.shape[0] for a in adjs])[7:], [4] * 10)
    again = er.erdos_renyi_dataset(40, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(adjs, again))
    other = er.erdos_renyi_dataset(40, seed=6)
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(adjs, other))
    density = sum(a.sum() for a in adjs) / sum(a.shape[0] * (a.shape[0] - 1) for a in adjs)
    assert 0.2 < density < 0.3
    assert len(er.erdos_renyi_dataset(13, seed=0)) == 13  # partial cycle of sizes


def test_erdos_renyi_identical_to_egnn_benchmark():
    nx = pytest.importorskip("networkx")
    random.seed(1)  # the benchmark's procedure (ae_datasets/d_creator.py, DatasetErdosRenyiNodes)
    ref = []
    for _ in range(3):
        for n in range(7, 17):
            g = nx.gnp_random_graph(n, 0.25, directed=False)
            ref.append(nx.to_numpy_array(g, nodelist=range(n), dtype=np.uint8))
    random.shuffle(ref)
    mine = er.erdos_renyi_dataset(30, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(ref, mine))


def test_community_small_identical_to_egnn_benchmark():
    nx = pytest.importorskip("networkx")
    np.random.seed(2)  # the benchmark's procedure (DatasetCommunity, n_community)
    ref = []
    for _ in range(30):
        c_sizes = np.random.choice([6, 7, 8, 9, 10], 2)
        g = nx.disjoint_union_all([nx.gnp_random_graph(c_sizes[i], 0.7, seed=i) for i in range(2)])
        comms = [list(g.subgraph(c).nodes()) for c in nx.connected_components(g)]
        for i in range(len(comms)):
            for j in range(i + 1, len(comms)):
                has_inter_edge = False
                for n1 in comms[i]:
                    for n2 in comms[j]:
                        if np.random.rand() < 0.01:
                            g.add_edge(n1, n2)
                            has_inter_edge = True
                if not has_inter_edge:
                    g.add_edge(comms[i][0], comms[j][0])
        ref.append(nx.to_numpy_array(g, nodelist=range(g.number_of_nodes()), dtype=np.uint8))
    mine = er.community_small_dataset(30, seed=2)
    assert all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(ref, mine))
    assert all(_is_simple(a) and 12 <= a.shape[0] <= 20 for a in mine)
    fresh = er.community_small_dataset(30, seed=2, fixed_intra_seeds=False)
    assert all(_is_simple(a) for a in fresh) and not all(np.array_equal(a, b) for a, b in zip(fresh, mine))


def test_splits_use_their_own_seeds():
    train, val, test = er.splits("erdos_renyi", sizes=(20, 10, 10))
    assert (len(train), len(val), len(test)) == (20, 10, 10)
    assert all(np.array_equal(a, b) for a, b in zip(val, er.erdos_renyi_dataset(10, seed=1)))
    _, _, ctest = er.splits("community_small", sizes=(2, 2, 3))
    assert len(ctest) == 3
    with pytest.raises(ValueError, match="unknown dataset"):
        er.splits("cora")
    with pytest.raises(ValueError, match="distinct seeds"):
        er.splits("erdos_renyi", sizes=(2, 2, 2), seeds=(0, 0, 1))
    with pytest.raises(ValueError, match="num_graphs"):
        er.erdos_renyi_dataset(0, seed=0)


def _check_batch(batcher, batch):
    b, n = batcher.batch_size, batcher.n_max
    g = batch.graph
    assert g.nodes.shape == (b * n + 1, 1) and g.senders.shape == (batcher.n_edge,)
    assert g.n_node.shape == (b + 1,)
    assert batch.adjacency.shape == (b, n, n) and batch.adjacency.dtype == np.float32
    assert batch.mask.shape == (b, n) and batch.sizes.dtype == np.int32
    # the padded GraphsTuple and the dense targets describe the same graphs
    dense, mask = graphs.to_dense(g, n)
    np.testing.assert_array_equal(dense[:b], batch.adjacency)
    np.testing.assert_array_equal(mask[:b], batch.mask)
    np.testing.assert_array_equal(batch.mask.sum(1), batch.sizes)
    real = batch.graph_mask
    np.testing.assert_array_equal(batch.sizes[real], batcher.sizes[batch.indices[real]])
    assert np.all(batch.sizes[~real] == 0) and np.all(batch.indices[~real] == -1)


def test_batch_at_is_pure_and_covers_each_graph_once_per_epoch():
    adjs = er.erdos_renyi_dataset(10, seed=0)
    batcher = er.GraphBatcher(adjs, batch_size=4, n_max=16)
    assert batcher.steps_per_epoch == 3 and batcher.n_edge == 4 * 16 * 15
    epochs = []
    for epoch in range(2):
        seen = []
        for step in range(3 * epoch, 3 * epoch + 3):
            batch = batcher.batch_at(step, seed=7)
            _check_batch(batcher, batch)
            seen += batch.indices[batch.graph_mask].tolist()
        assert sorted(seen) == list(range(10))
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    fresh = er.GraphBatcher(adjs, batch_size=4, n_max=16)
    for step in (4, 0, 5):  # any order, any instance: same batch for the same (seed, step)
        a, b = batcher.batch_at(step, seed=7), fresh.batch_at(step, seed=7)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.graph.senders, b.graph.senders)
    assert not np.array_equal(batcher.batch_at(0, seed=8).indices, batcher.batch_at(0, seed=7).indices)
    dropping = er.GraphBatcher(adjs, batch_size=4, n_max=16, drop_remainder=True)
    assert dropping.steps_per_epoch == 2 and dropping.batch_at(1, seed=0).graph_mask.all()


def test_iterate_once_in_order_with_masked_tail():
    adjs = er.community_small_dataset(5, seed=0)
    tight = er.max_edges_per_batch(adjs, 2)
    batcher = er.GraphBatcher(adjs, batch_size=2, n_max=20, n_edge=tight)
    batches = list(batcher.iterate_once())
    assert len(batches) == batcher.num_eval_batches == 3
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), [0, 1, 2, 3, 4, -1])
    np.testing.assert_array_equal(batches[-1].graph_mask, [True, False])
    np.testing.assert_array_equal(graphs.graph_mask(batches[-1].graph), [True, False, False])
    for b in batches:
        assert b.graph.senders.shape == (tight,)
        _check_batch(batcher, b)


def test_bad_graphs_raise_clear_errors():
    ok = np.array([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="graph 1: self-loop at node 0"):
        er.GraphBatcher([ok, np.eye(2)], 2, 4)
    with pytest.raises(ValueError, match=r"not symmetric: A\[0, 1\]"):
        er.GraphBatcher([np.array([[0, 1], [0, 0]])], 2, 4)
    with pytest.raises(ValueError, match="graph 0: 5 nodes, more than n_max = 4"):
        er.GraphBatcher([np.zeros((5, 5))], 2, 4)
    with pytest.raises(ValueError, match="square"):
        er.GraphBatcher([np.zeros((2, 3))], 2, 4)
    with pytest.raises(ValueError, match="0 or 1"):
        er.GraphBatcher([2 * ok], 2, 4)
    with pytest.raises(ValueError, match="NaN"):
        er.GraphBatcher([np.full((2, 2), np.nan)], 2, 4)
    with pytest.raises(ValueError, match="at least one node"):
        er.GraphBatcher([np.zeros((0, 0))], 2, 4)
    with pytest.raises(ValueError, match="empty split"):
        er.GraphBatcher([], 2, 4)
    with pytest.raises(ValueError, match="batch_size"):
        er.GraphBatcher([ok], 0, 4)
    with pytest.raises(ValueError, match="n_edge = 1 is too small"):
        er.GraphBatcher([ok], 2, 4, n_edge=1)
    path = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])  # 4 directed edges, 6 directed pairs
    with pytest.raises(ValueError, match="have 6 directed pairs"):
        er.GraphBatcher([path], 2, 4, n_edge=4, complete=True)
    full = er.GraphBatcher([path], 2, 4, complete=True).make_batch([0]).graph
    assert full.edges.shape == (2 * 4 * 3, 1) and float(full.edges.sum()) == 4
    two = [path, np.zeros((4, 4), np.uint8)]  # the empty 4-node graph has the most pairs, the path the most edges
    assert er.max_edges_per_batch(two, 1) == 4 and er.max_edges_per_batch(two, 1, complete=True) == 12
    er.GraphBatcher(two, 2, 4, n_edge=18, complete=True).make_batch([0, 1])  # 6 + 12 pairs fit exactly
    batcher = er.GraphBatcher([ok], 2, 4)
    with pytest.raises(ValueError, match="step"):
        batcher.batch_at(-1, seed=0)
    with pytest.raises(ValueError, match="seed"):
        batcher.batch_at(0, seed=-3)


def test_pad_dense_pads_blocks_and_masks_nodes():
    adjs = [np.ones((2, 2)) - np.eye(2), np.zeros((3, 3))]
    dense, mask = er.pad_dense(adjs, 4)
    assert dense.shape == (2, 4, 4) and dense.dtype == np.float32
    np.testing.assert_array_equal(dense[0, :2, :2], adjs[0])
    assert dense[0, 2:].sum() == 0 and dense[0, :, 2:].sum() == 0
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 1, 1, 0]])
    with pytest.raises(ValueError, match="n_max"):
        er.pad_dense(adjs, 2)
