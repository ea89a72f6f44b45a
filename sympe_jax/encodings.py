"""Symmetry breakers: SymPE and the baselines it is compared with, as pure functions.

SymPE (Algorithm 1 of Lawrence et al., ICLR 2025): sample ``g~`` from the inversion kernel by
randomized canonicalization, act with it on a learned table ``v``, and give the network
``g~ . v`` as extra input channels. The network stays equivariant; the encoding breaks the
input's symmetry at random, and its law is equivariant.

**One contract** (as optax has one for every optimizer). Every symmetry breaker is an
:class:`Encoding`, a pair of pure functions chosen by name from a registry:

* graphs, :func:`graph_encoding` (names in :data:`GRAPH_ENCODINGS`)::

      enc = graph_encoding("sympe", n_max=16, features=8)
      params = enc.init(key)                                   # {"v": float[n_max, 8]} or {}
      pe = enc.apply(key, params, adjacency, mask)             # float[..., n, 8]

  ``adjacency`` float[..., n, n], ``mask`` bool[..., n]; ``scores=`` float[..., n] replaces the
  default sort score, ``ranks=`` int[..., n] supplies ``g~`` (the ``"exact"`` encoding).
* lattices, :func:`lattice_encoding` (names in :data:`LATTICE_ENCODINGS`)::

      enc = lattice_encoding("sympe", L=8, features=4)
      pe = enc.apply(key, enc.init(key), x, scores=lifted)    # x float[..., L, L, c] -> float[..., L, L, 4]
* point clouds under O(3)/E(3), :func:`point_cloud_encoding` (names in :data:`POINT_CLOUD_ENCODINGS`)::

      enc = point_cloud_encoding("sympe", features=4)
      pe = enc.apply(key, enc.init(key), points, mask)         # float[..., n, 3] -> float[..., n, 4, 3]

``apply`` is batch-aware: any leading axes are batch axes, one independent sample per item
(the key is split over the flattened batch inside; an unbatched call uses the key itself).
Same key, same encoding. The Flax and jraph adapters (:mod:`sympe_jax.flax`,
:mod:`sympe_jax.jraph`) wrap exactly these functions.

Below the registry, the per-item functions it is built from: :func:`graph_sympe`
(``v[ranks]``), :func:`sample_graph_sympe` (sort, then gather), :func:`straight_through_sympe`
(the same sample, with a gradient for a learned scorer), :func:`random_permutation_encoding`,
:func:`gaussian_noise`, :func:`lattice_sympe` and :func:`sample_lattice_sympe`.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from sympe_jax import canonicalize, checks, frames
from sympe_jax.features import invariant_node_scores, randomize_eigenvectors
from sympe_jax.groups import lattice, permutation

__all__ = [
    "Encoding",
    "GRAPH_ENCODINGS",
    "LATTICE_ENCODINGS",
    "graph_encoding",
    "lattice_encoding",
    "graph_sympe",
    "sample_graph_sympe",
    "straight_through_sympe",
    "random_permutation_encoding",
    "gaussian_noise",
    "lattice_sympe",
    "sample_lattice_sympe",
    "POINT_CLOUD_ENCODINGS",
    "point_cloud_encoding",
    "point_cloud_sympe",
    "sample_point_cloud_sympe",
]

Params = dict[str, jax.Array]


class Encoding(NamedTuple):
    """A symmetry breaker: two pure functions and what they need.

    Attributes:
      init: ``init(key) -> params``, a dict of arrays (``{"v": table}`` for the encodings that
        learn a table, else ``{}``). The only place a table ``v`` is created.
      apply: ``apply(key, params, *inputs, **options) -> channels`` (see :func:`graph_encoding`
        and :func:`lattice_encoding` for each domain's inputs).
      features: channels of the output (0 for ``"none"``).
      needs_adjacency: whether ``apply`` reads the adjacency when given ``scores`` (graphs;
        without ``scores`` the SymPE encodings compute their default score from it).
      needs_ranks: whether ``apply`` requires ``ranks=`` (the exact inversion kernel, sampled on
        the host by :mod:`sympe_jax.exact`).
      random: whether the output depends on the key.
      uses_scores: whether ``apply`` reads ``scores=`` (the SymPE encodings: the scores it
        sorts or argmaxes; without them, graphs compute a default from the adjacency and
        lattices tie every element).
      learns_scores: whether the scores receive a gradient (``"sympe_learned"``): pass those of
        a learned scorer.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[..., jax.Array]
    features: int
    needs_adjacency: bool = False
    needs_ranks: bool = False
    random: bool = True
    uses_scores: bool = False
    learns_scores: bool = False


# ----------------------------------------------------------------------------- batching


def _per_item(fn: Callable, key: jax.Array | None, batch_shape: tuple[int, ...], *arrays: jax.Array | None
              ) -> jax.Array:
    """``fn(key_b, *arrays[b])`` for every item b of the leading ``batch_shape`` axes.

    The key is split over the flattened batch (``jax.random.split(key, B)``); with no batch axes
    ``fn`` gets the key itself. With ``key=None``, ``fn(*arrays[b])`` (nothing random). ``None``
    arrays are passed through unbatched.

    Items run under ``vmap``, where invalid values poison instead of raising; so that an eager
    call still raises (the validation rule of :mod:`sympe_jax.checks`), a concrete output with a
    poisoned (NaN) item is recomputed for the first such item alone, which raises its error.
    """
    if not batch_shape:
        return fn(*arrays) if key is None else fn(key, *arrays)
    size = math.prod(batch_shape)
    flat = [None if a is None else a.reshape((size,) + a.shape[len(batch_shape):]) for a in arrays]
    axes = tuple(None if a is None else 0 for a in flat)
    keys = None if key is None else jax.random.split(key, size)
    if key is None:
        out = jax.vmap(fn, in_axes=axes)(*flat)
    else:
        out = jax.vmap(fn, in_axes=(0, *axes))(keys, *flat)
    if checks.is_concrete(out) and jnp.issubdtype(out.dtype, jnp.floating):
        poisoned = jnp.any(jnp.isnan(out.reshape(size, -1)), axis=1)
        if bool(jnp.any(poisoned)):
            b = int(jnp.argmax(poisoned))
            item = [None if a is None else a[b] for a in flat]
            try:
                fn(*item) if key is None else fn(keys[b], *item)
            except ValueError as err:
                where = tuple(int(i) for i in jnp.unravel_index(b, batch_shape))
                raise ValueError(f"batch item {where}: {err}") from None
    return out.reshape(batch_shape + out.shape[1:])


def _table(shape: tuple[int, ...], init_scale: float) -> Callable[[jax.Array], Params]:
    """``init(key) -> {"v": init_scale * N(0, 1) of shape}``: the one place a table is created."""

    def init(key: jax.Array) -> Params:
        return {"v": init_scale * jax.random.normal(key, shape, jnp.float32)}
    return init


def _no_params(key: jax.Array) -> Params:
    del key
    return {}


def _check_width(features: int, name: str) -> None:
    if not isinstance(features, int) or features < 1:
        raise ValueError(f"encoding {name!r} needs features >= 1, got {features!r}")


# ----------------------------------------------------------------------------- graphs: registry

GRAPH_ENCODINGS = ("none", "noise", "randperm", "laplacian", "sympe", "sympe_learned", "exact")
"""Names accepted by :func:`graph_encoding`:

* ``"none"``: no symmetry breaking (zero channels);
* ``"noise"``: i.i.d. ``N(0, noise_scale^2)`` channels per node;
* ``"randperm"``: the table ``v`` under a uniformly random permutation (no sorting);
* ``"laplacian"``: the ``features`` smallest non-trivial Laplacian eigenvectors with a random
  basis of every eigenspace (:func:`sympe_jax.features.randomize_eigenvectors`); no table;
* ``"sympe"``: ``v[ranks]``, ranks sorting ``scores`` with random ties (default score:
  :func:`sympe_jax.features.invariant_node_scores`, fixed);
* ``"sympe_learned"``: the same sample, with a gradient for the scores
  (:func:`straight_through_sympe` at ``temperature``): pass the scores of a learned scorer;
* ``"exact"``: ``v[ranks]`` for ranks supplied by the caller (``ranks=``), e.g. exact
  inversion-kernel samples from :mod:`sympe_jax.exact`.
"""


def graph_encoding(name: str, *, n_max: int = 0, features: int = 0, atol: float = canonicalize.DEFAULT_ATOL,
                   init_scale: float = 1.0, noise_scale: float = 1.0, temperature: float = 0.02,
                   eigen_tol: float = 1e-4) -> Encoding:
    """The graph symmetry breaker called ``name`` (one of :data:`GRAPH_ENCODINGS`).

    Args:
      name: which encoding.
      n_max: rows of the table ``v``: the largest graph served (``randperm``, ``sympe``,
        ``sympe_learned``, ``exact``); a larger graph is an error (eagerly) or NaN (under jit).
      features: output channels (ignored by ``"none"``, which has 0).
      atol: tie tolerance of the sort (:func:`sympe_jax.canonicalize.tie_groups`).
      init_scale: standard deviation of the initial table ``v``.
      noise_scale: standard deviation of the ``"noise"`` channels.
      temperature: soft-rank temperature of ``"sympe_learned"``, in units of the scores.
      eigen_tol: eigenvalues within this are one eigenspace (``"laplacian"``).

    Returns:
      An :class:`Encoding` whose ``apply(key, params, adjacency, mask, *, scores=None,
      ranks=None)`` maps ``adjacency`` float[..., n, n] (or None where not needed) and ``mask``
      bool[..., n] to float[..., n, features]; masked-out nodes get zeros.

    Cost per graph: the sort and the gather are O(n log n) time and O(n) memory beyond the
    inputs; the default SymPE score and ``"laplacian"`` read the dense adjacency, O(n^2) memory
    (the score: ``steps`` matrix products, O(steps n^3); ``"laplacian"``: an ``eigh``, O(n^3)).
    """
    if name not in GRAPH_ENCODINGS:
        raise ValueError(f"unknown graph encoding {name!r}; choose from {GRAPH_ENCODINGS}")
    atol = checks.check_tolerance(atol, "atol")
    if name == "none":
        return Encoding(_no_params, _graph_apply(lambda key, params, adj, mask, scores, ranks:
                                                 jnp.zeros(mask.shape + (0,), jnp.float32), name), 0, random=False)
    _check_width(features, name)
    if name == "noise":
        noise_scale = checks.check_tolerance(noise_scale, "noise_scale")

        def noise(key, params, adj, mask, scores, ranks):
            return gaussian_noise(key, mask.shape + (features,), mask, noise_scale)
        return Encoding(_no_params, _graph_apply(noise, name, batched=True), features)
    if name == "laplacian":
        eigen_tol = checks.check_tolerance(eigen_tol, "eigen_tol")

        def eigenvectors(key, params, adj, mask, scores, ranks):
            return randomize_eigenvectors(key, adj, mask, features, eigen_tol)
        return Encoding(_no_params, _graph_apply(eigenvectors, name, needs_adjacency=True), features,
                        needs_adjacency=True)
    init_scale = checks.check_tolerance(init_scale, "init_scale")
    if not isinstance(n_max, int) or n_max < 1:
        raise ValueError(f"encoding {name!r} needs n_max >= 1 (rows of its table), got {n_max!r}")
    init = _table((n_max, features), init_scale)
    if name == "randperm":
        return Encoding(init, _graph_apply(lambda key, params, adj, mask, scores, ranks:
                                           random_permutation_encoding(key, params["v"], mask), name), features)
    if name == "exact":
        return Encoding(init, _graph_apply(lambda key, params, adj, mask, scores, ranks:
                                           graph_sympe(params["v"], ranks, mask), name, needs_ranks=True),
                        features, needs_ranks=True, random=False)
    if name == "sympe":
        def sympe(key, params, adj, mask, scores, ranks):
            return sample_graph_sympe(key, params["v"], scores, mask, atol=atol)
    else:
        temperature = canonicalize._check_temperature(temperature)

        def sympe(key, params, adj, mask, scores, ranks):
            return straight_through_sympe(key, params["v"], scores, mask, temperature=temperature, atol=atol)
    return Encoding(init, _graph_apply(sympe, name, uses_scores=True), features, uses_scores=True,
                    learns_scores=name == "sympe_learned")


def _graph_apply(fn: Callable, name: str, *, batched: bool = False, uses_scores: bool = False,
                 needs_adjacency: bool = False, needs_ranks: bool = False) -> Callable:
    """Wrap a per-graph ``fn(key, params, adj, mask, scores, ranks)`` into the batch-aware
    ``apply(key, params, adjacency, mask, *, scores=None, ranks=None)`` with its input checks
    (``batched``: ``fn`` handles leading axes itself; ``uses_scores``: missing scores are
    :func:`sympe_jax.features.invariant_node_scores` of the adjacency)."""

    def apply(key: jax.Array, params: Params, adjacency: jax.Array | None, mask: jax.Array, *,
              scores: jax.Array | None = None, ranks: jax.Array | None = None) -> jax.Array:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_ or mask.ndim < 1:
            raise TypeError(f"mask must be a boolean array bool[..., n], got {mask.dtype}{list(mask.shape)}")
        batch_shape, n = mask.shape[:-1], mask.shape[-1]
        if adjacency is not None:
            adjacency = checks.check_floating(adjacency, "adjacency")
            if adjacency.shape != mask.shape + (n,):
                raise ValueError(f"adjacency must have shape {mask.shape + (n,)} (mask's shape + n), "
                                 f"got {adjacency.shape}")
        if uses_scores and scores is None:
            if adjacency is None:
                raise ValueError(f"encoding {name!r} needs scores or an adjacency to compute its default score from")
            scores = _per_item(invariant_node_scores, None, batch_shape, adjacency, mask)
        if scores is not None:
            scores = checks.check_floating(scores, "scores")
            if scores.shape != mask.shape:
                raise ValueError(f"scores must have the mask's shape {mask.shape}, got {scores.shape}")
        if ranks is not None and jnp.shape(ranks) != mask.shape:
            raise ValueError(f"ranks must have the mask's shape {mask.shape}, got {jnp.shape(ranks)}")
        if needs_ranks and ranks is None:
            raise ValueError(f"encoding {name!r} needs ranks= (e.g. exact inversion-kernel samples from "
                             "sympe_jax.exact.inversion_kernel_sample_batch)")
        if needs_adjacency and adjacency is None:
            raise ValueError(f"encoding {name!r} needs the adjacency")
        if batched:
            return fn(key, params, adjacency, mask, scores, ranks)
        per_graph = lambda k, a, m, s, r: fn(k, params, a, m, s, r)
        return _per_item(per_graph, key, batch_shape, adjacency, mask, scores, ranks)

    return apply


# ----------------------------------------------------------------------------- lattices: registry

LATTICE_ENCODINGS = ("none", "noise", "sympe", "position")
"""Names accepted by :func:`lattice_encoding`:

* ``"none"``: no symmetry breaking (zero channels);
* ``"noise"``: i.i.d. ``N(0, noise_scale^2)`` channels per site;
* ``"sympe"``: the learned field ``v`` float[L, L, features] moved by ``g~``, sampled by a
  uniform argmax of the lifted ``scores`` float[..., 8, L, L] (default: all tied, so ``g~`` is
  uniform on p4m, the inversion kernel of a fully symmetric input);
* ``"position"``: the learned field ``v`` itself, unmoved: an absolute positional map (NOT
  equivariant; the baseline for non-equivariant models).
"""


def lattice_encoding(name: str, *, L: int, features: int = 0, atol: float = canonicalize.DEFAULT_ATOL,
                     init_scale: float = 1.0, noise_scale: float = 1.0) -> Encoding:
    """The p4m lattice symmetry breaker called ``name`` (one of :data:`LATTICE_ENCODINGS`).

    Args:
      name: which encoding.
      L: side of the periodic lattice.
      features: output channels (ignored by ``"none"``, which has 0).
      atol: tie tolerance of the argmax over group elements.
      init_scale: standard deviation of the initial field ``v``.
      noise_scale: standard deviation of the ``"noise"`` channels.

    Returns:
      An :class:`Encoding` whose ``apply(key, params, x, *, scores=None)`` maps site fields
      ``x`` float[..., L, L, c] (only the shape is read) to float[..., L, L, features].
    """
    if name not in LATTICE_ENCODINGS:
        raise ValueError(f"unknown lattice encoding {name!r}; choose from {LATTICE_ENCODINGS}")
    if not isinstance(L, int) or L < 1:
        raise ValueError(f"L must be a positive int, got {L!r}")
    atol = checks.check_tolerance(atol, "atol")
    width = 0 if name == "none" else features
    if name != "none":
        _check_width(features, name)
    if name in ("sympe", "position"):
        init = _table((L, L, features), checks.check_tolerance(init_scale, "init_scale"))
    else:
        noise_scale = checks.check_tolerance(noise_scale, "noise_scale")
        init = _no_params

    def apply(key: jax.Array, params: Params, x: jax.Array, *, scores: jax.Array | None = None) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim < 3 or x.shape[-3:-1] != (L, L):
            raise ValueError(f"lattice input must have shape [..., {L}, {L}, c], got {x.shape}")
        batch_shape = x.shape[:-3]
        if name == "none":
            return jnp.zeros(x.shape[:-1] + (0,), jnp.float32)
        if name == "noise":
            return gaussian_noise(key, x.shape[:-1] + (features,), scale=noise_scale)
        v = params["v"]
        if name == "position":
            return jnp.broadcast_to(v, x.shape[:-1] + (features,))
        if scores is None:
            scores = jnp.zeros(batch_shape + (8, L, L), jnp.float32)
        elif jnp.shape(scores) != batch_shape + (8, L, L):
            raise ValueError(f"lattice scores must be lifted maps of shape {batch_shape + (8, L, L)}, "
                             f"got {jnp.shape(scores)}")
        return _per_item(lambda k, s: sample_lattice_sympe(k, v, s, atol=atol)[0], key, batch_shape, scores)

    return Encoding(init, apply, width, random=name in ("noise", "sympe"), uses_scores=name == "sympe")


# ----------------------------------------------------------------------------- per item: graphs


def graph_sympe(v: jax.Array, ranks: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Node i gets row ``v[ranks[i]]``; masked-out nodes get zeros.

    Args:
      v: float[n_max, d] learned table.
      ranks: int[n] permutation (e.g. from ``sort_permutation``) ranking the real nodes first:
        the real nodes' ranks are ``0..n_real-1`` in some order, the padding's ``n_real..n-1``.
      mask: optional bool[n].
    Returns:
      float[n, d]. Ranks that are not such a permutation (repeated, negative, out of range, a
      padding node among the first ``n_real``) and a graph with more real nodes than
      ``n_max`` rows are errors: eagerly a ``ValueError``; under ``jit`` every entry is NaN (and
      a checkify error under :func:`sympe_jax.checks.checked`), never a silent wrap-around.
    """
    v = checks.check_floating(v, "v", ndim=2)
    ranks = jnp.asarray(ranks)
    if ranks.ndim != 1 or not jnp.issubdtype(ranks.dtype, jnp.integer):
        raise TypeError(f"ranks must be a 1-d integer array, got {ranks.dtype}{list(ranks.shape)}")
    n, n_max = ranks.shape[0], v.shape[0]
    real = checks.check_mask(mask, (n,))
    n_real = jnp.sum(real)
    real_first = permutation.is_permutation(ranks) & jnp.all(jnp.where(real, ranks < n_real, ranks >= n_real))
    rows = v[jnp.clip(ranks, 0, n_max - 1)]
    out = jnp.where(real[:, None], rows, 0.0)
    out = checks.guard(n_real <= n_max, out, "graph has {} nodes but the SymPE table has n_max = {} rows",
                       n_real, jnp.asarray(n_max))
    return checks.guard(real_first, out, "ranks must be a permutation of 0..n-1 giving the real nodes "
                        "0..n_real-1 (n_real = {}) and the padding the last positions; got {}", n_real, ranks)


def sample_graph_sympe(key: jax.Array, v: jax.Array, scores: jax.Array, mask: jax.Array | None = None, *,
                       atol: float = canonicalize.DEFAULT_ATOL) -> jax.Array:
    """SymPE for one graph: ``v[sort_permutation(key, scores, mask)]``. float[n, d].

    NaN/Inf scores make the output NaN under ``jit`` (the ranks are -1; eagerly: ``ValueError``),
    so a training loop that checks its loss stops instead of learning from garbage.
    """
    return graph_sympe(v, canonicalize.sort_permutation(key, scores, mask, atol=atol), mask)


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
    n, n_max = scores.shape[-1], v.shape[0]
    rows = v[:n] if n <= n_max else jnp.pad(v, ((0, n - n_max), (0, 0)))  # positions 0..n-1 (beyond n_max: an error above)
    soft = canonicalize.soft_ranks(scores, mask, temperature=temperature) @ jax.lax.stop_gradient(rows)
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


# ----------------------------------------------------------------------------- per item: lattices


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
    """Sample ``g~`` by uniform argmax of lifted scores (8, L, L) and return (``g~ . v``, ``g~``).

    NaN/Inf scores: eagerly a ``ValueError``; under ``jit`` ``g~`` is ``[-1, -1, -1]`` and
    ``g~ . v`` is NaN (see :mod:`sympe_jax.checks`).
    """
    scores = checks.check_floating(scores, "scores", ndim=3)
    if scores.shape[0] != 8 or scores.shape[1] != scores.shape[2]:
        raise ValueError(f"lattice scores must be a lifted map of shape (8, L, L), got {scores.shape}")
    L = scores.shape[1]
    if v.shape[-3:-1] != (L, L):
        raise ValueError(f"SymPE field {v.shape} does not match the lattice size L = {L}")
    g = lattice.element_from_index(canonicalize.argmax_element(key, scores, atol=atol), L)
    return lattice_sympe(g, v), g


# ----------------------------------------------------------------------------- point clouds: registry

POINT_CLOUD_ENCODINGS = ("none", "noise", "haar", "covariance", "sympe")
"""Names accepted by :func:`point_cloud_encoding` (point clouds under O(3) and E(3)); every
encoding but ``"none"`` gives each real point ``features`` vectors (type 1o, moving as ``u -> R u``):

* ``"none"``: no symmetry breaking (zero channels);
* ``"noise"``: i.i.d. ``N(0, noise_scale^2 I_3)`` vectors per point (isotropic: equivariant in law);
* ``"haar"``: learned vectors ``v`` float[features, 3] moved by a Haar-random frame
  (:func:`sympe_jax.frames.haar_frame`): the whole group instead of the inversion kernel;
* ``"covariance"``: ``v`` moved by the covariance frame with random degeneracies
  (:func:`sympe_jax.frames.covariance_frame`; ``scores=`` float[..., 3, 3] replaces the covariance
  by another equivariant symmetric tensor);
* ``"sympe"``: ``v`` moved by the sorted-point frame (:func:`sympe_jax.frames.point_frame`, the
  inversion kernel on the shapes it names; ``scores=`` float[..., n] are per-point invariant
  scores sorted first).
"""


def point_cloud_encoding(name: str, *, features: int = 0, atol: float = canonicalize.DEFAULT_ATOL,
                         init_scale: float = 1.0, noise_scale: float = 1.0, proper: bool = False) -> Encoding:
    """The point-cloud symmetry breaker called ``name`` (one of :data:`POINT_CLOUD_ENCODINGS`).

    Args:
      name: which encoding.
      features: vectors per point (ignored by ``"none"``, which has 0).
      atol: tie tolerance of the frames (:mod:`sympe_jax.frames`), in the coordinates' units.
      init_scale: standard deviation of the initial vectors ``v``.
      noise_scale: standard deviation of the ``"noise"`` vectors' components.
      proper: frames in SO(3) (equivariant under rotations only) instead of O(3).

    Returns:
      An :class:`Encoding` whose ``apply(key, params, points, mask=None, *, scores=None)`` maps
      ``points`` float[..., n, 3] (``mask`` bool[..., n], default all real) to vectors
      float[..., n, features, 3]; masked-out points get zeros. For the frame encodings every real
      point of a cloud gets the same vectors ``F v`` (a global encoding broadcast to the points,
      ready to concatenate as ``features x 1o`` channels). Leading axes are batch axes: one
      independent frame per cloud. Translations do not move the output; ``R`` in O(3) moves it
      as ``u -> R u`` in law.

    Cost per cloud: O(n log n) for the sorted-point frame, O(n) plus a 3 x 3 ``eigh`` for the
    covariance frame.
    """
    if name not in POINT_CLOUD_ENCODINGS:
        raise ValueError(f"unknown point-cloud encoding {name!r}; choose from {POINT_CLOUD_ENCODINGS}")
    atol = checks.check_tolerance(atol, "atol")
    if not isinstance(proper, bool):
        raise TypeError(f"proper must be a bool, got {proper!r}")
    width = 0 if name == "none" else features
    if name != "none":
        _check_width(features, name)
    if name in ("haar", "covariance", "sympe"):
        init = _table((features, 3), checks.check_tolerance(init_scale, "init_scale"))
    else:
        noise_scale = checks.check_tolerance(noise_scale, "noise_scale")
        init = _no_params

    def apply(key: jax.Array, params: Params, points: jax.Array, mask: jax.Array | None = None, *,
              scores: jax.Array | None = None) -> jax.Array:
        points = checks.check_floating(points, "points")
        if points.ndim < 2 or points.shape[-1] != 3:
            raise ValueError(f"points must have shape [..., n, 3], got {points.shape}")
        batch_shape, n = points.shape[:-2], points.shape[-2]
        mask = checks.check_mask(mask, batch_shape + (n,))
        if name == "none":
            return jnp.zeros(batch_shape + (n, 0, 3), jnp.float32)
        if name == "noise":
            return gaussian_noise(key, batch_shape + (n, features * 3), mask, noise_scale).reshape(
                batch_shape + (n, features, 3))
        want = {"covariance": batch_shape + (3, 3), "sympe": batch_shape + (n,)}.get(name)
        if scores is not None:
            if want is None:
                raise ValueError(f"encoding {name!r} takes no scores")
            scores = checks.check_floating(scores, "scores")
            if scores.shape != want:
                raise ValueError(f"scores of {name!r} must have shape {want}, got {scores.shape}")
        v = params["v"]

        def one(k, x, m, s):
            return sample_point_cloud_sympe(k, v, x, m, method=name, scores=s, atol=atol, proper=proper)[0]
        return _per_item(one, key, batch_shape, points, mask, scores)

    return Encoding(init, apply, width, random=name != "none", uses_scores=name in ("covariance", "sympe"))


def point_cloud_sympe(frame: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """``F v`` for every real point: frame float[3, 3], v float[k, 3], mask bool[n] -> float[n, k, 3]
    (zeros where the mask is False; NaN everywhere if the frame is NaN)."""
    v = checks.check_floating(v, "v", ndim=2)
    if v.shape[-1] != 3:
        raise ValueError(f"point-cloud SymPE vectors must have shape (k, 3), got {v.shape}")
    moved = v @ jnp.asarray(frame).T
    out = jnp.where(jnp.asarray(mask)[:, None, None], moved[None], 0.0)
    return checks.poison(out, jnp.all(jnp.isfinite(frame)))


def sample_point_cloud_sympe(key: jax.Array, v: jax.Array, points: jax.Array, mask: jax.Array | None = None, *,
                             method: str = "sympe", scores: jax.Array | None = None,
                             atol: float = canonicalize.DEFAULT_ATOL, proper: bool = False
                             ) -> tuple[jax.Array, jax.Array]:
    """Sample a frame F of one cloud and return (``F v`` per real point float[n, k, 3], F float[3, 3]).

    ``method``: ``"sympe"`` (:func:`sympe_jax.frames.point_frame`, ``scores`` float[n] per-point
    invariants), ``"covariance"`` (:func:`sympe_jax.frames.covariance_frame`, ``scores`` a
    symmetric tensor float[3, 3]) or ``"haar"``. Invalid points: eagerly a ``ValueError``, under
    ``jit`` a NaN frame and NaN vectors.
    """
    points = checks.check_floating(points, "points", ndim=2)
    mask = checks.check_mask(mask, points.shape[:1])
    if method == "sympe":
        frame = frames.point_frame(key, points, mask, scores=scores, atol=atol, proper=proper)
    elif method == "covariance":
        frame = frames.covariance_frame(key, points, mask, tensor=scores, atol=atol, proper=proper)
    elif method == "haar":
        frame = frames.haar_frame(key, points, mask, proper=proper)
    else:
        raise ValueError(f"sample_point_cloud_sympe: method must be 'sympe', 'covariance' or 'haar', got {method!r}")
    return point_cloud_sympe(frame, v, mask), frame
