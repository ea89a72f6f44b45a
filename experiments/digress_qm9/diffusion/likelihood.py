"""The four terms of the test NLL (variational bound), per graph, in nats (``digress-qm9.md`` 4).

    nll = -log p(N)                                              node_count_nll
          + KL(q(z_T | x) || p(z_T))                              prior_kl
          + T * sum_rows KL(q(z_s | z_t, x) || p_theta(z_s | z_t)) T * diffusion_kl, one t per graph
          - log p_theta(x | z_0)                                 reconstruction_nll

Sums run over real nodes and over all ordered pairs of real nodes (each edge counted as (i, j)
and (j, i), as in the reference). :mod:`.digress` draws t, z_t and z_0 and calls these.

Kept from the reference, to stay comparable with its numbers (69.6 on QM9):

* ``mask_distributions``: in both distributions of a KL, padded nodes, pairs touching them and
  the diagonal become [1, 0, ...]; then 1e-7 is added everywhere and rows are renormalised.
* ``log p(N) = log(hist[N] + 1e-30)``.

Changed (documented in the port's report):

* The prior KL is ``KL(q(z_T | x) || limit)``, the direction of the bound; the reference
  computes ``KL(limit || q(z_T | x))``. Both are ~1e-6 nats (alpha_bar_T = 9.7e-10).
* The reference's diffusion term is a per-batch mean broadcast to every graph (torchmetrics
  ``forward``), its reconstruction term a batch average; here every term is per graph (the
  average over a test set is the same).
* The reconstruction uses ``log_softmax`` instead of ``log(softmax)`` (same values, no -inf).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.digress_qm9.diffusion import transitions
from experiments.digress_qm9.diffusion.dense import pair_mask

__all__ = ["node_count_nll", "mask_distributions", "categorical_kl", "prior_kl", "reconstruction_nll"]


def node_count_nll(histogram: jax.Array, node_mask: jax.Array) -> jax.Array:
    """``-log(p(N) + 1e-30)`` per graph: histogram float[n_max + 1] (normalised), node_mask [B, n]."""
    N = jnp.sum(node_mask, -1)
    return -jnp.log(histogram[N] + 1e-30)


def mask_distributions(p: jax.Array, q: jax.Array, row_mask: jax.Array, eps: float = 1e-7
                       ) -> tuple[jax.Array, jax.Array]:
    """The reference's ``mask_distributions`` for one variable: rows outside ``row_mask`` become
    [1, 0, ...] in both, then ``+ eps`` and renormalise. p, q [..., K], row_mask bool[...]."""
    first = jax.nn.one_hot(0, p.shape[-1], dtype=p.dtype)
    p = jnp.where(row_mask[..., None], p, first) + eps
    q = jnp.where(row_mask[..., None], q, first) + eps
    return p / jnp.sum(p, -1, keepdims=True), q / jnp.sum(q, -1, keepdims=True)


def categorical_kl(p: jax.Array, q: jax.Array, node_mask: jax.Array) -> jax.Array:
    """Per graph ``sum_rows KL(p || q)`` of node [B, n, K] or edge [B, n, n, K] distributions,
    after :func:`mask_distributions` (real nodes / real off-diagonal pairs count)."""
    rows = node_mask if p.ndim == 3 else pair_mask(node_mask)
    p, q = mask_distributions(p, q, rows)
    kl = jnp.sum(p * (jnp.log(p) - jnp.log(q)), -1)
    return jnp.sum(kl.reshape(kl.shape[0], -1), -1)


def prior_kl(X: jax.Array, E: jax.Array, node_mask: jax.Array, alpha_bar_T: jax.Array,
             x_marginals: jax.Array, e_marginals: jax.Array) -> jax.Array:
    """Per graph ``KL(q(z_T | x) || limit)`` summed over nodes and pairs. alpha_bar_T scalar."""
    B = X.shape[0]
    a = jnp.broadcast_to(alpha_bar_T, (B,))
    qX = transitions.apply_transition(X, transitions.cumulative_matrix(a, x_marginals))
    qE = transitions.apply_transition(E, transitions.cumulative_matrix(a, e_marginals))
    return (categorical_kl(qX, jnp.broadcast_to(x_marginals, qX.shape), node_mask)
            + categorical_kl(qE, jnp.broadcast_to(e_marginals, qE.shape), node_mask))


def reconstruction_nll(X: jax.Array, E: jax.Array, X_logits: jax.Array, E_logits: jax.Array,
                       node_mask: jax.Array) -> jax.Array:
    """Per graph ``-log p_theta(x | z_0) = -sum_rows x . log softmax(logits)`` over real nodes and
    real ordered off-diagonal pairs."""
    lx = jnp.sum(X * jax.nn.log_softmax(X_logits, -1), -1) * node_mask
    le = jnp.sum(E * jax.nn.log_softmax(E_logits, -1), -1) * pair_mask(node_mask)
    return -(jnp.sum(lx, -1) + jnp.sum(le, (-2, -1)))
