"""1-WL colour refinement (host-side NumPy).

:func:`wl_colors` computes the stable 1-WL (colour refinement) partition of a graph with canonical
colour names; :func:`wl_refine` is its kernel on an edge list (several graphs can be refined at
once as a disjoint union, which names colours consistently across graphs), and
:func:`unique_rows` ranks the distinct rows of an integer matrix. Nothing here needs the ``exact``
extra. The exact error floor of 1-WL-bounded pairwise decoders without symmetry breaking built on
it (``wl_pair_floor``) is the graph autoencoder experiment's, in
``experiments/graph_autoencoder/floors.py``.
"""

from __future__ import annotations

import numpy as np

from sympe_jax.exact._common import as_adjacency, as_mask

__all__ = ["wl_colors", "wl_refine", "unique_rows"]


def unique_rows(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lexicographic ranks of the distinct rows of an integer matrix.

    Used by :func:`wl_refine` to name signatures, and to group keys into classes (e.g. pairs of
    colours). The input is not validated.

    Args:
        mat: int[N, c] with c >= 1.

    Returns:
        (inverse int64[N]: rank of each row among the distinct rows in lexicographic order,
        first int64[K]: index of one occurrence of each distinct row, in rank order).
    """
    if mat.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort(mat.T[::-1])  # column 0 is the primary key
    rows = mat[order]
    new = np.ones(rows.shape[0], bool)
    new[1:] = np.any(rows[1:] != rows[:-1], axis=1)
    inverse_ = np.empty(rows.shape[0], np.int64)
    inverse_[order] = np.cumsum(new) - 1
    return inverse_, order[new].astype(np.int64)


def wl_refine(num: int, src: np.ndarray, dst: np.ndarray, max_iter: int | None) -> np.ndarray:
    """1-WL refinement on a directed edge list (both directions of every undirected edge).

    The kernel of :func:`wl_colors` (same rounds, same canonical colour names), without input
    validation. Refining a disjoint union of graphs at once (node ids offset per graph) names
    colours consistently across them: equal colour iff equal unfolding trees.

    Args:
        num: number of nodes (ids 0..num-1).
        src: int[E] sources, sorted ascending.
        dst: int[E] destinations.
        max_iter: cap on rounds (None: until stable; a stable partition is reached in <= num).

    Returns:
        int64[num] colours 0..k-1 (rank of the final signature among the distinct ones).
    """
    col = np.zeros(num, np.int64)
    if num == 0:
        return col
    deg = np.bincount(src, minlength=num).astype(np.int64)
    maxdeg = int(deg.max(initial=0))
    starts = np.cumsum(deg) - deg
    colours = 1
    limit = num if max_iter is None else int(max_iter)
    for _ in range(limit):
        nc = col[dst]
        order = np.lexsort((nc, src))  # by source, then neighbour colour
        sig = np.full((num, maxdeg + 2), -1, np.int64)
        sig[:, 0] = col
        sig[:, 1] = deg
        sig[src[order], 2 + np.arange(src.size) - starts[src[order]]] = nc[order]
        col = unique_rows(sig)[0]
        new_colours = int(col.max()) + 1
        if new_colours == colours:  # refinement only splits classes: same count = stable
            break
        colours = new_colours
    return col


def wl_colors(adj: np.ndarray, mask: np.ndarray | None = None,
              max_iter: int | None = None) -> np.ndarray:
    """Stable 1-WL colour refinement with canonical colour names.

    Start with one colour for every real node; at each round the new colour of node i is the
    rank, in lexicographic order, of its signature (old colour, degree, sorted multiset of
    neighbour colours) among the distinct signatures of the graph. Stop when the number of
    colours stops growing (the partition is stable) or after ``max_iter`` rounds. The names only
    depend on the isomorphism class: for any permutation p, ``wl_colors(p . A) = p . wl_colors(A)``
    (i.e. ``wl_colors(p . A)[p[i]] = wl_colors(A)[i]``), so isomorphic graphs get identical colour
    multisets and identical names.

    Args:
        adj: [n, n] adjacency (validated).
        mask: optional bool[n] real nodes; padding nodes get colour -1.
        max_iter: optional cap on refinement rounds (None = until stable).

    Returns:
        int32[n] colours 0..k-1 (-1 on padding).
    """
    a = as_adjacency(adj)
    n = a.shape[0]
    m = as_mask(mask, n, a)
    if max_iter is not None and (isinstance(max_iter, bool) or int(max_iter) != max_iter
                                 or max_iter < 0):
        raise ValueError(f"max_iter must be a non-negative integer or None, got {max_iter}")
    real = np.flatnonzero(m)
    src, dst = np.nonzero(a[np.ix_(real, real)])  # row-major: sorted by source
    colors = np.full(n, -1, np.int32)
    colors[real] = wl_refine(real.size, src, dst, max_iter)
    return colors
