"""Posteriors of discrete diffusion (``digress-qm9.md`` sections 4 and 5).

For one categorical variable with one-hot ``z_t`` and clean value ``x`` (Bayes, with the
Markov property ``q(z_t | z_s, x) = q(z_t | z_s)``)::

    q(z_s | z_t, x) = (z_t Q_t^T) * (x Qbar_s) / (x Qbar_t z_t^T)            s = t - 1

* :func:`posterior` evaluates this formula. With a distribution ``p`` in place of the one-hot
  ``x`` it is the reference's ``posterior_distributions`` used in its VLB (``compute_Lt``): the
  posterior of z_s given z_t when x is *drawn* from p (a proper distribution, since
  ``sum_s (z_t Q_t^T)_s (p Qbar_s)_s = p Qbar_t z_t^T``).
* :func:`posterior_given_each_x0` gives q(z_s | z_t, x0 = k) for every class k, and
  :func:`denoising_distribution` the model's reverse step
  ``p(z_s | z_t) = sum_k p(x0 = k | z_t) q(z_s | z_t, x0 = k)`` as in the reference's sampler
  (``compute_batched_over0_posterior_distribution``; zero denominators become 1e-6, rows that
  sum to 0 get 1e-5 before renormalising).

The two parameterisations differ for a non-degenerate p; both equal the true posterior when p
is the one-hot x (tested).

Shapes: variables ``[B, ..., K]`` (nodes ``[B, n, K]`` or edges ``[B, n, n, K]``), matrices
``[B, K, K]`` (one per graph).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.digress_qm9.diffusion.transitions import apply_transition as _rows

__all__ = ["posterior", "posterior_given_each_x0", "denoising_distribution"]


def posterior(x: jax.Array, z_t: jax.Array, Qt: jax.Array, Qsb: jax.Array, Qtb: jax.Array) -> jax.Array:
    """q(z_s | z_t, x) for one-hot (or distribution) ``x`` and one-hot ``z_t``: [B, ..., K].

    Rows where the denominator vanishes (padding: ``x`` all-zero) are returned as zeros.
    """
    numerator = _rows(z_t, jnp.swapaxes(Qt, -1, -2)) * _rows(x, Qsb)
    denominator = jnp.sum(_rows(x, Qtb) * z_t, axis=-1, keepdims=True)
    safe = jnp.where(denominator > 0, denominator, 1.0)
    return jnp.where(denominator > 0, numerator / safe, 0.0)


def posterior_given_each_x0(z_t: jax.Array, Qt: jax.Array, Qsb: jax.Array, Qtb: jax.Array) -> jax.Array:
    """q(z_s = l | z_t, x0 = k) for every k: z_t [B, ..., K] -> [B, ..., K (x0), K (z_s)].

    Not normalised where ``Qbar_t[k, z_t] = 0`` (that x0 cannot have produced z_t); the
    denominator is then replaced by 1e-6 as in the reference, and the numerator is 0 there.
    """
    left = _rows(z_t, jnp.swapaxes(Qt, -1, -2))                       # [B, ..., K_s]
    extra = (1,) * (z_t.ndim - 2)
    Qsb_b = Qsb.reshape(Qsb.shape[:1] + extra + Qsb.shape[1:])       # [B, 1.., K0, K_s]
    numerator = left[..., None, :] * Qsb_b
    denominator = _rows(z_t, jnp.swapaxes(Qtb, -1, -2))[..., :, None]  # [B, ..., K0, 1]: Qtb[k, z_t]
    denominator = jnp.where(denominator == 0, 1e-6, denominator)
    return numerator / denominator


def denoising_distribution(probs_x0: jax.Array, z_t: jax.Array, Qt: jax.Array, Qsb: jax.Array,
                           Qtb: jax.Array) -> jax.Array:
    """``p(z_s | z_t) = sum_k p(x0 = k) q(z_s | z_t, x0 = k)``, renormalised: [B, ..., K]."""
    over_x0 = posterior_given_each_x0(z_t, Qt, Qsb, Qtb)
    unnormalised = jnp.einsum("...k,...kl->...l", probs_x0, over_x0)
    total = jnp.sum(unnormalised, axis=-1, keepdims=True)
    unnormalised = jnp.where(total == 0, 1e-5, unnormalised)
    return unnormalised / jnp.sum(unnormalised, axis=-1, keepdims=True)
