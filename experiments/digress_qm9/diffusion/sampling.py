"""Ancestral sampling pieces (``digress-qm9.md`` section 5); the loop is in :mod:`.digress`.

1. :func:`sample_node_counts`: N ~ the node-count histogram; :func:`counts_to_mask` gives the
   node mask (real nodes first, as the reference).
2. ``G_T`` ~ the limit distribution (:func:`experiments.digress_qm9.diffusion.noise.sample_prior`).
3. For s = T-1, ..., 0 (t = s + 1): :func:`reverse_step` draws
   ``G_s ~ p(G_s | G_t) = sum_x0 p_theta(x0 | G_t) q(G_s | G_t, x0)`` node-wise and pair-wise
   (E mirrored from its upper triangle).
4. ``G_0`` is the sample (no final argmax of the prediction), decoded to class indices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.digress_qm9.diffusion import noise, posterior, transitions

__all__ = ["sample_node_counts", "counts_to_mask", "reverse_step"]


def sample_node_counts(key: jax.Array, histogram: jax.Array, num_samples: int) -> jax.Array:
    """int32[num_samples] drawn from ``histogram`` float[n_max + 1] (index = node count)."""
    return noise.sample_categorical(key, jnp.broadcast_to(histogram, (num_samples, histogram.shape[-1])))


def counts_to_mask(counts: jax.Array, n_max: int) -> jax.Array:
    """bool[B, n_max]: the first ``counts[b]`` nodes are real."""
    return jnp.arange(n_max)[None, :] < counts[:, None]


def reverse_step(key: jax.Array, probs_X0: jax.Array, probs_E0: jax.Array, X_t: jax.Array, E_t: jax.Array,
                 node_mask: jax.Array, beta_t: jax.Array, alpha_bar_s: jax.Array, alpha_bar_t: jax.Array,
                 x_marginals: jax.Array, e_marginals: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One denoising step: one-hot ``(X_s, E_s)`` from the predicted p(x0 | G_t) (probabilities).

    beta_t, alpha_bar_s, alpha_bar_t: float[B] (one time per graph).
    """
    def dist(probs, z_t, m):
        Qt = transitions.step_matrix(beta_t, m)
        Qsb = transitions.cumulative_matrix(alpha_bar_s, m)
        Qtb = transitions.cumulative_matrix(alpha_bar_t, m)
        return posterior.denoising_distribution(probs, z_t, Qt, Qsb, Qtb)

    return noise.sample_graph(key, dist(probs_X0, X_t, x_marginals), dist(probs_E0, E_t, e_marginals), node_mask)
