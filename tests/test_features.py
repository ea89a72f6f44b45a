"""Spectral node features: exact equivariance, basis invariance, padding, informativeness."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import sympe_jax as sp
from sympe_jax import canonicalize, features
from sympe_jax.exact import automorphisms
from sympe_jax.groups import permutation
from sympe_jax.testing import assert_equivariant

EQUIVARIANT = [
    features.random_walk_return_probabilities,
    features.heat_kernel_diagonals,
    features.eigenspace_projector_diagonals,
    features.invariant_node_scores,
    features.structural_node_features,
]


def _adj(graph, n_pad=0):
    a = nx.to_numpy_array(graph, dtype=np.float32)
    n = a.shape[0]
    a = np.pad(a, ((0, n_pad), (0, n_pad)))
    return jnp.asarray(a), jnp.arange(n + n_pad) < n


@pytest.mark.parametrize("fn", EQUIVARIANT)
def test_features_are_permutation_equivariant(fn):
    adj, mask = _adj(nx.gnp_random_graph(9, 0.4, seed=3), n_pad=2)
    assert_equivariant(lambda x: fn(*x), jax.random.key(0), (adj, mask),
                       sample_element=lambda k: permutation.random_element(k, 11, mask),
                       act_in=lambda g, x: (permutation.act_on_dense(g, x[0]), permutation.act_on_nodes(g, x[1])),
                       act_out=permutation.act_on_nodes, atol=1e-5)


def test_checker_rejects_a_non_equivariant_feature():
    adj, mask = _adj(nx.path_graph(5))
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(lambda x: features.laplacian_eigenvectors(*x, k=2) + jnp.arange(5.0)[:, None],
                           jax.random.key(0), (adj, mask),
                           sample_element=lambda k: permutation.random_element(k, 5),
                           act_in=lambda g, x: (permutation.act_on_dense(g, x[0]), x[1]),
                           act_out=permutation.act_on_nodes)


def test_scores_tie_exactly_on_orbits_of_symmetric_graphs():
    """At the sort's own tolerance, the score's tie groups are the automorphism orbits (nauty)."""
    graphs_ = [nx.cycle_graph(8), nx.star_graph(5), nx.path_graph(6), nx.circular_ladder_graph(4),
               nx.gnp_random_graph(10, 0.3, seed=1)]
    for graph in graphs_:
        adj, mask = _adj(graph, n_pad=3)
        n = graph.number_of_nodes()
        groups = np.asarray(canonicalize.tie_groups(features.invariant_node_scores(adj, mask), mask))[:n]
        orbits = automorphisms.orbits(np.asarray(adj), np.asarray(mask))[:n]
        np.testing.assert_array_equal(groups[:, None] == groups[None, :], orbits[:, None] == orbits[None, :],
                                      err_msg=f"tie groups differ from the orbits of {graph}")


def test_scores_are_a_fixed_readout_of_the_structural_features():
    adj, mask = _adj(nx.gnp_random_graph(10, 0.3, seed=1), n_pad=3)
    feats = np.asarray(features.structural_node_features(adj, mask))
    assert feats.shape == (13, 9)
    np.testing.assert_allclose(feats[:10, -1], np.asarray(adj).sum(1)[:10])   # the degree channel
    assert np.all(feats[10:] == 0)                                             # padding
    # the score is linear in the features, so the features carry everything the sort uses
    scores = np.asarray(features.invariant_node_scores(adj, mask))
    weights = np.linalg.lstsq(feats[:10], scores[:10], rcond=None)[0]
    np.testing.assert_allclose(feats[:10] @ weights, scores[:10], atol=1e-5)


def test_projector_diagonals_are_basis_invariant_and_sum_to_one():
    adj, mask = _adj(nx.cycle_graph(6), n_pad=2)  # repeated eigenvalues
    d = np.asarray(features.eigenspace_projector_diagonals(adj, mask, k=8))
    # on a vertex-transitive graph each eigenspace projector has a constant diagonal
    np.testing.assert_allclose(d[:6], np.broadcast_to(d[:1], d[:6].shape), atol=1e-5)
    assert np.all(d[6:] == 0) and np.all(d[:, 6:] == 0)


def test_randomized_eigenvectors_are_orthonormal_eigenvectors():
    adj, mask = _adj(nx.cycle_graph(6), n_pad=1)
    lap = np.asarray(features.laplacian(adj, mask))
    for k in jax.random.split(jax.random.key(0), 3):
        u = np.asarray(features.randomize_eigenvectors(k, adj, mask, k=5))
        np.testing.assert_allclose(u.T @ u, np.eye(5), atol=1e-5)
        ratio = np.sum(u * (lap @ u), 0)  # Rayleigh quotients: the C6 spectrum without the 0
        np.testing.assert_allclose(np.sort(ratio), [1, 1, 3, 3, 4], atol=1e-4)
        np.testing.assert_allclose(lap @ u, u * ratio, atol=1e-4)


def test_bad_adjacency_raises():
    with pytest.raises(ValueError, match="square"):
        features.invariant_node_scores(jnp.zeros((3, 4)))
    with pytest.raises(TypeError, match="floating"):
        features.invariant_node_scores(jnp.zeros((3, 3), jnp.int32))


def _bad_path_graphs():
    """P4 plus one padding node, as a self-loop, a one-way edge, a NaN entry and itself: float[4, 5, 5], mask."""
    adj, mask = _adj(nx.path_graph(4), n_pad=1)
    adj = np.asarray(adj)
    loop, one_way, nan = adj.copy(), adj.copy(), adj.copy()
    loop[1, 1] = 1.0
    one_way[0, 1] = 0.0
    nan[2, 3] = nan[3, 2] = np.nan
    return (loop, one_way, nan, adj), mask


@pytest.mark.parametrize("fn", [features.invariant_node_scores, features.laplacian_eigh])
def test_bad_adjacency_is_named(fn):
    (loop, one_way, nan, adj), mask = _bad_path_graphs()
    checked = sp.checked(jax.jit(fn))
    for bad, match in [(loop, "self-loop"), (one_way, "symmetric"), (nan, "non-finite")]:
        with pytest.raises(ValueError, match=match):
            fn(bad, mask)
        with pytest.raises(ValueError, match=match):
            checked(bad, mask)
    padded = adj.copy()
    padded[4, 4] = padded[4, 0] = np.nan                 # padding rows are never read
    fn(padded, mask)


ALL_FEATURES = {
    "laplacian": features.laplacian,
    "laplacian_eigh": features.laplacian_eigh,
    "random_walk_return_probabilities": features.random_walk_return_probabilities,
    "heat_kernel_diagonals": features.heat_kernel_diagonals,
    "eigenspace_projector_diagonals": features.eigenspace_projector_diagonals,
    "laplacian_eigenvectors": lambda a, m: features.laplacian_eigenvectors(a, m, k=3),
    "randomize_eigenvectors": lambda a, m: features.randomize_eigenvectors(jax.random.key(0), a, m, k=3),
    "invariant_node_scores": features.invariant_node_scores,
    "structural_node_features": features.structural_node_features,
}


@pytest.mark.parametrize("kind", ["jit", "eager_vmap"])
def test_a_non_simple_adjacency_poisons_every_feature(kind):
    """Bug: a self-loop, a one-way edge or a NaN entry under jit/vmap gave finite features (of another graph)."""
    bad, mask = _bad_path_graphs()
    batch, masks = jnp.asarray(np.stack(bad)), jnp.stack([mask] * 4)

    def all_features(a, m):
        return {name: fn(a, m) for name, fn in ALL_FEATURES.items()}

    if kind == "jit":
        run = jax.jit(all_features)
        out = jax.tree.map(lambda *rows: np.stack(rows), *[run(a, m) for a, m in zip(batch, masks)])
    else:
        out = jax.vmap(all_features)(batch, masks)
    for name, value in out.items():
        for leaf in jax.tree.leaves(value):
            if np.issubdtype(leaf.dtype, np.floating):
                assert np.all(np.isnan(leaf[:3])), name
                assert np.all(np.isfinite(leaf[3])), name


def test_eigen_tolerance_accepts_numpy_scalars_and_rejects_bools():
    """Bug: tolerances given as np.float32 were rejected while True passed as 1.0."""
    adj, mask = _adj(nx.cycle_graph(6))
    np.testing.assert_array_equal(features.eigenspace_projector_diagonals(adj, mask, tol=np.float32(1e-4)),
                                  features.eigenspace_projector_diagonals(adj, mask, tol=1e-4))
    for fn in (features.eigenspace_projector_diagonals,
               lambda a, m, tol: features.randomize_eigenvectors(jax.random.key(0), a, m, tol=tol)):
        with pytest.raises(TypeError, match="tol"):
            fn(adj, mask, tol=True)
        with pytest.raises(ValueError, match="tol"):
            fn(adj, mask, tol=-1.0)
