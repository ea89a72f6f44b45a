"""Sampling categorical graphs: forward noising q(z_t | x) and the prior p(z_T).

:func:`sample_graph` draws node classes independently per node and edge classes independently
per unordered pair: the strict upper triangle is drawn and mirrored, so E stays symmetric
(the reference draws all n^2 entries and keeps the upper triangle: the same law). Padded nodes,
pairs touching them and the diagonal get a uniform distribution for the draw and are then
masked (``digress-qm9.md`` section 2), so the result follows :mod:`.dense`'s convention.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sympe_jax import checks

from experiments.digress_qm9.diffusion import dense, transitions
from experiments.digress_qm9.diffusion.schedule import NoiseSchedule

__all__ = ["sample_categorical", "sample_graph", "apply_noise", "sample_prior"]


def sample_categorical(key: jax.Array, probs: jax.Array) -> jax.Array:
    """int32[...] class indices drawn from probabilities float[..., K] (rows need not sum to 1).

    A row with a NaN or infinite entry, or with no positive entry, has no law to draw from: its
    index is -1 (the library's poison value, see ``sympe_jax.checks``), which :func:`dense.encode`
    turns into a NaN row, so a diverged denoiser never yields a finite-looking molecule.
    """
    logits = jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -jnp.inf)
    idx = jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
    ok = jnp.all(jnp.isfinite(probs), axis=-1) & jnp.any(probs > 0, axis=-1)
    return checks.poison(idx, ok)


def sample_graph(key: jax.Array, probX: jax.Array, probE: jax.Array, node_mask: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """One-hot ``(X [B,n,dx], E [B,n,n,de])`` drawn from per-node / per-pair probabilities.

    ``probE`` is read on the strict upper triangle only; the draw is mirrored.
    """
    kx, ke = jax.random.split(key)
    dx, de = probX.shape[-1], probE.shape[-1]
    n = node_mask.shape[-1]
    probX = jnp.where(node_mask[..., None], probX, 1.0 / dx)
    real_pairs = dense.pair_mask(node_mask)[..., None]
    probE = jnp.where(real_pairs, probE, 1.0 / de)
    X_idx = sample_categorical(kx, probX)
    E_idx = sample_categorical(ke, probE)
    upper = jnp.triu(jnp.ones((n, n), bool), k=1)
    E_idx = jnp.where(upper, E_idx, jnp.swapaxes(E_idx, -1, -2))
    return dense.encode(X_idx, E_idx, node_mask, dx, de, probX.dtype)


def apply_noise(key: jax.Array, X: jax.Array, E: jax.Array, node_mask: jax.Array, t: jax.Array,
                schedule: NoiseSchedule, x_marginals: jax.Array, e_marginals: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
    """Draw ``G_t ~ q(G_t | G_0) = (X Qbar_t, E Qbar_t)``, t int[B] in 0..T: one-hot X_t, E_t."""
    alpha_bar = schedule.alpha_bars[t]
    probX = transitions.apply_transition(X, transitions.cumulative_matrix(alpha_bar, x_marginals))
    probE = transitions.apply_transition(E, transitions.cumulative_matrix(alpha_bar, e_marginals))
    return sample_graph(key, probX, probE, node_mask)


def sample_prior(key: jax.Array, node_mask: jax.Array, x_marginals: jax.Array, e_marginals: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """``G_T`` from the limit distribution: every node ~ m_X, every pair ~ m_E, independently."""
    B, n = node_mask.shape
    probX = jnp.broadcast_to(x_marginals, (B, n, x_marginals.shape[-1]))
    probE = jnp.broadcast_to(e_marginals, (B, n, n, e_marginals.shape[-1]))
    return sample_graph(key, probX, probE, node_mask)
