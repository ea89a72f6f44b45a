"""Graph autoencoder of the EGNN benchmark: a message-passing encoder and a distance decoder.

Satorras, Hoogeboom, Welling, *E(n) Equivariant Graph Neural Networks* (ICML 2021, arXiv
2102.09844), Section 5.3: encode a graph into per-node latents ``z_i``, decode

    A_hat_ij = sigmoid(w ||z_i - z_j||^2 + b),    w initialized -0.1, b initialized 1.

* :class:`MPNNEncoder`: S_n-equivariant message passing on a padded ``jraph.GraphsTuple``
  (through :mod:`sympe_jax.graphs`), sum aggregation (as expressive as 1-WL).
* :class:`DistanceDecoder`: the decoder above, on dense per-graph latents, returning logits.
* :class:`GraphAutoencoder`: encoder -> :func:`sympe_jax.graphs.nodes_to_dense` -> decoder,
  with optional symmetry-breaking channels at the encoder input (``encoder_pe [N, k]``) and/or
  at the decoder (``decoder_pe [B, n_max, k]``). The encodings themselves (SymPE, noise,
  Laplacian eigenvectors, ...) are computed outside, by the experiment.
* Loss and metrics on logits: :func:`edge_bce`, :func:`reconstruction_loss`,
  :func:`edge_error_and_f1`, :func:`summarize_edge_counts`.

Padding: graphs must be padded with :func:`sympe_jax.graphs.pad` (as ``GraphBatcher`` does);
the masks of :mod:`sympe_jax.graphs` take the last graph of a batch as padding. Padding edges
are masked out of every aggregation and padding nodes never send to real nodes, so real
graphs' latents and logits do not depend on the padding (tested). Latents of padding nodes
are set to 0. Dense outputs carry a pair mask: off-diagonal pairs of real nodes.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sympe_jax import checks, graphs

__all__ = [
    "MASKED_LOGIT",
    "MLP",
    "EdgeMLP",
    "NodeScoreHead",
    "MPNNEncoder",
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


class MLP(nn.Module):
    """Dense -> activation -> ... -> Dense, ``[..., c] -> [..., features[-1]]``."""

    features: tuple[int, ...]
    activation: Callable[[jax.Array], jax.Array] = nn.silu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, f in enumerate(self.features):
            x = nn.Dense(f)(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x


class EdgeMLP(nn.Module):
    """``MLP([u[receivers], u[senders], e])`` per edge, ``[N, c] -> [E, features[-1]]``.

    The same function and parameters as :class:`MLP` on the concatenated edge input (its first
    kernel ``[2c + c_e, f]`` is split into receiver, sender and edge blocks), but the first layer
    is applied to the N nodes before the gather, ``u W_r`` and ``u W_s``, instead of to the E
    concatenated edge rows: about ``E / N`` times fewer multiply-adds in that layer, which
    dominates a message-passing step when E >> N (e.g. all pairs of a complete message graph).
    """

    features: tuple[int, ...]
    activation: Callable[[jax.Array], jax.Array] = nn.silu

    @nn.compact
    def __call__(self, u: jax.Array, receivers: jax.Array, senders: jax.Array,
                 edges: jax.Array | None = None) -> jax.Array:
        """Messages float[E, features[-1]] from node states ``u`` float[N, c], int[E] indices
        and optional edge features float[E, c_e]."""
        if not self.features:
            raise ValueError("EdgeMLP needs at least one layer (features is empty)")
        if u.ndim != 2:
            raise ValueError(f"node states must have shape [N, c], got {u.shape}")
        if edges is not None and (edges.ndim != 2 or edges.shape[0] != receivers.shape[0]):
            raise ValueError(f"edge features (graph.edges) must have shape [E, c] with E = {receivers.shape[0]} "
                             f"(one row per edge), got {edges.shape}")
        c = u.shape[-1]
        c_in = 2 * c + (0 if edges is None else edges.shape[-1])
        first = _Kernel(c_in, self.features[0], name="Dense_0")()
        kernel, bias = first["kernel"], first["bias"]
        x = (u @ kernel[:c])[receivers] + (u @ kernel[c:2 * c])[senders] + bias
        if edges is not None:
            x = x + edges @ kernel[2 * c:]
        for i, f in enumerate(self.features[1:], start=1):
            x = nn.Dense(f, name=f"Dense_{i}")(self.activation(x))
        return x


class NodeScoreHead(nn.Module):
    """A learned, permutation-equivariant node score for SymPE's sort: ``base + MLP(x)``.

    The same MLP scores every node from its own features ``x`` float[n, c] (exactly equivariant
    node features, e.g. ``features.structural_node_features``), so permuting the nodes permutes
    the scores, and nodes with equal features (automorphic nodes) get equal scores up to
    rounding. The last layer starts at zero: at initialization the score is ``base`` float[n]
    (e.g. the fixed ``features.invariant_node_scores``), and training moves it only as far as
    the loss asks. Sorting passes no gradient; train it through
    ``encodings.straight_through_sympe``. Returns float[n].
    """

    hidden: tuple[int, ...] = (32, 32)
    activation: Callable[[jax.Array], jax.Array] = nn.silu

    @nn.compact
    def __call__(self, x: jax.Array, base: jax.Array) -> jax.Array:
        if x.ndim != 2 or base.shape != x.shape[:1]:
            raise ValueError(f"NodeScoreHead needs node features [n, c] and a base score [n], got {x.shape} and {base.shape}")
        h = MLP(self.hidden, self.activation)(x) if self.hidden else x
        delta = nn.Dense(1, kernel_init=nn.initializers.zeros_init())(self.activation(h) if self.hidden else h)
        return base + delta[:, 0]


class _Kernel(nn.Module):
    """The parameters of an ``nn.Dense(features)`` on ``c_in`` inputs (same names and initializers)."""

    c_in: int
    features: int

    @nn.compact
    def __call__(self) -> dict[str, jax.Array]:
        return {"kernel": self.param("kernel", nn.initializers.lecun_normal(), (self.c_in, self.features)),
                "bias": self.param("bias", nn.initializers.zeros_init(), (self.features,))}


class MPNNEncoder(nn.Module):
    """S_n-equivariant message-passing encoder on a padded ``GraphsTuple``.

    Per layer (pre-norm residual; ``u = LayerNorm(h)``), for every edge ``j -> i``::

        m_ij = MLP_m([u_i, u_j, e_ij])
        h_i  = h_i + MLP_h([u_i, sum_j m_ij / aggregation_norm])

    after an input embedding ``h = Dense(hidden)(x)``; the output is
    ``z = Dense(latent)(LayerNorm(h))``, set to 0 on padding nodes. Sum aggregation keeps the
    encoder as expressive as 1-WL colour refinement; ``aggregation_norm`` is a fixed divisor
    for stability (1 = plain sum).
    ``e_ij`` are the edge features ``graph.edges`` float[E, c] when present (e.g. the
    adjacency entry of every pair of a complete message graph, ``graphs.from_adjacency(...,
    complete=True)``, as in the EGNN benchmark) and are omitted when ``graph.edges`` is None.

    Attributes:
      hidden: width of node states and messages.
      latent: per-node latent dimension.
      num_layers: message-passing layers.
      aggregation_norm: constant dividing the summed messages.
    """

    hidden: int = 64
    latent: int = 8
    num_layers: int = 4
    aggregation_norm: float = 1.0

    @nn.compact
    def __call__(self, graph: graphs.GraphsTuple, node_features: jax.Array) -> jax.Array:
        """Node latents.

        Args:
          graph: padded batch (``graphs.pad``); only senders, receivers, edges (if not None),
            n_node, n_edge and the number of node slots N are used (``graph.nodes`` is not read
            as input).
          node_features: float[N, c] per node slot.
        Returns:
          float[N, latent]; rows of padding nodes are 0.
        """
        x = jnp.asarray(node_features)
        if x.ndim != 2:
            raise ValueError(f"node_features must have shape [N, c], got {x.shape}")
        n = x.shape[0]
        if graph.nodes is not None and jax.tree_util.tree_leaves(graph.nodes)[0].shape[0] != n:
            raise ValueError(f"node_features has {n} rows but the graph has "
                             f"{jax.tree_util.tree_leaves(graph.nodes)[0].shape[0]} node slots")
        if graph.senders.shape != graph.receivers.shape or graph.senders.ndim != 1:
            raise ValueError(f"senders {graph.senders.shape} and receivers {graph.receivers.shape} "
                             "must be 1-d arrays of equal length")
        if self.aggregation_norm <= 0:
            raise ValueError(f"aggregation_norm must be positive, got {self.aggregation_norm}")
        _check_padded_batch(graph, n)
        # N node slots for the masks; jnp n_node so that a NumPy batch closed over under jit works
        graph = graph._replace(nodes=x, n_node=jnp.asarray(graph.n_node), n_edge=jnp.asarray(graph.n_edge))
        real = graphs.node_mask(graph)[:, None]
        edge_in = None if graph.edges is None else jnp.asarray(graph.edges, x.dtype)   # shape checked by EdgeMLP
        h = nn.Dense(self.hidden, name="embed")(x)
        for layer in range(self.num_layers):
            u = nn.LayerNorm(name=f"norm_{layer}")(h)
            messages = EdgeMLP((self.hidden, self.hidden), name=f"message_{layer}")(
                u, graph.receivers, graph.senders, edge_in)
            agg = graphs.aggregate(graph, messages, reduce="sum") / self.aggregation_norm
            h = h + MLP((self.hidden, self.hidden), name=f"update_{layer}")(jnp.concatenate([u, agg], axis=-1))
        z = nn.Dense(self.latent, name="readout")(nn.LayerNorm(name="norm_out")(h))
        return jnp.where(real, z, 0.0)


def _check_padded_batch(graph: graphs.GraphsTuple, n: int) -> None:
    """On concrete arrays (eager calls; under jit the batcher's validation stands), raise for a
    batch that is not a padded batch of simple graphs on ``n`` node slots: counts that do not
    add up, indices out of range (which gathers would clamp silently), self-loops on real edges."""
    if not checks.is_concrete(graph.senders, graph.receivers, graph.n_node, graph.n_edge):
        return
    n_node, n_edge = np.asarray(graph.n_node), np.asarray(graph.n_edge)
    if n_node.sum() != n:
        raise ValueError(f"graph.n_node sums to {n_node.sum()} but there are {n} node slots")
    senders, receivers = np.asarray(graph.senders), np.asarray(graph.receivers)
    if n_edge.sum() != senders.shape[0]:
        raise ValueError(f"graph.n_edge sums to {n_edge.sum()} but there are {senders.shape[0]} edges")
    graphs.validate_edges(n, senders, receivers, allow_self_loops=True)   # the padding graph's edges loop
    # jraph's padding rule, in NumPy (this may run inside a trace of other arrays): the first
    # padding graph is the last one with nodes, and it holds every padding edge.
    num_padding_graphs = int(np.argmin(n_node[::-1] == 0)) + 1
    num_real = senders.shape[0] - int(n_edge[-num_padding_graphs])
    graphs.validate_edges(n, senders[:num_real], receivers[:num_real])


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
