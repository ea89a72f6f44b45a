"""Schreier-Sims stabilizer chains for exactly uniform sampling of a permutation group (private).

The machinery behind :class:`sympe_jax.exact.automorphisms.AutGroup` and
:func:`sympe_jax.exact.automorphisms.sample_automorphism`: a base and strong generating set
(inferred from nauty's generators), Schreier trees, sifting and the certification of the chain
against the group order. Host-side NumPy (plus ``scipy`` for :func:`_infer_base`, from the
``exact`` extra, imported lazily); permutations follow the convention of
:mod:`sympe_jax.exact.automorphisms` (``g[i]`` is where node ``i`` goes, ``g[h]`` is "g after h").

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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from sympe_jax.exact._common import import_extra, inverse


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
    scipy_sparse = import_extra("scipy.sparse")  # optional dependency, imported lazily
    csgraph = import_extra("scipy.sparse.csgraph")

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
            graph = scipy_sparse.csr_matrix(
                (np.ones(int(keep.sum())), (e_src[keep], e_dst[keep])), shape=(n, n))
            _, comp = csgraph.connected_components(graph, directed=False)
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
