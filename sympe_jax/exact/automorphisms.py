"""Exact graph automorphisms, canonical labellings and the exact inversion kernel (host-side NumPy).

This module is the *exact solver* that the fast sorting-based canonicalizer of ``sympe_jax`` is
checked against. Everything here runs on the host in NumPy (plus ``pynauty`` and ``scipy``); none of
it is traced by JAX.

Conventions (the project-wide permutation convention):

* A permutation of ``n`` nodes is an int array ``g`` of shape (n,): node ``i`` moves to position
  ``g[i]``. It acts on node arrays by ``(g . x)[g[i]] = x[i]`` and on adjacency matrices by
  ``(g . A)[g[i], g[j]] = A[i, j]`` (:func:`permute_adjacency`). ``compose(g, h) = g[h]`` is
  "g after h", so ``(g h) . A = g . (h . A)``.
* ``g`` is an automorphism of ``A`` iff ``g . A == A``, i.e. ``A[g[i], g[j]] == A[i, j]``.
* A canonicalization sample is returned as ``ranks``: int32[n] with ``ranks[i]`` the position of
  node ``i`` in the canonical order. ``ranks`` is a permutation in the same convention and
  ``permute_adjacency(ranks, A)`` is the canonical adjacency matrix.

pynauty conventions (checked in ``tests/exact/test_automorphisms.py``):

* ``pynauty.autgrp`` returns generators as lists ``p`` with ``p[i]`` the *image* of vertex ``i``.
  That is exactly our convention (``g[i]`` = where node ``i`` goes); no conversion is needed.
  nauty also returns the group order as a float mantissa and a base-10 exponent (inexact for
  large groups: the exact order is recomputed here as a product of basic orbit lengths) and the
  orbits as "smallest vertex of the orbit of i".
* ``pynauty.canon_label`` returns nauty's ``lab``: ``lab[k]`` is the vertex placed at canonical
  position ``k``. Our ``ranks`` are its inverse, ``ranks[lab[k]] = k``.

The set of all ranks ``r`` with ``r . A == canonical adjacency`` is the left coset
``canon o Aut(A) = {compose(canon, a) : a in Aut(A)}``: indeed ``r . A = canon . A`` iff
``(canon^-1 r) . A = A``. The inversion kernel of SymPE (see ``/work/shared/reference/sympe.md``)
is the uniform law on this coset; :func:`inversion_kernel_sample` samples it exactly, by drawing
``a`` uniformly from ``Aut(A)`` with a Schreier-Sims stabilizer chain (:func:`sample_automorphism`).

Uniform sampling without enumerating the group. Given a base ``(b_1, ..., b_m)`` and the
stabilizer chain ``G = G_0 > G_1 > ... > G_m = 1`` (``G_k`` fixes ``b_1..b_k`` pointwise), every
element factors uniquely as ``g = u_1 o u_2 o ... o u_m`` with ``u_k`` in a fixed set of coset
representatives of ``G_k`` in ``G_{k-1}`` (one per point of the basic orbit ``b_k^{G_{k-1}}``).
Choosing each ``u_k`` uniformly and independently therefore gives an exactly uniform ``g``. The
representatives are stored implicitly as Schreier trees (a parent pointer and an edge label per
orbit point; the representative of a point is the product of the labels on its path to the root),
kept shallow by adding "shortcut" labels, so memory stays O(n * #labels) even for |G| = n!.

The base and strong generating set come from nauty: its generators are (in practice) a strong
generating set relative to the first path of its search tree, which is recovered from the order of
the generator list. The chain is then *certified*: if every generator moves a base point, the
product of the basic orbit lengths divides |G| (the quotient is a product of subgroup indices) and
equals it iff the chain is a genuine stabilizer chain, and nauty's floating-point order tells the
two apart (they differ by a factor >= 2). If the certificate fails, the chain is repaired with
nauty as an oracle for pointwise stabilizers (vertices individualized by a colouring): a binary
search finds the first wrong level and nauty's generators of that stabilizer are added; random
Schreier-Sims (sifting random group elements) is the last resort. The result is always exact.
(On every family we tried, ER graphs from dense to very sparse, random regular, strongly regular,
trees, lattices, disjoint unions, K_n and stars, the inferred base was certified directly.)

Also here: 1-WL colour refinement (:func:`wl_colors`). The exact error floor of 1-WL-bounded
pairwise decoders without symmetry breaking built on it (``wl_pair_floor``) is the graph
autoencoder experiment's, in ``experiments/graph_autoencoder/floors.py``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "AutGroup",
    "automorphism_group",
    "automorphism_groups",
    "orbits",
    "group_order",
    "canonical_ranks",
    "permute_adjacency",
    "compose",
    "inverse",
    "is_automorphism",
    "sample_automorphism",
    "inversion_kernel_sample",
    "inversion_kernel_sample_batch",
    "wl_colors",
]


# --------------------------------------------------------------------------------------------
# Validation and small permutation helpers
# --------------------------------------------------------------------------------------------


def _as_adjacency(adj, name: str = "adj") -> np.ndarray:
    """Validates a simple undirected graph given as a dense 0/1 adjacency matrix.

    Args:
        adj: array-like of shape (n, n), dtype bool, integer or floating, entries in {0, 1},
            symmetric, zero diagonal (no self-loops). n = 0 is allowed (the empty graph).

    Returns:
        bool[n, n] copy of the adjacency.

    Raises:
        ValueError: wrong rank, non-square, bad dtype, NaN/inf, non-binary entries, asymmetric,
            or self-loops.
    """
    a = np.asarray(adj)
    if a.dtype == object or not (a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer)
                                 or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must have a bool, integer or floating dtype, got {a.dtype}")
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square matrix of shape (n, n), got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    if a.dtype != np.bool_:
        if not np.all((a == 0) | (a == 1)):
            raise ValueError(f"{name} must be a 0/1 (unweighted) adjacency matrix")
        a = a != 0
    else:
        a = a.copy()
    if not np.array_equal(a, a.T):
        raise ValueError(f"{name} must be symmetric (undirected graph)")
    if a.shape[0] and np.any(np.diagonal(a)):
        raise ValueError(f"{name} has self-loops (non-zero diagonal), which are not supported")
    return a


def _as_mask(mask, n: int, adj: np.ndarray | None = None) -> np.ndarray:
    """Validates a node mask (True = real node, False = padding) against an adjacency.

    Args:
        mask: None (all nodes real) or array-like of shape (n,), bool or 0/1 integers.
        n: number of nodes.
        adj: optional bool[n, n] adjacency; padding nodes must have no edges.

    Returns:
        bool[n] mask.

    Raises:
        ValueError: wrong shape/dtype/values, or an edge touching a padding node.
    """
    if mask is None:
        return np.ones(n, dtype=bool)
    m = np.asarray(mask)
    if m.shape != (n,):
        raise ValueError(f"mask must have shape ({n},), got {m.shape}")
    if m.dtype != np.bool_:
        if not np.issubdtype(m.dtype, np.integer) or not np.all((m == 0) | (m == 1)):
            raise ValueError(f"mask must be boolean (or 0/1 integers), got dtype {m.dtype}")
        m = m != 0
    if adj is not None and np.any(adj[~m]):
        raise ValueError("padding nodes (mask False) must not have edges")
    return m


def _as_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _as_perm(g, n: int | None = None, name: str = "g") -> np.ndarray:
    p = np.asarray(g)
    if p.ndim != 1 or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {p.shape} dtype {p.dtype}")
    if n is not None and p.shape[0] != n:
        raise ValueError(f"{name} must have length {n}, got {p.shape[0]}")
    if not np.array_equal(np.sort(p), np.arange(p.shape[0])):
        raise ValueError(f"{name} is not a permutation of 0..{p.shape[0] - 1}")
    return p


def compose(g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Composition "g after h" of permutations (or batches of permutations).

    Args:
        g: int[..., n] permutation(s).
        h: int[..., n] permutation(s), broadcastable with ``g`` over leading axes.

    Returns:
        int[..., n] ``g[h]`` (row-wise for batches).
    """
    g = np.asarray(g)
    h = np.asarray(h)
    if g.ndim == 1 and h.ndim == 1:
        return g[h]
    g, h = np.broadcast_arrays(g, h)
    return np.take_along_axis(g, h, axis=-1)


def inverse(g: np.ndarray) -> np.ndarray:
    """Inverse permutation(s).

    Args:
        g: int[..., n] permutation(s).

    Returns:
        int[..., n] ``ginv`` with ``ginv[g[i]] = i`` (same dtype as ``g``).
    """
    g = np.asarray(g)
    return np.argsort(g, axis=-1, kind="stable").astype(g.dtype)


def permute_adjacency(g: np.ndarray, adj: np.ndarray) -> np.ndarray:
    """Acts with a permutation on an adjacency matrix: ``(g . A)[g[i], g[j]] = A[i, j]``.

    Args:
        g: int[n] permutation.
        adj: [n, n] matrix (any dtype).

    Returns:
        [n, n] matrix ``g . A``, same dtype as ``adj``.
    """
    adj = np.asarray(adj)
    g = _as_perm(g, adj.shape[0])
    ginv = inverse(g)
    return adj[np.ix_(ginv, ginv)]


def is_automorphism(g: np.ndarray, adj: np.ndarray) -> bool:
    """Whether ``g . A == A``.

    Args:
        g: int[n] permutation.
        adj: [n, n] adjacency.

    Returns:
        True iff ``A[g[i], g[j]] == A[i, j]`` for all i, j.
    """
    adj = np.asarray(adj)
    g = _as_perm(g, adj.shape[0])
    return bool(np.array_equal(adj[np.ix_(g, g)], adj))


# --------------------------------------------------------------------------------------------
# nauty
# --------------------------------------------------------------------------------------------


def _pynauty():
    try:
        import pynauty  # noqa: PLC0415  (optional dependency, imported lazily)
    except ImportError as err:  # pragma: no cover - environment dependent
        raise ImportError("sympe_jax.exact.automorphisms needs pynauty (pip install pynauty)") from err
    return pynauty


def _nauty_graph(adj: np.ndarray, fixed: Sequence[int] = ()):
    """pynauty.Graph of a bool[n, n] adjacency, with the vertices ``fixed`` individualized."""
    pynauty = _pynauty()
    n = adj.shape[0]
    rows, cols = np.nonzero(np.triu(adj, 1))
    nbrs: dict[int, list[int]] = {i: [] for i in range(n)}
    for i, j in zip(rows.tolist(), cols.tolist()):
        nbrs[i].append(j)
    coloring = [{int(v)} for v in fixed]
    return pynauty.Graph(n, directed=False, adjacency_dict=nbrs, vertex_coloring=coloring)


def _nauty_stabilizer(adj: np.ndarray, fixed: Sequence[int]) -> tuple[np.ndarray, float]:
    """Generators (nauty order) and log10 order of the pointwise stabilizer of ``fixed``."""
    n = adj.shape[0]
    if n == 0:
        return np.zeros((0, 0), np.int32), 0.0
    gens, mantissa, exponent, _, _ = _pynauty().autgrp(_nauty_graph(adj, fixed))
    return np.asarray(gens, dtype=np.int32).reshape(-1, n), math.log10(mantissa) + exponent


def _nauty_ranks(adj: np.ndarray) -> np.ndarray:
    """int32[n] nauty's canonical labelling of a bool[n, n] adjacency, as ranks."""
    n = adj.shape[0]
    ranks = np.empty(n, dtype=np.int32)
    if n:
        lab = np.asarray(_pynauty().canon_label(_nauty_graph(adj)), dtype=np.int64)
        ranks[lab] = np.arange(n, dtype=np.int32)  # lab[k] = vertex at canonical position k
    return ranks


def _nauty(adj: np.ndarray):
    """Runs nauty on a validated bool[n, n] adjacency.

    Returns:
        (generators int32[k, n] in nauty's discovery order, log10 of nauty's group order,
        orbit representatives int[n] (smallest vertex of the orbit), ranks int32[n]).
    """
    n = adj.shape[0]
    if n == 0:
        return np.zeros((0, 0), np.int32), 0.0, np.zeros(0, np.int64), np.zeros(0, np.int32)
    gens, mantissa, exponent, orbit_rep, _ = _pynauty().autgrp(_nauty_graph(adj))
    gens = np.asarray(gens, dtype=np.int32).reshape(-1, n)
    return (gens, math.log10(mantissa) + exponent, np.asarray(orbit_rep, np.int64),
            _nauty_ranks(adj))


# --------------------------------------------------------------------------------------------
# Schreier-Sims: base, strong generating set, Schreier trees
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _Chain:
    """A stabilizer chain stored as Schreier trees over a shared pool of labels.

    Level k (0-based) holds the Schreier tree of the basic orbit of ``base[k]`` under the
    pointwise stabilizer of ``base[:k]``. The coset representative of an orbit
    point x, ``u_x`` with ``u_x[base[k]] = x``, is the product of the labels on the tree path
    from x up to the root: ``u_x = s_1 o s_2 o ... o s_d`` with ``s_1 = labels[via[k, x]]``.

    Attributes:
        base: int32[m] base points.
        labels: int32[L, n] label pool: the strong generators, then shortcut labels.
        sparse_row: int32[L] row of each label in the sparse tables, -1 for dense labels.
        sparse_supp: int32[S, w] moved points of the sparse labels (rows padded by repeating
            their first moved point).
        sparse_img: int32[S, w] images of those points.
        parent: int32[m, n] tree parent of each orbit point (-1 at the root and off-orbit).
        via: int32[m, n] label id on the edge parent -> point (``labels[via][parent] == point``).
        orbit_start: int64[m + 1] offsets of the levels in ``orbit_points``.
        orbit_points: int32[sum of orbit sizes] the basic orbits, sorted within each level.
        depth: int64[m] depth of each tree.
    """

    base: np.ndarray
    labels: np.ndarray
    sparse_row: np.ndarray
    sparse_supp: np.ndarray
    sparse_img: np.ndarray
    parent: np.ndarray
    via: np.ndarray
    orbit_start: np.ndarray
    orbit_points: np.ndarray
    depth: np.ndarray

    @property
    def orbit_sizes(self) -> np.ndarray:
        return np.diff(self.orbit_start)

    def orbit(self, k: int) -> np.ndarray:
        return self.orbit_points[self.orbit_start[k]: self.orbit_start[k + 1]]


@dataclasses.dataclass(frozen=True, eq=False)
class AutGroup:
    """The automorphism group of a graph with a certified stabilizer chain and a canonical form.

    All permutations follow the project convention (``g[i]`` is where node ``i`` goes). Padding
    nodes (mask False) are fixed by every element and sent to the last canonical positions.

    Attributes:
        n: number of nodes (including padding).
        generators: int32[k, n] generators of Aut(A) (nauty's, lifted to padding; k may be 0).
        order: exact group order |Aut(A)| (Python int).
        orbits: int32[n] orbit id per node: orbits are numbered 0, 1, ... in the order of their
            smallest node; padding nodes get -1.
        canon: int32[n] canonical ranks: ``permute_adjacency(canon, A)`` is the canonical
            adjacency (equal for isomorphic graphs with the same mask layout).
        mask: bool[n] real nodes.
        chain: the stabilizer chain (base, Schreier trees; see ``_Chain``).
    """

    n: int
    generators: np.ndarray
    order: int
    orbits: np.ndarray
    canon: np.ndarray
    mask: np.ndarray
    chain: _Chain

    @property
    def base(self) -> np.ndarray:
        """int32[m] base points b_1..b_m of the stabilizer chain."""
        return self.chain.base

    @property
    def orbit_sizes(self) -> tuple[int, ...]:
        """Basic orbit lengths |b_k^{G_{k-1}}|; their product is ``order``."""
        return tuple(int(s) for s in self.chain.orbit_sizes)

    def canonical_adjacency(self, adj: np.ndarray) -> np.ndarray:
        """The canonical form ``canon . A`` of the graph this group was computed for.

        Args:
            adj: [n, n] the adjacency passed to :func:`automorphism_group`.

        Returns:
            [n, n] canonical adjacency (same dtype as ``adj``).
        """
        return permute_adjacency(self.canon, adj)


def _infer_base(gens: np.ndarray) -> list[int]:
    """Guesses a base for which nauty's generators are a strong generating set.

    nauty stores a generator found at level k of the first path (v_1, v_2, ...) of its search
    tree; it fixes v_1..v_k and moves v_{k+1}; generators are listed deepest first. Walking the
    list from its end, the next base point is a point moved by the last remaining generator
    whose earliest mover in the remaining list is as late as possible (moved by the fewest,
    shallowest generators); ties are broken by the largest orbit under the remaining
    generators (a wrong choice has a smaller orbit: its stabilizer is then bigger than the group
    of the generators fixing it), then by the smallest index. The generators moving it are then
    removed. Correctness does not rely on this heuristic (the chain is certified afterwards).

    Args:
        gens: int32[r, n] non-identity generators in nauty's order.

    Returns:
        base points (list of ints); every generator moves at least one of them.
    """
    import scipy.sparse  # noqa: PLC0415  (optional dependency, imported lazily)
    import scipy.sparse.csgraph  # noqa: PLC0415

    r, n = gens.shape
    moved = gens != np.arange(n, dtype=gens.dtype)
    e_gen, e_src = np.nonzero(moved)
    e_dst = gens[e_gen, e_src]
    remaining = np.arange(r)
    alive = np.ones(r, bool)
    base: list[int] = []
    while remaining.size:
        cands = np.flatnonzero(moved[remaining[-1]])
        sub = moved[remaining[:, None], cands[None, :]]  # (|R|, |cands|)
        first = np.argmax(sub, axis=0)  # earliest remaining generator moving each candidate
        ties = cands[first == first.max()]
        if ties.size > 1:
            keep = alive[e_gen]
            graph = scipy.sparse.csr_matrix(
                (np.ones(int(keep.sum())), (e_src[keep], e_dst[keep])), shape=(n, n))
            _, comp = scipy.sparse.csgraph.connected_components(graph, directed=False)
            orbit_size = np.bincount(comp, minlength=n)[comp[ties]]
            point = int(ties[np.argmax(orbit_size)])
        else:
            point = int(ties[0])
        base.append(point)
        gone = remaining[moved[remaining, point]]
        alive[gone] = False
        remaining = remaining[~moved[remaining, point]]
    return base


def _sparse_tables(pool: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moved-point tables for the labels of small support (cheap right multiplication).

    Args:
        pool: int32[L, n] non-identity labels.

    Returns:
        (sparse_row int32[L], supp int32[S, w], img int32[S, w]) as in ``_Chain``.
    """
    num, n = pool.shape
    moved = pool != np.arange(n, dtype=pool.dtype)
    counts = moved.sum(axis=1)
    sparse = (counts > 0) & (counts <= max(8, n // 16))
    sparse_row = np.full(num, -1, np.int32)
    sparse_row[sparse] = np.arange(int(sparse.sum()), dtype=np.int32)
    width = int(counts[sparse].max(initial=1))
    rows, cols = np.nonzero(moved[sparse])
    cnt = counts[sparse]
    pos = np.arange(rows.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    supp = np.empty((int(sparse.sum()), width), np.int32)
    supp[:] = cols[np.cumsum(cnt) - cnt][:, None] if rows.size else 0
    supp[rows, pos] = cols
    img = np.take_along_axis(pool[sparse], supp, axis=1).astype(np.int32)
    return sparse_row, supp, img


def _right_multiply(labels, sparse_row, supp, img, acc: np.ndarray, rows: np.ndarray,
                    codes: np.ndarray) -> None:
    """In place: ``acc[r] <- acc[r] o labels[c]`` for each (r, c) in zip(rows, codes)."""
    srow = sparse_row[codes]
    is_sparse = srow >= 0
    if np.any(is_sparse):
        r = rows[is_sparse][:, None]
        s = srow[is_sparse]
        acc[r, supp[s]] = acc[r, img[s]]  # (acc o s)[i] = acc[s[i]], only i in supp(s) change
    if not np.all(is_sparse):
        r = rows[~is_sparse]
        acc[r] = np.take_along_axis(acc[r], labels[codes[~is_sparse]], axis=1)


def _walk(labels, tables, parent, via, base, acc, lv, x) -> None:
    """In place: ``acc[r] <- acc[r] o u_{x[r]}`` with u the representative at level ``lv[r]``.

    All rows advance together, one tree edge per round (rounds = the deepest path).
    """
    x = np.array(x, dtype=np.int64, copy=True)
    rows = np.flatnonzero(x != base[lv])
    while rows.size:
        codes = via[lv[rows], x[rows]].astype(np.int64)
        _right_multiply(labels, *tables, acc, rows, codes)
        x[rows] = parent[lv[rows], x[rows]]
        rows = rows[x[rows] != base[lv[rows]]]


def _build_chain(n: int, gens: Sequence[np.ndarray], base: Sequence[int]) -> _Chain:
    """Schreier trees of all levels of the chain defined by ``base`` and the generators.

    Level k uses as labels the generators fixing b_1..b_{k-1} (the strong generators of
    G_{k-1}) plus its own shortcut labels. The trees of all levels grow together in one
    vectorized breadth-first search (one round per tree depth) over the sparse "moved point"
    edges of the labels. While a tree is deeper than 2 log2(orbit size), the representative u of
    its deepest point and its powers u^2, u^4, ... are added as shortcut labels and the tree is
    regrown. (nauty's adjacent transpositions for K_n give path-shaped trees of depth n - k; u
    is then a cycle through the whole orbit and its powers give depth <= log2 n.)

    Args:
        n: number of points.
        gens: non-identity generators int32[n], each moving some base point.
        base: base points.

    Returns:
        the chain (certification against the group order is the caller's job).
    """
    m = len(base)
    ident = np.arange(n, dtype=np.int32)
    base_arr = np.asarray(base, np.int64)
    if m == 0:
        empty = np.zeros((0, n), np.int32)
        return _Chain(base_arr.astype(np.int32), empty, np.zeros(0, np.int32),
                      np.zeros((0, 1), np.int32), np.zeros((0, 1), np.int32), empty, empty,
                      np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64))
    gmat = np.stack([np.asarray(g, np.int32) for g in gens])
    bmoved = gmat[:, base_arr] != base_arr[None, :].astype(np.int32)
    glevel = np.argmax(bmoved, axis=1)  # first base point moved (every generator moves one)
    # Generator edge table (moved points only), rows sorted by source, then level descending:
    # at level k the usable entries of a row form a prefix (generators with glevel >= k).
    gi, src = np.nonzero(gmat != ident)
    dst = gmat[gi, src].astype(np.int64)
    ekey = src.astype(np.int64) * (m + 1) + (m - glevel[gi])
    order = np.argsort(ekey, kind="stable")
    ekey, dst, ecode = ekey[order], dst[order], gi[order].astype(np.int64)
    rowstart = np.searchsorted(ekey, np.arange(n, dtype=np.int64) * (m + 1), side="left")

    pool = gmat
    shortcuts: list[list[int]] = [[] for _ in range(m)]
    parent = np.full((m, n), -1, np.int32)
    via = np.full((m, n), -1, np.int32)
    depth = np.zeros((m, n), np.int32)
    visited = np.zeros((m, n), bool)
    active = np.arange(m)
    for _ in range(64):
        # ---- grow the trees of the active levels (vectorized BFS) ----
        parent[active] = -1
        via[active] = -1
        depth[active] = 0
        visited[active] = False
        visited[active, base_arr[active]] = True
        max_sc = max((len(shortcuts[k]) for k in active), default=0)
        sc_tab = np.full((m, max(max_sc, 1)), -1, np.int64)
        for k in active:
            sc_tab[k, : len(shortcuts[k])] = shortcuts[k]
        f_lv = active.astype(np.int64)
        f_pt = base_arr[active]
        d = 0
        while f_lv.size:
            d += 1
            lo = rowstart[f_pt]
            hi = np.searchsorted(ekey, f_pt * (m + 1) + (m - f_lv), side="right")
            cnt = hi - lo
            rep = np.repeat(np.arange(f_lv.size), cnt)
            off = np.arange(rep.size) - np.repeat(np.cumsum(cnt) - cnt, cnt) + lo[rep]
            sc = sc_tab[f_lv]
            r2, c2 = np.nonzero(sc >= 0)
            codes2 = sc[r2, c2]
            c_lv = np.concatenate([f_lv[rep], f_lv[r2]])
            c_par = np.concatenate([f_pt[rep], f_pt[r2]])
            c_dst = np.concatenate([dst[off], pool[codes2, f_pt[r2]].astype(np.int64)])
            c_code = np.concatenate([ecode[off], codes2])
            new = ~visited[c_lv, c_dst]
            c_lv, c_par, c_dst, c_code = c_lv[new], c_par[new], c_dst[new], c_code[new]
            _, first = np.unique(c_lv * n + c_dst, return_index=True)
            c_lv, c_par, c_dst, c_code = c_lv[first], c_par[first], c_dst[first], c_code[first]
            visited[c_lv, c_dst] = True
            parent[c_lv, c_dst] = c_par
            via[c_lv, c_dst] = c_code
            depth[c_lv, c_dst] = d
            f_lv, f_pt = c_lv, c_dst
        # ---- shortcuts for the levels whose trees are too deep ----
        sizes = visited[active].sum(axis=1)
        logs = np.ceil(np.log2(np.maximum(sizes, 2))).astype(np.int64)
        too_deep = depth[active].max(axis=1) > np.maximum(2, 2 * logs)
        room = np.asarray([len(shortcuts[k]) for k in active]) < 4 * logs + 4
        deep = active[too_deep & room]
        if deep.size == 0:
            break
        x = np.argmax(depth[deep], axis=1)
        dmax = depth[deep, x]
        acc = np.tile(ident, (deep.size, 1))
        _walk(pool, _sparse_tables(pool), parent, via, base_arr, acc, deep, x)
        new_labels = []
        for i, k in enumerate(deep.tolist()):
            u = acc[i]
            power = 1
            while True:
                shortcuts[k].append(pool.shape[0] + len(new_labels))
                new_labels.append(u)
                power *= 2
                u = u[u]
                if power > dmax[i] or np.array_equal(u, ident):
                    break
        pool = np.concatenate([pool, np.stack(new_labels)])
        active = deep
    sizes = visited.sum(axis=1)
    orbit_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    orbit_points = np.nonzero(visited)[1].astype(np.int32)  # row-major: sorted per level
    sparse_row, supp, img = _sparse_tables(pool)
    return _Chain(base_arr.astype(np.int32), pool.astype(np.int32), sparse_row, supp, img,
                  parent, via, orbit_start, orbit_points, depth.max(axis=1).astype(np.int64))


def _chain_tables(chain: _Chain):
    return chain.sparse_row, chain.sparse_supp, chain.sparse_img


def _representative(chain: _Chain, k: int, x: int) -> np.ndarray:
    """int32[n] the coset representative u_x at level k (``u_x[base[k]] = x``)."""
    acc = np.arange(chain.labels.shape[1], dtype=np.int32)[None, :].copy()
    _walk(chain.labels, _chain_tables(chain), chain.parent, chain.via,
          chain.base.astype(np.int64), acc, np.array([k]), np.array([x]))
    return acc[0]


def _sift(chain: _Chain, g: np.ndarray) -> tuple[np.ndarray, int]:
    """Sifts g through the chain.

    Returns:
        (residue, k): k is the index of the level where sifting stopped (m if it went through);
        the residue fixes the base points of the levels before k.
    """
    for k, point in enumerate(chain.base.tolist()):
        x = int(g[point])
        if x != point and chain.parent[k, x] < 0:
            return g, k
        g = inverse(_representative(chain, k, x))[g]
    return g, chain.base.size


def _chain_sample(chain: _Chain, n: int, rng: np.random.Generator, num: int) -> np.ndarray:
    """int32[num, n] products u_1 o ... o u_m of uniformly drawn coset representatives."""
    m = chain.base.size
    if m == 0 or num == 0:
        return np.tile(np.arange(n, dtype=np.int32), (num, 1))
    sizes = chain.orbit_sizes.astype(np.int64)
    picks = rng.integers(0, sizes, size=(num, m))
    points = chain.orbit_points[chain.orbit_start[:-1][None, :] + picks]  # (num, m)
    base = chain.base.astype(np.int64)
    tables = _chain_tables(chain)
    out = np.empty((num, n), np.int32)
    chunk = max(1, _SAMPLE_CHUNK // max(m * n, 1))
    for lo in range(0, num, chunk):
        c = min(chunk, num - lo)
        # coset representatives of all levels of c samples at once: reps[s, k] = u_k
        reps = np.tile(np.arange(n, dtype=np.int32), (c * m, 1))
        _walk(chain.labels, tables, chain.parent, chain.via, base, reps,
              np.tile(np.arange(m), c), points[lo: lo + c].reshape(-1))
        reps = reps.reshape(c, m, n)
        while reps.shape[1] > 1:  # g = u_1 o u_2 o ... o u_m by pairwise products
            k = reps.shape[1]
            prod = np.take_along_axis(reps[:, 0: k - 1: 2], reps[:, 1:k:2], axis=2)
            reps = np.concatenate([prod, reps[:, k - 1:]], axis=1) if k % 2 else prod
        out[lo: lo + c] = reps[:, 0]
    return out


_SAMPLE_CHUNK = 1 << 22
"""Max elements (samples x levels x n) held at once by ``_chain_sample``."""


def _stabilizer_chain(n: int, gens: np.ndarray, log10_order: float,
                      base: Sequence[int] | None = None, oracle=None,
                      max_rounds: int = 100_000) -> tuple[_Chain, int]:
    """Base and strong generating set with Schreier trees, certified against nauty's order.

    Args:
        n: number of points.
        gens: int32[r, n] generators of G (identity rows are dropped).
        log10_order: log10 |G| (from nauty; only needs to be accurate to +-0.1).
        base: optional initial base (default: inferred from nauty's generator order).
        oracle: optional function ``points -> (generators int32[k, n], log10 order)`` of the
            pointwise stabilizer of ``points`` in G (nauty with those vertices individualized),
            used to repair a chain that fails the certificate.
        max_rounds: cap on random Schreier-Sims sifts (a safety net: nauty's generators with
            the inferred base have always been certified directly in our tests).

    Returns:
        (chain, exact order as a Python int).

    Raises:
        RuntimeError: the chain could not be completed (should not happen).
    """
    ident = np.arange(n, dtype=np.int32)
    gens = [np.asarray(g, np.int32) for g in gens if not np.array_equal(g, ident)]
    if base is None:
        base = _infer_base(np.stack(gens)) if gens else []
    base = list(dict.fromkeys(int(b) for b in base))  # distinct points, order kept
    for g in gens:  # every generator must move a base point
        if not base or np.all(g[base] == np.asarray(base)):
            base.append(int(np.flatnonzero(g != ident)[0]))
    chain = _build_chain(n, gens, base)
    order = math.prod(int(s) for s in chain.orbit_sizes)
    repairs = 0
    while oracle is not None and abs(math.log10(order) - log10_order) > 0.1 and repairs < 8:
        # Repair with the oracle. The chain is right up to level k iff |G : G_k| equals the
        # product of the first k basic orbit lengths; find the first level j whose index is
        # wrong (or j = m: right levels, but the base does not reach the trivial group), take
        # the oracle's generators of G_j, and re-infer the base after base[:j] from them.
        repairs += 1
        logs = np.concatenate([[0.0], np.cumsum(np.log10(chain.orbit_sizes.astype(float)))])
        m = len(base)

        def right_up_to(k: int) -> bool:
            return abs(log10_order - oracle(base[:k])[1] - logs[k]) < 0.1

        lo, hi = 0, m + 1  # right_up_to(lo) holds; find the largest such k in [0, m]
        if right_up_to(m):
            lo = m
        else:
            hi = m
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if right_up_to(mid):
                    lo = mid
                else:
                    hi = mid
        new_gens = [g for g in oracle(base[:lo])[0] if not np.array_equal(g, ident)]
        if not new_gens:
            break
        gens.extend(new_gens)
        base = base[:lo] + [b for b in _infer_base(np.stack(new_gens)) if b not in base[:lo]]
        for g in gens:
            if np.all(g[base] == np.asarray(base)):
                base.append(int(np.flatnonzero(g != ident)[0]))
        chain = _build_chain(n, gens, base)
        order = math.prod(int(s) for s in chain.orbit_sizes)
    rng = np.random.default_rng(0)
    rounds = 0
    while abs(math.log10(order) - log10_order) > 0.1:
        # Not a stabilizer chain yet: random Schreier-Sims. Sift random elements h s h' of G
        # (h, h' drawn through the current chain, s a generator); non-trivial residues become
        # new strong generators (and new base points if they fix the whole base).
        if rounds >= max_rounds:
            raise RuntimeError("Schreier-Sims did not reach nauty's group order")
        batch = 8
        rounds += batch
        left, right = _chain_sample(chain, n, rng, batch), _chain_sample(chain, n, rng, batch)
        picks = rng.integers(0, len(gens), size=batch)
        found = False
        for h, i, h2 in zip(left, picks, right):
            residue, _ = _sift(chain, h[gens[i][h2]])
            if np.array_equal(residue, ident) or any(np.array_equal(residue, g) for g in gens):
                continue
            if np.all(residue[base] == np.asarray(base)):  # sifted through: extend the base
                base.append(int(np.flatnonzero(residue != ident)[0]))
            gens.append(residue)
            found = True
        if found:
            chain = _build_chain(n, gens, base)
            order = math.prod(int(s) for s in chain.orbit_sizes)
    return chain, int(order)


# --------------------------------------------------------------------------------------------
# Public API: groups, orbits, canonical labellings
# --------------------------------------------------------------------------------------------


def _stabilizer_oracle(adj: np.ndarray, mask: np.ndarray):
    """Pointwise stabilizers in Aut(adj) (padding fixed) via nauty, memoized.

    Args:
        adj: bool[n, n] validated adjacency.
        mask: bool[n] real nodes.

    Returns:
        a function ``points -> (generators int32[k, n], log10 order)``.
    """
    n = adj.shape[0]
    real = np.flatnonzero(mask)
    sub_adj = adj[np.ix_(real, real)]
    sub_index = np.full(n, -1, np.int64)
    sub_index[real] = np.arange(real.size)
    cache: dict[tuple[int, ...], tuple[np.ndarray, float]] = {}

    def oracle(points):
        key = tuple(int(p) for p in points)
        if key not in cache:
            sub, log10_stab = _nauty_stabilizer(sub_adj, sub_index[np.asarray(key, np.int64)])
            lifted = np.tile(np.arange(n, dtype=np.int32), (sub.shape[0], 1))
            if sub.size:
                lifted[:, real] = real[sub]
            cache[key] = (lifted, log10_stab)
        return cache[key]

    return oracle


def automorphism_group(adj: np.ndarray, mask: np.ndarray | None = None) -> AutGroup:
    """Automorphism group, orbits and canonical labelling of a graph (nauty + Schreier-Sims).

    Args:
        adj: [n, n] symmetric 0/1 adjacency without self-loops (bool, int or float dtype).
        mask: optional bool[n], True for real nodes. Padding nodes must have no edges; they are
            fixed by every automorphism and take the last canonical positions in index order
            (so padding stored last, at n_real..n-1, stays in place).

    Returns:
        An :class:`AutGroup` with a certified stabilizer chain (exact ``order``).

    Raises:
        ValueError: invalid adjacency or mask.
    """
    a = _as_adjacency(adj)
    n = a.shape[0]
    m = _as_mask(mask, n, a)
    real = np.flatnonzero(m)
    pad = np.flatnonzero(~m)
    sub_gens, log10_order, orbit_rep, sub_ranks = _nauty(a[np.ix_(real, real)])
    gens = np.tile(np.arange(n, dtype=np.int32), (sub_gens.shape[0], 1))
    if sub_gens.size:
        gens[:, real] = real[sub_gens]
    canon = np.empty(n, np.int32)
    canon[real] = sub_ranks
    canon[pad] = real.size + np.arange(pad.size, dtype=np.int32)
    orbit_ids = np.full(n, -1, np.int32)
    if real.size:
        _, dense = np.unique(orbit_rep, return_inverse=True)  # reps are the orbit minima
        orbit_ids[real] = dense.reshape(-1)
    chain, order = _stabilizer_chain(n, gens, log10_order, oracle=_stabilizer_oracle(a, m))
    chain_arrays = [getattr(chain, f.name) for f in dataclasses.fields(chain)]
    for arr in (gens, orbit_ids, canon, m, *chain_arrays):
        arr.setflags(write=False)
    return AutGroup(n=n, generators=gens, order=order, orbits=orbit_ids, canon=canon, mask=m,
                    chain=chain)


def automorphism_groups(adjs: Sequence[np.ndarray],
                        masks: Sequence[np.ndarray | None] | None = None) -> list[AutGroup]:
    """:func:`automorphism_group` over a list of graphs (e.g. to cache a dataset's groups).

    Args:
        adjs: B adjacency matrices [n_b, n_b] (sizes may differ), or an array [B, n, n].
        masks: optional B masks bool[n_b] (or None entries).

    Returns:
        list of B :class:`AutGroup`.
    """
    masks = [None] * len(adjs) if masks is None else list(masks)
    if len(masks) != len(adjs):
        raise ValueError(f"got {len(adjs)} graphs but {len(masks)} masks")
    return [automorphism_group(a, mk) for a, mk in zip(adjs, masks)]


def orbits(adj: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Orbit of every node under Aut(A).

    Args:
        adj: [n, n] adjacency (see :func:`automorphism_group`).
        mask: optional bool[n] real nodes.

    Returns:
        int32[n] orbit ids 0, 1, ... numbered in the order of each orbit's smallest node;
        -1 for padding nodes.
    """
    return np.array(automorphism_group(adj, mask).orbits)


def group_order(adj: np.ndarray, mask: np.ndarray | None = None) -> int:
    """Exact order |Aut(A)| as a Python int (e.g. ``math.factorial(n)`` for K_n).

    Args:
        adj: [n, n] adjacency (see :func:`automorphism_group`).
        mask: optional bool[n] real nodes.

    Returns:
        the exact group order.
    """
    return automorphism_group(adj, mask).order


def canonical_ranks(adj: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """nauty's canonical labelling in the project's ranks convention.

    Args:
        adj: [n, n] adjacency.
        mask: optional bool[n] real nodes (padding takes the last positions).

    Returns:
        int32[n] ranks with ``permute_adjacency(ranks, adj)`` the canonical adjacency, which
        is identical for ``adj`` and ``permute_adjacency(p, adj)`` for every permutation p.
    """
    a = _as_adjacency(adj)
    n = a.shape[0]
    m = _as_mask(mask, n, a)
    real = np.flatnonzero(m)
    pad = np.flatnonzero(~m)
    ranks = np.empty(n, np.int32)
    ranks[real] = _nauty_ranks(a[np.ix_(real, real)])
    ranks[pad] = real.size + np.arange(pad.size, dtype=np.int32)
    return ranks


# --------------------------------------------------------------------------------------------
# Exact uniform sampling
# --------------------------------------------------------------------------------------------


def sample_automorphism(group: AutGroup, rng: np.random.Generator,
                        size: int | None = None) -> np.ndarray:
    """Exactly uniform random element(s) of the automorphism group.

    A uniform point of each basic orbit is drawn and the corresponding coset representatives
    are multiplied down the stabilizer chain, ``g = u_1 o u_2 o ... o u_m``; the factorization
    is unique, so g is exactly uniform on the group. Cost per sample: O(n * sum of tree depths)
    (depths are kept O(log orbit size) by shortcut labels), never O(|G|).

    Args:
        group: an :class:`AutGroup`.
        rng: numpy Generator (all randomness comes from it: same state, same result).
        size: None for one sample, or the number of samples.

    Returns:
        int32[n] (size None) or int32[size, n] automorphisms (project convention).
    """
    rng = _as_rng(rng)
    num = 1 if size is None else int(size)
    if num < 0:
        raise ValueError(f"size must be non-negative, got {size}")
    out = _chain_sample(group.chain, group.n, rng, num)
    return out[0] if size is None else out


def inversion_kernel_sample(adj: np.ndarray, rng: np.random.Generator,
                            group: AutGroup | None = None, mask: np.ndarray | None = None,
                            size: int | None = None) -> np.ndarray:
    """Exact sample of the SymPE inversion kernel: ranks uniform on ``canon o Aut(A)``.

    Returns ``compose(canon, a) = canon[a]`` with ``a`` uniform on Aut(A). The set of these is
    exactly the set of all ranks ``r`` with ``permute_adjacency(r, A) == canonical adjacency``
    (each hit with probability 1/|Aut(A)|).

    Args:
        adj: [n, n] adjacency (validated; may be padded, see ``mask``).
        rng: numpy Generator.
        group: optional precomputed ``automorphism_group(adj, mask)`` (saves the nauty call; it
            must belong to this graph, only its size is checked).
        mask: optional bool[n] real nodes; padding nodes take positions n_real..n-1 in index
            order (in place when the padding is stored last).
        size: None for one sample or a number of samples.

    Returns:
        int32[n] or int32[size, n] ranks.
    """
    if group is None:
        group = automorphism_group(adj, mask)
    else:
        a = _as_adjacency(adj)
        if group.n != a.shape[0]:
            raise ValueError(f"group is for {group.n} nodes but adj has {a.shape[0]}")
        if mask is not None and not np.array_equal(_as_mask(mask, group.n, a), group.mask):
            raise ValueError("mask differs from the mask the group was computed with")
    auts = sample_automorphism(group, rng, size)
    return compose(group.canon, auts).astype(np.int32)


def inversion_kernel_sample_batch(adjs: Sequence[np.ndarray] | np.ndarray, rng: np.random.Generator,
                                  masks: Sequence[np.ndarray | None] | np.ndarray | None = None,
                                  groups: Sequence[AutGroup] | None = None,
                                  n_max: int | None = None) -> np.ndarray:
    """One inversion-kernel sample per graph, padded to a common size.

    Args:
        adjs: B adjacencies [n_b, n_b] (sizes may differ) or an array [B, n, n].
        rng: numpy Generator (graphs are sampled in order from it).
        masks: optional B masks bool[n_b] (None entries allowed), e.g. bool[B, n].
        groups: optional B precomputed groups (``automorphism_groups(adjs, masks)``), to avoid
            calling nauty at every epoch.
        n_max: output width (default max n_b). Positions n_b..n_max-1 of row b are the identity
            (extra padding stays in place).

    Returns:
        int32[B, n_max] ranks.
    """
    num = len(adjs)
    masks = [None] * num if masks is None else list(masks)
    if len(masks) != num:
        raise ValueError(f"got {num} graphs but {len(masks)} masks")
    if groups is not None and len(groups) != num:
        raise ValueError(f"got {num} graphs but {len(groups)} groups")
    sizes = [np.asarray(a).shape[0] if np.asarray(a).ndim == 2 else -1 for a in adjs]
    width = max(sizes, default=0) if n_max is None else int(n_max)
    if any(s > width for s in sizes):
        raise ValueError(f"n_max={width} is smaller than the largest graph ({max(sizes)})")
    out = np.tile(np.arange(width, dtype=np.int32), (num, 1))
    for b in range(num):
        group = None if groups is None else groups[b]
        ranks = inversion_kernel_sample(adjs[b], rng, group=group, mask=masks[b])
        out[b, : ranks.shape[0]] = ranks
    return out


# --------------------------------------------------------------------------------------------
# 1-WL colour refinement
# --------------------------------------------------------------------------------------------


def _unique_rows(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lexicographic ranks of the distinct rows of an integer matrix.

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


def _wl_refine(num: int, src: np.ndarray, dst: np.ndarray, max_iter: int | None) -> np.ndarray:
    """1-WL refinement on a directed edge list (both directions of every undirected edge).

    Args:
        num: number of nodes.
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
        col = _unique_rows(sig)[0]
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
    a = _as_adjacency(adj)
    n = a.shape[0]
    m = _as_mask(mask, n, a)
    if max_iter is not None and (isinstance(max_iter, bool) or int(max_iter) != max_iter
                                 or max_iter < 0):
        raise ValueError(f"max_iter must be a non-negative integer or None, got {max_iter}")
    real = np.flatnonzero(m)
    src, dst = np.nonzero(a[np.ix_(real, real)])  # row-major: sorted by source
    colors = np.full(n, -1, np.int32)
    colors[real] = _wl_refine(real.size, src, dst, max_iter)
    return colors
