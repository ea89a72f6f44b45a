"""Symmetry breaking for jraph models: padded ``GraphsTuple`` batches in, node channels out.

Every function here takes a batch padded with :func:`sympe_jax.graphs.pad` (jraph's
convention: the last graph holds the padding) and returns per-node values aligned with
``graph.nodes``, ready to concatenate to them; padding nodes get zeros. The batch is checked
by :func:`sympe_jax.graphs.validate_batch` (inside the dense conversions every path goes
through): an invalid one (counts that do not add up, edges out of range or across graphs, an
unpadded batch, a graph larger than ``n_max``) raises ``ValueError`` eagerly and gives NaN
channels under ``jit``. Underneath, the nodes
of each graph are laid out in dense blocks of ``n_max`` slots and the functional core
(:mod:`sympe_jax.encodings`) runs on those, one independent sample per graph::

    enc = sp.encodings.graph_encoding("sympe", n_max=32, features=8)
    pe = sp.jraph.encode(enc, key, params, graph, n_max=32)          # float[N, 8]
    graph = graph._replace(nodes=jnp.concatenate([graph.nodes, pe], -1))

Memory per graph: O(n_max) for the sort, the gather and user-supplied scores; the default
SymPE score (:func:`node_scores`) and the ``"laplacian"`` encoding build the dense adjacency
block, O(n_max^2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sympe_jax import encodings, features, graphs

__all__ = ["node_scores", "structural_node_features", "encode"]


def _dense_mask(graph: graphs.GraphsTuple, n_max: int) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(graph.nodes)
    n = leaves[0].shape[0] if leaves else int(jnp.sum(jnp.asarray(graph.n_node)))
    return graphs.nodes_to_dense(graph, jnp.zeros((n,), jnp.float32), n_max)[1]


def _per_graph_dense(fn, graph: graphs.GraphsTuple, n_max: int) -> jax.Array:
    adjacency, mask = graphs.to_dense(graph, n_max)
    return graphs.dense_to_nodes(graph, jax.vmap(fn)(adjacency, mask))


def node_scores(graph: graphs.GraphsTuple, n_max: int) -> jax.Array:
    """:func:`sympe_jax.features.invariant_node_scores` of every graph: float[N].

    Exactly equivariant (automorphic nodes tie up to rounding). Cost: a dense adjacency block
    per graph, O(n_max^2) memory and O(n_max^3) time.
    """
    return _per_graph_dense(features.invariant_node_scores, graph, n_max)


def structural_node_features(graph: graphs.GraphsTuple, n_max: int) -> jax.Array:
    """:func:`sympe_jax.features.structural_node_features` of every graph: float[N, 9].

    The inputs of :func:`node_scores` (random-walk return probabilities for 1..8 steps, the
    degree): what a learned scorer reads. Cost as :func:`node_scores`.
    """
    return _per_graph_dense(features.structural_node_features, graph, n_max)


def encode(encoding: encodings.Encoding, key: jax.Array | None, params: encodings.Params,
           graph: graphs.GraphsTuple, *, n_max: int, scores: jax.Array | None = None,
           ranks: jax.Array | None = None) -> jax.Array:
    """The channels of a graph ``encoding`` for every node of a padded batch: float[N, features].

    Args:
      encoding: from :func:`sympe_jax.encodings.graph_encoding`.
      key: PRNG key (split over the graphs inside); may be None for encodings that draw nothing.
      params: ``encoding.init(key)`` (possibly trained).
      graph: a padded batch; every real graph has at most ``n_max`` nodes.
      n_max: static slots per graph (at most the SymPE table's rows).
      scores: optional float[N] sort scores (e.g. from a learned scorer); default: the
        encoding's own (for SymPE, :func:`node_scores`).
      ranks: optional int[G, n_max] supplied ``g~`` per graph slot (the ``"exact"`` encoding).

    Same key, same channels; permuting the nodes of a graph permutes its channels in law.

    Raises:
      ValueError: eagerly, for a batch that fails :func:`sympe_jax.graphs.validate_batch` with
        ``n_max``; under ``jit`` the channels are NaN instead.
    """
    if key is None:
        if encoding.random:
            raise ValueError("this encoding draws random numbers: pass a PRNG key")
        key = jax.random.key(0)
    if scores is not None:
        scores, mask = graphs.nodes_to_dense(graph, jnp.asarray(scores), n_max)
        adjacency = graphs.to_dense(graph, n_max)[0] if encoding.needs_adjacency else None
    elif encoding.needs_adjacency or encoding.uses_scores:
        adjacency, mask = graphs.to_dense(graph, n_max)
    else:
        adjacency, mask = None, _dense_mask(graph, n_max)
    dense = encoding.apply(key, params, adjacency, mask, scores=scores, ranks=ranks)
    return graphs.dense_to_nodes(graph, dense)
