"""SymPE positional encodings and the baselines they are compared with.

SymPE (Algorithm 1 of Lawrence et al., ICLR 2025): sample ``g~`` from the inversion kernel by
randomized canonicalization, act with it on a learned vector ``v``, and give the network
``g~ . v`` as extra input channels. The network stays equivariant; the encoding breaks the
input's symmetry at random, and its law is equivariant.

Pure functions (usable from any framework):

* graphs: :func:`graph_sympe` (``v[ranks]``), :func:`sample_graph_sympe` (sort, then gather),
  :func:`straight_through_sympe` (the same sample, with a gradient for a learned scorer),
  :func:`random_permutation_encoding` (``v`` under a uniformly random permutation, no sorting),
  :func:`gaussian_noise`, Laplacian eigenvectors in :mod:`sympe_jax.features`;
* lattices: :func:`lattice_sympe` (``g~ . v`` for a p4m element), :func:`sample_lattice_sympe`.

Flax modules holding the learned ``v`` and sharing one interface per domain:

* graphs, one graph per call (vmap for batches): ``module(key, adjacency, mask, scores=None)
  -> float[n, features]`` for :class:`GraphSymPE`, :class:`RandomPermutationPE`,
  :class:`GaussianNoisePE`, :class:`LaplacianPE`, :class:`NoPE`;
* lattices: ``module(key, x, scores=None) -> float[L, L, features]`` for :class:`LatticeSymPE`,
  :class:`LatticeNoisePE`, :class:`NoPE`.

``key`` comes first and is the only randomness: same key, same encoding.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sympe_jax import canonicalize, checks, features
from sympe_jax.groups import lattice

__all__ = [
    "graph_sympe",
    "sample_graph_sympe",
    "straight_through_sympe",
    "random_permutation_encoding",
    "gaussian_noise",
    "lattice_sympe",
    "sample_lattice_sympe",
    "GraphSymPE",
    "RandomPermutationPE",
    "GaussianNoisePE",
    "LaplacianPE",
    "NoPE",
    "LatticeSymPE",
    "LatticeNoisePE",
]


# ----------------------------------------------------------------------------- graphs


def graph_sympe(v: jax.Array, ranks: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Node i gets row ``v[ranks[i]]``; masked-out nodes get zeros.

    Args:
      v: float[n_max, d] learned table.
      ranks: int[n] permutation (e.g. from ``sort_permutation``), real nodes ranked first.
      mask: optional bool[n].
    Returns:
      float[n, d]. A graph with more real nodes than ``n_max`` rows is an error: eagerly a
      ``ValueError``; under ``jit`` the rows become NaN (and a checkify error under
      :func:`sympe_jax.checks.checked`), never a silent wrap-around.
    """
    v = checks.check_floating(v, "v", ndim=2)
    ranks = jnp.asarray(ranks)
    if ranks.ndim != 1 or not jnp.issubdtype(ranks.dtype, jnp.integer):
        raise TypeError(f"ranks must be a 1-d integer array, got {ranks.dtype}{list(ranks.shape)}")
    n, n_max = ranks.shape[0], v.shape[0]
    real = checks.check_mask(mask, (n,))
    n_real = jnp.sum(real)
    fits = n_real <= n_max
    checks.check_value(fits, "graph has {} nodes but the SymPE table has n_max = {} rows", n_real, jnp.asarray(n_max))
    in_range = jnp.all(jnp.where(real, (ranks >= 0) & (ranks < n_real), True))
    checks.check_value(in_range, "ranks of real nodes must lie in 0..n_real-1")
    rows = v[jnp.clip(ranks, 0, n_max - 1)]
    rows = jnp.where(fits & in_range, rows, jnp.nan)
    return jnp.where(real[:, None], rows, 0.0)


def sample_graph_sympe(key: jax.Array, v: jax.Array, scores: jax.Array, mask: jax.Array | None = None, *,
                       atol: float = canonicalize.DEFAULT_ATOL) -> jax.Array:
    """SymPE for one graph: ``v[sort_permutation(key, scores, mask)]``. float[n, d].

    NaN/Inf scores make the output NaN under ``jit`` (eagerly: ``ValueError``), so a training
    loop that checks its loss stops instead of learning from garbage.
    """
    ranks = canonicalize.sort_permutation(key, scores, mask, atol=atol)
    out = graph_sympe(v, ranks, mask)
    real = checks.check_mask(mask, scores.shape)
    bad = jnp.any(real & ~jnp.isfinite(scores))
    return jnp.where(bad, jnp.nan, out)


def straight_through_sympe(key: jax.Array, v: jax.Array, scores: jax.Array, mask: jax.Array | None = None, *,
                           temperature: float, atol: float = canonicalize.DEFAULT_ATOL) -> jax.Array:
    """:func:`sample_graph_sympe` whose scores receive a gradient (straight-through). float[n, d].

    The value is exactly ``v[sort_permutation(key, scores, mask)]`` (the same sample, the same
    law). The gradient with respect to ``scores`` is that of the relaxation
    ``canonicalize.soft_ranks(scores, mask, temperature=temperature) @ v``, so a scorer upstream
    of the sort trains on the task loss; the sort alone would give it exactly zero. ``v``
    receives the same gradient as in :func:`sample_graph_sympe` (through the hard sample only).
    """
    hard = sample_graph_sympe(key, v, scores, mask, atol=atol)
    soft = canonicalize.soft_ranks(scores, mask, temperature=temperature) @ jax.lax.stop_gradient(v)
    return hard + (soft - jax.lax.stop_gradient(soft))  # the bracket is exactly 0 in value


def random_permutation_encoding(key: jax.Array, v: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Baseline: ``v`` under a uniformly random permutation of the real nodes (no sorting).

    Equals SymPE with all scores tied, i.e. sampling from the whole group instead of the
    inversion kernel: equivariant in law, maximal entropy. float[n, d].
    """
    n = (v.shape[0],) if mask is None else jnp.shape(mask)
    ranks = canonicalize.sort_permutation(key, jnp.zeros(n, jnp.float32), mask)
    return graph_sympe(v, ranks, mask)


def gaussian_noise(key: jax.Array, shape: tuple[int, ...], mask: jax.Array | None = None,
                   scale: float = 1.0) -> jax.Array:
    """Baseline: i.i.d. ``N(0, scale^2)`` channels, zero where ``mask`` (shape[:-1]) is False."""
    noise = scale * jax.random.normal(key, shape)
    if mask is None:
        return noise
    return jnp.where(jnp.asarray(mask)[..., None], noise, 0.0)


def _graph_inputs(adjacency: jax.Array, mask: jax.Array | None) -> jax.Array:
    adjacency = checks.check_floating(adjacency, "adjacency", ndim=2)
    return checks.check_mask(mask, adjacency.shape[:1])


class GraphSymPE(nn.Module):
    """SymPE for graphs: a learned table ``v`` of shape (n_max, features); node i gets ``v[rank(i)]``.

    The ranks sort ``scores`` (float[n], from any equivariant scorer: a GNN head, spectral
    invariants, ...) with random tie-breaking. Without ``scores`` the module uses
    :func:`sympe_jax.features.invariant_node_scores` of the adjacency (fixed, informative).
    Sorting has zero gradient: a learned scorer must be trained through another path
    (e.g. :func:`straight_through_sympe`).

    Attributes:
      n_max: largest graph the table serves; a larger graph is an error.
      features: encoding width d.
      atol: tie tolerance for the sort.
    """

    n_max: int
    features: int
    atol: float = canonicalize.DEFAULT_ATOL
    init_scale: float = 1.0

    @nn.compact
    def __call__(self, key: jax.Array, adjacency: jax.Array, mask: jax.Array | None = None,
                 scores: jax.Array | None = None) -> jax.Array:
        real = _graph_inputs(adjacency, mask)
        if adjacency.shape[0] > self.n_max:
            checks.check_value(jnp.sum(real) <= self.n_max,
                               "graph has {} nodes but GraphSymPE has n_max = {}", jnp.sum(real), jnp.asarray(self.n_max))
        v = self.param("v", nn.initializers.normal(self.init_scale), (self.n_max, self.features))
        if scores is None:
            scores = features.invariant_node_scores(adjacency, real)
        return sample_graph_sympe(key, v, scores, real, atol=self.atol)


class RandomPermutationPE(nn.Module):
    """Baseline: the learned table ``v`` under a uniformly random permutation (no sorting)."""

    n_max: int
    features: int
    init_scale: float = 1.0

    @nn.compact
    def __call__(self, key: jax.Array, adjacency: jax.Array, mask: jax.Array | None = None,
                 scores: jax.Array | None = None) -> jax.Array:
        real = _graph_inputs(adjacency, mask)
        v = self.param("v", nn.initializers.normal(self.init_scale), (self.n_max, self.features))
        return random_permutation_encoding(key, v, real)


class GaussianNoisePE(nn.Module):
    """Baseline: i.i.d. Gaussian node channels (fresh per key)."""

    features: int
    scale: float = 1.0

    @nn.compact
    def __call__(self, key: jax.Array, adjacency: jax.Array, mask: jax.Array | None = None,
                 scores: jax.Array | None = None) -> jax.Array:
        real = _graph_inputs(adjacency, mask)
        return gaussian_noise(key, (adjacency.shape[0], self.features), real, self.scale)


class LaplacianPE(nn.Module):
    """Baseline: the k smallest non-trivial Laplacian eigenvectors as node channels.

    ``randomize=True`` (default) draws a random sign and a random basis of every repeated
    eigenspace with ``key`` (equivariant in law); ``randomize=False`` returns ``eigh``'s
    arbitrary choice (not equivariant: the sign ambiguity is left to the network).
    """

    k: int = 8
    randomize: bool = True

    @nn.compact
    def __call__(self, key: jax.Array, adjacency: jax.Array, mask: jax.Array | None = None,
                 scores: jax.Array | None = None) -> jax.Array:
        real = _graph_inputs(adjacency, mask)
        if self.randomize:
            return features.randomize_eigenvectors(key, adjacency, real, self.k)
        return features.laplacian_eigenvectors(adjacency, real, self.k)


class NoPE(nn.Module):
    """No symmetry breaking: zero channels (``features`` wide, default 0), for either domain."""

    features: int = 0

    @nn.compact
    def __call__(self, key: jax.Array, x: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
        # Graphs pass the adjacency (n, n): zeros (n, features); lattices (L, L, c): (L, L, features).
        return jnp.zeros(x.shape[:-1] + (self.features,), jnp.float32)


# ----------------------------------------------------------------------------- lattices


def lattice_sympe(g: jax.Array, v: jax.Array) -> jax.Array:
    """``g . v`` for a p4m element g (int32[3]): v float[L, L, c] or lifted float[8, L, L, c]."""
    v = checks.check_floating(v, "v")
    if v.ndim == 3:
        return lattice.act_on_field(g, v)
    if v.ndim == 4:
        return lattice.act_on_lifted(g, v)
    raise ValueError(f"lattice SymPE field must be (L, L, c) or lifted (8, L, L, c), got {v.shape}")


def sample_lattice_sympe(key: jax.Array, v: jax.Array, scores: jax.Array, *,
                         atol: float = canonicalize.DEFAULT_ATOL) -> tuple[jax.Array, jax.Array]:
    """Sample ``g~`` by uniform argmax of lifted scores (8, L, L) and return (``g~ . v``, ``g~``)."""
    scores = checks.check_floating(scores, "scores", ndim=3)
    if scores.shape[0] != 8 or scores.shape[1] != scores.shape[2]:
        raise ValueError(f"lattice scores must be a lifted map of shape (8, L, L), got {scores.shape}")
    L = scores.shape[1]
    if v.shape[-3:-1] != (L, L):
        raise ValueError(f"SymPE field {v.shape} does not match the lattice size L = {L}")
    g = lattice.element_from_index(canonicalize.argmax_element(key, scores, atol=atol), L)
    return lattice_sympe(g, v), g


class LatticeSymPE(nn.Module):
    """SymPE for p4m lattices: a learned field ``v`` (L, L, features), moved by a sampled g~.

    ``scores`` is a lifted map (8, L, L) from a p4m-equivariant scorer (e.g. a G-CNN head);
    without it every element ties (a constant score) and g~ is uniform on p4m, which is the
    inversion kernel of a fully symmetric input. Returns the moved field (L, L, features), to be
    concatenated to the input channels.
    """

    features: int
    atol: float = canonicalize.DEFAULT_ATOL
    init_scale: float = 1.0

    @nn.compact
    def __call__(self, key: jax.Array, x: jax.Array, scores: jax.Array | None = None) -> jax.Array:
        if x.ndim != 3 or x.shape[0] != x.shape[1]:
            raise ValueError(f"lattice input must have shape (L, L, c), got {x.shape}")
        L = x.shape[0]
        v = self.param("v", nn.initializers.normal(self.init_scale), (L, L, self.features))
        if scores is None:
            scores = jnp.zeros((8, L, L), jnp.float32)
        moved, _ = sample_lattice_sympe(key, v, scores, atol=self.atol)
        return moved


class LatticeNoisePE(nn.Module):
    """Baseline: i.i.d. Gaussian channels per site."""

    features: int
    scale: float = 1.0

    @nn.compact
    def __call__(self, key: jax.Array, x: jax.Array, scores: jax.Array | None = None) -> jax.Array:
        return gaussian_noise(key, x.shape[:-1] + (self.features,), scale=self.scale)
