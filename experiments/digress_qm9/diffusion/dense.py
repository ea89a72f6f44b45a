"""Dense graph batches for discrete diffusion: the container, masks, one-hot encode/decode.

Convention (the reference's ``utils.to_dense`` + ``encode_no_edge``; ``digress-qm9.md`` 1):

* ``X`` float[B, n, dx]: one-hot node classes; rows of padded nodes are all-zero.
* ``E`` float[B, n, n, de]: one-hot edge classes, symmetric, class 0 = no bond; the diagonal
  and every pair touching a padded node are all-zero (not class 0).
* ``node_mask`` bool[B, n]: True for real nodes. Real nodes need not come first, but the
  samplers of this package produce prefixes.

The same convention holds for every noisy graph ``(X_t, E_t)`` in this package (the reference
puts class 0 on the diagonal of its noisy graphs except at ``z_T``; we keep it all-zero
everywhere, which is what its clean data and prior samples have).

Integer graphs (sampler output): ``X`` int32[B, n] with -1 on padded nodes; ``E`` int32[B, n, n]
with -1 on pairs touching a padded node and 0 ("no bond") on the diagonal of real nodes, as the
reference's ``PlaceHolder.mask(collapse=True)``. ``jax.nn.one_hot`` of -1 is all-zero, so
:func:`encode` of :func:`decode` gives back the dense convention.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["DenseGraphs", "pair_mask", "encode", "decode", "check_dense", "permute"]


class DenseGraphs(NamedTuple):
    """A padded batch of graphs in the dense one-hot convention above."""

    X: jax.Array          # float[B, n, dx]
    E: jax.Array          # float[B, n, n, de]
    node_mask: jax.Array  # bool[B, n]


def pair_mask(node_mask: jax.Array, diagonal: bool = False) -> jax.Array:
    """bool[B, n, n]: pairs of real nodes; the diagonal only if ``diagonal``."""
    m = node_mask[..., :, None] & node_mask[..., None, :]
    if not diagonal:
        n = node_mask.shape[-1]
        m = m & ~jnp.eye(n, dtype=bool)
    return m


def encode(X_idx: jax.Array, E_idx: jax.Array, node_mask: jax.Array, dx: int, de: int,
           dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Class indices -> dense one-hot ``(X [B,n,dx], E [B,n,n,de])``, masked, zero diagonal.

    A negative index on a real node or pair (-1: a poisoned draw) gives a NaN row, never a
    silent all-zero one; padding gives zeros.
    """
    pairs = pair_mask(node_mask)
    X = jnp.where((X_idx < 0)[..., None], jnp.nan, jax.nn.one_hot(X_idx, dx, dtype=dtype))
    E = jnp.where((E_idx < 0)[..., None], jnp.nan, jax.nn.one_hot(E_idx, de, dtype=dtype))
    X = jnp.where(node_mask[..., None], X, 0).astype(dtype)
    E = jnp.where(pairs[..., None], E, 0).astype(dtype)
    return X, E


def decode(X: jax.Array, E: jax.Array, node_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Dense one-hot -> int32 ``(X [B,n], E [B,n,n])``: -1 on padding, 0 on the diagonal.

    A real node or pair whose row holds a NaN decodes to -1 as well (a poisoned sample), which
    ``molecules.evaluate`` rejects with an error naming the graphs."""
    X_idx = jnp.where(node_mask & ~jnp.any(jnp.isnan(X), -1), jnp.argmax(X, -1), -1).astype(jnp.int32)
    real_pairs = pair_mask(node_mask, diagonal=True)
    E_idx = jnp.where(real_pairs & ~jnp.any(jnp.isnan(E), -1), jnp.argmax(E, -1), -1).astype(jnp.int32)
    return X_idx, E_idx


def check_dense(X: jax.Array, E: jax.Array, node_mask: jax.Array) -> None:
    """Static shape/dtype checks of a dense batch, with clear errors."""
    if X.ndim != 3 or E.ndim != 4 or node_mask.ndim != 2:
        raise ValueError(f"expected X [B, n, dx], E [B, n, n, de], node_mask [B, n]; got {X.shape}, {E.shape}, "
                         f"{node_mask.shape}")
    B, n = node_mask.shape
    if X.shape[:2] != (B, n) or E.shape[:3] != (B, n, n):
        raise ValueError(f"inconsistent shapes X {X.shape}, E {E.shape}, node_mask {node_mask.shape}")
    if node_mask.dtype != jnp.bool_:
        raise TypeError(f"node_mask must be boolean, got {node_mask.dtype}")
    if not (jnp.issubdtype(X.dtype, jnp.floating) and jnp.issubdtype(E.dtype, jnp.floating)):
        raise TypeError(f"X and E must be one-hot float arrays, got {X.dtype} and {E.dtype}")


def permute(perm: jax.Array, *arrays: jax.Array) -> tuple[jax.Array, ...]:
    """Every array's nodes moved by ``perm`` int32[B, n] (the project's convention: node i of graph
    b moves to position ``perm[b, i]``). Arrays of rank <= 3 are node arrays ``[B, n, ...]``
    (node_mask, X); arrays of rank 4 or more with axes 1 and 2 of length n are pair arrays
    ``[B, n, n, ...]`` (E). A ``perm`` that fixes the padded nodes keeps the padding last."""
    inv = jnp.argsort(perm, axis=-1)           # inv[b, j]: the node that moves to position j
    B, n = perm.shape
    out = []
    for a in arrays:
        if a.shape[:2] != (B, n):
            raise ValueError(f"permute: array of shape {a.shape} does not start with {(B, n)}")
        a = jnp.take_along_axis(a, inv.reshape((B, n) + (1,) * (a.ndim - 2)), axis=1)
        if a.ndim >= 4 and a.shape[2] == n:
            a = jnp.take_along_axis(a, inv.reshape((B, 1, n) + (1,) * (a.ndim - 3)), axis=2)
        out.append(a)
    return tuple(out)
