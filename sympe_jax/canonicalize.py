"""Randomized canonicalization: samples of the inversion kernel by sorting and by argmax.

SymPE (Lawrence et al., ICLR 2025, arXiv 2503.21985) needs a group element ``g~`` drawn from
the inversion kernel: uniform on the coset ``gamma(x) G_x`` of a canonicalization ``gamma``
and the stabilizer ``G_x``. Two samplers, for any input whose symmetry is reflected in an
equivariant score:

* :func:`sort_permutation` (S_n): sort per-node scores; nodes whose scores tie are ordered
  uniformly at random. The law is uniform over all orderings consistent with the scores, a
  union of cosets of the automorphism group (invariant scores tie automorphic nodes), so it is
  an equivariant symmetry-breaking sample: the paper's "equivariant noise injection". It is
  the exact inversion kernel when every ordering of each tie group is realized by an
  automorphism (e.g. the leaves of a star); otherwise it carries more entropy (a cycle C_n
  yields all n! orderings, its inversion kernel only 2n). The better the scores separate
  non-automorphic nodes, the closer it gets; :mod:`sympe_jax.exact` has the exact
  sampler for comparison.
* :func:`argmax_element` (any finite group, e.g. p4m): scores over all group elements (a lifted
  feature map); the sample is uniform among the entries tied for the maximum.

Both are pure, jit/vmap-safe, and take the PRNG key first: same key, same sample.

Ties are decided with a tolerance ``atol``, because scores equal in exact arithmetic differ in
the last bits after sums taken in different orders. See :func:`tie_groups` for the exact rule.
A tolerance well above rounding is also a legitimate design choice: tie groups depend only on
the multiset of scores, so any ``atol`` keeps the law equivariant, and a coarser one ties
near-equal, non-automorphic nodes too, moving the sample from a canonicalization towards a
uniformly random permutation. That trades symmetry-breaking information for randomness, which
can regularize a model that would otherwise memorize deterministic ranks (the graph
autoencoder experiment measures this).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sympe_jax import checks
from sympe_jax.groups import permutation

__all__ = ["DEFAULT_ATOL", "tie_groups", "sort_permutation", "soft_ranks", "argmax_element"]

_BLOCK = 128  # block length of the two-level search in argmax_element

DEFAULT_ATOL = 1e-5
"""Default tie tolerance: float32 sums of O(1) values over O(10^3) terms agree to about 1e-5."""


def _check_temperature(temperature: float) -> float:
    """A relaxation temperature as a Python float: a finite number > 0 (see ``checks.check_tolerance``)."""
    value = checks.check_tolerance(temperature, "temperature")
    if value == 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return value


def _guard_finite(out, scores: jax.Array, real: jax.Array, fn: str):
    """``out``, unless a real score is NaN/Inf: then eagerly a ValueError naming the entry, under
    tracing ``out`` poisoned (NaN / -1) and a checkify check."""
    bad = real & ~jnp.isfinite(scores)
    first = jnp.argmax(bad)
    return checks.guard(~jnp.any(bad), out, fn + ": scores must be finite where the mask is True; entry {} is {}",
                        first, scores[first])


def tie_groups(scores: jax.Array, mask: jax.Array | None = None, *, atol: float = DEFAULT_ATOL) -> jax.Array:
    """Group near-equal scores: single-linkage clusters of the sorted real scores.

    Sort the real scores; a new group starts wherever two consecutive sorted values differ by
    more than ``atol``. Consequences, all intended:

    * any two scores within ``atol`` of each other are in the same group (the sorted values
      between them are spaced by at most ``atol``), so rounding noise never splits a tie;
    * a chain of values each within ``atol`` of the next forms one group even if its ends are
      further apart: the tolerance should sit well below the gaps between genuinely different
      scores;
    * the groups are a function of the multiset of scores and of each node's own score, so
      permuting the nodes permutes the group labels (which is what makes the sort an
      equivariant sampler). Rounding to a grid would not have the first property: two values
      1e-9 apart can straddle a grid line.

    Args:
      scores: float[n].
      mask: optional bool[n], True for real nodes.
      atol: tolerance, >= 0.
    Returns:
      int32[n]: group index of every real node, increasing with the score (0 for the lowest);
      masked-out nodes get ``n``. A NaN/Inf score of a real node is a ``ValueError`` eagerly;
      under ``jit`` every entry is -1 (see :mod:`sympe_jax.checks`).
    """
    scores = checks.check_floating(scores, "scores", ndim=1)
    n = scores.shape[0]
    real = checks.check_mask(mask, (n,))
    atol = checks.check_tolerance(atol, "atol")
    s = jnp.where(real, scores, jnp.inf)
    order = jnp.argsort(s, stable=True)
    s_sorted = s[order]
    new_group = jnp.diff(s_sorted) > atol
    group_sorted = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(new_group, dtype=jnp.int32)])
    group = jnp.zeros((n,), jnp.int32).at[order].set(group_sorted)
    return _guard_finite(jnp.where(real, group, n), scores, real, "tie_groups")


def sort_permutation(key: jax.Array, scores: jax.Array, mask: jax.Array | None = None, *,
                     atol: float = DEFAULT_ATOL) -> jax.Array:
    """Ranks of nodes in ascending score order, ties broken uniformly at random.

    Args:
      key: PRNG key; same key, same ranks.
      scores: float[n] per-node scores, equivariant in the input (finite for real nodes).
      mask: optional bool[n], True for real nodes.
      atol: scores in one :func:`tie_groups` group are ties.
    Returns:
      ranks int32[n], a permutation in the project's convention: ``ranks[i]`` is the position of
      node i. Real nodes take positions ``0..n_real-1``, lower scores first; within a tie group
      every ordering is equally likely (64-bit random sort keys, see
      ``permutation.random_sort_keys``; nodes whose keys collide keep index order). Masked-out
      nodes take the last positions, in index order. NaN/Inf scores of real nodes: every rank
      is -1 under ``jit``/``vmap`` (see :mod:`sympe_jax.checks`).

    Law: if the nodes (scores and mask) are permuted by ``h``, the ranks are permuted by ``h``
    in law (``ranks(h . x) ~ h . ranks(x)`` as node arrays), so ``v[ranks]`` is an equivariant
    random positional encoding. With all scores distinct (beyond ``atol``), ranks do not
    depend on the key.

    Raises:
      TypeError / ValueError: non-float scores, wrong shapes, a non-boolean mask, an empty
      score array, a bad ``atol``, NaN/Inf scores of real nodes (the latter under ``jit`` only
      through :func:`sympe_jax.checks.checked`).
    """
    scores = checks.check_floating(scores, "scores", ndim=1)
    n = scores.shape[0]
    if n == 0:
        raise ValueError("sort_permutation: empty graph (no scores)")
    real = checks.check_mask(mask, (n,))
    atol = checks.check_tolerance(atol, "atol")
    idx = jnp.arange(n, dtype=jnp.int32)
    # Sort once by score (padding last, by index), group the sorted values as in tie_groups,
    # then sort again by (group, 64-bit random key, node index): uniform order inside every tie
    # group (the index only orders the rare colliding keys).
    s_sorted, order = jax.lax.sort((jnp.where(real, scores, jnp.inf), idx), num_keys=1, is_stable=True)
    group = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(jnp.diff(s_sorted) > atol, dtype=jnp.int32)])
    primary = jnp.where(real[order], group, n + idx)  # padding: unique keys after every real group
    hi, lo = permutation.random_sort_keys(key, n)
    *_, final = jax.lax.sort((primary, hi, lo, order), num_keys=4)
    ranks = jnp.zeros((n,), jnp.int32).at[final].set(idx)
    return _guard_finite(ranks, scores, real, "sort_permutation")


def soft_ranks(scores: jax.Array, mask: jax.Array | None = None, *, temperature: float) -> jax.Array:
    """A differentiable relaxation of the ranks of :func:`sort_permutation`: float[n, n].

    Row i is a distribution over positions: ``P[i, k]`` is proportional to
    ``exp(-((s_i - s_(k)) / temperature)^2)`` over the real positions ``k < n_real``, with
    ``s_(k)`` the k-th smallest real score (a Gaussian kernel: smooth where scores meet). As
    the temperature goes to 0 a node with a unique score puts all its mass on its rank; nodes
    tied with others spread it over their group's positions.
    Masked-out nodes get zero rows. Permuting the nodes permutes the rows (the positions stay),
    so ``soft_ranks(s) @ v`` is an equivariant, differentiable stand-in for ``v[ranks]``, whose
    gradient in the scores is not zero (see ``encodings.straight_through_sympe``). NaN/Inf
    scores of real nodes: eagerly a ``ValueError``, under ``jit`` every entry NaN.

    Args:
      scores: float[n] per-node scores (finite for real nodes).
      mask: optional bool[n], True for real nodes.
      temperature: > 0, in the units of the scores (a fraction of the typical gap between
        consecutive sorted scores keeps the rows concentrated).
    """
    scores = checks.check_floating(scores, "scores", ndim=1)
    n = scores.shape[0]
    if n == 0:
        raise ValueError("soft_ranks: empty graph (no scores)")
    temperature = _check_temperature(temperature)
    real = checks.check_mask(mask, (n,))
    s = jnp.where(real, scores, 0.0)
    s_sorted = jnp.sort(jnp.where(real, s, jnp.inf))
    position_real = jnp.arange(n) < jnp.sum(real)
    diff = (s[:, None] - jnp.where(position_real, s_sorted, 0.0)[None, :]) / temperature
    logits = jnp.where(position_real[None, :], -jnp.square(diff), -jnp.inf)
    probs = jax.nn.softmax(jnp.where(real[:, None], logits, 0.0), axis=-1)
    return _guard_finite(jnp.where(real[:, None], probs, 0.0), scores, real, "soft_ranks")


def argmax_element(key: jax.Array, scores: jax.Array, mask: jax.Array | None = None, *,
                   atol: float = DEFAULT_ATOL) -> jax.Array:
    """A uniformly random index among the scores within ``atol`` of the maximum.

    Args:
      key: PRNG key; same key, same index.
      scores: float[...] one score per group element, any shape (e.g. a lifted p4m map of shape
        (8, L, L)); it is flattened in row-major order.
      mask: optional bool array of the same shape; masked-out entries are never chosen.
      atol: entries with ``score >= max - atol`` are the candidates.
    Returns:
      int32[] flat index (for p4m: ``lattice.element_from_index(index, L)``). It is exactly
      uniform over the candidates (``jax.random.randint`` over their count). If every entry is
      masked out, or a real score is NaN/Inf, the result is -1 under ``jit``/``vmap`` (eagerly a
      ValueError; see :mod:`sympe_jax.checks`).

    Law: if the scores are a lifted map, ``S'(h) = S(g^-1 h)`` for an input moved by g, the
    sampled element moves to ``g h`` in law: an inversion-kernel sample when the candidates
    are exactly the coset.
    """
    scores = checks.check_floating(scores, "scores")
    if scores.size == 0:
        raise ValueError("argmax_element: empty score array")
    real = checks.check_mask(mask, scores.shape)
    atol = checks.check_tolerance(atol, "atol")
    s, real = scores.reshape(-1), real.reshape(-1)
    top = jnp.max(jnp.where(real, s, -jnp.inf))
    candidate = real & (s >= top - atol)
    # Pick the k-th candidate, k uniform in [0, count): count candidates per block of
    # _BLOCK entries, find the block holding the k-th, then the entry inside it. Two short
    # cumulative sums instead of one over all m entries (4x faster for p4m at L = 32 on CPU).
    pad = (-candidate.shape[0]) % _BLOCK
    blocks = jnp.pad(candidate, (0, pad)).reshape(-1, _BLOCK)
    per_block = jnp.sum(blocks, axis=1, dtype=jnp.int32)
    cumulative = jnp.cumsum(per_block)
    count = cumulative[-1]
    k = jax.random.randint(key, (), 0, jnp.maximum(count, 1))
    b = jnp.argmax(cumulative > k)
    k_in = k - (cumulative[b] - per_block[b])
    index = (b * _BLOCK + jnp.argmax(jnp.cumsum(blocks[b], dtype=jnp.int32) > k_in)).astype(jnp.int32)
    index = _guard_finite(index, s, real, "argmax_element")
    return checks.guard(jnp.any(real), index, "argmax_element: every entry is masked out")
