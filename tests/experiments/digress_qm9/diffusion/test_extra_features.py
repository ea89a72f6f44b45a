"""Extra features: cycle counts against enumeration, spectral features on known graphs,
molecular features, equivariance, layout, jit."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from sympe_jax.groups import permutation as P
from sympe_jax.testing import assert_equivariant

from experiments.digress_qm9.diffusion import dense
from experiments.digress_qm9.diffusion import extra_features as ef

N = 9


def _graph_batch(graphs, n=N, bond=1, de=5):
    """Dense one-hot batch (all carbons) from networkx graphs, padded to n nodes."""
    B = len(graphs)
    X = np.zeros((B, n, 4), np.float32)
    E = np.zeros((B, n, n, de), np.float32)
    mask = np.zeros((B, n), bool)
    for b, g in enumerate(graphs):
        k = g.number_of_nodes()
        mask[b, :k] = True
        X[b, :k, 0] = 1
        A = nx.to_numpy_array(g, nodelist=range(k)).astype(int)
        for i in range(k):
            for j in range(k):
                if i != j:
                    E[b, i, j, bond if A[i, j] else 0] = 1
    return jnp.asarray(X), jnp.asarray(E), jnp.asarray(mask)


def test_cycle_counts_match_enumeration():
    rng = np.random.default_rng(0)
    graphs = [nx.gnp_random_graph(int(rng.integers(4, 10)), float(rng.uniform(0.3, 0.9)), seed=s) for s in range(12)]
    graphs += [nx.cycle_graph(5), nx.cycle_graph(6), nx.complete_graph(6)]
    X, E, mask = _graph_batch(graphs)
    node, graph = jax.jit(ef.cycle_counts)(ef.adjacency(E))
    for b, g in enumerate(graphs):
        cycles = list(nx.simple_cycles(g, length_bound=6))
        want_graph = [sum(len(c) == k for c in cycles) for k in (3, 4, 5, 6)]
        want_node = [[sum(len(c) == k and v in c for c in cycles) for k in (3, 4, 5)] for v in g.nodes]
        np.testing.assert_allclose(np.asarray(graph[b]), want_graph, atol=1e-3)
        np.testing.assert_allclose(np.asarray(node[b, :g.number_of_nodes()]), want_node, atol=1e-3)


def test_cycle_features_are_scaled_and_clipped():
    X, E, mask = _graph_batch([nx.complete_graph(9), nx.cycle_graph(5)])
    x, y = ef.cycle_features(ef.adjacency(E), mask)
    assert np.all(np.asarray(x) <= 1) and np.all(np.asarray(y) <= 1)
    np.testing.assert_allclose(np.asarray(y[0]), 1.0)                    # K9 has > 10 k-cycles for every k
    np.testing.assert_allclose(np.asarray(y[1]), [0, 0, 0.1, 0])         # one 5-cycle
    np.testing.assert_allclose(np.asarray(x[1, :5, 2]), 0.1)
    assert np.all(np.asarray(x[1, 5:]) == 0)


def test_spectral_features_on_known_graphs():
    path = nx.path_graph(5)
    two = nx.disjoint_union(nx.path_graph(4), nx.path_graph(2))           # components of 4 and 2 nodes
    X, E, mask = _graph_batch([path, two, nx.path_graph(9)])
    n_comp, evals, not_lcc, evecs = jax.jit(ef.spectral_features)(ef.adjacency(E), mask)
    np.testing.assert_array_equal(np.asarray(n_comp)[:, 0], [1, 2, 1])
    lam_path = 2 - 2 * np.cos(np.pi * np.arange(1, 5) / 5)                # P5's non-zero eigenvalues
    np.testing.assert_allclose(np.asarray(evals[0, :4]), lam_path / 5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(evals[0, 4]), 2 * N / 5, atol=1e-5)   # a padding eigenvalue
    np.testing.assert_allclose(np.asarray(evals[2]), (2 - 2 * np.cos(np.pi * np.arange(1, 6) / 9)) / 9, atol=1e-5)
    # Component indicator: all zero for a connected graph; the 2-node component for `two`.
    assert np.all(np.asarray(not_lcc[0]) == 0)
    np.testing.assert_array_equal(np.asarray(not_lcc[1, :, 0]), [0, 0, 0, 0, 1, 1, 0, 0, 0])
    # Eigenvectors: unit-norm Fiedler vector of P5 up to sign, zero on padding.
    fiedler = np.cos(np.pi * (np.arange(5) + 0.5) / 5)
    v = np.asarray(evecs[0, :5, 0])
    np.testing.assert_allclose(np.abs(v), np.abs(fiedler) / np.linalg.norm(fiedler), atol=1e-4)
    assert np.all(np.asarray(evecs[:, :, :][0, 5:]) == 0)


def test_eigenvalue_list_is_padded_with_two_beyond_the_padded_size():
    # 3 isolated nodes in a batch padded to 4: n_comp = 3, only one eigenvalue left after them.
    X, E, mask = _graph_batch([nx.empty_graph(3)], n=4)
    n_comp, evals, _, evecs = ef.spectral_features(ef.adjacency(E), mask)
    assert int(n_comp[0, 0]) == 3
    np.testing.assert_allclose(np.asarray(evals[0]), [8 / 3, 2, 2, 2, 2], atol=1e-5)
    assert np.all(np.asarray(evecs) == 0)


def _molecule():
    """N#C-C(=O)-F : atoms N, C, C, O, F (classes 1, 0, 0, 2, 3), padded to 9."""
    X_idx = jnp.asarray([[1, 0, 0, 2, 3, -1, -1, -1, -1]])
    bonds = {(0, 1): 3, (1, 2): 1, (2, 3): 2, (2, 4): 1}
    E_idx = np.zeros((1, N, N), int)
    for (i, j), o in bonds.items():
        E_idx[0, i, j] = E_idx[0, j, i] = o
    mask = X_idx >= 0
    return dense.encode(X_idx, jnp.asarray(E_idx), mask, 4, 5) + (mask,)


def test_molecular_features_fixed_and_reference_variants():
    X, E, mask = _molecule()
    charge, valency, weight = ef.molecular_features(X, E, mask)
    np.testing.assert_allclose(np.asarray(valency[0, :, 0]), [3, 4, 4, 2, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(np.asarray(charge[0, :, 0]), [0, 0, 0, 0, 0, 0, 0, 0, 0])   # all valences filled
    np.testing.assert_allclose(float(weight[0, 0]), (14 + 12 + 12 + 16 + 19) / 150, rtol=1e-6)
    quirky = ef.ExtraFeaturesConfig(molecular_quirks=True)
    charge_q, valency_q, weight_q = ef.molecular_features(X, E, mask, quirky)
    np.testing.assert_allclose(np.asarray(valency_q), np.asarray(valency))
    np.testing.assert_allclose(np.asarray(charge_q[0, :5, 0]), np.array([1, 0, 0, 2, 3]) - [3, 4, 4, 2, 1])
    np.testing.assert_allclose(float(weight_q[0, 0]), (73 + 4 * 12) / 150, rtol=1e-6)      # padding counts as C
    # Aromatic bonds: 1.5 in the fixed variant, the class index 4 in the reference's.
    E_ar = jnp.where(E[..., 1:2] > 0, jnp.asarray([0, 0, 0, 0, 1.0]), E)                    # single -> aromatic
    np.testing.assert_allclose(np.asarray(ef.molecular_features(X, E_ar, mask)[1][0, 2, 0]), 2 + 1.5 + 1.5)
    np.testing.assert_allclose(np.asarray(ef.molecular_features(X, E_ar, mask, quirky)[1][0, 2, 0]), 2 + 4 + 4)


def test_four_edge_classes_give_the_same_features():
    graphs = [nx.cycle_graph(6), nx.path_graph(4)]
    X5, E5, mask = _graph_batch(graphs, de=5, bond=2)
    X4, E4, _ = _graph_batch(graphs, de=4, bond=2)
    f5, f4 = (ef.extra_features(X, E, mask, jnp.zeros(2)) for X, E in ((X5, E5), (X4, E4)))
    np.testing.assert_allclose(np.asarray(f4.x), np.asarray(f5.x), atol=1e-5)
    np.testing.assert_allclose(np.asarray(f4.y), np.asarray(f5.y), atol=1e-5)


def test_layout_and_dimensions(molecules):
    g = molecules(3, 5)
    t = jnp.linspace(0, 1, 5)
    f = jax.jit(ef.extra_features)(g.X, g.E, g.node_mask, t)
    assert f.x.shape == (5, 9, 8) and f.e.shape == (5, 9, 9, 0) and f.y.shape == (5, 13)
    assert ef.QM9_FEATURES.node_dim == 8 and ef.QM9_FEATURES.graph_dim == 13
    np.testing.assert_allclose(np.asarray(f.y[:, -1]), np.asarray(t))                     # t/T last
    np.testing.assert_allclose(np.asarray(f.y[:, 0]), np.asarray(g.node_mask.sum(-1)) / 9)  # n / max_n first
    assert np.all(np.asarray(f.x)[~np.asarray(g.node_mask)] == 0)
    for kind, dims in (("cycles", (3, 6)), ("eigenvalues", (3, 12))):
        cfg = ef.ExtraFeaturesConfig(kind=kind, molecular=False)
        f = ef.extra_features(g.X, g.E, g.node_mask, t, cfg)
        assert (f.x.shape[-1], f.y.shape[-1]) == dims == (cfg.node_dim, cfg.graph_dim)
    with pytest.raises(ValueError):
        ef.ExtraFeaturesConfig(kind="spectral")


def test_invariant_features_are_permutation_equivariant(molecules):
    g = molecules(4, 3, n_min=6)
    sign_free = lambda inp: _drop_eigenvectors(ef.extra_features(*inp, jnp.full((3,), 0.3)))  # noqa: E731
    assert_equivariant(sign_free, jax.random.key(0), (g.X, g.E, g.node_mask),
                       sample_element=lambda k: jax.vmap(lambda kk: P.random_element(kk, 9))(jax.random.split(k, 3)),
                       act_in=lambda p, a: (jax.vmap(P.act_on_nodes)(p, a[0]), jax.vmap(P.act_on_dense)(p, a[1]),
                                            jax.vmap(P.act_on_nodes)(p, a[2])),
                       act_out=lambda p, o: (jax.vmap(P.act_on_nodes)(p, o[0]), o[1]),
                       num_elements=4, atol=1e-4)


def _drop_eigenvectors(f):
    # x = [cycles(3), not_lcc, eigvec(2), charge, valency]: eigenvectors have a free sign (and
    # basis) and are checked separately; not_lcc is exact here since these graphs are connected.
    return jnp.concatenate([f.x[..., :4], f.x[..., 6:]], -1), f.y


def test_eigenvector_features_are_equivariant_up_to_sign():
    X, E, mask = _graph_batch([nx.path_graph(7)])          # simple spectrum
    g = P.random_element(jax.random.key(3), N, mask[0])
    f = ef.extra_features(X, E, mask, jnp.zeros(1))
    fg = ef.extra_features(P.act_on_nodes(g, X[0])[None], P.act_on_dense(g, E[0])[None],
                           P.act_on_nodes(g, mask[0])[None], jnp.zeros(1))
    np.testing.assert_allclose(np.abs(np.asarray(fg.x[0, :, 4:6])),
                               np.abs(np.asarray(P.act_on_nodes(g, f.x[0, :, 4:6]))), atol=1e-4)
