"""A reusable S_n-equivariant message-passing network on padded ``jraph.GraphsTuple`` batches.

* :class:`MLP`: Dense -> activation -> ... -> Dense.
* :class:`EdgeMLP`: the MLP of the concatenated edge input ``[u_i, u_j, e_ij]``, with its first
  layer applied per node before the gather (the same parameters and function, fewer FLOPs).
* :class:`MPNNEncoder`: message passing on a padded ``GraphsTuple`` (through
  :mod:`sympe_jax.graphs`), sum aggregation (as expressive as 1-WL), per-node outputs.

Padding: graphs must be padded with :func:`sympe_jax.graphs.pad`; the masks of
:mod:`sympe_jax.graphs` take the last graph of a batch as padding. Padding edges are masked out
of every aggregation and padding nodes never send to real nodes, so real graphs' outputs do not
depend on the padding (tested). Outputs of padding nodes are set to 0.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sympe_jax import checks, graphs

__all__ = [
    "MLP",
    "EdgeMLP",
    "MPNNEncoder",
]


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
    """On concrete arrays (eager calls; under jit ``graphs.aggregate`` poisons an invalid batch),
    raise for a batch that is not a padded batch (:func:`sympe_jax.graphs.validate_batch`) of
    simple graphs on ``n`` node slots: no self-loop on a real edge."""
    if not checks.is_concrete(graph.senders, graph.receivers, graph.n_node, graph.n_edge):
        return
    graphs.validate_batch(graph._replace(nodes=np.zeros((n, 0), np.float32)))
    # jraph's padding rule, in NumPy (this may run inside a trace of other arrays): the padding
    # graph is the last one with nodes, and it holds every padding edge, last.
    n_node, n_edge = np.asarray(graph.n_node), np.asarray(graph.n_edge)
    num_padding_graphs = int(np.argmin(n_node[::-1] == 0)) + 1
    num_real = int(np.asarray(graph.senders).shape[0] - n_edge[-num_padding_graphs])
    graphs.validate_edges(n, np.asarray(graph.senders)[:num_real], np.asarray(graph.receivers)[:num_real])
