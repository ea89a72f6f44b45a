"""SymPE in DiGress: the node score, the denoiser's equivariance in law, and the wiring into DiGress."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sympe_jax import canonicalize
from sympe_jax.groups import permutation
from sympe_jax.testing import assert_equivariant, assert_equivariant_in_law

from experiments.digress_qm9 import molecules
from experiments.digress_qm9.diffusion import DiffusionConfig, DiGress, ExtraFeaturesConfig, dense
from experiments.digress_qm9.diffusion import sympe as S
from experiments.digress_qm9.graph_transformer import GraphTransformerConfig

TINY = GraphTransformerConfig(n_layers=1, mlp_X=16, mlp_E=16, mlp_y=16, dx=16, de=8, dy=8, n_head=2,
                              dim_ffX=16, dim_ffE=8, dim_ffy=16, out_dim_E=4)
# No eigenvectors: their sign is arbitrary, the only non-equivariant input of DiGress itself.
EXACT_FEATURES = ExtraFeaturesConfig(kind="eigenvalues")


def _graph(smiles: str, n_max: int = 9):
    """One molecule as a dense one-hot batch of size 1 (4 atom, 4 bond classes), padded to n_max."""
    atoms, bonds = molecules.smiles_to_graph(smiles)
    n = len(atoms)
    X = np.full((1, n_max), -1)
    E = np.zeros((1, n_max, n_max), int)
    X[0, :n], E[0, :n, :n] = atoms, bonds
    mask = jnp.asarray(X >= 0)
    Xo, Eo = dense.encode(jnp.asarray(X), jnp.asarray(E), mask, 4, 4)
    return Xo, Eo, mask


def _act(g, graph):
    X, E, m = graph
    return (permutation.act_on_nodes(g, X[0])[None], permutation.act_on_dense(g, E[0])[None],
            permutation.act_on_nodes(g, m[0])[None])


def test_node_scores_are_equivariant_and_tie_exactly_the_symmetric_atoms():
    graph = _graph("CC(C)(C)C(=O)N")            # tert-butyl: three equivalent methyls; the rest distinct
    score = lambda x: S.node_scores(*x)[0]
    n = 9
    assert_equivariant(score, jax.random.key(0), graph, num_elements=6,
                       sample_element=lambda k: permutation.random_element(k, n, graph[2][0]),
                       act_in=_act, act_out=permutation.act_on_nodes, atol=2e-6, rtol=0)
    groups = np.asarray(canonicalize.tie_groups(score(graph), graph[2][0]))[:7]
    methyls = [0, 2, 3]                         # atom order of the SMILES parse
    assert len(set(groups[methyls])) == 1
    assert len(set(groups)) == 5                # 3 methyls tied, 4 other atoms all apart
    # Atom and bond types matter: the bond-agnostic spectral score alone would tie O and N.
    s = np.asarray(score(graph))
    assert abs(s[5] - s[6]) > 1e-3


def _denoiser(mode, features=3):
    return S.make_denoiser(mode, TINY, features, extra_features=EXACT_FEATURES)


def _law_sampler(den, params):
    """(key, graph) -> [n, n, de + dx] logits (E_ij next to X_i), plus 1e-4 Gaussian smoothing:
    outputs of automorphic g~ agree only up to float rounding (~1e-6), which would split an atom
    of the law in two; a Gaussian convolution is injective on laws, so the test stays exact."""
    def sample(k, x):
        X, E, m = x
        k_den, k_smooth = jax.random.split(k)
        t = jnp.full((1,), 0.3)
        lx, le = den(params, k_den, X, E, jnp.zeros((1, 0)), m, t, deterministic=True)
        out = jnp.concatenate([le[0], jnp.broadcast_to(lx[0][:, None], le.shape[1:3] + lx.shape[-1:])], -1)
        return out + 1e-4 * jax.random.normal(k_smooth, out.shape)
    return sample


@pytest.mark.parametrize("mode", ["sympe", "sympe_edges", "noise"])
def test_sympe_denoiser_output_law_is_equivariant(mode):
    graph = _graph("CC(C)(C)C(=O)N")
    den = _denoiser(mode)
    params = jax.jit(den.init)(jax.random.key(0), *graph)
    g = permutation.random_element(jax.random.key(5), 9, graph[2][0])
    assert_equivariant_in_law(_law_sampler(den, params), jax.random.key(1), graph, g,
                              act_in=_act, act_out=permutation.act_on_dense, num_samples=1500)


class _FixedTieBreak(S.SymmetryBreakingDenoiser):
    """Negative control: ties broken by a fixed (key-independent) order of the node slots."""

    def encodings(self, params, key, X_t, E_t, node_mask, feats=None):
        return super().encodings(params, jax.random.key(0), X_t, E_t, node_mask, feats)


def test_deterministic_tie_break_fails_the_law_test():
    graph = _graph("CC(C)(C)C(=O)N")
    den = _denoiser("sympe")
    den = _FixedTieBreak(den.base, "sympe", 3)
    params = jax.jit(den.init)(jax.random.key(0), *graph)
    g = jnp.array([2, 3, 0, 1, 4, 5, 6, 7, 8])   # swaps methyls with each other and the centre
    with pytest.raises(AssertionError, match="laws differ"):
        assert_equivariant_in_law(_law_sampler(den, params), jax.random.key(1), graph, g,
                                  act_in=_act, act_out=permutation.act_on_dense, num_samples=300)


def test_encodings_keys_ties_and_the_plain_mode():
    X, E, m = _graph("CC(C)(C)C(=O)N")
    den = _denoiser("sympe_edges")
    params = jax.jit(den.init)(jax.random.key(0), X, E, m)
    assert params["v"].shape == (9, 3) and set(params) == {"net", "v"}
    enc = jax.jit(lambda k, x, e: den.encodings(params, k, x, e, m))
    u, pe = enc(jax.random.key(1), X, E)
    assert u.shape == (1, 9, 3) and pe.shape == (1, 9, 9, 6)
    np.testing.assert_array_equal(u[0, 7:], 0)
    np.testing.assert_array_equal(pe, jnp.swapaxes(pe, 1, 2))
    np.testing.assert_array_equal(jnp.diagonal(pe[0], axis1=0, axis2=1), 0)
    np.testing.assert_array_equal(pe[0, 7:], 0)
    # Real nodes get distinct rows of v: the symmetry is broken.
    assert len(np.unique(np.asarray(u[0, :7]).round(5), axis=0)) == 7
    # Same key, same g~; the tied methyls are ordered differently for some keys, the rest never.
    np.testing.assert_array_equal(enc(jax.random.key(1), X, E)[0], u)
    ranks_of = jax.jit(jax.vmap(lambda k, x, e, mm: den.ranks(k, x, e, mm)[0], (0, None, None, None)))
    ranks = np.asarray(ranks_of(jax.random.split(jax.random.key(2), 40), X, E, m))
    assert len({tuple(r[[0, 2, 3]]) for r in ranks}) == 6
    assert np.all(ranks[:, [1, 4, 5, 6]] == ranks[0, [1, 4, 5, 6]])
    # No ties (ethanol: three distinct atoms): g~ does not depend on the key.
    X2, E2, m2 = _graph("CCO")
    assert len({tuple(r) for r in np.asarray(ranks_of(jax.random.split(jax.random.key(3), 10), X2, E2, m2))}) == 1
    # "none" is the plain transformer denoiser on params["net"].
    plain = _denoiser("none")
    p0 = jax.jit(plain.init)(jax.random.key(0), X, E, m)
    assert set(p0) == {"net"}
    t = jnp.full((1,), 0.5)
    a = jax.jit(plain)(p0, jax.random.key(3), X, E, jnp.zeros((1, 0)), m, t)
    b = jax.jit(plain.base)(p0["net"], jax.random.key(3), X, E, jnp.zeros((1, 0)), m, t)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="mode"):
        _denoiser("sympe_nodes")


def test_digress_with_sympe_trains_v(molecules):
    """The gradient reaches the table v through the gather; the NLL is finite (sampling: the
    experiment's smoke test)."""
    data = molecules(3, 8, de=4)
    den = S.make_denoiser("sympe_edges", TINY, 3)
    hist = np.zeros(10)
    hist[[5, 9]] = 0.5
    dg = DiGress(den, x_marginals=[0.7, 0.1, 0.15, 0.05], e_marginals=[0.7, 0.25, 0.04, 0.01],
                 n_nodes_histogram=hist, config=DiffusionConfig(T=6))
    params = jax.jit(den.init)(jax.random.key(0), data.X, data.E, data.node_mask)
    (loss, _), grads = jax.jit(jax.value_and_grad(dg.training_loss, has_aux=True))(params, jax.random.key(1), data)
    assert np.isfinite(float(loss)) and float(jnp.sum(jnp.abs(grads["v"]))) > 0
    terms = jax.jit(dg.nll)(params, jax.random.key(2), data)
    assert np.all(np.isfinite(np.asarray(terms["nll"])))


def _twice(graph):
    """A batch of two identical copies of a one-graph batch."""
    return tuple(jnp.concatenate([a, a]) for a in graph)


@pytest.mark.parametrize("mode", ["none", "noise", "sympe", "sympe_edges"])
def test_identical_graphs_of_a_batch_get_independent_channels(mode):
    """Bug: the noise channels or SymPE's tie-break key drawn once and broadcast to every graph of the batch."""
    X, E, m = _twice(_graph("CC(C)(C)C(=O)N"))     # three tied methyls: 3! tie-breaks per graph
    den = _denoiser(mode)
    params = jax.jit(den.init)(jax.random.key(0), X, E, m)
    keys = jax.random.split(jax.random.key(1), 60)
    lx, le = jax.jit(jax.vmap(lambda k: den(params, k, X, E, jnp.zeros((2, 0)), m, jnp.full((2,), 0.3))))(keys)
    same = np.all(np.isclose(lx[:, 0], lx[:, 1], atol=1e-4), axis=(1, 2)) & \
        np.all(np.isclose(le[:, 0], le[:, 1], atol=1e-4), axis=(1, 2, 3))
    if mode == "none":
        assert same.all()               # the control: no randomness, identical graphs, identical logits
    elif mode == "noise":
        assert not same.any()
    else:                               # independent uniform tie-breaks agree with probability 1/6
        assert 2 <= same.sum() <= 25, same.sum()
        ranks = np.asarray(jax.jit(jax.vmap(lambda k: den.ranks(k, X, E, m)))(keys))
        assert 2 <= np.all(ranks[:, 0] == ranks[:, 1], axis=1).sum() <= 25
