"""The training loss ``CE_X + lambda_E CE_E`` (``TrainLossDiscrete``, ``digress-qm9.md`` 3).

Each cross-entropy is summed over the real rows of the whole batch and divided by their number
(an average over rows, not per graph). Real rows: nodes with ``node_mask``; pairs (i, j),
i != j, of real nodes, counted in both orientations. The reference selects rows whose one-hot
target is not all-zero, which is the same set under the dense convention (padding and the
diagonal are all-zero); here the masks are explicit, so the loss does not depend on what a
caller stores on the diagonal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.digress_qm9.diffusion.dense import pair_mask

__all__ = ["masked_cross_entropy", "cross_entropy_loss"]


def masked_cross_entropy(logits: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over rows where ``mask`` of ``-sum_k target_k log softmax(logits)_k``; 0 if none."""
    nll = -jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    mask = mask.astype(nll.dtype)
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def cross_entropy_loss(X_logits: jax.Array, E_logits: jax.Array, X: jax.Array, E: jax.Array,
                       node_mask: jax.Array, lambda_E: float = 5.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(CE_X + lambda_E CE_E, {"ce_X": ..., "ce_E": ...})`` of logits against one-hot X, E."""
    ce_X = masked_cross_entropy(X_logits, X, node_mask)
    ce_E = masked_cross_entropy(E_logits, E, pair_mask(node_mask))
    return ce_X + lambda_E * ce_E, {"ce_X": ce_X, "ce_E": ce_E}
