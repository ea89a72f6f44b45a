"""sympe_jax.nn.mpnn: the factored edge MLP, S_n-equivariance of the encoder on padded batches,
its edge features, and its input checks.

Compilation dominates the run time on a cold cache, so the tests share one small encoder and one
jitted apply function (same shapes, one compile) wherever they can.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sympe_jax import graphs
from sympe_jax.groups import permutation as P
from sympe_jax.nn import mpnn
from sympe_jax.testing import assert_equivariant

N_MAX, SLOTS, K = 8, 4, 3


def _adjs():
    """Three random simple graphs of 5 to 8 nodes."""
    rng = np.random.default_rng(3)
    out = []
    for n in (5, 8, 6):
        upper = np.triu(rng.random((n, n)) < 0.4, 1)
        out.append((upper | upper.T).astype(np.float32))
    return out


@pytest.fixture(scope="module", params=["edges", "complete"])
def setup(request):
    """The 3 graphs in a padded batch of 4 graph slots (an empty slot plus the padding graph),
    node inputs ``[graph.nodes, random channels]`` (0 on padding), and a small encoder; messages
    pass along the edges, or along all pairs with the adjacency entry as edge feature."""
    complete = request.param == "complete"
    graph = graphs.pad(graphs.batch([graphs.from_adjacency(a, complete=complete) for a in _adjs()]),
                       n_node=SLOTS * N_MAX + 1, n_edge=SLOTS * N_MAX * (N_MAX - 1), n_graph=SLOTS + 1)
    real = graphs.node_mask(graph)
    pe = jnp.where(real[:, None], jax.random.normal(jax.random.key(1), (real.shape[0], K)), 0.0)
    x = jnp.concatenate([jnp.asarray(graph.nodes), pe], axis=-1)
    encoder = mpnn.MPNNEncoder(hidden=16, latent=4, num_layers=2)
    params = jax.jit(encoder.init)(jax.random.key(2), graph, x)
    apply = jax.jit(encoder.apply)
    return graph, x, encoder, params, apply


def test_encoder_is_equivariant_on_a_padded_batch(key, setup):
    graph, x, _, params, apply = setup
    real = graphs.node_mask(graph)
    z = apply(params, graph, x)
    assert z.shape == (real.shape[0], 4) and float(jnp.abs(z[~real]).sum()) == 0
    assert float(jnp.std(z[real], axis=0).min()) > 1e-3  # not trivially constant
    assert_equivariant(
        lambda inp: apply(params, inp[0], inp[1]), key, (graph, x),
        sample_element=jax.jit(lambda k: P.random_graphs_tuple_element(k, graph, real)),
        act_in=jax.jit(lambda g, inp: (P.act_on_graphs_tuple(g, inp[0]), P.act_on_nodes(g, inp[1]))),
        act_out=jax.jit(P.act_on_nodes), num_elements=4, atol=1e-4)


@pytest.mark.parametrize("edge_channels", [0, 2])
def test_edge_mlp_is_the_mlp_of_the_concatenated_edge_input(key, edge_channels):
    """EdgeMLP (first layer applied per node, then gathered) has MLP's parameters and function."""
    k_u, k_r, k_s, k_e, k_p = jax.random.split(key, 5)
    u = jax.random.normal(k_u, (7, 5))
    receivers, senders = jax.random.randint(k_r, (20,), 0, 7), jax.random.randint(k_s, (20,), 0, 7)
    edges = jax.random.normal(k_e, (20, edge_channels)) if edge_channels else None
    concat = jnp.concatenate([u[receivers], u[senders]] + ([edges] if edge_channels else []), axis=-1)
    factored, plain = mpnn.EdgeMLP((6, 3)), mpnn.MLP((6, 3))
    params = factored.init(k_p, u, receivers, senders, edges)
    mlp_params = plain.init(k_p, concat)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, mlp_params)
    np.testing.assert_array_equal(params["params"]["Dense_0"]["kernel"], mlp_params["params"]["Dense_0"]["kernel"])
    np.testing.assert_allclose(factored.apply(params, u, receivers, senders, edges), plain.apply(params, concat),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="edges"):
        factored.apply(params, u, receivers, senders, jnp.zeros((19, 2)))


def test_complete_message_graph_reads_the_edge_features(setup):
    graph, x, _, params, apply = setup
    if graph.edges is None:
        pytest.skip("the sparse message graph has no edge features")
    # every pair is an edge slot; the adjacency is only in the edge feature
    assert int(graph.n_edge[:3].sum()) == sum(a.shape[0] * (a.shape[0] - 1) for a in _adjs())
    kernel = params["params"]["message_0"]["Dense_0"]["kernel"]
    assert kernel.shape == (2 * 16 + 1, 16)
    z = apply(params, graph, x)
    flipped = graph._replace(edges=1.0 - graph.edges)  # the complement graphs
    z_flipped = apply(params, flipped, x)
    assert float(jnp.abs(z - z_flipped).max()) > 1e-3


def test_bad_inputs_raise_clear_errors(key, setup):
    graph = setup[0]
    encoder = mpnn.MPNNEncoder(hidden=8, latent=2, num_layers=1)
    with pytest.raises(ValueError, match="node_features has 3 rows"):
        encoder.init(key, graph, jnp.ones((3, 1)))
    with pytest.raises(ValueError, match=r"shape \[N, c\]"):
        encoder.init(key, graph, jnp.ones(graph.nodes.shape[0]))
    bad = graph._replace(receivers=graph.receivers[:-1])
    with pytest.raises(ValueError, match="equal length"):
        encoder.init(key, bad, graph.nodes)
    bad = graph._replace(edges=jnp.ones((3, 1)))
    with pytest.raises(ValueError, match="one row per edge"):
        encoder.init(key, bad, graph.nodes)
    # Eager calls check the batch itself: an out-of-range index (a gather would clamp it), a
    # self-loop on a real edge, node counts that do not add up to the node slots.
    senders = np.array(graph.senders)
    for value, match in [(graph.nodes.shape[0] + 3, "must lie in"), (int(graph.receivers[0]), "self-loop")]:
        bad_senders = senders.copy()
        bad_senders[0] = value
        with pytest.raises(ValueError, match=match):
            encoder.init(key, graph._replace(senders=bad_senders), graph.nodes)
    n_node = np.array(graph.n_node)
    n_node[0] += 1
    with pytest.raises(ValueError, match="n_node sums to"):
        encoder.init(key, graph._replace(n_node=n_node), graph.nodes)
