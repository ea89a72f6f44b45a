"""Permutation-equivariant node features of dense graphs: scores worth sorting.

A sorted score only breaks symmetry where it ties, so a good canonicalizer scores nodes with
features that separate as many non-automorphic nodes as possible while staying exactly
equivariant (equal for automorphic nodes, up to float rounding). The features here are
sign- and basis-invariant spectral quantities:

* :func:`random_walk_return_probabilities`: ``diag(P^k)`` with ``P = D^-1 A``;
* :func:`heat_kernel_diagonals`: ``diag(exp(-t L))``;
* :func:`eigenspace_projector_diagonals`: ``diag(U_l U_l^T)`` for each Laplacian eigenspace l,
  invariant to the sign and basis of the eigenvectors inside repeated eigenvalues;

and, for the Laplacian positional-encoding baseline, the eigenvectors themselves
(:func:`laplacian_eigenvectors`, ambiguous in sign and, for repeated eigenvalues, in basis).

Every function takes one graph as a dense adjacency ``float[n, n]`` (symmetric, zero diagonal)
and a node mask ``bool[n]``; padded rows/columns are ignored and their outputs are 0. Use
``jax.vmap`` for batches. An adjacency that is not that of a simple graph among the real nodes
(a self-loop, a one-way edge, a NaN/Inf entry) is a ``ValueError`` eagerly; under ``jit``/``vmap``
every floating output is NaN (see :mod:`sympe_jax.checks`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sympe_jax import checks

__all__ = [
    "laplacian",
    "laplacian_eigh",
    "random_walk_return_probabilities",
    "heat_kernel_diagonals",
    "eigenspace_projector_diagonals",
    "laplacian_eigenvectors",
    "randomize_eigenvectors",
    "invariant_node_scores",
    "structural_node_features",
]


def _prepare(adj: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(adjacency float[n, n] with padding rows/columns zeroed, real bool[n], ok bool[]).

    ``ok`` is False for an adjacency that is not a simple graph's (the spectral features of a
    graph with a self-loop or a one-way edge would silently be those of another graph): eagerly
    a ``ValueError`` here; under tracing a checkify check, the returned adjacency is all zero
    (a NaN never reaches ``eigh``) and the caller poisons its output with ``checks.poison(out, ok)``.
    """
    adj = checks.check_floating(adj, "adjacency", ndim=2)
    n = adj.shape[0]
    if adj.shape != (n, n):
        raise ValueError(f"adjacency must be square, got {adj.shape}")
    real = checks.check_mask(mask, (n,))
    pair = real[:, None] & real[None, :]
    adj = jnp.where(pair, adj, 0.0)
    finite = jnp.all(jnp.isfinite(adj))
    loop_free = jnp.all(jnp.diagonal(adj) == 0)
    symmetric = jnp.all(adj == adj.T)
    checks.check_value(finite, "adjacency has non-finite entries among the real nodes")
    checks.check_value(loop_free, "adjacency has a self-loop (nonzero diagonal entry); "
                       "the spectral features are defined for simple graphs")
    checks.check_value(symmetric, "adjacency must be symmetric (an undirected graph)")
    ok = finite & loop_free & symmetric
    return jnp.where(ok, adj, 0.0), real, ok


def _eigh(adj: jax.Array, real: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`laplacian_eigh` of an adjacency already through :func:`_prepare` (not poisoned)."""
    n = adj.shape[0]
    lap = jnp.diag(adj.sum(-1)) - adj
    lap = lap + jnp.diag(jnp.where(real, 0.0, 2.0 * n + 1.0))
    evals, evecs = jnp.linalg.eigh(lap)
    evecs = jnp.where(real[:, None], evecs, 0.0)
    valid = jnp.arange(n) < jnp.sum(real)
    return evals, evecs, valid


def laplacian(adj: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Combinatorial Laplacian ``L = D - A`` of the real nodes, float[n, n] (padding rows 0)."""
    adj, _, ok = _prepare(adj, mask)
    return checks.poison(jnp.diag(adj.sum(-1)) - adj, ok)


def laplacian_eigh(adj: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Eigen-decomposition of the real nodes' Laplacian, padding eigenpairs last.

    Padded nodes get a diagonal entry ``2 n + 1`` (above every real eigenvalue, which is at most
    ``2 (n - 1)``), so their eigenvectors are the unit vectors on padding nodes and sort last.

    Returns:
      eigenvalues float[n] ascending, eigenvectors float[n, n] (columns; rows of padding
      nodes zero for real eigenpairs), and valid bool[n] (True for the n_real real eigenpairs).
    """
    adj, real, ok = _prepare(adj, mask)
    return checks.poison(_eigh(adj, real), ok)


def random_walk_return_probabilities(adj: jax.Array, mask: jax.Array | None = None, steps: int = 8) -> jax.Array:
    """``diag(P^k)`` for k = 1..steps, ``P = D^-1 A`` (isolated nodes: 0). float[n, steps]."""
    adj, real, ok = _prepare(adj, mask)
    return checks.poison(_walk_diagonals(adj, real, steps), ok)


def _walk_diagonals(adj: jax.Array, real: jax.Array, steps: int) -> jax.Array:
    """:func:`random_walk_return_probabilities` of an adjacency already through :func:`_prepare`."""
    deg = adj.sum(-1, keepdims=True)
    p = jnp.where(deg > 0, adj / jnp.maximum(deg, 1e-12), 0.0)

    def step(pk, _):
        pk = pk @ p
        return pk, jnp.diagonal(pk)

    _, diags = jax.lax.scan(step, jnp.eye(adj.shape[0], dtype=adj.dtype), None, length=steps)
    return jnp.where(real[:, None], diags.T, 0.0)


def heat_kernel_diagonals(adj: jax.Array, mask: jax.Array | None = None,
                          times: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0)) -> jax.Array:
    """``diag(exp(-t L))`` for each t in ``times``. float[n, len(times)]."""
    adj, real, ok = _prepare(adj, mask)
    evals, evecs, valid = _eigh(adj, real)
    weights = jnp.where(valid[None, :], jnp.exp(-jnp.asarray(times)[:, None] * evals[None, :]), 0.0)
    return checks.poison((evecs ** 2) @ weights.T, ok)


def _same_eigenspace(evals: jax.Array, valid: jax.Array, tol: float) -> jax.Array:
    return (jnp.abs(evals[:, None] - evals[None, :]) <= tol) & valid[:, None] & valid[None, :]


def eigenspace_projector_diagonals(adj: jax.Array, mask: jax.Array | None = None, k: int = 8,
                                   tol: float = 1e-4) -> jax.Array:
    """Diagonals of the projectors onto the eigenspaces of the k smallest Laplacian eigenvalues.

    Column j is ``diag(sum of u_l u_l^T over eigenvalues l within tol of eigenvalue j)``; it
    does not depend on the sign or basis returned by ``eigh``. Columns beyond the number of
    real nodes are 0. float[n, k].
    """
    tol = checks.check_tolerance(tol, "tol")
    adj, real, ok = _prepare(adj, mask)
    evals, evecs, valid = _eigh(adj, real)
    same = _same_eigenspace(evals, valid, tol).astype(evecs.dtype)
    diags = (evecs ** 2) @ same  # [n, n]: column j sums u_l^2 over j's eigenspace
    diags = jnp.where(valid[None, :], diags, 0.0)
    return checks.poison(_first_columns(diags, k), ok)


def _first_columns(x: jax.Array, k: int) -> jax.Array:
    n = x.shape[1]
    if k <= n:
        return x[:, :k]
    return jnp.pad(x, ((0, 0), (0, k - n)))


def laplacian_eigenvectors(adj: jax.Array, mask: jax.Array | None = None, k: int = 8) -> jax.Array:
    """Eigenvectors of the k smallest non-trivial Laplacian eigenvalues, float[n, k].

    The first eigenvector (eigenvalue 0) is dropped; for a disconnected graph the further
    zero-eigenvalue vectors (component indicators) are kept. Sign ambiguity: each column is
    defined up to a sign, and columns with repeated eigenvalues up to an orthogonal change of
    basis; ``eigh`` picks one arbitrarily, so these features are NOT equivariant as returned.
    Use :func:`randomize_eigenvectors` for a version that is equivariant in law. Columns beyond
    the real eigenpairs are 0.
    """
    adj, real, ok = _prepare(adj, mask)
    _, evecs, valid = _eigh(adj, real)
    evecs = jnp.where(valid[None, :], evecs, 0.0)
    return checks.poison(_first_columns(evecs[:, 1:], k), ok)


def randomize_eigenvectors(key: jax.Array, adj: jax.Array, mask: jax.Array | None = None, k: int = 8,
                           tol: float = 1e-4) -> jax.Array:
    """Laplacian eigenvectors with a uniformly random basis of every eigenspace, float[n, k].

    Each eigenspace's basis is rotated by a Haar-random orthogonal matrix (which includes
    random signs), so the law of the output no longer depends on the arbitrary choice of
    ``eigh``: permuting the graph permutes the law of the rows. Dropping the trivial first
    eigenvector follows :func:`laplacian_eigenvectors`.
    """
    tol = checks.check_tolerance(tol, "tol")
    adj, real, ok = _prepare(adj, mask)
    evals, evecs, valid = _eigh(adj, real)
    n = evals.shape[0]
    same = _same_eigenspace(evals, valid, tol) | (jnp.eye(n, dtype=bool) & ~valid[:, None])
    # Eigenvalues are sorted, so eigenspaces are contiguous blocks: the QR factor of a
    # block-diagonal Gaussian matrix is block-diagonal and Haar-distributed within each block.
    gauss = jnp.where(same, jax.random.normal(key, (n, n), evecs.dtype), 0.0)
    q, r = jnp.linalg.qr(gauss)
    q = q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0)[None, :]
    rotated = jnp.where(valid[None, :], evecs @ q, 0.0)
    return checks.poison(_first_columns(rotated[:, 1:], k), ok)


def structural_node_features(adj: jax.Array, mask: jax.Array | None = None, steps: int = 8) -> jax.Array:
    """Exactly equivariant node features: ``[diag(P^k) for k = 1..steps, degree]``. float[n, steps + 1].

    The inputs of :func:`invariant_node_scores`. Used as node channels they give a network the
    structural information the score is made of, through a path that carries gradient (the
    sorted ranks carry none). Padded nodes get 0.
    """
    adj, real, ok = _prepare(adj, mask)
    rw = _walk_diagonals(adj, real, steps)
    deg = jnp.where(real, adj.sum(-1), 0.0)
    return checks.poison(jnp.concatenate([rw, deg[:, None]], axis=-1), ok)


def invariant_node_scores(adj: jax.Array, mask: jax.Array | None = None, steps: int = 8) -> jax.Array:
    """One informative, exactly equivariant scalar per node: float[n].

    A fixed generic linear combination of :func:`structural_node_features` (the random-walk
    return probabilities for k = 1..steps, and the degree). Two nodes get equal scores (up to
    rounding) when they are automorphic; non-automorphic nodes almost always differ. Padded
    nodes get 0.
    """
    feats = structural_node_features(adj, mask, steps)
    weights = jnp.asarray([1.0 / (k + 1.618) for k in range(steps)] + [0.1], feats.dtype)
    return feats @ weights
