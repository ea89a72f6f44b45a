"""Data parallelism of the graph autoencoder: a training batch cut into per-device blocks
(``GraphBatcher.make_slots`` + ``stack_blocks``, the batch each process builds in a
multi-process run) gives the loss and gradients of the whole batch.

The bug this guards against: blocks decoded against the wrong rows' targets (block order, slot
order inside a block), or an empty block (the short last batch of an epoch) that breaks the
loss, would train a multi-process run on a different objective than a single process.
"""

import dataclasses

import jax
import numpy as np
import pytest

from experiments.graph_autoencoder import configs, encoding, models
from experiments.graph_autoencoder import data as er
from experiments.graph_autoencoder import main as ga

CFG = configs.Config(n_max=8, batch_size=4, hidden=8, latent=4, num_layers=1, pe_features=4)


def _loss_and_grads(forward, params, key, batch, ranks):
    def loss(p):
        logits, pairs = forward(p, key, batch, ranks)
        return models.reconstruction_loss(logits, batch.adjacency, pairs)
    return jax.jit(jax.value_and_grad(loss))(params)


def test_blocks_give_the_loss_and_gradients_of_the_whole_batch(row="sympe"):
    adjs = er.erdos_renyi_dataset(6, 0, n_min=3, n_max=8)   # 6 graphs, batch 4: the second batch is short
    batcher = ga.make_batcher(adjs, CFG, None)
    blocks = ga.make_batcher(adjs, dataclasses.replace(CFG, batch_size=2), None)
    forward, init = encoding.build(CFG, row)
    params = init(jax.random.key(0), batcher.batch_at(0, 0))
    ranks = np.tile(np.arange(CFG.n_max, dtype=np.int32), (CFG.batch_size, 1))
    for step in (0, 1):   # step 1: graphs in slots 0-1 only, so the second block is empty
        whole = batcher.batch_at(step, 0)
        idx = batcher.indices_at(step, 0)
        np.testing.assert_array_equal(idx, whole.indices)
        cut = er.stack_blocks([blocks.make_slots(idx[:2]), blocks.make_slots(idx[2:])])
        for name in ("adjacency", "mask", "sizes", "graph_mask", "indices"):
            np.testing.assert_array_equal(getattr(cut, name), getattr(whole, name))
        key = jax.random.key(step + 1)
        loss, grads = _loss_and_grads(forward, params, key, whole, ranks)
        loss_b, grads_b = _loss_and_grads(forward, params, key, cut, ranks)
        assert np.isfinite(float(loss)) and float(loss) > 0
        np.testing.assert_allclose(float(loss_b), float(loss), rtol=1e-6)
        for g, g_b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_b)):
            np.testing.assert_allclose(np.asarray(g_b), np.asarray(g), rtol=1e-5, atol=1e-7)
    assert (idx[2:] == -1).all()   # step 1 had an empty block


def test_make_slots_rejects_gaps_and_wrong_lengths():
    batcher = er.GraphBatcher(er.erdos_renyi_dataset(4, 0, n_min=3, n_max=8), 2, 8)
    with pytest.raises(ValueError, match="graphs first"):
        batcher.make_slots([-1, 0])
    with pytest.raises(ValueError, match="2 slot indices"):
        batcher.make_slots([0])
