"""The symmetric group S_n acting on graphs.

Convention (used everywhere in ``sympe_jax``, written once here):

* A permutation is an int32 array ``g`` of shape ``(n,)``: node ``i`` moves to position ``g[i]``.
* On node arrays ``x`` of shape ``(n, ...)``: ``(g . x)[g[i]] = x[i]``, i.e. ``g . x = x[g^-1]``.
* On edge index arrays: the edge ``(s, r)`` becomes ``(g[s], g[r])`` (edge order is kept).
* On dense pair tensors ``A`` of shape ``(n, n, ...)``: ``(g . A)[g[i], g[j]] = A[i, j]``.
* ``compose(g, h) = g[h]``, "g after h", so that ``compose(g, h) . x = g . (h . x)``.
* A canonicalization returns ranks in the same form: ``ranks[i]`` is node i's position.

Padded graphs: functions that take a ``mask`` (bool[n], True for real nodes) only move real
nodes; masked-out positions are fixed points.

Validation (the rule of :mod:`sympe_jax.checks`): every function that takes a permutation checks
it with :func:`is_permutation` (and edge lists against ``0..n-1``), in O(n + e). Eagerly a
repeated, negative or out-of-range entry is a ``ValueError``; under ``jit``/``vmap`` the output
is poisoned instead: -1 for integer outputs (permutations, edge indices), NaN for floating
arrays (integer arrays: -1; boolean arrays cannot be poisoned). A poisoned permutation (all -1)
is itself invalid, so the poison propagates.

All functions are pure ``jax.numpy`` and jit/vmap-safe.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sympe_jax import checks

__all__ = [
    "identity",
    "compose",
    "inverse",
    "is_permutation",
    "random_element",
    "random_sort_keys",
    "act_on_nodes",
    "act_on_edges",
    "act_on_dense",
    "act_on_graphs_tuple",
    "random_graphs_tuple_element",
]


def identity(n: int) -> jax.Array:
    """The identity permutation, int32[n]."""
    return jnp.arange(n, dtype=jnp.int32)


def _as_perm(g: jax.Array, name: str = "g") -> jax.Array:
    g = jnp.asarray(g)
    if g.ndim != 1:
        raise ValueError(f"{name}: a permutation is a 1-d int array, got shape {g.shape}")
    if not jnp.issubdtype(g.dtype, jnp.integer):
        raise TypeError(f"{name}: a permutation must have an integer dtype, got {g.dtype}")
    return g.astype(jnp.int32)


def _checked_perm(g: jax.Array, what: str) -> tuple[jax.Array, jax.Array]:
    """``(g as int32[n], ok bool[])`` with ``ok = is_permutation(g)``; eagerly a ValueError if not ok."""
    g = _as_perm(g, what)
    ok = is_permutation(g)
    n = g.shape[0]
    checks.check_value(ok, f"{what} is not a permutation of 0..{n - 1}: an entry is repeated, negative "
                           f"or >= {n} (an all -1 permutation marks an invalid one)")
    return g, ok


def _inverse(g: jax.Array) -> jax.Array:
    """Unchecked inverse of a permutation g int32[n]."""
    return jnp.zeros_like(g).at[g].set(jnp.arange(g.shape[0], dtype=jnp.int32))


def compose(g: jax.Array, h: jax.Array) -> jax.Array:
    """``g h`` ("g after h"): int32[n], int32[n] -> int32[n] with ``(g h)[i] = g[h[i]]``.

    All -1 if g or h is not a permutation (under ``jit``; eagerly a ValueError)."""
    g, h = _as_perm(g, "g"), _as_perm(h, "h")
    if g.shape != h.shape:
        raise ValueError(f"compose: permutations of different sizes {g.shape} and {h.shape}")
    (g, ok_g), (h, ok_h) = _checked_perm(g, "compose: g"), _checked_perm(h, "compose: h")
    return checks.poison(g[h], ok_g & ok_h)


def inverse(g: jax.Array) -> jax.Array:
    """Inverse permutation: ``inverse(g)[g[i]] = i``. int32[n] -> int32[n] (invalid g: all -1)."""
    g, ok = _checked_perm(g, "inverse: g")
    return checks.poison(_inverse(g), ok)


def is_permutation(g: jax.Array) -> jax.Array:
    """bool[]: whether ``g`` (int[n]) hits every position in ``0..n-1`` exactly once."""
    g = _as_perm(g)
    n = g.shape[0]
    in_range = jnp.all((g >= 0) & (g < n))
    hits = jnp.zeros((n,), jnp.int32).at[jnp.clip(g, 0, n - 1)].add(1)
    return in_range & jnp.all(hits == 1)


def random_sort_keys(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """Two independent uint32[n] words: a 64-bit uniform sort key per position.

    Sorting by these keys gives a uniformly random order up to the chance of a 64-bit
    collision (at most ``n^2 / 2^65``: below 3e-14 for n = 1024), which is what makes the
    random tie-breaking of :func:`sympe_jax.sort_permutation` uniform in practice, not just
    approximately (one 32-bit word would bias about ``n^2 / 2^33``, 1e-4 at n = 1024).
    """
    return tuple(jax.random.bits(key, (2, n), jnp.uint32))


def _shuffle_within(key: jax.Array, segment: jax.Array, real: jax.Array) -> jax.Array:
    """Uniform random permutation of the real slots within each segment; other slots fixed."""
    n = segment.shape[0]
    idx = jnp.arange(n, dtype=jnp.int32)
    hi, lo = random_sort_keys(key, n)
    pad = (~real).astype(jnp.int32)
    hi = jnp.where(real, hi, 0)
    lo = jnp.where(real, lo, idx.astype(jnp.uint32))
    # Sources: per segment, real slots in random order, then padding slots in index order.
    *_, src = jax.lax.sort((segment, pad, hi, lo, idx), num_keys=4)
    # Destinations: per segment, real slots in index order, then padding slots in index order.
    *_, dst = jax.lax.sort((segment, pad, idx), num_keys=2)
    return idx.at[src].set(dst)


def random_element(key: jax.Array, n: int, mask: jax.Array | None = None) -> jax.Array:
    """A uniformly random permutation of the real nodes; masked-out positions stay fixed.

    Args:
      key: PRNG key.
      n: number of positions.
      mask: optional bool[n], True for real nodes (anywhere, not necessarily first).
    Returns:
      int32[n] permutation with ``g[i] = i`` wherever ``mask[i]`` is False.
    """
    real = jnp.ones((n,), bool) if mask is None else jnp.asarray(mask, bool)
    if real.shape != (n,):
        raise ValueError(f"random_element: mask must have shape ({n},), got {real.shape}")
    return _shuffle_within(key, jnp.zeros((n,), jnp.int32), real)


def _check_nodes(g: jax.Array, x: jax.Array, what: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.shape[:1] != g.shape:
        raise ValueError(f"{what}: node array of shape {x.shape} does not match a permutation of {g.shape[0]} nodes")
    return x


def act_on_nodes(g: jax.Array, x: jax.Array) -> jax.Array:
    """``(g . x)[g[i]] = x[i]``. g int32[n], x [n, ...] -> [n, ...] (invalid g: NaN, integer x: -1)."""
    g, ok = _checked_perm(g, "act_on_nodes: g")
    x = _check_nodes(g, x, "act_on_nodes")
    return checks.poison(x[_inverse(g)], ok)


def _edges(g: jax.Array, senders: jax.Array, receivers: jax.Array, what: str):
    """``(g[senders], g[receivers])`` and ``ok`` (bool[]: every index is in ``0..n-1``; eagerly a ValueError if not)."""
    senders, receivers = jnp.asarray(senders), jnp.asarray(receivers)
    if senders.shape != receivers.shape or senders.ndim != 1:
        raise ValueError(f"{what}: senders {senders.shape} and receivers {receivers.shape} must be equal 1-d shapes")
    if not (jnp.issubdtype(senders.dtype, jnp.integer) and jnp.issubdtype(receivers.dtype, jnp.integer)):
        raise TypeError(f"{what}: senders and receivers must have integer dtypes, got {senders.dtype} and {receivers.dtype}")
    n = g.shape[0]
    ok = jnp.all((senders >= 0) & (senders < n) & (receivers >= 0) & (receivers < n))
    checks.check_value(ok, f"{what}: a sender or receiver is outside the node indices 0..{n - 1}")
    return (g[senders], g[receivers]), ok


def act_on_edges(g: jax.Array, senders: jax.Array, receivers: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Relabel an edge list: edge ``(s, r)`` becomes ``(g[s], g[r])``.

    Args:
      g: int32[n].
      senders, receivers: int[e] node indices in ``0..n-1``.
    Returns:
      (int32[e], int32[e]); edge order (and hence edge features) unchanged. All -1 if g is not
      a permutation or an index is out of range (under ``jit``; eagerly a ValueError).
    """
    g, ok = _checked_perm(g, "act_on_edges: g")
    edges, ok_edges = _edges(g, senders, receivers, "act_on_edges")
    return checks.poison(edges, ok & ok_edges)


def act_on_dense(g: jax.Array, a: jax.Array) -> jax.Array:
    """``(g . A)[g[i], g[j]] = A[i, j]``. g int32[n], A [n, n, ...] -> [n, n, ...] (invalid g: NaN, integer A: -1)."""
    g = _as_perm(g)
    a = jnp.asarray(a)
    n = g.shape[0]
    if a.shape[:2] != (n, n):
        raise ValueError(f"act_on_dense: expected a pair tensor of shape ({n}, {n}, ...), got {a.shape}")
    g, ok = _checked_perm(g, "act_on_dense: g")
    ginv = _inverse(g)
    return checks.poison(a[ginv][:, ginv], ok)


def act_on_graphs_tuple(g: jax.Array, graph):
    """Permute the nodes of a (padded) ``jraph.GraphsTuple`` batch.

    ``g`` is one permutation of all ``N = sum(n_node)`` node slots of the batch. It must keep
    every node inside its own graph (use :func:`random_graphs_tuple_element`) and should fix
    padding nodes (not checked: padding nodes are a graph like any other here).

    Args:
      g: int32[N].
      graph: ``jraph.GraphsTuple`` with nodes [N, ...] (or None), senders/receivers int[E].
    Returns:
      The same batch with node features moved (``act_on_nodes``) and edges relabelled
      (``act_on_edges``); edge features, globals, n_node and n_edge are unchanged. Eagerly a
      ValueError, under ``jit`` node features NaN (integer: -1) and senders/receivers -1, if g
      is not a permutation, moves a node to another graph, or an edge index is out of range.
    """
    from sympe_jax import graphs  # local import: graphs sits above the group layer

    g, ok = _checked_perm(g, "act_on_graphs_tuple: g")
    ginv = _inverse(g)
    nodes = jax.tree.map(lambda x: _check_nodes(g, x, "act_on_graphs_tuple")[ginv], graph.nodes)
    (senders, receivers), ok_edges = _edges(g, graph.senders, graph.receivers, "act_on_graphs_tuple")
    seg = graphs.node_graph_index(graph)
    if seg.shape != g.shape:
        raise ValueError(f"act_on_graphs_tuple: a permutation of {g.shape[0]} nodes for a batch of {seg.shape[0]} node slots")
    in_graph = jnp.all(seg[g] == seg)
    checks.check_value(in_graph, "act_on_graphs_tuple: g moves a node to another graph of the batch")
    ok = ok & ok_edges & in_graph & jnp.all(seg >= 0)  # seg is -1 for an invalid batch
    return graph._replace(nodes=checks.poison(nodes, ok), senders=checks.poison(senders, ok),
                          receivers=checks.poison(receivers, ok))


def random_graphs_tuple_element(key: jax.Array, graph, mask: jax.Array | None = None) -> jax.Array:
    """A uniformly random permutation within each graph of a padded batch.

    Args:
      key: PRNG key.
      graph: ``jraph.GraphsTuple`` (its ``n_node`` gives the graph boundaries).
      mask: optional bool[N] of real nodes (e.g. ``graphs.node_mask(graph)``); masked-out
        nodes (padding) stay fixed. Without it, every node slot is permuted within its graph.
    Returns:
      int32[N] permutation that never moves a node to another graph.
    """
    from sympe_jax import graphs  # local import: graphs sits above the group layer

    seg = graphs.node_graph_index(graph)
    real = jnp.ones(seg.shape, bool) if mask is None else jnp.asarray(mask, bool)
    return _shuffle_within(key, seg, real)
