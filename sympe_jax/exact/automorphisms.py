"""Exact graph automorphisms, canonical labellings and the exact inversion kernel (host-side NumPy).

This module is the *exact solver* that the fast sorting-based canonicalizer of ``sympe_jax`` is
checked against. Everything here runs on the host in NumPy (plus ``pynauty`` and ``scipy``, from
the ``exact`` extra, imported lazily); none of it is traced by JAX.

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
``(canon^-1 r) . A = A``. The inversion kernel of SymPE is the uniform law on this coset;
:func:`inversion_kernel_sample` samples it exactly, by drawing ``a`` uniformly from ``Aut(A)``
with a Schreier-Sims stabilizer chain (:func:`sample_automorphism`) built from nauty's generators
and certified against nauty's group order. The chain machinery (and why the sampling is exactly
uniform without enumerating the group) is in the private module
``sympe_jax.exact._schreier_sims``.

Also importable from here, for convenience: the input validation and permutation helpers
(:func:`as_adjacency`, :func:`as_mask`, :func:`compose`, :func:`inverse`,
:func:`permute_adjacency`, :func:`is_automorphism`) and 1-WL colour refinement
(:func:`wl_colors`, defined in :mod:`sympe_jax.exact.wl`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from sympe_jax.exact._common import (
    as_adjacency,
    as_mask,
    as_rng,
    compose,
    import_extra,
    inverse,
    is_automorphism,
    permute_adjacency,
)
# _build_chain and _infer_base are not used here; tests reach them as automorphisms._build_chain
# and automorphisms._infer_base.
from sympe_jax.exact._schreier_sims import (  # noqa: F401
    _build_chain,
    _chain_sample,
    _Chain,
    _infer_base,
    _stabilizer_chain,
)
from sympe_jax.exact.wl import wl_colors

__all__ = [
    "AutGroup",
    "automorphism_group",
    "automorphism_groups",
    "orbits",
    "group_order",
    "canonical_ranks",
    "sample_automorphism",
    "inversion_kernel_sample",
    "inversion_kernel_sample_batch",
    # re-exported from sympe_jax.exact._common and sympe_jax.exact.wl
    "as_adjacency",
    "as_mask",
    "permute_adjacency",
    "compose",
    "inverse",
    "is_automorphism",
    "wl_colors",
]


# --------------------------------------------------------------------------------------------
# nauty
# --------------------------------------------------------------------------------------------


def _pynauty():
    return import_extra("pynauty")  # optional dependency, imported lazily


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
# Groups, orbits, canonical labellings
# --------------------------------------------------------------------------------------------


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
        chain: the stabilizer chain (base, Schreier trees; see
            ``sympe_jax.exact._schreier_sims._Chain``).
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
    a = as_adjacency(adj)
    n = a.shape[0]
    m = as_mask(mask, n, a)
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
    a = as_adjacency(adj)
    n = a.shape[0]
    m = as_mask(mask, n, a)
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
    rng = as_rng(rng)
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
        a = as_adjacency(adj)
        if group.n != a.shape[0]:
            raise ValueError(f"group is for {group.n} nodes but adj has {a.shape[0]}")
        if mask is not None and not np.array_equal(as_mask(mask, group.n, a), group.mask):
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

