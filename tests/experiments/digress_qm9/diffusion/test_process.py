"""The diffusion process: schedule, transition matrices, posteriors, forward noising, prior."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.digress_qm9.diffusion import dense, noise, posterior, qm9_reference, transitions
from experiments.digress_qm9.diffusion.schedule import cosine_schedule

M_X = transitions.normalize_marginals(qm9_reference.ATOM_MARGINALS)
M_E = transitions.normalize_marginals(qm9_reference.EDGE_MARGINALS)


def _matrices(schedule, t, marginals):
    """(Q_t, Qbar_{t-1}, Qbar_t) of the schedule at steps t, for the given marginals."""
    return (transitions.step_matrix(schedule.betas[t], marginals),
            transitions.cumulative_matrix(schedule.alpha_bars[t - 1], marginals),
            transitions.cumulative_matrix(schedule.alpha_bars[t], marginals))


def test_cosine_schedule_matches_the_reference_values():
    s = cosine_schedule(500)
    betas, abar = np.asarray(s.betas), np.asarray(s.alpha_bars)
    assert s.T == 500 and betas.shape == abar.shape == (501,)
    np.testing.assert_allclose(betas[:2], [8.72e-5, 1.07e-4], rtol=5e-3)   # the reference implementation's values
    assert betas[500] == 1.0                                                # unclipped: Q_T is the limit
    np.testing.assert_allclose(abar[[0, 250, 500]], [0.999913, 0.492, 9.7e-10], rtol=5e-3)
    assert np.all(np.diff(abar) < 0)
    with pytest.raises(ValueError):
        cosine_schedule(0)


def test_transition_matrices_are_stochastic_and_compose():
    s = cosine_schedule(50)
    for m in (M_X, M_E, transitions.uniform_marginals(3)):
        for t in (1, 10, 49):
            Qt, Qsb, Qtb = (np.asarray(q, np.float64) for q in _matrices(s, t, m))
            np.testing.assert_allclose(Qt.sum(-1), 1, atol=1e-6)
            np.testing.assert_allclose(Qtb.sum(-1), 1, atol=1e-6)
            np.testing.assert_allclose(Qsb @ Qt, Qtb, atol=1e-5)           # Markov: Qbar_{t-1} Q_t = Qbar_t
        np.testing.assert_allclose(np.asarray(transitions.cumulative_matrix(0.0, m)), np.tile(m, (len(m), 1)),
                                   atol=1e-7)
    with pytest.raises(ValueError):
        transitions.normalize_marginals([0.5, -0.1])


def _bayes(x, zt, Qt, Qsb):
    """q(z_s | z_t, x) by enumeration: q(z_s | x) q(z_t | z_s), normalised."""
    joint = np.array([Qsb[x, zs] * Qt[zs, zt] for zs in range(Qt.shape[0])])
    return joint / joint.sum()


def test_posterior_is_bayes_and_both_parameterisations_agree_on_one_hot():
    s = cosine_schedule(20)
    K = len(M_E)
    t = jnp.asarray([7])
    Qt, Qsb, Qtb = _matrices(s, t, M_E)
    pairs = [(x, z) for x, z in itertools.product(range(K), range(K)) if z == x or M_E[z] > 0]
    x = jax.nn.one_hot(jnp.asarray([[p[0] for p in pairs]]), K)
    zt = jax.nn.one_hot(jnp.asarray([[p[1] for p in pairs]]), K)
    got = np.asarray(posterior.posterior(x, zt, Qt, Qsb, Qtb))[0]
    over_x0 = np.asarray(posterior.denoising_distribution(x, zt, Qt, Qsb, Qtb))[0]
    for row, (xi, zi) in enumerate(pairs):
        want = _bayes(xi, zi, np.asarray(Qt[0], np.float64), np.asarray(Qsb[0], np.float64))
        np.testing.assert_allclose(got[row], want, atol=1e-5)
        np.testing.assert_allclose(over_x0[row], want, atol=1e-5)


def test_posterior_of_a_distribution_is_the_posterior_under_x_drawn_from_it():
    s = cosine_schedule(20)
    K = len(M_X)
    t = jnp.asarray([12])
    Qt, Qsb, Qtb = _matrices(s, t, M_X)
    p = jax.nn.softmax(jax.random.normal(jax.random.key(0), (1, K, K)), -1)  # one distribution per row
    zt = jax.nn.one_hot(jnp.arange(K)[None], K)
    ref = np.asarray(posterior.posterior(p, zt, Qt, Qsb, Qtb))[0]
    mix = np.asarray(posterior.denoising_distribution(p, zt, Qt, Qsb, Qtb))[0]
    Qt_, Qsb_ = np.asarray(Qt[0], np.float64), np.asarray(Qsb[0], np.float64)
    for z in range(K):
        pz = np.asarray(p[0, z], np.float64)
        joint = sum(pz[x] * Qsb_[x] * Qt_[:, z] for x in range(K))        # p(z_s, z_t) with x ~ p
        np.testing.assert_allclose(ref[z], joint / joint.sum(), atol=1e-5)
        mixture = sum(pz[x] * _bayes(x, z, Qt_, Qsb_) for x in range(K))    # the sampler's reverse step
        np.testing.assert_allclose(mix[z], mixture, atol=1e-5)
    assert not np.allclose(ref, mix, atol=1e-3)                             # the two are different models


def _batch(molecules):
    return molecules(0, 6, n_min=2)


def test_noising_keeps_E_symmetric_and_masks_padding(molecules):
    g = _batch(molecules)
    s = cosine_schedule(50)
    f = jax.jit(lambda k, t: noise.apply_noise(k, g.X, g.E, g.node_mask, t, s, M_X, M_E))
    mask = np.asarray(g.node_mask)
    pair = mask[:, :, None] & mask[:, None, :] & ~np.eye(mask.shape[1], dtype=bool)
    for i, t in enumerate([1, 25, 50]):
        X_t, E_t = (np.asarray(a) for a in f(jax.random.key(i), jnp.full((6,), t)))
        np.testing.assert_array_equal(E_t, np.swapaxes(E_t, 1, 2))
        assert np.all(X_t[mask].sum(-1) == 1) and np.all(X_t[~mask] == 0)
        assert np.all(E_t[pair].sum(-1) == 1) and np.all(E_t[~pair] == 0)
        assert set(np.unique(X_t)) <= {0.0, 1.0}
    X0, E0 = (np.asarray(a) for a in f(jax.random.key(5), jnp.zeros((6,), jnp.int32)))
    np.testing.assert_array_equal(X0, np.asarray(g.X))                        # t = 0: 1e-4 noise
    np.testing.assert_array_equal(E0, np.asarray(g.E))


def test_noise_at_T_and_the_prior_follow_the_marginals(molecules):
    g = molecules(1, 1, n_min=9)
    s = cosine_schedule(50)
    reps = 400
    X, E, m = (jnp.repeat(a, reps, 0) for a in g)
    X_T, E_T = noise.apply_noise(jax.random.key(0), X, E, m, jnp.full((reps,), 50), s, M_X, M_E)
    X_p, E_p = noise.sample_prior(jax.random.key(1), m, M_X, M_E)
    iu = np.triu_indices(9, 1)
    for Xs, Es in ((X_T, E_T), (X_p, E_p)):
        freq_X = np.asarray(Xs).reshape(-1, 4).mean(0)
        freq_E = np.asarray(Es)[:, iu[0], iu[1]].reshape(-1, 5).mean(0)
        np.testing.assert_allclose(freq_X, np.asarray(M_X), atol=0.02)
        np.testing.assert_allclose(freq_E, np.asarray(M_E), atol=0.02)
        np.testing.assert_array_equal(np.asarray(Es), np.swapaxes(np.asarray(Es), 1, 2))


def test_four_edge_classes(molecules):
    g = molecules(5, 4, de=4)
    m4 = transitions.normalize_marginals(qm9_reference.edge_marginals(4))
    X_t, E_t = noise.apply_noise(jax.random.key(0), g.X, g.E, g.node_mask, jnp.full((4,), 30), cosine_schedule(50),
                                 M_X, m4)
    assert E_t.shape == g.E.shape == (4, 9, 9, 4)
    np.testing.assert_array_equal(np.asarray(E_t), np.swapaxes(np.asarray(E_t), 1, 2))


def test_encode_decode_round_trip(molecules):
    g = _batch(molecules)
    X_idx, E_idx = dense.decode(g.X, g.E, g.node_mask)
    mask = np.asarray(g.node_mask)
    assert np.all(np.asarray(X_idx)[~mask] == -1)
    assert np.all(np.diagonal(np.asarray(E_idx), axis1=1, axis2=2)[mask] == 0)
    X, E = dense.encode(X_idx, E_idx, g.node_mask, 4, 5)
    np.testing.assert_array_equal(np.asarray(X), np.asarray(g.X))
    np.testing.assert_array_equal(np.asarray(E), np.asarray(g.E))


def test_a_diverged_draw_is_poisoned_never_a_carbon(molecules):
    """Bug: NaN probabilities drew class 0 (carbon), so a diverged sampler produced valid-looking
    molecules. A NaN or all-zero row now draws -1, encodes to a NaN row and decodes to -1 on
    the real node, which molecules.evaluate rejects."""
    probs = jnp.array([[0.2, 0.8, 0.0], [jnp.nan, 0.5, 0.5], [0.0, 0.0, 0.0], [0.0, jnp.inf, 1.0]])
    for draw in (noise.sample_categorical, jax.jit(noise.sample_categorical)):
        idx = np.asarray(draw(jax.random.key(0), probs))
        assert idx[0] in (0, 1) and list(idx[1:]) == [-1, -1, -1]
    g = _batch(molecules)
    X_idx, E_idx = dense.decode(g.X, g.E, g.node_mask)
    real = np.argwhere(np.asarray(g.node_mask))[0]
    X_idx = X_idx.at[real[0], real[1]].set(-1)
    X, E = dense.encode(X_idx, E_idx, g.node_mask, 4, 5)
    assert np.isnan(np.asarray(X)[real[0], real[1]]).all()
    assert np.isfinite(np.asarray(X)[~np.asarray(g.node_mask)]).all()        # padding stays 0
    X2, _ = dense.decode(X, E, g.node_mask)
    np.testing.assert_array_equal(np.asarray(X2), np.asarray(X_idx))
