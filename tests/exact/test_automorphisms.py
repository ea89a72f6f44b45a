"""Tests for sympe_jax.exact.automorphisms: nauty conventions, exact Schreier-Sims sampling, the
exact inversion kernel and 1-WL colours (the 1-WL pair floor built on them is tested in
tests/experiments/graph_autoencoder/test_floors.py)."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest
import scipy.stats

pynauty = pytest.importorskip("pynauty")

from sympe_jax.exact import automorphisms as am  # noqa: E402

P_MIN = 1e-3  # chi-square acceptance bound (fixed seeds: deterministic)


# ----------------------------------------------------------------------------------- helpers


def adjacency(graph: nx.Graph) -> np.ndarray:
    graph = nx.convert_node_labels_to_integers(graph)
    return nx.to_numpy_array(graph, nodelist=range(graph.number_of_nodes()), dtype=bool)


def random_graph(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    upper = np.triu(rng.random((n, n)) < p, 1)
    return upper | upper.T


def nx_automorphisms(adj: np.ndarray) -> list[tuple[int, ...]]:
    """All automorphisms by VF2, in the project convention (g[i] = image of node i)."""
    graph = nx.from_numpy_array(adj.astype(int))
    matcher = nx.algorithms.isomorphism.GraphMatcher(graph, graph)
    return [tuple(m[i] for i in range(len(adj))) for m in matcher.isomorphisms_iter()]


def brute_force_coset(adj: np.ndarray, canonical: np.ndarray) -> set[tuple[int, ...]]:
    """Every permutation r with r . A == canonical (n <= 7)."""
    n = len(adj)
    return {r for r in itertools.permutations(range(n))
            if np.array_equal(am.permute_adjacency(np.array(r), adj), canonical)}


def uniformity_pvalue(samples: np.ndarray, support: set[tuple[int, ...]]) -> float:
    """Chi-square p-value of the samples against the uniform law on ``support``."""
    index = {s: k for k, s in enumerate(sorted(support))}
    counts = np.zeros(len(index), np.int64)
    for s in map(tuple, samples.tolist()):
        assert s in index, f"sample {s} outside the support"
        counts[index[s]] += 1
    return float(scipy.stats.chisquare(counts).pvalue)


C6 = adjacency(nx.cycle_graph(6))
CUBE = adjacency(nx.hypercube_graph(3))  # |Aut| = 48
PETERSEN = adjacency(nx.petersen_graph())  # |Aut| = 120


# --------------------------------------------------------------------- pynauty conventions


def test_canon_label_is_lab_and_ranks_are_its_inverse():
    """pynauty.canon_label returns lab (lab[k] = vertex at position k); ranks = lab^-1."""
    rng = np.random.default_rng(0)
    lab_fails = 0
    for _ in range(20):
        n = int(rng.integers(5, 12))
        adj = random_graph(rng, n, 0.4)
        p = rng.permutation(n)
        adj_p = am.permute_adjacency(p, adj)
        ranks, ranks_p = am.canonical_ranks(adj), am.canonical_ranks(adj_p)
        assert ranks.dtype == np.int32
        assert np.array_equal(am.permute_adjacency(ranks, adj),
                              am.permute_adjacency(ranks_p, adj_p))
        lab = np.asarray(pynauty.canon_label(am._nauty_graph(adj)))
        assert np.array_equal(ranks, am.inverse(lab))
        lab_p = np.asarray(pynauty.canon_label(am._nauty_graph(adj_p)))
        lab_fails += not np.array_equal(am.permute_adjacency(lab, adj),
                                        am.permute_adjacency(lab_p, adj_p))
    assert lab_fails > 0  # using lab itself as ranks would be wrong


def test_nauty_generators_are_automorphisms_in_our_convention():
    adj = adjacency(nx.circular_ladder_graph(5))  # has generators of order > 2
    gens, log10_order, _, _ = am._nauty(adj)
    assert len(gens) > 0
    for g in gens:
        assert am.is_automorphism(g, adj)
    assert round(10 ** log10_order) == 20


# ----------------------------------------------------------------------------- group orders


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8])
def test_cycle_order(n):
    assert am.group_order(adjacency(nx.cycle_graph(n))) == 2 * n


@pytest.mark.parametrize("n", [3, 4, 6, 8])
def test_star_order(n):
    """Star with n - 1 >= 2 leaves: (n - 1)! (one leaf: K_2, order 2)."""
    assert am.group_order(adjacency(nx.star_graph(n - 1))) == math.factorial(n - 1)


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_complete_order(n):
    assert am.group_order(adjacency(nx.complete_graph(n))) == math.factorial(n)


@pytest.mark.parametrize("n", [2, 3, 6, 9])
def test_path_order(n):
    assert am.group_order(adjacency(nx.path_graph(n))) == 2


def test_huge_orders_are_exact_and_sampled_without_enumeration():
    for adj, order in [(adjacency(nx.complete_graph(40)), math.factorial(40)),
                       (adjacency(nx.star_graph(30)), math.factorial(30)),
                       (adjacency(nx.disjoint_union_all([nx.cycle_graph(3)] * 8)),
                        6 ** 8 * math.factorial(8))]:
        group = am.automorphism_group(adj)
        assert group.order == order  # exact Python int, beyond float precision
        assert math.prod(group.orbit_sizes) == order
        samples = am.sample_automorphism(group, np.random.default_rng(0), size=20)
        assert all(am.is_automorphism(g, adj) for g in samples)
        assert len({tuple(g) for g in samples}) == 20


def test_orders_and_orbits_match_networkx():
    rng = np.random.default_rng(1)
    graphs = [C6, CUBE, adjacency(nx.star_graph(4)), adjacency(nx.path_graph(5)),
              adjacency(nx.complete_bipartite_graph(2, 3)), np.zeros((4, 4), bool)]
    graphs += [random_graph(rng, int(rng.integers(4, 9)), 0.35) for _ in range(12)]
    for adj in graphs:
        auts = nx_automorphisms(adj)
        group = am.automorphism_group(adj)
        assert group.order == len(auts)
        # orbit partition from the explicit group
        nx_orbits = {frozenset(g[i] for g in auts) for i in range(len(adj))}
        ours = am.orbits(adj)
        assert {frozenset(np.flatnonzero(ours == o)) for o in np.unique(ours)} == nx_orbits
        assert np.array_equal(np.unique(ours), np.arange(len(nx_orbits)))
        assert ours[0] == 0 and np.all(np.diff([np.flatnonzero(ours == o)[0] for o in
                                                np.unique(ours)]) > 0)


# ------------------------------------------------------------------------- exact sampling


@pytest.mark.parametrize("adj", [C6, CUBE, PETERSEN, adjacency(nx.complete_graph(5))])
def test_samples_are_automorphisms_and_cover_the_group(adj):
    group = am.automorphism_group(adj)
    samples = am.sample_automorphism(group, np.random.default_rng(2), size=40 * group.order)
    assert samples.dtype == np.int32 and samples.shape == (40 * group.order, len(adj))
    distinct = {tuple(g) for g in samples.tolist()}
    assert len(distinct) == group.order
    assert all(am.is_automorphism(np.array(g), adj) for g in distinct)


@pytest.mark.parametrize("adj, order", [(C6, 12), (CUBE, 48)])
def test_sampling_is_uniform(adj, order):
    group = am.automorphism_group(adj)
    assert group.order == order and len(group.orbit_sizes) >= 2  # a real multi-level chain
    support = set(nx_automorphisms(adj))
    samples = am.sample_automorphism(group, np.random.default_rng(3), size=150 * order)
    assert uniformity_pvalue(samples, support) > P_MIN


def biased_walk(group: am.AutGroup, rng: np.random.Generator, size: int, steps: int) -> np.ndarray:
    """Negative control: a short random walk on the generators (not mixed, so biased)."""
    out = np.tile(np.arange(group.n, dtype=np.int32), (size, 1))
    gens = np.concatenate([np.arange(group.n, dtype=np.int32)[None], group.generators])
    for _ in range(steps):
        out = np.take_along_axis(out, gens[rng.integers(0, len(gens), size)], axis=1)
    return out


@pytest.mark.parametrize("adj, steps", [(C6, 3), (CUBE, 4)])
def test_uniformity_test_rejects_a_biased_sampler(adj, steps):
    group = am.automorphism_group(adj)
    support = set(nx_automorphisms(adj))
    samples = biased_walk(group, np.random.default_rng(3), 150 * group.order, steps)
    assert all(tuple(g) in support for g in samples.tolist())  # valid automorphisms ...
    assert uniformity_pvalue(samples, support) < P_MIN  # ... but detectably non-uniform


def test_sampling_is_deterministic_given_the_generator():
    group = am.automorphism_group(PETERSEN)
    a = am.sample_automorphism(group, np.random.default_rng(7), size=5)
    b = am.sample_automorphism(group, np.random.default_rng(7), size=5)
    c = am.sample_automorphism(group, np.random.default_rng(8), size=5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    one = am.sample_automorphism(group, np.random.default_rng(7))
    assert one.shape == (10,) and one.dtype == np.int32


def test_trivial_group_gives_identity():
    adj = adjacency(nx.Graph([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (2, 6)]))  # asymmetric tree
    group = am.automorphism_group(adj)
    assert group.order == 1 and group.generators.shape == (0, 7)
    assert np.array_equal(am.sample_automorphism(group, np.random.default_rng(0)), np.arange(7))


@pytest.mark.parametrize("use_oracle", [True, False])
def test_chain_repair_from_a_bad_base(use_oracle):
    """A base for which nauty's generators are not strong fails the order certificate; the
    chain is repaired (nauty stabilizer oracle, or random Schreier-Sims without it), and the
    certified chain samples uniformly."""
    gens, log10_order, _, _ = am._nauty(CUBE)
    bad_chain = am._build_chain(8, list(gens), [7])
    assert math.prod(bad_chain.orbit_sizes.tolist()) < 48
    oracle = am._stabilizer_oracle(CUBE, np.ones(8, bool)) if use_oracle else None
    chain, order = am._stabilizer_chain(8, gens, log10_order, base=[7], oracle=oracle)
    assert order == 48
    group = am.AutGroup(n=8, generators=gens, order=order, orbits=np.zeros(8, np.int32),
                        canon=np.arange(8, dtype=np.int32), mask=np.ones(8, bool), chain=chain)
    samples = am.sample_automorphism(group, np.random.default_rng(4), size=150 * 48)
    assert uniformity_pvalue(samples, set(nx_automorphisms(CUBE))) > P_MIN


def test_chain_repair_on_a_large_sparse_graph():
    rng = np.random.default_rng(12)
    adj = random_graph(rng, 300, 1.5 / 300)  # many isomorphic small components
    gens, log10_order, _, _ = am._nauty(adj)
    oracle = am._stabilizer_oracle(adj, np.ones(300, bool))
    first = int(np.flatnonzero(gens[0] != np.arange(300))[0])
    bad_chain = am._build_chain(300, list(gens), [first] + am._infer_base(gens)[::-1])
    assert abs(math.log10(math.prod(bad_chain.orbit_sizes.tolist())) - log10_order) > 0.2
    _, order = am._stabilizer_chain(300, gens, log10_order,
                                    base=[first] + am._infer_base(gens)[::-1], oracle=oracle)
    assert order == am.group_order(adj)
    assert abs(math.log10(order) - log10_order) < 1e-9


def test_schreier_trees_stay_shallow():
    group = am.automorphism_group(adjacency(nx.complete_graph(64)))
    assert group.order == math.factorial(64)
    sizes = np.asarray(group.orbit_sizes)
    assert np.all(group.chain.depth <= np.maximum(2, 2 * np.ceil(np.log2(np.maximum(sizes, 2)))))


# --------------------------------------------------------------------- inversion kernel


@pytest.mark.parametrize("adj", [C6, adjacency(nx.star_graph(3)), adjacency(nx.Graph(
    [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 5), (5, 3)]))])
def test_inversion_kernel_is_uniform_on_the_canonical_coset(adj):
    group = am.automorphism_group(adj)
    canonical = am.permute_adjacency(group.canon, adj)
    coset = brute_force_coset(adj, canonical)
    assert len(coset) == group.order
    samples = am.inversion_kernel_sample(adj, np.random.default_rng(5), group=group,
                                         size=150 * group.order)
    assert samples.dtype == np.int32
    assert all(np.array_equal(am.permute_adjacency(r, adj), canonical) for r in samples[:50])
    assert {tuple(r) for r in samples.tolist()} == coset
    assert uniformity_pvalue(samples, coset) > P_MIN


def test_inversion_kernel_samples_reach_the_canonical_form_of_isomorphic_graphs():
    rng = np.random.default_rng(6)
    for _ in range(10):
        n = int(rng.integers(6, 14))
        adj = random_graph(rng, n, 0.3)
        adj_p = am.permute_adjacency(rng.permutation(n), adj)
        r = am.inversion_kernel_sample(adj, rng)
        r_p = am.inversion_kernel_sample(adj_p, rng)
        assert np.array_equal(am.permute_adjacency(r, adj), am.permute_adjacency(r_p, adj_p))


def test_inversion_kernel_with_padding_keeps_padding_in_place():
    n_max = 9
    padded = np.zeros((n_max, n_max), bool)
    padded[:6, :6] = C6
    mask = np.arange(n_max) < 6
    group = am.automorphism_group(padded, mask)
    assert group.order == 12
    assert np.array_equal(group.orbits, [0] * 6 + [-1] * 3)
    samples = am.inversion_kernel_sample(padded, np.random.default_rng(0), group=group,
                                         mask=mask, size=300)
    assert np.array_equal(samples[:, 6:], np.tile([6, 7, 8], (300, 1)))
    canonical = am.permute_adjacency(am.canonical_ranks(C6), C6)
    for r in samples[:30]:
        assert np.array_equal(am.permute_adjacency(r, padded)[:6, :6], canonical)
    assert len({tuple(r) for r in samples.tolist()}) == 12
    with pytest.raises(ValueError, match="padding"):
        bad = padded.copy()
        bad[0, 7] = bad[7, 0] = True
        am.automorphism_group(bad, mask)


def test_inversion_kernel_batch():
    graphs = [C6, adjacency(nx.path_graph(4)), np.zeros((0, 0), bool), CUBE]
    groups = am.automorphism_groups(graphs)
    out = am.inversion_kernel_sample_batch(graphs, np.random.default_rng(0), groups=groups,
                                           n_max=10)
    assert out.shape == (4, 10) and out.dtype == np.int32
    for b, adj in enumerate(graphs):
        n = len(adj)
        assert np.array_equal(out[b, n:], np.arange(n, 10))
        assert np.array_equal(am.permute_adjacency(out[b, :n], adj),
                              am.permute_adjacency(groups[b].canon, adj))
    again = am.inversion_kernel_sample_batch(graphs, np.random.default_rng(0), n_max=10)
    assert np.array_equal(out, again)  # with or without cached groups, same draws
    masks = np.ones((2, 6), bool)
    masks[1, 4:] = False
    padded = np.zeros((6, 6), bool)
    padded[:4, :4] = adjacency(nx.cycle_graph(4))
    out = am.inversion_kernel_sample_batch(np.stack([C6, padded]), np.random.default_rng(1),
                                           masks=masks)
    assert out.shape == (2, 6) and np.array_equal(out[1, 4:], [4, 5])


def test_empty_and_single_node_graphs():
    empty = np.zeros((0, 0), bool)
    group = am.automorphism_group(empty)
    assert group.order == 1 and group.canon.shape == (0,)
    assert am.sample_automorphism(group, np.random.default_rng(0)).shape == (0,)
    assert am.inversion_kernel_sample(empty, np.random.default_rng(0)).shape == (0,)
    assert am.wl_colors(empty).shape == (0,)
    assert am.group_order(np.zeros((1, 1))) == 1
    assert np.array_equal(am.inversion_kernel_sample(np.zeros((1, 1)), np.random.default_rng(0)),
                          [0])
    all_padding = am.automorphism_group(np.zeros((3, 3)), np.zeros(3, bool))
    assert all_padding.order == 1 and np.array_equal(all_padding.canon, [0, 1, 2])


# ---------------------------------------------------------------------------------- 1-WL


def test_wl_colors_are_isomorphism_invariant():
    rng = np.random.default_rng(9)
    for _ in range(15):
        n = int(rng.integers(5, 16))
        adj = random_graph(rng, n, 0.25)
        p = rng.permutation(n)
        c, c_p = am.wl_colors(adj), am.wl_colors(am.permute_adjacency(p, adj))
        assert np.array_equal(c_p[p], c)  # (p . c) = colours of p . A, names included
        # automorphic nodes share a colour
        orb = am.orbits(adj)
        for o in np.unique(orb):
            assert len(np.unique(c[orb == o])) == 1


def test_wl_colors_small_cases():
    assert np.array_equal(am.wl_colors(C6), np.zeros(6))
    assert np.array_equal(am.wl_colors(PETERSEN), np.zeros(10))
    for n in [2, 5, 8, 9]:
        c = am.wl_colors(adjacency(nx.path_graph(n)))
        assert len(np.unique(c)) == math.ceil(n / 2)  # position from the nearest end
        assert np.array_equal(c, c[::-1])
    star = am.wl_colors(adjacency(nx.star_graph(3)))
    assert len(np.unique(star)) == 2 and len(np.unique(star[1:])) == 1
    assert len(np.unique(am.wl_colors(adjacency(nx.path_graph(9)), max_iter=1))) == 2
    # 1-WL cannot separate C6 from two triangles: same colour everywhere
    assert np.array_equal(am.wl_colors(adjacency(nx.disjoint_union(nx.cycle_graph(3),
                                                                  nx.cycle_graph(3)))),
                          np.zeros(6))
    mask = np.array([True] * 4 + [False] * 2)
    padded = np.zeros((6, 6), bool)
    padded[:4, :4] = adjacency(nx.path_graph(4))
    assert np.array_equal(am.wl_colors(padded, mask)[4:], [-1, -1])


# -------------------------------------------------------------------------------- inputs


BAD_ADJACENCY = [
    (np.zeros((3, 4)), "square"),
    (np.zeros((2, 2, 2)), "square"),
    (np.array([[0, 1], [0, 0]]), "symmetric"),
    (np.eye(3), "self-loops"),
    (np.array([[0.0, np.nan], [np.nan, 0.0]]), "NaN"),
    (np.array([[0, 2], [2, 0]]), "0/1"),
    (np.zeros((2, 2), complex), "dtype"),
    (np.array([["a", "b"], ["b", "a"]]), "dtype"),
]
"""Inputs every exact-graph function rejects, with the word its error names."""


@pytest.mark.parametrize("bad, match", BAD_ADJACENCY)
def test_bad_adjacency_raises(bad, match):
    for fn in (am.automorphism_group, am.wl_colors, am.canonical_ranks, am.orbits):
        with pytest.raises(ValueError, match=match):
            fn(bad)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="mask"):
        am.automorphism_group(C6, np.ones(5, bool))
    with pytest.raises(ValueError, match="mask"):
        am.automorphism_group(C6, np.full(6, 0.5))
    with pytest.raises(TypeError, match="Generator"):
        am.inversion_kernel_sample(C6, 0)
    with pytest.raises(ValueError, match="max_iter"):
        am.wl_colors(C6, max_iter=-1)
    with pytest.raises(ValueError, match="nodes"):
        am.inversion_kernel_sample(CUBE, np.random.default_rng(0), group=am.automorphism_group(C6))
    with pytest.raises(ValueError, match="n_max"):
        am.inversion_kernel_sample_batch([C6], np.random.default_rng(0), n_max=4)
    with pytest.raises(ValueError, match="permutation"):
        am.permute_adjacency(np.array([0, 0, 1]), np.zeros((3, 3)))
