"""DiGress with the graph transformer end to end: training on tiny random molecule-like graphs,
sampling and the NLL (one small model, trained once per module)."""

import jax
import numpy as np
import optax
import pytest

from experiments.digress_qm9.diffusion import DiffusionConfig, DiGress, TransformerDenoiser
from experiments.digress_qm9.graph_transformer import GraphTransformerConfig, TransformerNet

TINY = GraphTransformerConfig(n_layers=1, mlp_X=32, mlp_E=16, mlp_y=16, dx=32, de=16, dy=16, n_head=4,
                              dim_ffX=32, dim_ffE=16, dim_ffy=32)


@pytest.fixture(scope="module")
def trained(molecules):
    """A 1-layer transformer trained 80 steps on 24 random molecule-like graphs."""
    data = molecules(11, 24)
    den = TransformerDenoiser(TransformerNet(TINY))
    dg = DiGress(den, config=DiffusionConfig(T=50))
    params = den.init(jax.random.key(0), data.X, data.E, data.node_mask)
    opt = optax.adam(3e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state, key):
        (l, _), grads = jax.value_and_grad(dg.training_loss, has_aux=True)(params, key, data)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, l

    losses = []
    for i in range(80):
        params, state, l = step(params, state, jax.random.fold_in(jax.random.key(1), i))
        losses.append(float(l))
    # Training losses at random t: compare the means of the first and last 10 steps.
    return dg, params, data, np.mean(losses[:10]), np.mean(losses[-10:])


def test_training_loss_decreases_on_a_tiny_dataset(trained):
    dg, params, data, before, after = trained
    assert np.isfinite(before) and after < 0.75 * before, (before, after)


def test_sampling_and_nll_of_a_transformer_model(trained):
    dg, params, data, _, _ = trained
    hist = np.zeros(10)
    hist[[3, 5, 9]] = [0.2, 0.3, 0.5]
    dg_small = DiGress(dg.denoiser, n_nodes_histogram=hist, config=DiffusionConfig(T=8))
    X, E, mask = dg_small.sample(params, jax.random.key(2), 16)
    X, E, mask = np.asarray(X), np.asarray(E), np.asarray(mask)
    assert X.dtype == np.int32 and E.dtype == np.int32 and X.shape == (16, 9) and E.shape == (16, 9, 9)
    assert set(mask.sum(1)) <= {3, 5, 9} and np.all(mask == np.sort(mask, 1)[:, ::-1])   # real nodes first
    pair = mask[:, :, None] & mask[:, None, :]
    np.testing.assert_array_equal(E, np.swapaxes(E, 1, 2))
    assert np.all(X[~mask] == -1) and np.all(E[~pair] == -1)
    assert np.all((X[mask] >= 0) & (X[mask] < 4)) and np.all((E[pair] >= 0) & (E[pair] < 5))
    assert np.all(np.diagonal(E, axis1=1, axis2=2)[mask] == 0)
    # Same key, same samples.
    np.testing.assert_array_equal(np.asarray(dg_small.sample(params, jax.random.key(2), 16)[0]), X)

    terms = dg.nll(params, jax.random.key(3), data)
    for k in ("nll", "node_count", "prior_kl", "diffusion", "reconstruction"):
        assert terms[k].shape == (24,) and np.all(np.isfinite(np.asarray(terms[k])))
