"""sympe_jax.flax: Linen modules over the encoding registry, keys from the "sympe" rng stream."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from sympe_jax import encodings as E
from sympe_jax import flax as spf
from sympe_jax import graphs


def _batch():
    gs = [graphs.from_adjacency(nx.to_numpy_array(g, dtype=np.float32)) for g in (nx.cycle_graph(6), nx.cycle_graph(6))]
    return graphs.pad(graphs.batch(gs), 16, 40, 3)


RNGS = {"params": jax.random.key(0), "sympe": jax.random.key(1)}


def test_graph_encoding_on_a_graphs_tuple_batch():
    graph = _batch()
    module = spf.GraphEncoding("sympe", n_max=8, features=4)
    params = module.init(RNGS, graph)
    assert jax.tree.map(jnp.shape, params) == {"params": {"v": (8, 4)}}     # the table, and nothing else
    run = jax.jit(lambda k: module.apply(params, graph, rngs={"sympe": k}))
    a, b = np.asarray(run(jax.random.key(2))), np.asarray(run(jax.random.key(3)))
    np.testing.assert_array_equal(a, run(jax.random.key(2)))               # same key, same encoding
    assert not np.allclose(a, b)
    assert not np.allclose(a[:6], a[6:12])              # two identical graphs, two independent samples
    v = np.asarray(params["params"]["v"])
    for block in (a[:6], a[6:12]):                      # each C_6 node gets a distinct row of v[:6]
        np.testing.assert_allclose(np.sort(block, axis=0), np.sort(v[:6], axis=0))
    np.testing.assert_array_equal(a[12:], 0)
    with pytest.raises(Exception, match="sympe"):
        module.apply(params, graph)                     # no "sympe" rng given


def test_table_is_the_encodings_init_and_flaxs_normal_initializer():
    # The experiments rely on this: declaring v through the encoding gives the value a module
    # declaring it with nn.initializers.normal(1.0) under the same "params" key had.
    class Old(nn.Module):
        @nn.compact
        def __call__(self, x):
            return self.param("v", nn.initializers.normal(1.0), (8, 4))

    class New(nn.Module):
        @nn.compact
        def __call__(self, x):
            return spf.declare_params(self, E.graph_encoding("sympe", n_max=8, features=4))["v"]

    old = Old().init(jax.random.key(5), 0)["params"]["v"]
    new = New().init(jax.random.key(5), 0)["params"]["v"]
    np.testing.assert_array_equal(old, new)


def test_dense_inputs_and_the_learned_scorer_gets_a_gradient():
    # (on a path: a vertex-transitive graph gives every node the same features, and no gradient)
    adjacency, mask = graphs.to_dense(graphs.pad(graphs.from_adjacency(nx.to_numpy_array(nx.path_graph(6))), 8, 12, 2), 8)
    module = spf.GraphEncoding("sympe_learned", n_max=8, features=3, temperature=0.1)
    params = module.init(RNGS, adjacency, mask)
    assert set(params["params"]) == {"v", "scorer"}
    target = jax.random.normal(jax.random.key(9), (2, 8, 3))

    def loss(p):
        return jnp.sum((module.apply(p, adjacency, mask, rngs={"sympe": jax.random.key(4)}) - target) ** 2)

    grads = jax.grad(loss)(params)["params"]["scorer"]
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) > 0   # the sort alone would give 0
    with pytest.raises(ValueError, match="adjacency, mask"):
        module.apply(params, adjacency, rngs={"sympe": jax.random.key(4)})


def test_lattice_encoding_batches_without_vmap():
    x = jnp.ones((2, 4, 4, 5))                                 # two identical, fully symmetric inputs
    module = spf.LatticeEncoding("sympe", features=2)
    params = module.init(RNGS, x)
    assert jax.tree.map(jnp.shape, params) == {"params": {"v": (4, 4, 2)}}
    out = np.asarray(module.apply(params, x, rngs={"sympe": jax.random.key(2)}))
    assert out.shape == (2, 4, 4, 2) and not np.allclose(out[0], out[1])
    pos = spf.LatticeEncoding("position", features=2)
    p = pos.init(RNGS, x)
    np.testing.assert_array_equal(pos.apply(p, x)[1], p["params"]["v"])       # no key needed: deterministic


# ----------------------------------------------------------------------------- invalid values poison outputs


def test_lattice_encoding_with_non_finite_scores_is_nan_under_jit():
    """Bug: NaN lifted scores gave element [-1, L-1, L-1] (a valid reflection): a finite encoding under jit."""
    x = jnp.ones((2, 4, 4, 1))
    module = spf.LatticeEncoding("sympe", features=2)
    params = module.init(RNGS, x)
    run = jax.jit(lambda s: module.apply(params, x, s, rngs={"sympe": jax.random.key(2)}))
    for bad in (np.nan, np.inf):
        out = np.asarray(run(jnp.zeros((2, 8, 4, 4)).at[1, 3, 0, 1].set(bad)))
        assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))


def test_graph_encoding_of_a_graph_with_a_self_loop_or_a_one_way_edge_is_nan_under_jit():
    """Bug: a self-loop or a one-way edge gave the finite default score, hence a finite SymPE, under jit."""
    cycle = nx.to_numpy_array(nx.cycle_graph(6), dtype=np.float32)
    loop, one_way = cycle.copy(), cycle.copy()
    loop[2, 2] = 1.0
    one_way[0, 1] = 0.0
    bad_batches = [graphs.pad(graphs.batch([graphs.from_adjacency(bad, allow_self_loops=True),
                                            graphs.from_adjacency(cycle)]), 16, 40, 3) for bad in (loop, one_way)]
    for name in ("sympe", "sympe_learned"):                  # the default score, and the learned scorer's inputs
        module = spf.GraphEncoding(name, n_max=8, features=2)
        params = module.init(RNGS, _batch())
        run = jax.jit(lambda p, g: module.apply(p, g, rngs={"sympe": jax.random.key(2)}))
        for graph in bad_batches:
            out = np.asarray(run(params, graph))
            assert np.all(np.isnan(out[:6])) and np.all(np.isfinite(out[6:12])), name


# ----------------------------------------------------------------------------- tolerances


def test_module_tolerances_accept_numpy_scalars_and_reject_bools():
    """Bug: np.float32(1e-5) as atol was rejected with a misleading message; True was taken as 1.0."""
    graph = _batch()
    module = spf.GraphEncoding("sympe", n_max=8, features=2, atol=np.float32(1e-5), init_scale=np.float32(0.5))
    params = module.init(RNGS, graph)
    plain = spf.GraphEncoding("sympe", n_max=8, features=2, atol=1e-5, init_scale=0.5)
    np.testing.assert_array_equal(module.apply(params, graph, rngs={"sympe": jax.random.key(2)}),
                                  plain.apply(params, graph, rngs={"sympe": jax.random.key(2)}))
    with pytest.raises(TypeError, match="atol"):
        spf.GraphEncoding("sympe", n_max=8, features=2, atol=True).init(RNGS, graph)
    with pytest.raises(TypeError, match="noise_scale"):
        spf.LatticeEncoding("noise", features=2, noise_scale=True).init(RNGS, jnp.ones((4, 4, 1)))


# ----------------------------------------------------------------------------- randomness per item


@pytest.mark.parametrize("name", ["noise", "randperm", "laplacian", "sympe", "sympe_learned"])
def test_graph_encoding_gives_two_identical_graphs_two_independent_samples(name):
    """Bug: randomness drawn once per batch and broadcast to every graph of a GraphsTuple."""
    graph = _batch()                                          # two identical C_6
    module = spf.GraphEncoding(name, n_max=8, features=3)
    params = module.init(RNGS, graph)
    out = np.asarray(jax.jit(lambda k: module.apply(params, graph, rngs={"sympe": k}))(jax.random.key(2)))
    assert np.all(np.isfinite(out[:12])) and not np.allclose(out[:6], out[6:12])


def test_lattice_noise_gives_two_identical_lattices_two_independent_samples():
    """Bug: lattice noise channels drawn once and broadcast to every lattice of the batch."""
    x = jnp.ones((2, 4, 4, 5))
    module = spf.LatticeEncoding("noise", features=2)
    out = np.asarray(module.apply(module.init(RNGS, x), x, rngs={"sympe": jax.random.key(2)}))
    assert out.shape == (2, 4, 4, 2) and not np.allclose(out[0], out[1])
