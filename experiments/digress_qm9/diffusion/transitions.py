"""Marginal (and uniform) transition matrices of discrete diffusion (``digress-qm9.md`` 2).

Row-stochastic matrices acting on one-hot row vectors, ``q(z_t | z_{t-1}) = z_{t-1} Q_t``::

    Q_t    = (1 - beta_t) I + beta_t 1 m^T          one step
    Qbar_t = alpha_bar_t I + (1 - alpha_bar_t) 1 m^T from x_0 to z_t

Every row of ``1 m^T`` is the marginal ``m`` (the limit distribution, ``MarginalUniformTransition``
of the reference); the uniform transition is the special case ``m = 1/K``
(:func:`uniform_marginals`). Both formulas are one function of the "keep" probability
``a`` (``1 - beta_t`` or ``alpha_bar_t``): :func:`transition`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["normalize_marginals", "uniform_marginals", "transition", "step_matrix", "cumulative_matrix",
           "apply_transition"]


def normalize_marginals(marginals, name: str = "marginals") -> jax.Array:
    """float32[K] probabilities from non-negative counts or probabilities (host-side check)."""
    m = np.asarray(marginals, np.float64)
    if m.ndim != 1 or m.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {m.shape}")
    if np.any(m < 0) or not np.isfinite(m).all() or m.sum() <= 0:
        raise ValueError(f"{name} must be non-negative with a positive sum, got {m}")
    return jnp.asarray(m / m.sum(), jnp.float32)


def uniform_marginals(num_classes: int) -> jax.Array:
    """float32[K] with every entry 1/K (the reference's ``uniform`` transition)."""
    return jnp.full((num_classes,), 1.0 / num_classes, jnp.float32)


def transition(keep: jax.Array, marginals: jax.Array) -> jax.Array:
    """``keep I + (1 - keep) 1 m^T``: keep float[...] -> float[..., K, K] (rows sum to 1)."""
    keep = jnp.asarray(keep, jnp.float32)[..., None, None]
    K = marginals.shape[-1]
    return keep * jnp.eye(K, dtype=jnp.float32) + (1.0 - keep) * marginals[None, :]


def step_matrix(beta: jax.Array, marginals: jax.Array) -> jax.Array:
    """One-step ``Q_t`` from ``beta_t`` float[...]: float[..., K, K]."""
    return transition(1.0 - jnp.asarray(beta, jnp.float32), marginals)


def cumulative_matrix(alpha_bar: jax.Array, marginals: jax.Array) -> jax.Array:
    """Cumulative ``Qbar_t`` from ``alpha_bar_t`` float[...]: float[..., K, K]."""
    return transition(alpha_bar, marginals)


def apply_transition(z: jax.Array, Q: jax.Array) -> jax.Array:
    """``z @ Q`` with one matrix per graph: z [B, ..., K], Q [B, K, L] -> [B, ..., L]."""
    return jnp.einsum("b...k,bkl->b...l", z, Q)
