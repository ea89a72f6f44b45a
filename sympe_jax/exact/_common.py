"""Input validation and permutation helpers shared by the exact solvers (host-side NumPy).

Private: the public names are re-exported by :mod:`sympe_jax.exact.automorphisms` and
:mod:`sympe_jax.exact`. They live here, below :mod:`~sympe_jax.exact.automorphisms`,
:mod:`~sympe_jax.exact.wl` and :mod:`~sympe_jax.exact._schreier_sims`, so that those modules can
share them without importing each other. Permutations follow the project convention described in
:mod:`sympe_jax.exact.automorphisms` (``g[i]`` is where node ``i`` goes).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

__all__ = [
    "as_adjacency",
    "as_mask",
    "as_rng",
    "as_perm",
    "compose",
    "inverse",
    "permute_adjacency",
    "is_automorphism",
    "import_extra",
]


def import_extra(module: str) -> ModuleType:
    """Imports a dependency of the ``exact`` extra, with an error naming the extra if missing.

    Args:
        module: dotted module name (``"pynauty"``, ``"scipy.sparse.csgraph"``, ...).

    Returns:
        the imported module.

    Raises:
        ImportError: the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"sympe_jax.exact needs {module.split('.')[0]}, which comes with the 'exact' extra "
            "(pynauty, scipy): pip install 'sympe_jax[exact]'") from err


def as_adjacency(adj, name: str = "adj") -> np.ndarray:
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


def as_mask(mask, n: int, adj: np.ndarray | None = None) -> np.ndarray:
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


def as_rng(rng) -> np.random.Generator:
    """Checks that ``rng`` is a ``numpy.random.Generator`` (raises TypeError otherwise)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def as_perm(g, n: int | None = None, name: str = "g") -> np.ndarray:
    """Checks that ``g`` is a 1-D integer permutation (of length ``n`` if given); returns it.

    Raises:
        ValueError: not 1-D integer, wrong length, or not a permutation of 0..len-1.
    """
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
    g = as_perm(g, adj.shape[0])
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
    g = as_perm(g, adj.shape[0])
    return bool(np.array_equal(adj[np.ix_(g, g)], adj))
