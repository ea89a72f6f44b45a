"""experiments.graph_autoencoder.floors: the exact error floor of 1-WL-bounded pairwise decoders."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from sympe_jax.exact import automorphisms as am

from experiments.graph_autoencoder.floors import wl_pair_floor
from tests.exact.test_automorphisms import BAD_ADJACENCY, adjacency, random_graph


C6 = adjacency(nx.cycle_graph(6))


def test_wl_pair_floor_hand_computed():
    two_edges = adjacency(nx.Graph([(0, 1), (2, 3)]))
    tree = adjacency(nx.Graph([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (2, 6)]))  # asymmetric
    triangle_p3 = adjacency(nx.disjoint_union(nx.cycle_graph(3), nx.path_graph(3)))
    data = [C6, adjacency(nx.path_graph(3)), two_edges, tree, triangle_p3]
    out = wl_pair_floor(data)
    # C6: one class of 30 ordered pairs, 12 of them edges -> 12. P3: ends/middle classes are
    # pure -> 0. 2K2: one class, 4 of 12 edges -> 4. Tree: discrete -> 0. Triangle + P3: every
    # colour-pair class is pure -> 0, but the distance decoder merges the triangle's same-colour
    # pairs (6 edges) with the P3 ends' (2 non-edges) -> 2.
    assert out["num_pairs"] == 30 + 6 + 12 + 42 + 30
    assert out["floor_errors"] == 16
    assert out["floor_percent"] == pytest.approx(100 * 16 / 120)
    assert out["floor_percent_distance_decoder"] == pytest.approx(100 * 18 / 120)
    assert np.array_equal(out["per_graph_floor_errors"], [12, 0, 4, 0, 0])
    assert out["num_not_fully_refined"] == 4 and out["frac_not_fully_refined"] == 0.8
    assert out["frac_same_color_pairs"] == pytest.approx((30 + 2 + 12 + 0 + 8) / 120)
    assert out["num_graphs"] == 5

    # Global pooling: C6 and C3 are both 2-regular, so they share one colour across graphs.
    out = wl_pair_floor([C6, adjacency(nx.cycle_graph(3))])
    assert out["floor_errors"] == 12  # per graph: C6 12, C3 0 (all 6 pairs are edges)
    assert out["floor_percent_global"] == pytest.approx(100 * 18 / 36)  # 18 edges of 36
    # Shared b: 2K2 (4 edges / 12) and a triangle (6 / 6) in one same-colour class -> 8.
    out = wl_pair_floor([two_edges, adjacency(nx.cycle_graph(3))])
    assert out["floor_percent_global"] == pytest.approx(100 * 4 / 18)
    assert out["floor_percent_distance_decoder_global"] == pytest.approx(100 * 8 / 18)


def test_wl_pair_floor_matches_a_direct_count():
    rng = np.random.default_rng(11)
    data = [random_graph(rng, int(rng.integers(7, 17)), 0.25) for _ in range(40)]
    out = wl_pair_floor(data)
    errors = pairs = 0
    for adj in data:
        c = am.wl_colors(adj)  # per-graph refinement gives the same partition
        classes: dict = {}
        for i, j in itertools.permutations(range(len(adj)), 2):
            classes.setdefault((min(c[i], c[j]), max(c[i], c[j])), []).append(adj[i, j])
        errors += sum(min(sum(v), len(v) - sum(v)) for v in classes.values())
        pairs += len(adj) * (len(adj) - 1)
    assert out["floor_errors"] == errors and out["num_pairs"] == pairs
    assert out["floor_percent"] <= out["floor_percent_global"]
    assert out["floor_percent"] <= out["floor_percent_distance_decoder"]
    assert out["floor_percent_distance_decoder"] <= out["floor_percent_distance_decoder_global"]


def test_empty_and_single_node_graphs():
    assert wl_pair_floor([np.zeros((0, 0), bool), np.zeros((1, 1))])["floor_percent"] == 0.0


@pytest.mark.parametrize("bad, match", BAD_ADJACENCY)
def test_bad_adjacency_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        wl_pair_floor([C6, bad])
