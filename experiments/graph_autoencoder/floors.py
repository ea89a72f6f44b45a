"""The exact error floor of 1-WL-bounded pairwise decoders without symmetry breaking (host-side NumPy).

:func:`wl_pair_floor` is the floor the graph autoencoder reports beside its ``none`` row: the
best edge error any model without symmetry breaking whose pair predictions depend only on the
stable 1-WL colours of the pair can reach. It runs colour refinement with
:func:`sympe_jax.exact.wl_refine` and validates its inputs with :func:`sympe_jax.exact.as_adjacency`
and :func:`sympe_jax.exact.as_mask`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sympe_jax.exact import as_adjacency, as_mask, unique_rows, wl_refine

__all__ = ["wl_pair_floor"]


def wl_pair_floor(adj_list: Sequence[np.ndarray],
                  masks: Sequence[np.ndarray | None] | None = None) -> dict:
    """Exact error floor of 1-WL-bounded pairwise decoders for dense adjacency reconstruction.

    Model class. A decoder that predicts entry (i, j), i != j, of a graph as a function of the
    stable 1-WL colours of i and j only, symmetric in the two: ``A_hat_ij = f_G({c_i, c_j})``.
    Any permutation-equivariant pairwise decoder applied to node embeddings from a 1-WL-bounded
    encoder (message-passing GNN, no symmetry breaking) is in this class, because such
    embeddings are functions of the stable colours (z_i = z_j whenever c_i = c_j). In particular
    the distance decoder ``A_ij = sigmoid(w ||z_i - z_j||^2 + b)`` is: a same-colour pair has
    ``z_i = z_j`` and gets ``sigmoid(b)``, the same prediction as every other same-colour pair
    (the diagonal-like "same latent" class), whatever the colour.

    Floor. Within one class the prediction is one constant, and the best constant 0/1
    prediction errs on min(#edges, #non-edges) of the class's ordered pairs. The floor sums this
    over classes and divides by the number of off-diagonal ordered pairs, sum_b n_b (n_b - 1).
    Thresholded predictions of any model in the class have at least this edge error. Four
    groupings are reported (each a valid floor for the model class named):

    * ``floor_percent`` (the headline): classes = (graph, {c_i, c_j}). Valid even if f may
      depend on the graph (e.g. via a graph-level latent or readout).
    * ``floor_percent_global``: classes = {c_i, c_j} pooled over the dataset, with colours named
      consistently across graphs (refinement of the disjoint union: equal colour = equal
      unfolding trees). Valid for models whose node embeddings carry no graph-level information.
    * ``floor_percent_distance_decoder``: as the headline, but all same-colour pairs of a graph
      form one class (they all get sigmoid(b)).
    * ``floor_percent_distance_decoder_global``: as ``floor_percent_global``, with all
      same-colour pairs of the dataset in one class (shared b).

    Args:
        adj_list: adjacency matrices [n_b, n_b] (validated; sizes may differ).
        masks: optional list of bool[n_b] masks (padding nodes are ignored).

    Returns:
        dict with the four ``floor_percent*`` values (percent), ``floor_errors`` and
        ``num_pairs`` (integer totals of the headline floor, ordered pairs),
        ``num_not_fully_refined`` / ``frac_not_fully_refined`` (graphs with some colour class
        of size > 1), ``frac_same_color_pairs`` (fraction of off-diagonal ordered pairs joining
        two nodes of the same colour), ``num_graphs`` and ``per_graph_floor_errors`` int64[B].
    """
    masks = [None] * len(adj_list) if masks is None else list(masks)
    if len(masks) != len(adj_list):
        raise ValueError(f"got {len(adj_list)} graphs but {len(masks)} masks")
    subs = []
    for adj, mk in zip(adj_list, masks):
        a = as_adjacency(adj)
        m = as_mask(mk, a.shape[0], a)
        subs.append(a[np.ix_(m, m)])
    sizes = np.asarray([s.shape[0] for s in subs], np.int64)
    offsets = np.cumsum(sizes) - sizes
    edges = [np.nonzero(s) for s in subs]
    src = np.concatenate([e[0] + o for e, o in zip(edges, offsets)] + [np.zeros(0, np.int64)])
    dst = np.concatenate([e[1] + o for e, o in zip(edges, offsets)] + [np.zeros(0, np.int64)])
    colors = wl_refine(int(sizes.sum()), src.astype(np.int64), dst.astype(np.int64), None)
    gid, lo, hi, edge = [], [], [], []
    not_refined = 0
    for b, (s, o) in enumerate(zip(subs, offsets)):
        k = s.shape[0]
        c = colors[o: o + k]
        if k and np.bincount(np.unique(c, return_inverse=True)[1].reshape(-1)).max() > 1:
            not_refined += 1
        off = ~np.eye(k, dtype=bool)
        ci, cj = np.meshgrid(c, c, indexing="ij")
        lo.append(np.minimum(ci, cj)[off])
        hi.append(np.maximum(ci, cj)[off])
        edge.append(s[off].astype(np.int64))
        gid.append(np.full(k * (k - 1), b, np.int64))
    empty = [np.zeros(0, np.int64)]
    gid, lo, hi, edge = (np.concatenate(x + empty) for x in (gid, lo, hi, edge))
    same = lo == hi
    merged_lo = np.where(same, -1, lo)
    merged_hi = np.where(same, -1, hi)
    total = int(edge.size)
    per_graph_keys = np.stack([gid, lo, hi], axis=1)
    floor_err, per_graph = _class_floor(per_graph_keys, edge, gid, len(subs))
    errs = {
        "global": _class_floor(np.stack([lo, hi], axis=1), edge)[0],
        "distance": _class_floor(np.stack([gid, merged_lo, merged_hi], axis=1), edge)[0],
        "distance_global": _class_floor(np.stack([merged_lo, merged_hi], axis=1), edge)[0],
    }
    num_graphs = len(subs)

    def pct(x: int) -> float:
        return 100.0 * x / total if total else 0.0

    return {
        "floor_percent": pct(floor_err),
        "floor_errors": int(floor_err),
        "num_pairs": total,
        "floor_percent_global": pct(errs["global"]),
        "floor_percent_distance_decoder": pct(errs["distance"]),
        "floor_percent_distance_decoder_global": pct(errs["distance_global"]),
        "num_not_fully_refined": int(not_refined),
        "frac_not_fully_refined": not_refined / num_graphs if num_graphs else 0.0,
        "frac_same_color_pairs": float(same.sum()) / total if total else 0.0,
        "num_graphs": int(num_graphs),
        "per_graph_floor_errors": per_graph,
    }


def _class_floor(keys: np.ndarray, edge: np.ndarray, gid: np.ndarray | None = None,
                 num_graphs: int = 0) -> tuple[int, np.ndarray]:
    """Sum over classes (distinct rows of ``keys``) of min(#edges, #non-edges).

    Args:
        keys: int64[P, c] class key of every ordered pair.
        edge: int64[P] 0/1 adjacency of every pair.
        gid: optional int64[P] graph of every pair (classes must not straddle graphs) to also
            return the per-graph errors.
        num_graphs: number of graphs (length of the per-graph output).

    Returns:
        (total errors, int64[num_graphs] per-graph errors (zeros if ``gid`` is None)).
    """
    per_graph = np.zeros(num_graphs, np.int64)
    if edge.size == 0:
        return 0, per_graph
    inv, first = unique_rows(keys)
    ones = np.bincount(inv, weights=edge).astype(np.int64)
    sizes = np.bincount(inv).astype(np.int64)
    err = np.minimum(ones, sizes - ones)
    if gid is not None:
        per_graph = np.bincount(gid[first], weights=err, minlength=num_graphs).astype(np.int64)
    return int(err.sum()), per_graph
