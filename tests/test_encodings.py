"""SymPE encodings and baselines: equivariance in law, symmetry breaking, bad input."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import sympe_jax as sp
from sympe_jax import encodings as E
from sympe_jax.groups import lattice, permutation
from sympe_jax.testing import assert_equivariant_in_law


def _cycle(n=6, pad=2):
    a = np.pad(nx.to_numpy_array(nx.cycle_graph(n), dtype=np.float32), ((0, pad), (0, pad)))
    return jnp.asarray(a), jnp.arange(n + pad) < n


GRAPH_ACT_IN = lambda g, x: (permutation.act_on_dense(g, x[0]), permutation.act_on_nodes(g, x[1]))


@pytest.mark.parametrize("module", [E.GraphSymPE(n_max=10, features=3), E.RandomPermutationPE(n_max=10, features=3),
                                    E.GaussianNoisePE(features=3), E.LaplacianPE(k=3)])
def test_graph_encodings_are_equivariant_in_law(module):
    adj, mask = _cycle()
    adj = adj.at[0, 3].set(1.0).at[3, 0].set(1.0)  # a chord: fewer automorphisms, unequal orbits
    params = module.init(jax.random.key(0), jax.random.key(1), adj, mask)
    sampler = lambda k, x: module.apply(params, k, x[0], x[1])
    g = permutation.random_element(jax.random.key(5), 8, mask)
    assert_equivariant_in_law(sampler, jax.random.key(2), (adj, mask), g,
                              act_in=GRAPH_ACT_IN, act_out=permutation.act_on_nodes, num_samples=3000)


def test_deterministic_positions_fail_the_law_test():
    adj, mask = _cycle()
    v = jax.random.normal(jax.random.key(0), (10, 3))
    sampler = lambda k, x: E.graph_sympe(v, jnp.arange(8), x[1])  # node i gets v[i]: not equivariant
    g = jnp.array([1, 2, 3, 4, 5, 0, 6, 7])
    with pytest.raises(AssertionError, match="laws differ"):
        assert_equivariant_in_law(sampler, jax.random.key(2), (adj, mask), g,
                                  act_in=GRAPH_ACT_IN, act_out=permutation.act_on_nodes, num_samples=500)


def test_sympe_breaks_symmetry_differently_per_key_and_is_reproducible():
    adj, mask = _cycle()
    module = E.GraphSymPE(n_max=8, features=4)
    params = module.init(jax.random.key(0), jax.random.key(1), adj, mask)
    run = jax.jit(lambda k: module.apply(params, k, adj, mask))
    a, b = run(jax.random.key(3)), run(jax.random.key(4))
    np.testing.assert_array_equal(a, run(jax.random.key(3)))
    assert not np.allclose(a, b)
    # every node gets a distinct row: the symmetry of the cycle is fully broken
    assert len(np.unique(np.asarray(a[:6]).round(5), axis=0)) == 6
    np.testing.assert_array_equal(a[6:], 0)


def test_straight_through_sympe_is_the_same_sample_with_a_gradient_for_the_scores():
    adj, mask = _cycle()
    v = jax.random.normal(jax.random.key(0), (8, 3))
    target = jax.random.normal(jax.random.key(1), (8, 3))
    scores = jnp.array([0.2, 0.5, 0.2, 0.9, 0.4, 0.7, 0.0, 0.0])   # nodes 0 and 2 tie
    key = jax.random.key(3)
    st = lambda v_, s: E.straight_through_sympe(key, v_, s, mask, temperature=0.1)
    hard = lambda v_, s: E.sample_graph_sympe(key, v_, s, mask)
    np.testing.assert_array_equal(st(v, scores), hard(v, scores))                     # exactly the same value
    np.testing.assert_array_equal(jax.jit(st)(v, scores), hard(v, scores))
    loss = lambda f: lambda v_, s: jnp.sum((f(v_, s) - target) ** 2)
    gv_st, gs_st = jax.grad(loss(st), (0, 1))(v, scores)
    gv_hard, gs_hard = jax.grad(loss(hard), (0, 1))(v, scores)
    np.testing.assert_array_equal(gs_hard, 0)            # the sort alone passes nothing to the scorer
    assert float(jnp.abs(gs_st[:6]).min()) > 0           # every real node's score gets a gradient
    np.testing.assert_array_equal(gs_st[6:], 0)          # padding gets none
    np.testing.assert_allclose(gv_st, gv_hard, atol=1e-6)   # v trains as in plain SymPE


def test_graph_larger_than_table_is_an_error_never_a_wrap_around():
    adj, mask = _cycle(n=6, pad=0)
    module = E.GraphSymPE(n_max=4, features=2)
    params = {"params": {"v": jnp.ones((4, 2))}}
    with pytest.raises(ValueError, match="n_max = 4"):
        module.apply(params, jax.random.key(0), adj, mask)
    out = jax.jit(lambda k: module.apply(params, k, adj, mask))(jax.random.key(0))
    assert np.all(np.isnan(out))
    with pytest.raises(ValueError, match="n_max = 4"):
        sp.checked(jax.jit(lambda k: module.apply(params, k, adj, mask)))(jax.random.key(0))


def test_bad_ranks_and_scores():
    v = jnp.ones((5, 2))
    with pytest.raises(TypeError, match="integer"):
        E.graph_sympe(v, jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="0..n_real-1"):
        E.graph_sympe(v, jnp.array([0, 3]))
    with pytest.raises(ValueError, match="finite"):
        E.sample_graph_sympe(jax.random.key(0), v, jnp.array([0.0, jnp.nan]))
    out = jax.jit(E.sample_graph_sympe)(jax.random.key(0), v, jnp.array([0.0, jnp.nan]))
    assert np.all(np.isnan(out))


def test_lattice_sympe_is_equivariant_in_law():
    L = 3
    v = jax.random.normal(jax.random.key(0), (L, L, 2))
    scores = jnp.asarray(np.random.default_rng(0).integers(0, 2, size=(8, L, L)), jnp.float32)
    sampler = lambda k, s: E.sample_lattice_sympe(k, v, s)[0]
    g = lattice.element_from_index(40, L)
    assert_equivariant_in_law(sampler, jax.random.key(1), scores, g,
                              act_in=lattice.act_on_lifted, act_out=lattice.act_on_field, num_samples=4000)


def test_lattice_module_on_constant_input_samples_all_of_p4m():
    L = 4
    x = jnp.ones((L, L, 5))
    module = E.LatticeSymPE(features=2)
    params = module.init(jax.random.key(0), jax.random.key(1), x)
    outs = jax.vmap(lambda k: module.apply(params, k, x))(jax.random.split(jax.random.key(2), 2000))
    assert outs.shape == (2000, L, L, 2)
    assert len(np.unique(np.asarray(outs).round(5).reshape(2000, -1), axis=0)) == 8 * L * L
    noise = E.LatticeNoisePE(features=3).apply({}, jax.random.key(0), x)
    assert noise.shape == (L, L, 3)
    assert E.NoPE().apply({}, jax.random.key(0), x).shape == (L, L, 0)
    assert E.NoPE(features=2).apply({}, jax.random.key(0), jnp.zeros((6, 6))).shape == (6, 2)
    with pytest.raises(ValueError, match="lifted"):
        E.sample_lattice_sympe(jax.random.key(0), jnp.ones((L, L, 2)), jnp.ones((4, L, L)))
    with pytest.raises(ValueError, match="L = 4"):
        E.sample_lattice_sympe(jax.random.key(0), jnp.ones((5, 5, 2)), jnp.ones((8, L, L)))
