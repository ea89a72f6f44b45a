"""Graph autoencoder of the EGNN benchmark: a message-passing encoder and a distance decoder.

Satorras, Hoogeboom, Welling, *E(n) Equivariant Graph Neural Networks* (ICML 2021, arXiv
2102.09844), Section 5.3: encode a graph into per-node latents ``z_i``, decode

    A_hat_ij = sigmoid(w ||z_i - z_j||^2 + b),    w initialized -0.1, b initialized 1.

* :class:`sympe_jax.nn.mpnn.MPNNEncoder`: S_n-equivariant message passing on a padded
  ``jraph.GraphsTuple`` (through :mod:`sympe_jax.graphs`), sum aggregation (as expressive as 1-WL).
* :class:`DistanceDecoder`: the decoder above, on dense per-graph latents, returning logits.
* :class:`GraphAutoencoder`: encoder -> :func:`sympe_jax.graphs.nodes_to_dense` -> decoder,
  with optional symmetry-breaking channels at the encoder input (``encoder_pe [N, k]``) and/or
  at the decoder (``decoder_pe [B, n_max, k]``). The encodings themselves (SymPE, noise,
  Laplacian eigenvectors, ...) are computed outside, by the experiment
  (:mod:`experiments.graph_autoencoder.encoding`).
* Loss and metrics on logits: :func:`edge_bce`, :func:`reconstruction_loss`,
  :func:`edge_error_and_f1`, :func:`summarize_edge_counts`.

Padding: graphs must be padded with :func:`sympe_jax.graphs.pad` (as ``GraphBatcher`` does);
the masks of :mod:`sympe_jax.graphs` take the last graph of a batch as padding. Padding edges
are masked out of every aggregation and padding nodes never send to real nodes, so real
graphs' latents and logits do not depend on the padding (tested). Latents of padding nodes
are set to 0. Dense outputs carry a pair mask: off-diagonal pairs of real nodes.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from sympe_jax import graphs
from sympe_jax.nn.mpnn import MPNNEncoder

__all__ = [
    "MASKED_LOGIT",
    "DistanceDecoder",
    "GraphAutoencoder",
    "graph_autoencoder",
    "pair_mask",
    "edge_bce",
    "reconstruction_loss",
    "edge_error_and_f1",
    "summarize_edge_counts",
]

MASKED_LOGIT = -1.0e4
"""Logit returned for masked pairs (diagonal, padding): sigmoid 0, "no edge" at threshold 0."""


def pair_mask(mask: jax.Array) -> jax.Array:
    """bool[..., n, n]: pairs (i, j) of real nodes with i != j, from a node mask bool[..., n]."""
    mask = jnp.asarray(mask, bool)
    n = mask.shape[-1]
    return mask[..., :, None] & mask[..., None, :] & ~jnp.eye(n, dtype=bool)


class DistanceDecoder(nn.Module):
    """``logit_ij = w ||z_i - z_j||^2 + b`` on dense per-graph latents (EGNN's decoder).

    Attributes:
      w_init, b_init: initial values of the scalar parameters ``w`` and ``b``.
    """

    w_init: float = -0.1
    b_init: float = 1.0

    @nn.compact
    def __call__(self, z: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Edge logits.

        Args:
          z: float[B, n_max, d] latents.
          mask: bool[B, n_max], True for real nodes.
        Returns:
          logits float[B, n_max, n_max], equal to :data:`MASKED_LOGIT` where the pair mask is
          False, and the pair mask bool[B, n_max, n_max] (real i != j). Use the pair mask in
          the loss and metrics (:func:`edge_bce`, :func:`edge_error_and_f1`).
        """
        z = jnp.asarray(z)
        if z.ndim != 3:
            raise ValueError(f"z must have shape [B, n_max, d], got {z.shape}")
        if jnp.shape(mask) != z.shape[:2]:
            raise ValueError(f"mask must have shape {z.shape[:2]}, got {jnp.shape(mask)}")
        w = self.param("w", nn.initializers.constant(self.w_init), (), jnp.float32)
        b = self.param("b", nn.initializers.constant(self.b_init), (), jnp.float32)
        sq_dist = jnp.sum(jnp.square(z[:, :, None, :] - z[:, None, :, :]), axis=-1)
        pairs = pair_mask(mask)
        return jnp.where(pairs, w * sq_dist + b, MASKED_LOGIT), pairs


class _PEProjection(nn.Module):
    """``z + Dense(d, no bias)(pe)``: decoder-side encoding channels mixed into the latents."""

    @nn.compact
    def __call__(self, z: jax.Array, pe: jax.Array) -> jax.Array:
        return z + nn.Dense(z.shape[-1], use_bias=False, name="proj")(pe)


class GraphAutoencoder(nn.Module):
    """Encoder on the graph, dense latents, decoder: ``GraphsTuple -> edge logits``.

    Symmetry-breaking channels enter at either or both of two points (computed outside):

    * ``encoder_pe`` float[N, k]: concatenated to the node input, ``x = [graph.nodes, pe]``
      (``graph.nodes`` is ones [N, 1] from ``GraphBatcher``; ``None`` means ones);
    * ``decoder_pe`` float[B, n_max, k]: mixed into the dense latents before the distance by a
      learned linear map, ``z'_i = z_i + W pe_i`` (``W`` of shape [k, latent], no bias; the
      latent width and the decoder are unchanged, and ``W`` learns the scale of fixed
      encodings such as Laplacian eigenvectors).

    Either may have zero width (k = 0: nothing added). Parameters are created for the entry
    points used at ``init``: initialize with the same ``encoder_pe``/``decoder_pe`` widths as
    used later.

    Attributes:
      encoder: a module ``(graph, node_features [N, c]) -> z [N, d]`` (e.g. :class:`MPNNEncoder`).
      decoder: a module ``(z [B, n_max, d], mask [B, n_max]) -> (logits, pair_mask)``
        (e.g. :class:`DistanceDecoder`).
      n_max: dense block size (largest graph).
    """

    encoder: nn.Module
    decoder: nn.Module
    n_max: int

    def setup(self):
        self.decoder_pe_projection = _PEProjection()

    def encode(self, graph: graphs.GraphsTuple, encoder_pe: jax.Array | None = None) -> jax.Array:
        """Node latents float[N, d] (0 on padding nodes)."""
        leaves = jax.tree_util.tree_leaves(graph.nodes)
        n = leaves[0].shape[0] if leaves else None
        if graph.nodes is None:
            if encoder_pe is None:
                raise ValueError("graph.nodes is None and no encoder_pe: cannot tell the number of node slots")
            x = jnp.ones((jnp.shape(encoder_pe)[0], 1), jnp.float32)
        else:
            x = jnp.asarray(graph.nodes, jnp.float32)
            if x.ndim == 1:
                x = x[:, None]
        if encoder_pe is not None:
            pe = jnp.asarray(encoder_pe)
            if pe.ndim != 2 or (n is not None and pe.shape[0] != n):
                raise ValueError(f"encoder_pe must have shape [{n}, k] (one row per node slot), got {pe.shape}")
            if pe.shape[1]:
                x = jnp.concatenate([x, pe.astype(x.dtype)], axis=-1)
        return self.encoder(graph, x)

    def to_dense(self, graph: graphs.GraphsTuple, z: jax.Array,
                 num_graphs: int | None = None) -> tuple[jax.Array, jax.Array]:
        """Node latents [N, d] -> dense latents [B, n_max, d] and node mask bool[B, n_max]."""
        return graphs.nodes_to_dense(graph, z, self.n_max, num_graphs)

    def decode(self, z: jax.Array, mask: jax.Array,
               decoder_pe: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Dense latents [B, n_max, d] (+ decoder_pe [B, n_max, k]) -> (logits, pair mask)."""
        if decoder_pe is not None:
            pe = jnp.asarray(decoder_pe)
            if pe.ndim != 3 or pe.shape[:2] != z.shape[:2]:
                raise ValueError(f"decoder_pe must have shape [{z.shape[0]}, {z.shape[1]}, k], got {pe.shape}")
            if pe.shape[2]:
                z = self.decoder_pe_projection(z, pe.astype(z.dtype))
        return self.decoder(z, mask)

    def __call__(self, graph: graphs.GraphsTuple, encoder_pe: jax.Array | None = None,
                 decoder_pe: jax.Array | None = None,
                 num_graphs: int | None = None) -> tuple[jax.Array, jax.Array]:
        """Edge logits of a padded batch.

        Args:
          graph: batch padded with ``graphs.pad`` (e.g. ``Batch.graph``).
          encoder_pe: optional float[N, k] node channels for the encoder.
          decoder_pe: optional float[B, n_max, k] dense channels for the decoder.
          num_graphs: static number B of leading graph slots to decode. Default:
            ``decoder_pe.shape[0]`` if given, else every graph slot of ``graph`` (including
            the padding graph, whose block is fully masked). With ``GraphBatcher`` pass
            ``batch.adjacency.shape[0]`` (= batch_size) to match the targets.
        Returns:
          logits float[B, n_max, n_max] (:data:`MASKED_LOGIT` on masked pairs) and the pair
          mask bool[B, n_max, n_max].
        """
        if num_graphs is None and decoder_pe is not None:
            num_graphs = jnp.shape(decoder_pe)[0]
        z = self.encode(graph, encoder_pe)
        z_dense, mask = self.to_dense(graph, z, num_graphs)
        return self.decode(z_dense, mask, decoder_pe)


def graph_autoencoder(n_max: int, hidden: int = 64, latent: int = 8, num_layers: int = 4,
                      aggregation_norm: float = 1.0) -> GraphAutoencoder:
    """The benchmark's autoencoder: :class:`MPNNEncoder` + :class:`DistanceDecoder`."""
    return GraphAutoencoder(
        encoder=MPNNEncoder(hidden=hidden, latent=latent, num_layers=num_layers, aggregation_norm=aggregation_norm),
        decoder=DistanceDecoder(), n_max=n_max)


# ----------------------------------------------------------------------------- loss and metrics


def _check_pairs(logits: jax.Array, adjacency: jax.Array, pairs: jax.Array) -> None:
    if not (jnp.shape(logits) == jnp.shape(adjacency) == jnp.shape(pairs)):
        raise ValueError(f"logits {jnp.shape(logits)}, adjacency {jnp.shape(adjacency)} and pair mask "
                         f"{jnp.shape(pairs)} must have the same shape [B, n_max, n_max] (pass "
                         "num_graphs=batch_size to GraphAutoencoder to drop the padding graph)")


def edge_bce(logits: jax.Array, adjacency: jax.Array, pairs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Summed binary cross-entropy over masked pairs, and the number of pairs.

    Uses ``optax.sigmoid_binary_cross_entropy`` on logits (stable for large |logits|).

    Args:
      logits: float[B, n, n]; adjacency: 0/1 targets [B, n, n]; pairs: bool[B, n, n].
    Returns:
      (float[] sum of BCE over pairs, int32[] number of pairs): sum both over batches.
    """
    _check_pairs(logits, adjacency, pairs)
    bce = optax.sigmoid_binary_cross_entropy(logits, jnp.asarray(adjacency, logits.dtype))
    return jnp.sum(jnp.where(pairs, bce, 0.0)), jnp.sum(pairs, dtype=jnp.int32)


def reconstruction_loss(logits: jax.Array, adjacency: jax.Array, pairs: jax.Array) -> jax.Array:
    """Mean BCE over all off-diagonal real pairs of the batch (each pair weighs the same)."""
    total, count = edge_bce(logits, adjacency, pairs)
    return total / jnp.maximum(count, 1)


def edge_error_and_f1(logits: jax.Array, adjacency: jax.Array,
                      pairs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Counts for edge error and F1 at threshold 0.5 (logit > 0), over masked pairs.

    Args:
      logits: float[B, n, n]; adjacency: 0/1 targets [B, n, n]; pairs: bool[B, n, n]
        (off-diagonal pairs of real nodes: both (i, j) and (j, i) count, so the pairs of a
        graph number n (n - 1)).
    Returns:
      int32 scalars (num_errors, num_pairs, tp, fp, fn), to be summed over batches and passed
      to :func:`summarize_edge_counts`.
    """
    _check_pairs(logits, adjacency, pairs)
    pred = logits > 0
    true = jnp.asarray(adjacency) > 0.5

    def count(x):
        return jnp.sum(x & pairs, dtype=jnp.int32)

    num_pairs = jnp.sum(pairs, dtype=jnp.int32)
    return count(pred != true), num_pairs, count(pred & true), count(pred & ~true), count(~pred & true)


def summarize_edge_counts(num_errors, num_pairs, tp, fp, fn) -> dict[str, float]:
    """Host-side: ``{"edge_error_pct": 100 errors / pairs, "f1": 2 tp / (2 tp + fp + fn)}``.

    F1 is 1.0 when there are no true and no predicted edges.
    """
    num_errors, num_pairs, tp, fp, fn = (int(x) for x in (num_errors, num_pairs, tp, fp, fn))
    if num_pairs <= 0:
        raise ValueError("no pairs counted: empty evaluation")
    denom = 2 * tp + fp + fn
    return {"edge_error_pct": 100.0 * num_errors / num_pairs, "f1": 1.0 if denom == 0 else 2.0 * tp / denom}
