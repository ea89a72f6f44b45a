"""DiGress with constant denoisers: the training loss, the NLL's four terms, ancestral sampling.

A constant denoiser reads its logits from ``params``, so one compiled function serves several
models. The transformer end to end is in test_transformer_diffusion.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.digress_qm9.diffusion import DiffusionConfig, DiGress, dense, loss, qm9_reference

def _constant_denoiser(params, key, X_t, E_t, y_t, node_mask, t_over_T, *, deterministic):
    """Ignores G_t and predicts the logits held in ``params`` (broadcast over the batch): the
    same compiled DiGress serves a perfect model and a marginal one."""
    X_logits, E_logits = params
    return (jnp.broadcast_to(X_logits, X_t.shape[:2] + X_logits.shape[-1:]),
            jnp.broadcast_to(E_logits, E_t.shape[:3] + E_logits.shape[-1:]))


def test_cross_entropy_ignores_padding_and_the_diagonal(molecules):
    g = molecules(0, 4)
    ks = jax.random.split(jax.random.key(0), 4)
    lx, le = jax.random.normal(ks[0], g.X.shape), jax.random.normal(ks[1], g.E.shape)
    total, parts = loss.cross_entropy_loss(lx, le, g.X, g.E, g.node_mask, lambda_E=5.0)
    mask = np.asarray(g.node_mask)
    pair = mask[:, :, None] & mask[:, None, :] & ~np.eye(9, dtype=bool)
    want_x = -np.mean(np.sum(np.asarray(g.X * jax.nn.log_softmax(lx)), -1)[mask])
    want_e = -np.mean(np.sum(np.asarray(g.E * jax.nn.log_softmax(le)), -1)[pair])
    np.testing.assert_allclose([float(parts["ce_X"]), float(parts["ce_E"])], [want_x, want_e], rtol=1e-5)
    np.testing.assert_allclose(float(total), want_x + 5 * want_e, rtol=1e-5)
    # Whatever the logits on masked rows, the loss is the same.
    junk_x = jnp.where(g.node_mask[..., None], lx, jax.random.normal(ks[2], lx.shape) * 100)
    junk_e = jnp.where(jnp.asarray(pair)[..., None], le, jax.random.normal(ks[3], le.shape) * 100)
    np.testing.assert_allclose(float(loss.cross_entropy_loss(junk_x, junk_e, g.X, g.E, g.node_mask)[0]),
                               float(total), rtol=1e-6)


@pytest.mark.parametrize("vlb_posterior", ["reference", "sampler"])
def test_nll_of_a_perfect_model_is_the_prior_and_reconstruction_terms(molecules, vlb_posterior):
    g = molecules(1, 8)
    dg = DiGress(_constant_denoiser, config=DiffusionConfig(vlb_posterior=vlb_posterior))
    perfect = (1e4 * g.X, 1e4 * g.E)                     # predicts the true x0 of each graph
    terms = {k: np.asarray(v) for k, v in dg.nll(perfect, jax.random.key(0), g).items()}
    hist = np.asarray(qm9_reference.N_NODES_HISTOGRAM) / np.sum(qm9_reference.N_NODES_HISTOGRAM)
    N = np.asarray(g.node_mask).sum(-1)
    np.testing.assert_allclose(terms["node_count"], -np.log(hist[N]), rtol=1e-5)
    assert np.all(np.abs(terms["diffusion"]) < 1e-3), terms["diffusion"]
    assert np.all(np.abs(terms["reconstruction"]) < 1e-3)
    assert np.all(np.abs(terms["prior_kl"]) < 1e-3)
    np.testing.assert_allclose(terms["nll"], terms["node_count"] + terms["prior_kl"] + terms["reconstruction"],
                               atol=1e-3)
    assert np.all((terms["t"] >= 1) & (terms["t"] <= 500))

    # A model that always predicts the marginals pays for every term it gets wrong.
    marginal = (jnp.broadcast_to(jnp.log(dg.x_marginals + 1e-9), g.X.shape),
                jnp.broadcast_to(jnp.log(dg.e_marginals + 1e-9), g.E.shape))
    worse = {k: np.asarray(v) for k, v in dg.nll(marginal, jax.random.key(0), g).items()}
    assert np.all(worse["reconstruction"] > 1.0) and np.mean(worse["diffusion"]) > 1.0
    assert np.all(worse["nll"] > terms["nll"])
    np.testing.assert_allclose(worse["nll"], worse["node_count"] + worse["prior_kl"] + worse["diffusion"]
                               + worse["reconstruction"], rtol=1e-5)


def test_sampler_with_a_perfect_denoiser_returns_the_target(molecules):
    g = molecules(2, 1, n_min=6, n_max=6)
    hist = np.zeros(7)
    hist[6] = 1.0
    dg = DiGress(_constant_denoiser, n_nodes_histogram=hist)
    X, E, mask = dg.sample((1e4 * g.X, 1e4 * g.E), jax.random.key(0), 64)
    X_ref, E_ref = (np.asarray(a) for a in dense.decode(g.X, g.E, g.node_mask))
    exact = np.all(np.asarray(X) == X_ref, 1) & np.all(np.asarray(E) == E_ref, (1, 2))
    assert np.asarray(mask).all() and X.shape == (64, 6) and E.shape == (64, 6, 6)
    assert exact.mean() >= 0.95, exact.mean()        # z_0 ~ q(z_0 | z_1, x0): beta_0 ~ 1e-4 noise


@pytest.mark.parametrize("model_key", ["step", "trajectory"])
def test_sampler_model_key_is_fresh_per_step_or_fixed_per_trajectory(molecules, model_key):
    g = molecules(2, 1, n_min=5, n_max=5)
    hist = np.zeros(6)
    hist[5] = 1.0
    seen = []

    def recording_denoiser(params, key, X_t, E_t, y_t, node_mask, t_over_T, *, deterministic):
        jax.debug.callback(lambda k: seen.append(np.asarray(k).tobytes()), jax.random.key_data(key))
        return _constant_denoiser(params, key, X_t, E_t, y_t, node_mask, t_over_T, deterministic=deterministic)

    dg = DiGress(recording_denoiser, config=DiffusionConfig(T=6), n_nodes_histogram=hist)
    dg.sample((1e4 * g.X, 1e4 * g.E), jax.random.key(0), 4, model_key=model_key)
    jax.effects_barrier()
    assert len(seen) == 6
    assert len(set(seen)) == (1 if model_key == "trajectory" else 6)


def test_sampler_rejects_an_unknown_model_key(molecules):
    dg = DiGress(_constant_denoiser)
    g = molecules(2, 1)
    with pytest.raises(ValueError, match="model_key"):
        dg.sample((g.X, g.E), jax.random.key(0), 2, model_key="graph")
