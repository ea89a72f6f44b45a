"""experiments.graph_autoencoder.models: S_n-equivariance, padding independence, masks, metrics,
training (the MPNN encoder's own tests are in tests/nn/test_mpnn.py).

Compilation dominates the run time on a cold cache, so the tests share one small model and one
jitted forward function (same shapes, one compile) wherever they can.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sympe_jax import graphs
from sympe_jax.groups import permutation as P
from sympe_jax.testing import assert_equivariant

from experiments.graph_autoencoder import data as er
from experiments.graph_autoencoder import models

N_MAX, SLOTS, ENC_K, DEC_K = 8, 4, 3, 2


def _small_model(n_max=N_MAX):
    return models.graph_autoencoder(n_max, hidden=16, latent=4, num_layers=2)


def _adjs():
    return er.erdos_renyi_dataset(3, seed=3, p=0.4, n_min=5, n_max=N_MAX)


@functools.partial(jax.jit, static_argnums=0)
def _forward(model, params, graph, encoder_pe, decoder_pe):
    """(latents [N, d], logits [B, n, n], pair mask [B, n, n]) in one compiled function."""
    z = model.apply(params, graph, encoder_pe, method=models.GraphAutoencoder.encode)
    return (z,) + model.apply(params, graph, encoder_pe, decoder_pe)


@pytest.fixture(scope="module", params=["edges", "complete"])
def setup(request):
    """3 random graphs in a batch of 4 slots (an empty slot plus the padding graph), random
    encoder/decoder channels, and a small autoencoder initialized with both; messages pass
    along the edges, or along all pairs with the adjacency entry as edge feature."""
    complete = request.param == "complete"
    batch = er.GraphBatcher(_adjs(), batch_size=SLOTS, n_max=N_MAX, complete=complete).make_batch([0, 1, 2])
    k_enc, k_dec, k_init = jax.random.split(jax.random.key(1), 3)
    real = graphs.node_mask(batch.graph)
    enc_pe = jnp.where(real[:, None], jax.random.normal(k_enc, (real.shape[0], ENC_K)), 0.0)
    dec_pe = jnp.where(batch.mask[..., None], jax.random.normal(k_dec, (SLOTS, N_MAX, DEC_K)), 0.0)
    model = _small_model()
    params = jax.jit(lambda k, g, e, d: model.init(k, g, e, d))(k_init, batch.graph, enc_pe, dec_pe)
    return batch, enc_pe, dec_pe, model, params


def _dense_perm(graph, g):
    """A node-slot permutation of a padded batch as one permutation of n_max slots per graph."""
    local = graphs.local_node_index(graph)
    moved, mask = graphs.nodes_to_dense(graph, local[g], N_MAX, num_graphs=SLOTS)
    return jnp.where(mask, moved, jnp.arange(N_MAX)).astype(jnp.int32)


def test_autoencoder_logits_permute_with_the_graph(key, setup):
    batch, enc_pe, dec_pe, model, params = setup
    real = graphs.node_mask(batch.graph)
    per_graph = jax.vmap(P.act_on_nodes)

    def act_in(g, x):
        graph, e, d = x
        return P.act_on_graphs_tuple(g, graph), P.act_on_nodes(g, e), per_graph(_dense_perm(graph, g), d)

    assert_equivariant(
        lambda x: _forward(model, params, *x)[1:], key, (batch.graph, enc_pe, dec_pe),
        sample_element=jax.jit(lambda k: P.random_graphs_tuple_element(k, batch.graph, real)),
        act_in=jax.jit(act_in),
        act_out=jax.jit(lambda g, out: tuple(jax.vmap(P.act_on_dense)(_dense_perm(batch.graph, g), o) for o in out)),
        num_elements=4, atol=1e-4)


def test_decoder_is_equivariant_per_graph(key):
    k_z, k_test = jax.random.split(key)
    sizes = jnp.array([5, 8, 0])
    mask = jnp.arange(N_MAX)[None, :] < sizes[:, None]
    z = jax.random.normal(k_z, (3, N_MAX, 4))
    decoder = models.DistanceDecoder()
    params = jax.jit(decoder.init)(key, z, mask)
    np.testing.assert_allclose([params["params"]["w"], params["params"]["b"]], [-0.1, 1.0])
    fn = jax.jit(lambda x: decoder.apply(params, *x))
    logits, pairs = fn((z, mask))
    np.testing.assert_array_equal(pairs, models.pair_mask(mask))
    assert not bool(pairs[:, jnp.arange(N_MAX), jnp.arange(N_MAX)].any()) and not bool(pairs[2].any())
    np.testing.assert_array_equal(logits[~pairs], models.MASKED_LOGIT)
    np.testing.assert_allclose(logits, jnp.swapaxes(logits, 1, 2))
    sq = jnp.sum((z[0, 0] - z[0, 1]) ** 2)
    np.testing.assert_allclose(logits[0, 0, 1], -0.1 * sq + 1.0, rtol=1e-5)
    per_graph = jax.vmap(P.act_on_nodes)
    sample = jax.vmap(lambda k, m: P.random_element(k, N_MAX, m))
    assert_equivariant(
        fn, k_test, (z, mask),
        sample_element=jax.jit(lambda k: sample(jax.random.split(k, 3), mask)),
        act_in=jax.jit(lambda g, x: (per_graph(g, x[0]), per_graph(g, x[1]))),
        act_out=jax.jit(lambda g, out: tuple(jax.vmap(P.act_on_dense)(g, o) for o in out)), num_elements=4)


def test_padding_does_not_change_real_graphs(setup):
    batch, enc_pe, dec_pe, model, params = setup
    z, logits, pairs = _forward(model, params, batch.graph, enc_pe, dec_pe)
    other, n_other = _small_model(N_MAX + 3), N_MAX + 3
    offset = 0
    for b, adj in enumerate(_adjs()):  # each graph alone, with another padding budget and n_max
        n = adj.shape[0]
        alone = er.GraphBatcher([adj], batch_size=1, n_max=n_other,
                                complete=batch.graph.edges is not None).make_batch([0])
        e = jnp.zeros((alone.graph.nodes.shape[0], ENC_K)).at[:n].set(enc_pe[offset:offset + n])
        d = jnp.zeros((1, n_other, DEC_K)).at[0, :n].set(dec_pe[b, :n])
        z1, logits1, pairs1 = _forward(other, params, alone.graph, e, d)
        np.testing.assert_allclose(z1[:n], z[offset:offset + n], atol=1e-5)
        np.testing.assert_allclose(logits1[0, :n, :n], logits[b, :n, :n], atol=1e-5)
        np.testing.assert_array_equal(pairs1[0, :n, :n], pairs[b, :n, :n])
        assert not bool(pairs1[0, n:].any())
        offset += n
    assert not bool(pairs[3].any())  # the empty slot is fully masked


def test_pe_entry_points(setup):
    batch, enc_pe, dec_pe, model, params = setup
    assert params["params"]["encoder"]["embed"]["kernel"].shape == (1 + ENC_K, 16)
    assert params["params"]["decoder_pe_projection"]["proj"]["kernel"].shape == (DEC_K, 4)
    _, logits, pairs = _forward(model, params, batch.graph, enc_pe, dec_pe)
    assert logits.shape == (SLOTS, N_MAX, N_MAX)  # num_graphs taken from decoder_pe
    _, logits0, _ = _forward(model, params, batch.graph, enc_pe, jnp.zeros_like(dec_pe))
    assert float(jnp.abs(jnp.where(pairs, logits - logits0, 0)).max()) > 1e-3
    # zero-width channels create no parameters (traced only: no compile)
    n_slots = batch.graph.nodes.shape[0]
    plain = jax.eval_shape(lambda: model.init(jax.random.key(0), batch.graph, num_graphs=SLOTS))
    zero = jax.eval_shape(lambda: model.init(jax.random.key(0), batch.graph, jnp.zeros((n_slots, 0)),
                                             jnp.zeros((SLOTS, N_MAX, 0))))
    assert jax.tree_util.tree_structure(plain) == jax.tree_util.tree_structure(zero)
    assert "decoder_pe_projection" not in plain["params"]
    assert zero["params"]["encoder"]["embed"]["kernel"].shape == (1, 16)
    with pytest.raises(ValueError, match="encoder_pe must have shape"):
        _forward(model, params, batch.graph, enc_pe[:-1], dec_pe)
    with pytest.raises(ValueError, match="decoder_pe must have shape"):
        _forward(model, params, batch.graph, enc_pe, dec_pe[:, :-1])


def test_loss_and_metrics_count_only_real_off_diagonal_pairs():
    adjacency = jnp.array([[[0, 1, 0], [1, 0, 1], [0, 1, 0]]], jnp.float32)
    pairs = models.pair_mask(jnp.array([[True, True, True]]))
    logits = jnp.array([[[9, 2, 3], [-1, 9, 4], [-5, 6, 9]]], jnp.float32)  # diagonal ignored
    errors, num, tp, fp, fn = models.edge_error_and_f1(logits, adjacency, pairs)
    assert (int(errors), int(num), int(tp), int(fp), int(fn)) == (2, 6, 3, 1, 1)
    summary = models.summarize_edge_counts(errors, num, tp, fp, fn)
    assert summary == {"edge_error_pct": pytest.approx(100 * 2 / 6), "f1": pytest.approx(6 / 8)}
    # masked entries do not enter the loss; huge logits stay finite
    huge = jnp.where(pairs, 1e4 * (2 * adjacency - 1), -3e4)
    assert float(models.reconstruction_loss(huge, adjacency, pairs)) == pytest.approx(0.0, abs=1e-6)
    ref = optax.sigmoid_binary_cross_entropy(logits, adjacency)[pairs].mean()
    np.testing.assert_allclose(models.reconstruction_loss(logits, adjacency, pairs), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="num_graphs=batch_size"):
        models.edge_bce(jnp.zeros((2, 3, 3)), adjacency, pairs)
    with pytest.raises(ValueError, match="no pairs"):
        models.summarize_edge_counts(0, 0, 0, 0, 0)


def test_bad_inputs_raise_clear_errors(key, setup):
    """The decoder's and the autoencoder's checks (the encoder's are in tests/nn/test_mpnn.py)."""
    batch, enc_pe, dec_pe, model, params = setup
    with pytest.raises(ValueError, match="mask must have shape"):
        models.DistanceDecoder().init(key, jnp.ones((2, 4, 3)), jnp.ones((2, 5), bool))
    with pytest.raises(ValueError, match="num_graphs must lie in"):  # static check, before any compute
        jax.eval_shape(lambda: model.apply(params, batch.graph, enc_pe, num_graphs=6))
    with pytest.raises(ValueError, match="more than n_max = 4"):  # value check, eager
        graphs.nodes_to_dense(batch.graph, enc_pe, n_max=4)


def test_trains_end_to_end_on_a_tiny_dataset(key):
    adjs = er.erdos_renyi_dataset(16, seed=0, n_min=7, n_max=10)
    batcher = er.GraphBatcher(adjs, batch_size=8, n_max=10)
    model = models.graph_autoencoder(10, hidden=32, latent=8, num_layers=2)
    params = jax.jit(lambda k, g: model.init(k, g, num_graphs=8))(key, batcher.batch_at(0, seed=0).graph)
    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, opt_state, batch):
        def loss_fn(p):
            logits, pairs = model.apply(p, batch.graph, num_graphs=8)
            return models.reconstruction_loss(logits, batch.adjacency, pairs)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def evaluate(params, batch):
        logits, pairs = model.apply(params, batch.graph, num_graphs=8)
        return models.edge_bce(logits, batch.adjacency, pairs), models.edge_error_and_f1(logits, batch.adjacency, pairs)

    def eval_split(params):  # sums over batches, as the experiment does
        bce, num, counts = 0.0, 0, np.zeros(5, np.int64)
        for b in batcher.iterate_once():
            (b_bce, b_num), b_counts = evaluate(params, b)
            bce, num, counts = bce + float(b_bce), num + int(b_num), counts + np.asarray(b_counts)
        return bce / num, models.summarize_edge_counts(*counts)

    start, start_metrics = eval_split(params)
    opt_state = tx.init(params)
    for s in range(100):
        params, opt_state, loss = step(params, opt_state, batcher.batch_at(s, seed=0))
    end, end_metrics = eval_split(params)
    assert np.isfinite(end) and end < 0.6 * start, (start, end)
    assert end_metrics["edge_error_pct"] < start_metrics["edge_error_pct"]
