"""The one door to jraph: building, batching and padding graphs, masks, message passing.

Every use of ``jraph`` in ``sympe_jax`` goes through this module. jraph's last release (2022)
still works on current JAX for what is used here (``GraphsTuple``, ``batch_np``,
``pad_with_graphs``, the ``get_*_padding_mask`` helpers, ``segment_*``); its
``zero_out_padding``, ``with_zero_out_padding_outputs`` and ``get_fully_connected_graph`` call
functions removed from JAX and are never used. Each jraph function used here is covered by
``tests/test_graphs.py``, so a future breakage is one file to fix.

Shapes: a batch of G graphs (the last ones possibly padding) with N node slots and E edge slots
has ``nodes [N, ...]``, ``senders/receivers int32[E]``, ``n_node/n_edge int32[G]``. Undirected
graphs store both directions of every edge.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from sympe_jax import checks

GraphsTuple = jraph.GraphsTuple

__all__ = [
    "GraphsTuple",
    "validate_edges",
    "from_adjacency",
    "batch",
    "pad",
    "node_mask",
    "edge_mask",
    "graph_mask",
    "node_graph_index",
    "local_node_index",
    "to_dense",
    "nodes_to_dense",
    "dense_to_nodes",
    "segment_sum",
    "segment_mean",
    "aggregate",
]


def validate_edges(n: int, senders, receivers, *, allow_self_loops: bool = False) -> None:
    """Raise ``ValueError`` for edge arrays that do not describe a simple graph on n nodes.

    Checks (host-side, on concrete arrays): equal 1-d shapes, integer dtype, indices in
    ``0..n-1``, no self-loops unless allowed.
    """
    senders, receivers = np.asarray(senders), np.asarray(receivers)
    if senders.ndim != 1 or senders.shape != receivers.shape:
        raise ValueError(f"senders {senders.shape} and receivers {receivers.shape} must be 1-d arrays of equal length")
    if senders.size and not (np.issubdtype(senders.dtype, np.integer) and np.issubdtype(receivers.dtype, np.integer)):
        raise TypeError(f"edge indices must be integers, got {senders.dtype} and {receivers.dtype}")
    if senders.size and (min(senders.min(), receivers.min()) < 0 or max(senders.max(), receivers.max()) >= n):
        raise ValueError(f"edge indices must lie in 0..{n - 1} for a graph of {n} nodes")
    if not allow_self_loops and np.any(senders == receivers):
        i = int(senders[np.argmax(senders == receivers)])
        raise ValueError(f"self-loop at node {i}: graphs here are simple (pass allow_self_loops=True to permit)")


def from_adjacency(adj, nodes=None, *, allow_self_loops: bool = False, complete: bool = False) -> GraphsTuple:
    """One graph from a dense 0/1 adjacency matrix (both directions of every edge kept).

    Args:
      adj: [n, n] array, symmetric for undirected graphs; nonzero means an edge.
      nodes: optional node features [n, ...]; defaults to ones [n, 1].
      complete: if True, message-passing edges are *all* ordered pairs ``i != j`` (``n (n - 1)``
        of them, row-major) and ``edges`` is float32[n (n - 1), 1], the adjacency entry of each
        pair (1 edge, 0 non-edge): the fully connected graph with edge attributes of the EGNN
        autoencoder benchmark. Self-loops are rejected.
    Returns:
      A ``GraphsTuple`` with one graph, edges in row-major order of ``adj`` (``edges`` None
      unless ``complete``).
    """
    adj = np.asarray(adj)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, got shape {adj.shape}")
    if not np.all(np.isfinite(adj)):
        raise ValueError("adjacency contains NaN or Inf")
    n = adj.shape[0]
    senders, receivers = np.nonzero(adj)
    validate_edges(n, senders, receivers, allow_self_loops=allow_self_loops and not complete)
    edges = None
    if complete:
        senders, receivers = np.nonzero(~np.eye(n, dtype=bool))
        edges = (adj[senders, receivers] != 0).astype(np.float32)[:, None]
    if nodes is None:
        nodes = np.ones((n, 1), np.float32)
    elif np.shape(nodes)[0] != n:
        raise ValueError(f"{np.shape(nodes)[0]} node feature rows for a graph of {n} nodes")
    return GraphsTuple(
        nodes=nodes, edges=edges, globals=None,
        senders=senders.astype(np.int32), receivers=receivers.astype(np.int32),
        n_node=np.array([n], np.int32), n_edge=np.array([senders.size], np.int32))


def batch(graphs: Sequence[GraphsTuple]) -> GraphsTuple:
    """Concatenate graphs into one batch (host-side NumPy, ``jraph.batch_np``)."""
    if not graphs:
        raise ValueError("cannot batch an empty list of graphs")
    return jraph.batch_np(list(graphs))


def pad(graph: GraphsTuple, n_node: int, n_edge: int, n_graph: int) -> GraphsTuple:
    """Pad a batch to fixed sizes so one compiled function serves every batch.

    Adds one padding graph holding the padding nodes and edges (``jraph.pad_with_graphs``);
    padding edges connect padding nodes only. Raises ``ValueError`` naming the budget that
    is too small.
    """
    have_nodes, have_edges = int(np.sum(graph.n_node)), int(np.sum(graph.n_edge))
    have_graphs = int(np.shape(graph.n_node)[0])
    if have_nodes >= n_node:
        raise ValueError(f"padding budget too small: {have_nodes} nodes need n_node > {have_nodes}, got {n_node}")
    if have_edges > n_edge:
        raise ValueError(f"padding budget too small: {have_edges} edges need n_edge >= {have_edges}, got {n_edge}")
    if have_graphs >= n_graph:
        raise ValueError(f"padding budget too small: {have_graphs} graphs need n_graph > {have_graphs}, got {n_graph}")
    return jraph.pad_with_graphs(graph, n_node, n_edge, n_graph)


def node_mask(graph: GraphsTuple) -> jax.Array:
    """bool[N]: True for real nodes (False for the padding graph's nodes)."""
    return jraph.get_node_padding_mask(graph)


def edge_mask(graph: GraphsTuple) -> jax.Array:
    """bool[E]: True for real edges."""
    return jraph.get_edge_padding_mask(graph)


def graph_mask(graph: GraphsTuple) -> jax.Array:
    """bool[G]: True for real graphs (the last graph of a padded batch is padding)."""
    return jraph.get_graph_padding_mask(graph)


def _num_nodes(graph: GraphsTuple) -> int:
    leaves = jax.tree_util.tree_leaves(graph.nodes)
    if leaves:
        return leaves[0].shape[0]
    return int(np.sum(graph.n_node))  # needs concrete n_node


def node_graph_index(graph: GraphsTuple) -> jax.Array:
    """int32[N]: the graph each node slot belongs to."""
    n_graph = graph.n_node.shape[0]
    return jnp.repeat(jnp.arange(n_graph, dtype=jnp.int32), graph.n_node,
                      total_repeat_length=_num_nodes(graph))


def local_node_index(graph: GraphsTuple) -> jax.Array:
    """int32[N]: index of each node inside its own graph (0 for the first node of a graph)."""
    seg = node_graph_index(graph)
    offsets = jnp.cumsum(graph.n_node) - graph.n_node
    return (jnp.arange(seg.shape[0], dtype=jnp.int32) - offsets[seg]).astype(jnp.int32)


def to_dense(graph: GraphsTuple, n_max: int, edge_values: jax.Array | None = None,
             num_graphs: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Dense per-graph adjacency and node masks of a padded batch.

    Args:
      graph: a batch padded with :func:`pad` (its last graph is padding); every real graph has
        at most ``n_max`` nodes.
      n_max: static size of the dense blocks.
      edge_values: optional [E, ...] values to scatter instead of 1.
      num_graphs: static number of leading graphs to keep (default: all G graph slots, the
        padding graph giving an all-False block); real graphs must not be dropped.
    Returns:
      adjacency [num_graphs, n_max, n_max, ...] (float32, or the dtype of ``edge_values``;
      padding edges dropped) and mask bool[num_graphs, n_max].
    Raises:
      ValueError: a real graph has more than ``n_max`` nodes, or ``num_graphs`` would drop a
        real graph (eagerly; under ``jit`` a checkify check, see :mod:`sympe_jax.checks`).
        Larger graphs are never truncated silently.
    """
    seg, local, has_slot, num_graphs = _dense_slots(graph, n_max, num_graphs)
    rows = jnp.where(has_slot, seg, num_graphs)  # out of range: dropped
    mask = jnp.zeros((num_graphs, n_max), bool).at[rows, local].set(True, mode="drop")
    senders, receivers = jnp.asarray(graph.senders), jnp.asarray(graph.receivers)
    keep = edge_mask(graph._replace(n_node=jnp.asarray(graph.n_node), n_edge=jnp.asarray(graph.n_edge)))
    keep = keep & has_slot[senders] & has_slot[receivers]
    vals = jnp.ones(senders.shape, jnp.float32) if edge_values is None else jnp.asarray(edge_values)
    vals = jnp.where(keep.reshape(keep.shape + (1,) * (vals.ndim - 1)), vals, 0)
    adj = jnp.zeros((num_graphs, n_max, n_max) + vals.shape[1:], vals.dtype)
    adj = adj.at[jnp.where(keep, seg[senders], num_graphs), local[senders], local[receivers]].add(vals, mode="drop")
    return adj, mask


def _dense_slots(graph: GraphsTuple, n_max: int, num_graphs: int | None) -> tuple[jax.Array, jax.Array, jax.Array, int]:
    """Per node slot: dense row (graph), dense column (local index), whether it has a dense slot."""
    if n_max < 1:
        raise ValueError(f"n_max must be a positive int, got {n_max}")
    # jraph's masks index n_node with a traced count: NumPy n_node closed over under jit fails.
    graph = graph._replace(n_node=jnp.asarray(graph.n_node), n_edge=jnp.asarray(graph.n_edge))
    n_graph = graph.n_node.shape[0]
    num_graphs = n_graph if num_graphs is None else int(num_graphs)
    if not 0 < num_graphs <= n_graph:
        raise ValueError(f"num_graphs must lie in 1..{n_graph} (graphs in the batch), got {num_graphs}")
    real_graph = graph_mask(graph)
    too_big = real_graph & (graph.n_node > n_max)
    checks.check_value(~jnp.any(too_big), "a graph has {} nodes, more than n_max = " + str(n_max),
                       jnp.max(jnp.where(real_graph, graph.n_node, 0)))
    dropped = real_graph & (jnp.arange(n_graph) >= num_graphs)
    checks.check_value(~jnp.any(dropped), "num_graphs = " + str(num_graphs)
                       + " would drop real graphs: the batch has {} real graphs", jnp.sum(real_graph))
    seg = node_graph_index(graph)
    local = local_node_index(graph)
    has_slot = node_mask(graph) & (seg < num_graphs) & (local < n_max)
    return seg, local, has_slot, num_graphs


def nodes_to_dense(graph: GraphsTuple, values: jax.Array, n_max: int,
                   num_graphs: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Scatter per-node values of a padded batch into dense per-graph blocks.

    Node ``k`` of graph ``b`` (in node-slot order) goes to ``dense[b, k]``; padding nodes are
    dropped and empty slots are 0. Inverse of :func:`dense_to_nodes` on real nodes.

    Args:
      graph: a batch padded with :func:`pad` (its last graph is taken as padding, as by all
        the masks of this module); every real graph has at most ``n_max`` nodes.
      values: [N, ...] per node slot.
      n_max: static size of the dense blocks.
      num_graphs: static number of leading graphs to keep (default: all G graph slots, the
        padding graph giving an all-False block). Pass the batch size to drop the trailing
        padding graph(s); real graphs must not be dropped.
    Returns:
      dense [num_graphs, n_max, ...] (dtype of ``values``) and mask bool[num_graphs, n_max].
    Raises:
      ValueError: a real graph has more than ``n_max`` nodes, or ``num_graphs`` would drop a
        real graph (eagerly; under ``jit`` a checkify check, see :mod:`sympe_jax.checks`).
    """
    values = jnp.asarray(values)
    leaves = jax.tree_util.tree_leaves(graph.nodes)
    n = leaves[0].shape[0] if leaves else values.shape[0]
    if values.ndim < 1 or values.shape[0] != n:
        raise ValueError(f"values must have shape [{n}, ...] (one row per node slot), got {values.shape}")
    seg, local, has_slot, num_graphs = _dense_slots(graph._replace(nodes=values), n_max, num_graphs)
    rows = jnp.where(has_slot, seg, num_graphs)  # out of range: dropped
    dense = jnp.zeros((num_graphs, n_max) + values.shape[1:], values.dtype)
    dense = dense.at[rows, local].set(values, mode="drop")
    mask = jnp.zeros((num_graphs, n_max), bool).at[rows, local].set(True, mode="drop")
    return dense, mask


def dense_to_nodes(graph: GraphsTuple, dense: jax.Array) -> jax.Array:
    """Gather dense per-graph values ``[B, n_max, ...]`` back to node slots ``[N, ...]``.

    Node ``k`` of graph ``b`` gets ``dense[b, k]``; padding nodes (and nodes of graphs beyond
    the first ``B``) get 0. Use it to feed encodings computed on dense graphs (Laplacian
    eigenvectors, SymPE ``v[rank]``) to a message-passing network as node channels.

    Args:
      graph: a batch padded with :func:`pad`; real graphs have at most ``n_max`` nodes. Its
        ``nodes`` give the number N of node slots (if None, ``n_node`` must be concrete).
      dense: [B, n_max, ...] with ``B`` at least the number of real graphs.
    Returns:
      [N, ...] node values.
    """
    dense = jnp.asarray(dense)
    if dense.ndim < 2:
        raise ValueError(f"dense must have shape [B, n_max, ...], got {dense.shape}")
    num_graphs, n_max = dense.shape[:2]
    seg, local, has_slot, _ = _dense_slots(graph, n_max, num_graphs)
    out = dense[jnp.where(has_slot, seg, 0), jnp.where(has_slot, local, 0)]
    return jnp.where(has_slot.reshape(has_slot.shape + (1,) * (dense.ndim - 2)), out, 0)


def segment_sum(data: jax.Array, segment_ids: jax.Array, num_segments: int) -> jax.Array:
    """``jraph.segment_sum``: sums rows of ``data [E, ...]`` into ``[num_segments, ...]``."""
    return jraph.segment_sum(data, segment_ids, num_segments)


def segment_mean(data: jax.Array, segment_ids: jax.Array, num_segments: int) -> jax.Array:
    """``jraph.segment_mean`` (empty segments give 0)."""
    return jraph.segment_mean(data, segment_ids, num_segments)


def aggregate(graph: GraphsTuple, messages: jax.Array, reduce: str = "sum") -> jax.Array:
    """Aggregate per-edge messages ``[E, ...]`` at the receivers: ``[N, ...]``.

    Padding edges are masked out, so padding never reaches real nodes.
    """
    n = _num_nodes(graph)
    emask = edge_mask(graph)
    messages = jnp.where(emask.reshape(emask.shape + (1,) * (messages.ndim - 1)), messages, 0)
    if reduce == "sum":
        return segment_sum(messages, graph.receivers, n)
    if reduce == "mean":
        deg = segment_sum(emask.astype(messages.dtype), graph.receivers, n)
        total = segment_sum(messages, graph.receivers, n)
        return total / jnp.maximum(deg, 1).reshape(deg.shape + (1,) * (messages.ndim - 1))
    raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
