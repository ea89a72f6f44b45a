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

Padded batches only: every function here that takes a batch (the masks, the node indices,
the dense conversions, :func:`aggregate`, and :func:`sympe_jax.jraph.encode` through them)
takes one padded with :func:`pad`, whose last graph with nodes is padding (jraph's rule), and
checks it with :func:`validate_batch` (counts, index ranges, edges within their graph, the
padding graph's edges, ``n_max``) under the library's validation rule
(:mod:`sympe_jax.checks`): eagerly a ``ValueError``, under ``jit`` NaN (floats) or -1
(indices) outputs and a checkify check; boolean masks are not poisoned. An unpadded batch is
rejected when its last graph has an edge that is not a self-loop (every padding edge is one);
one whose last graph has no such edge (no edge at all, say) cannot be told from a padded one,
and that graph's nodes are then taken as padding: pad every batch.
"""

from __future__ import annotations

import functools
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
    "validate_batch",
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


def validate_batch(graph: GraphsTuple, n_max: int | None = None,
                   num_graphs: int | None = None) -> jax.Array | bool:
    """Check that ``graph`` is a batch padded with :func:`pad`; the flag to poison outputs with.

    Value checks, in this order, in O(N + E + G) (see :mod:`sympe_jax.checks` for the rule):

    1. ``n_node`` and ``n_edge`` are >= 0 and sum to N (rows of ``graph.nodes``) and E
       (entries of ``graph.senders``);
    2. every sender and receiver lies in ``0..N-1``;
    3. every edge joins two nodes of the graph whose ``n_edge`` range lists it (no edge
       across graphs, none listed in an empty graph);
    4. the padding graph (jraph's rule: the last graph with nodes) has no edge but self-loops
       (:func:`pad` puts them all at its first node; a node permutation may move them): an
       unpadded batch whose last graph has an edge between two distinct nodes is rejected;
    5. if ``n_max`` is given, every real graph has at most ``n_max`` nodes; if ``num_graphs``
       is given, every real graph is among the first ``num_graphs``.

    Shapes and dtypes (1-d integer ``senders``/``receivers`` of equal length, 1-d
    ``n_node``/``n_edge`` of equal length G >= 2, node leaves sharing their first axis) raise
    always. Not detectable: an unpadded batch whose last graph has no edge other than
    self-loops looks padded, and its nodes are taken as padding; node features are not read
    (padding nodes need not be zero).

    Args:
      graph: the batch; N comes from ``graph.nodes`` (if None, ``n_node`` must be concrete).
      n_max, num_graphs: optional static bounds of a dense layout.
    Returns:
      ``True`` when ``graph``'s arrays are concrete (a failed check raised ``ValueError``);
      under tracing, bool[] True iff every check passed (each also a checkify check).
    """
    n, e = _sizes(graph)
    arrays = (graph.n_node, graph.n_edge, graph.senders, graph.receivers)
    xp = np if checks.is_concrete(*arrays) else jnp
    n_node, n_edge, senders, receivers = (xp.asarray(a) for a in arrays)
    n_graph = n_node.shape[0]
    oks = []

    def check(ok, message, *args):
        checks.check_value(ok, message, *args)
        oks.append(ok)

    check(xp.all(n_node >= 0) & xp.all(n_edge >= 0), "graph.n_node and graph.n_edge must be >= 0, got a count of {}",
          xp.minimum(xp.min(n_node), xp.min(n_edge)))
    check(xp.sum(n_node) == n, f"graph.n_node sums to {{}} but the batch has {n} node slots (rows of graph.nodes)",
          xp.sum(n_node))
    check(xp.sum(n_edge) == e, f"graph.n_edge sums to {{}} but the batch has {e} edges (entries of graph.senders)",
          xp.sum(n_edge))
    pad_graph = n_graph - 1 - xp.argmin(n_node[::-1] == 0)   # jraph's padding graph: the last one with nodes
    if e:
        outside = (senders < 0) | (senders >= n) | (receivers < 0) | (receivers >= n)
        i = xp.argmax(outside)
        check(~xp.any(outside), f"edge {{}} joins nodes {{}} and {{}}: node indices must lie in 0..{n - 1} "
              f"(the batch has {n} node slots)", i, senders[i], receivers[i])
        edge_graph, node_graph = _segment_ids(xp, n_edge, e), _segment_ids(xp, n_node, n)
        ends = node_graph[xp.clip(senders, 0, n - 1)], node_graph[xp.clip(receivers, 0, n - 1)]
        across = (ends[0] != edge_graph) | (ends[1] != edge_graph)
        i = xp.argmax(across)
        check(~xp.any(across), "edge {} ({} -> {}) is listed in graph {} by graph.n_edge but joins nodes of graphs "
              "{} and {}: every edge must join two nodes of its own graph",
              i, senders[i], receivers[i], edge_graph[i], ends[0][i], ends[1][i])
        fake = (edge_graph == pad_graph) & (senders != receivers)
        i = xp.argmax(fake)
        check(~xp.any(fake), "graph {} is taken as padding (the last graph with nodes) but has the edge {} -> {}, "
              "not a self-loop as every padding edge of graphs.pad: is the batch unpadded? Pad it with graphs.pad",
              pad_graph, senders[i], receivers[i])
    real = xp.arange(n_graph) < pad_graph
    if n_max is not None:
        big = real & (n_node > n_max)
        i = xp.argmax(big)
        check(~xp.any(big), f"graph {{}} has {{}} nodes, more than n_max = {n_max}", i, n_node[i])
    if num_graphs is not None:
        check(pad_graph <= num_graphs, f"num_graphs = {num_graphs} would drop real graphs: the batch has {{}} real graphs",
              pad_graph)
    return True if xp is np else functools.reduce(jnp.logical_and, oks)


def _sizes(graph: GraphsTuple) -> tuple[int, int]:
    """(N, E): node slots and edges of a batch, after its shape and dtype checks."""
    for name in ("senders", "receivers", "n_node", "n_edge"):
        a = getattr(graph, name)
        if a is None or np.ndim(a) != 1:
            raise ValueError(f"graph.{name} must be a 1-d array, got {None if a is None else np.shape(a)}")
        if not jnp.issubdtype(jnp.result_type(a), jnp.integer):
            raise TypeError(f"graph.{name} must have an integer dtype, got {jnp.result_type(a)}")
    if np.shape(graph.senders) != np.shape(graph.receivers):
        raise ValueError(f"senders {np.shape(graph.senders)} and receivers {np.shape(graph.receivers)} "
                         "must have equal length")
    if np.shape(graph.n_node) != np.shape(graph.n_edge):
        raise ValueError(f"n_node {np.shape(graph.n_node)} and n_edge {np.shape(graph.n_edge)} must have equal length")
    if np.shape(graph.n_node)[0] < 2:
        raise ValueError(f"a padded batch has at least 2 graphs (the last one holds the padding), got "
                         f"{np.shape(graph.n_node)[0]}: pad the batch with graphs.pad")
    n, e = _num_nodes(graph), np.shape(graph.senders)[0]
    if n == 0 and e:
        raise ValueError(f"the batch has {e} edges but no node slots")
    return n, e


def _num_nodes(graph: GraphsTuple) -> int:
    """N: the first axis of the node leaves (all equal), else ``sum(n_node)`` (which must be concrete)."""
    rows = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree_util.tree_leaves(graph.nodes)}
    if len(rows) > 1 or None in rows:
        raise ValueError(f"the leaves of graph.nodes must share their first axis (node slots), got {sorted(rows, key=str)}")
    if rows:
        return rows.pop()
    if not checks.is_concrete(graph.n_node):
        raise ValueError("graph.nodes is None, so the node slots are counted from graph.n_node, which must then be "
                         "concrete (not traced): give the batch node features")
    return int(np.sum(graph.n_node))


def _segment_ids(xp, counts, total: int):
    """int32[total]: segment ``b`` repeated ``counts[b]`` times (``xp``: np, counts known to sum to total; or jnp)."""
    ids = xp.arange(counts.shape[0], dtype=np.int32)
    if xp is np:
        return np.repeat(ids, counts)
    return jnp.repeat(ids, counts, total_repeat_length=total)


def _poison(out, ok):
    """``out`` poisoned where ``ok`` is False (nothing to do when validation ran on concrete arrays)."""
    return out if ok is True else checks.poison(out, ok)


def _jnp_counts(graph: GraphsTuple) -> GraphsTuple:
    # jraph's masks index n_node with a traced count: NumPy n_node closed over under jit fails.
    return graph._replace(n_node=jnp.asarray(graph.n_node), n_edge=jnp.asarray(graph.n_edge))


def node_mask(graph: GraphsTuple) -> jax.Array:
    """bool[N]: True for real nodes (False for the padding graph's nodes). Validates the batch."""
    validate_batch(graph)
    return jraph.get_node_padding_mask(_jnp_counts(graph))


def edge_mask(graph: GraphsTuple) -> jax.Array:
    """bool[E]: True for real edges. Validates the batch."""
    validate_batch(graph)
    return jraph.get_edge_padding_mask(_jnp_counts(graph))


def graph_mask(graph: GraphsTuple) -> jax.Array:
    """bool[G]: True for real graphs (the last graph of a padded batch is padding). Validates the batch."""
    validate_batch(graph)
    return jraph.get_graph_padding_mask(_jnp_counts(graph))


def node_graph_index(graph: GraphsTuple) -> jax.Array:
    """int32[N]: the graph each node slot belongs to (-1 everywhere for an invalid traced batch)."""
    return _poison(_segment_ids(jnp, jnp.asarray(graph.n_node), _num_nodes(graph)), validate_batch(graph))


def local_node_index(graph: GraphsTuple) -> jax.Array:
    """int32[N]: index of each node inside its own graph (0 for the first node of a graph; -1
    everywhere for an invalid traced batch)."""
    return _poison(_local_node_index(graph), validate_batch(graph))


def _local_node_index(graph: GraphsTuple) -> jax.Array:
    n_node = jnp.asarray(graph.n_node)
    seg = _segment_ids(jnp, n_node, _num_nodes(graph))
    offsets = jnp.cumsum(n_node) - n_node
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
      ValueError: the batch fails :func:`validate_batch` (a real graph with more than
        ``n_max`` nodes, ``num_graphs`` dropping a real graph, counts that do not add up,
        edges out of range or across graphs, an unpadded batch). Under ``jit`` the adjacency
        is NaN instead (see :mod:`sympe_jax.checks`); larger graphs are never truncated.
    """
    ok, seg, local, has_slot, num_graphs = _dense_slots(graph, n_max, num_graphs)
    senders, receivers = jnp.asarray(graph.senders), jnp.asarray(graph.receivers)
    vals = jnp.ones(senders.shape, jnp.float32) if edge_values is None else jnp.asarray(edge_values)
    if vals.ndim < 1 or vals.shape[0] != senders.shape[0]:
        raise ValueError(f"edge_values must have shape [{senders.shape[0]}, ...] (one row per edge), got {vals.shape}")
    rows = jnp.where(has_slot, seg, num_graphs)  # out of range: dropped
    mask = jnp.zeros((num_graphs, n_max), bool).at[rows, local].set(True, mode="drop")
    keep = jraph.get_edge_padding_mask(_jnp_counts(graph)) & has_slot[senders] & has_slot[receivers]
    vals = jnp.where(keep.reshape(keep.shape + (1,) * (vals.ndim - 1)), vals, 0)
    adj = jnp.zeros((num_graphs, n_max, n_max) + vals.shape[1:], vals.dtype)
    adj = adj.at[jnp.where(keep, seg[senders], num_graphs), local[senders], local[receivers]].add(vals, mode="drop")
    return _poison(adj, ok), mask


def _dense_slots(graph: GraphsTuple, n_max: int,
                 num_graphs: int | None) -> tuple[jax.Array | bool, jax.Array, jax.Array, jax.Array, int]:
    """The batch's validity flag and, per node slot: dense row (graph), dense column (local
    index), whether it has a dense slot; and the static number of dense rows."""
    if n_max < 1:
        raise ValueError(f"n_max must be a positive int, got {n_max}")
    n_graph = np.shape(graph.n_node)[0]
    num_graphs = n_graph if num_graphs is None else int(num_graphs)
    if not 0 < num_graphs <= n_graph:
        raise ValueError(f"num_graphs must lie in 1..{n_graph} (graphs in the batch), got {num_graphs}")
    ok = validate_batch(graph, n_max, num_graphs)
    graph = _jnp_counts(graph)
    seg = _segment_ids(jnp, graph.n_node, _num_nodes(graph))
    local = _local_node_index(graph)
    has_slot = jraph.get_node_padding_mask(graph) & (seg < num_graphs) & (local < n_max)
    return ok, seg, local, has_slot, num_graphs


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
      ValueError: the batch fails :func:`validate_batch` (e.g. a real graph has more than
        ``n_max`` nodes, or ``num_graphs`` would drop a real graph). Under ``jit`` ``dense``
        is poisoned instead (NaN, or -1 for integer values; see :mod:`sympe_jax.checks`).
    """
    values = jnp.asarray(values)
    leaves = jax.tree_util.tree_leaves(graph.nodes)
    n = leaves[0].shape[0] if leaves else values.shape[0]
    if values.ndim < 1 or values.shape[0] != n:
        raise ValueError(f"values must have shape [{n}, ...] (one row per node slot), got {values.shape}")
    ok, seg, local, has_slot, num_graphs = _dense_slots(graph._replace(nodes=values), n_max, num_graphs)
    rows = jnp.where(has_slot, seg, num_graphs)  # out of range: dropped
    dense = jnp.zeros((num_graphs, n_max) + values.shape[1:], values.dtype)
    dense = dense.at[rows, local].set(values, mode="drop")
    mask = jnp.zeros((num_graphs, n_max), bool).at[rows, local].set(True, mode="drop")
    return _poison(dense, ok), mask


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
      [N, ...] node values; poisoned (NaN, or -1 for integer values) under ``jit`` for a batch
      that fails :func:`validate_batch`, which raises ``ValueError`` eagerly.
    """
    dense = jnp.asarray(dense)
    if dense.ndim < 2:
        raise ValueError(f"dense must have shape [B, n_max, ...], got {dense.shape}")
    num_graphs, n_max = dense.shape[:2]
    ok, seg, local, has_slot, _ = _dense_slots(graph, n_max, num_graphs)
    out = dense[jnp.where(has_slot, seg, 0), jnp.where(has_slot, local, 0)]
    return _poison(jnp.where(has_slot.reshape(has_slot.shape + (1,) * (dense.ndim - 2)), out, 0), ok)


def segment_sum(data: jax.Array, segment_ids: jax.Array, num_segments: int) -> jax.Array:
    """``jraph.segment_sum``: sums rows of ``data [E, ...]`` into ``[num_segments, ...]``."""
    return jraph.segment_sum(data, segment_ids, num_segments)


def segment_mean(data: jax.Array, segment_ids: jax.Array, num_segments: int) -> jax.Array:
    """``jraph.segment_mean`` (empty segments give 0)."""
    return jraph.segment_mean(data, segment_ids, num_segments)


def aggregate(graph: GraphsTuple, messages: jax.Array, reduce: str = "sum") -> jax.Array:
    """Aggregate per-edge messages ``[E, ...]`` at the receivers: ``[N, ...]``.

    Padding edges are masked out, so padding never reaches real nodes. A batch that fails
    :func:`validate_batch` raises ``ValueError`` eagerly; under ``jit`` the output is NaN.
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    ok = validate_batch(graph)
    n = _num_nodes(graph)
    messages = jnp.asarray(messages)
    if messages.ndim < 1 or messages.shape[0] != np.shape(graph.senders)[0]:
        raise ValueError(f"messages must have shape [{np.shape(graph.senders)[0]}, ...] (one row per edge), "
                         f"got {messages.shape}")
    emask = jraph.get_edge_padding_mask(_jnp_counts(graph))
    messages = jnp.where(emask.reshape(emask.shape + (1,) * (messages.ndim - 1)), messages, 0)
    total = segment_sum(messages, graph.receivers, n)
    if reduce == "mean":
        deg = segment_sum(emask.astype(messages.dtype), graph.receivers, n)
        total = total / jnp.maximum(deg, 1).reshape(deg.shape + (1,) * (messages.ndim - 1))
    return _poison(total, ok)
