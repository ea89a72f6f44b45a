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
