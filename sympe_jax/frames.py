"""Randomized frames: samples of the inversion kernel of O(3) and E(3) on point clouds.

The O(3) counterpart of sorting with random ties (:mod:`sympe_jax.canonicalize`). A *frame* of a
point cloud ``x`` float[n, 3] is an orthogonal matrix ``F`` float[3, 3] whose columns are axes
attached to the cloud; ``F^T (x_i - c)`` (c the centroid) are the cloud's canonical coordinates
(:func:`to_frame`), and ``F`` is the group element ``g~`` that SymPE acts with on a learned set of
vectors: ``v -> F v`` (:func:`sympe_jax.encodings.point_cloud_sympe`). Every sampler here is a
pure function of a PRNG key, jit- and vmap-safe, and **equivariant in law**:

    F(key, R x + t) ~ R F(key', x)      for every R in O(3) (SO(3) with ``proper=True``), every
                                        translation t and every permutation of the points,

so the law of ``F^T (x - c)`` is invariant and the law of ``F v`` moves with the input. On a
symmetric cloud (stabilizer ``G_x``: the orthogonal maps that permute its centred points) the law
of ``F`` is invariant under ``F -> g F`` for g in G_x: the sample breaks the symmetry, the law keeps it.

Three samplers, from most to least random:

* :func:`haar_frame`: Haar on O(3) (SO(3)), ignoring the points: correct, maximally random (the
  "random permutation instead of sorting" of graphs).
* :func:`covariance_frame`: eigenvectors of an equivariant symmetric tensor (default the centred
  covariance; or a learned one). Eigenvalues within ``atol`` form one eigenspace (single-linkage, as
  :func:`sympe_jax.canonicalize.tie_groups`); each eigenspace gets a Haar-random orthonormal basis;
  the sign of a simple eigenvector u is fixed by the third moment ``m3 = mean_i ((x_i - c) . u)^3``
  when ``|m3|^(1/3) > atol`` and drawn at random otherwise (a symmetry that flips u makes m3 = 0).
  For an isotropic cloud (cube, octahedron, tetrahedron, icosahedron) every eigenvalue ties and
  the law is Haar on O(3): correct but maximally random.
* :func:`point_frame`: a frame built from points chosen by sorting invariant scores with random
  ties (the SymPE sampler for point clouds). Point a: the farthest from the centroid (ties
  uniformly at random); ``e1 = (x_a - c) / |x_a - c|``. Point b: among the points off the line
  ``c + R e1`` (distance to it > ``atol``), the farthest from the centroid, then the one with the
  largest projection on e1 (nearest in angle), ties at random; e2 is its direction orthogonal
  to e1. Point c (O(3) only): among the points off the plane of e1, e2 (distance > ``atol``), the
  same keys then the projection on e2 and the distance to the plane, ties at random; ``e3 =
  +-e1 x e2`` with the sign that puts c on its positive side (no such point: a uniform sign).
  Optional per-point invariant ``scores`` come before the distance in every key (larger first).
  Degenerate clouds: every point at the centroid (n = 1): Haar on O(3); collinear points
  (n = 2): e2 uniform on the circle orthogonal to e1, the sign uniform.

**When the point frame is the inversion kernel.** Call the choices (a, b, c, and the sign)
the sampler may make, given the ties, *admissible*. Each is uniform among its candidates given the
earlier ones, and the candidates are defined by invariant quantities, so the law of F is
G_x-invariant. If G_x acts transitively on the admissible choices, i.e. every admissible frame
gives the same canonical cloud ``F^T (x - c)`` as a multiset, the admissible frames form one coset
``G_x F_0`` on which G_x acts freely, and a G_x-invariant law on it is uniform: F is then exactly
a sample of the inversion kernel (uniform on ``G_x F_0``, |G_x| frames). This holds for the
regular polygons and polyhedra, the tetrahedron (24 frames), cube and octahedron (48), hexagon
(24), square pyramid (8) and every cloud whose distinct points differ in the keys beyond
``atol`` (one frame, ``G_x`` trivial). Otherwise (two non-equivalent points tie in every key) it
samples a union of cosets: still equivariant in law, with more entropy, as sorting with random
ties does on graphs. With ``proper=True`` the frame is a rotation (``e3 = e1 x e2``, no point c),
SO(3)-equivariant, and the inversion kernel of ``G_x intersect SO(3)`` under the same condition
with that group: true for the tetrahedron (12), cube (24), hexagon (12), not for a square pyramid
whose base is farther than its apex (8 frames for a rotation group of order 4).

Tolerances (``atol``) are absolute, in the units of the coordinates (of the tensor for the
covariance frame's eigenvalues). ``atol = 0`` ties only exactly equal values: exact on clouds
with exactly representable coordinates (integer cubes), otherwise rounding picks one frame
deterministically, which is not equivariant in law.

Invalid input, the rule of :mod:`sympe_jax.checks`: wrong shapes and dtypes raise; a non-finite
coordinate (or score, or tensor entry) of a real point, or no real point at all, is a
``ValueError`` eagerly and gives an all-NaN frame under ``jit``/``vmap``. Padding (``mask`` False)
never influences the frame.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sympe_jax import canonicalize, checks
from sympe_jax.groups import orthogonal

__all__ = [
    "centroid",
    "to_frame",
    "haar_frame",
    "covariance_frame",
    "point_frame",
]


# ----------------------------------------------------------------------------- helpers


def _inputs(points: jax.Array, mask: jax.Array | None, what: str):
    """Checked ``(points float[n, 3], real bool[n])``."""
    points = checks.check_floating(points, f"{what}: points", ndim=2)
    if points.shape[1] != 3:
        raise ValueError(f"{what}: points must have shape (n, 3), got {points.shape}")
    n = points.shape[0]
    if n == 0:
        raise ValueError(f"{what}: empty point cloud")
    return points, checks.check_mask(mask, (n,))


def _centred(points: jax.Array, real: jax.Array):
    """``(y float[n, 3] centred real points with padding 0, c float[3], ok bool[])``: ok = some real
    point and every real coordinate finite (invalid entries are zeroed so the rest stays finite)."""
    finite = jnp.all(jnp.isfinite(points), axis=1)
    ok = jnp.all(finite | ~real) & jnp.any(real)
    x = jnp.where((real & finite)[:, None], points, 0.0)
    count = jnp.maximum(jnp.sum(real), 1).astype(points.dtype)
    c = jnp.sum(x, axis=0) / count
    return jnp.where(real[:, None], x - c, 0.0), c, ok


def _guard(frame: jax.Array, ok: jax.Array, fn: str) -> jax.Array:
    return checks.guard(ok, frame, fn + ": every real point (and score) must be finite and at least one point "
                                        "must be real")


def centroid(points: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """The centroid of the real points: float[n, 3] -> float[3] (NaN for invalid input under ``jit``)."""
    points, real = _inputs(points, mask, "centroid")
    _, c, ok = _centred(points, real)
    return _guard(c, ok, "centroid")


def to_frame(frame: jax.Array, points: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Canonical coordinates ``F^T (x_i - c)``: frame float[3, 3], points float[n, 3] -> float[n, 3].

    Padding rows are 0. With a frame sampled from an equivariant sampler the result is invariant
    in law under rotations, reflections, translations and permutations of the input.
    """
    points, real = _inputs(points, mask, "to_frame")
    frame = checks.check_floating(frame, "to_frame: frame", ndim=2)
    if frame.shape != (3, 3):
        raise ValueError(f"to_frame: frame must be (3, 3), got {frame.shape}")
    y, _, ok = _centred(points, real)
    return _guard(jnp.where(real[:, None], y @ frame, 0.0), ok, "to_frame")


def _groups(values: jax.Array, eligible: jax.Array, atol: float) -> jax.Array:
    """int32[n]: single-linkage tie groups of the eligible values (as ``canonicalize.tie_groups``:
    sorted, a new group wherever consecutive values differ by more than ``atol``), increasing
    with the value; the others get n."""
    n = values.shape[0]
    s, order = jax.lax.sort((jnp.where(eligible, values, jnp.inf), jnp.arange(n, dtype=jnp.int32)), num_keys=1)
    step = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(jnp.diff(s) > atol, dtype=jnp.int32)])
    return jnp.where(eligible, jnp.zeros((n,), jnp.int32).at[order].set(step), n)


def _lex_rank(keys: list[jax.Array], eligible: jax.Array, atol: float) -> jax.Array:
    """int32[n]: the lexicographic rank of the eligible points by ``keys`` (larger is better; equal
    ranks for points tied in every key), each key's values within ``atol`` tied (single-linkage
    among the eligible points); -1 for points that are not eligible."""
    n = eligible.shape[0]
    groups = [_groups(jnp.where(eligible, k, 0.0), eligible, atol) for k in keys]
    idx = jnp.arange(n, dtype=jnp.int32)
    *sorted_groups, order = jax.lax.sort((*groups, idx), num_keys=len(groups))
    change = jnp.zeros((n - 1,), bool)
    for g in sorted_groups:
        change = change | (jnp.diff(g) != 0)
    step = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(change, dtype=jnp.int32)])
    return jnp.where(eligible, jnp.zeros((n,), jnp.int32).at[order].set(step), -1)


def _pick(key: jax.Array, eligible: jax.Array, rank: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(index int32[], found bool[])``: uniform among the eligible entries of maximal rank."""
    cand = eligible & (rank == jnp.max(rank))
    count = jnp.sum(cand, dtype=jnp.int32)
    k = jax.random.randint(key, (), 0, jnp.maximum(count, 1))
    index = jnp.argmax(jnp.cumsum(cand, dtype=jnp.int32) > k).astype(jnp.int32)
    return index, count > 0


def _unit(v: jax.Array) -> jax.Array:
    norm = jnp.linalg.norm(v)
    return v / jnp.where(norm > 0, norm, 1.0)


def _random_sign(key: jax.Array) -> jax.Array:
    return jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)


# ----------------------------------------------------------------------------- samplers


def haar_frame(key: jax.Array, points: jax.Array, mask: jax.Array | None = None, *, proper: bool = False
               ) -> jax.Array:
    """A Haar-random frame, independent of the points: float[3, 3].

    Law: Haar on O(3) (``proper=True``: on SO(3)), whatever the input: equivariant in law (a
    left-invariant law), the most random choice. The points are read only for the validation
    rule (NaN frame for a non-finite real point under ``jit``).
    """
    points, real = _inputs(points, mask, "haar_frame")
    _, _, ok = _centred(points, real)
    frame = orthogonal.random_rotation(key) if proper else orthogonal.random_orthogonal(key)
    return _guard(frame, ok, "haar_frame")


def covariance_frame(key: jax.Array, points: jax.Array, mask: jax.Array | None = None, *,
                     tensor: jax.Array | None = None, atol: float = canonicalize.DEFAULT_ATOL,
                     proper: bool = False) -> jax.Array:
    """Eigenvectors of an equivariant symmetric tensor with random degeneracies: float[3, 3].

    Args:
      key: PRNG key.
      points: float[n, 3]; mask: optional bool[n] of real points.
      tensor: optional float[3, 3], an equivariant symmetric tensor of the cloud (``T(R x) =
        R T(x) R^T``, e.g. from a learned network); symmetrized. Default: the covariance
        ``mean_i (x_i - c)(x_i - c)^T`` of the real points.
      atol: eigenvalues within ``atol`` (single-linkage) are one eigenspace; a simple eigenvector's
        sign is fixed when ``|m3|^(1/3) > atol``.
      proper: return a rotation (the last column times ``det``): SO(3)-equivariant only.
    Returns:
      F float[3, 3], columns by decreasing eigenvalue.

    Law: within every eigenspace of dimension d the columns are a Haar-random orthonormal basis
    (Gram-Schmidt of i.i.d. Gaussian vectors projected on the eigenspace, which reads only the
    eigenspace's projector, never the basis ``eigh`` happened to return); a simple eigenvector u
    has the sign of ``m3 = mean_i ((x_i - c) . u)^3``, or a uniform sign where ``|m3|^(1/3) <=
    atol``. Hence ``F(R x + t) ~ R F(x)`` for R in O(3) (in SO(3) with ``proper``). An isotropic
    tensor (every eigenvalue tied) gives Haar on O(3).
    """
    points, real = _inputs(points, mask, "covariance_frame")
    atol = checks.check_tolerance(atol, "atol")
    y, _, ok = _centred(points, real)
    count = jnp.maximum(jnp.sum(real), 1).astype(y.dtype)
    if tensor is None:
        t = y.T @ y / count
    else:
        t = checks.check_floating(tensor, "covariance_frame: tensor", ndim=2)
        if t.shape != (3, 3):
            raise ValueError(f"covariance_frame: tensor must be (3, 3), got {t.shape}")
        ok = ok & jnp.all(jnp.isfinite(t))
        t = jnp.where(jnp.isfinite(t), t, 0.0)
        t = (t + t.T) / 2
    evals, evecs = jnp.linalg.eigh(t)
    evals, evecs = evals[::-1], evecs[:, ::-1]                 # decreasing
    group = _tie_groups3(evals, atol)                          # equal for tied eigenvalues
    same = (group[:, None] == group[None, :]).astype(y.dtype)  # [j, k]: eigenvector k in j's eigenspace
    projectors = jnp.einsum("jk,ak,bk->jab", same, evecs, evecs)
    k_z, k_s = jax.random.split(key)
    z = jax.random.normal(k_z, (3, 3), y.dtype)
    w = jnp.einsum("jab,jb->ja", projectors, z)                # row j: Gaussian in j's eigenspace
    q0 = _unit(w[0])
    q1 = _unit(w[1] - (w[1] @ q0) * q0)
    q2 = _unit(w[2] - (w[2] @ q0) * q0 - (w[2] @ q1) * q1)
    q = jnp.stack([q0, q1, q2])                                # rows = columns of F
    simple = jnp.sum(same, axis=1) == 1
    m3 = jnp.sum(jnp.where(real[:, None], (y @ q.T) ** 3, 0.0), axis=0) / count
    fix = simple & (jnp.cbrt(jnp.abs(m3)) > atol)
    q = q * jnp.where(fix, jnp.sign(m3), 1.0)[:, None]
    frame = q.T
    if proper:
        frame = frame.at[:, 2].multiply(jnp.sign(jnp.linalg.det(frame)))
    return _guard(frame, ok, "covariance_frame")


def _tie_groups3(values: jax.Array, atol: float) -> jax.Array:
    """``canonicalize.tie_groups`` of finite values (NaN-free by construction of the callers)."""
    return canonicalize.tie_groups(jnp.where(jnp.isfinite(values), values, 0.0), atol=atol)


def point_frame(key: jax.Array, points: jax.Array, mask: jax.Array | None = None, *,
                scores: jax.Array | None = None, atol: float = canonicalize.DEFAULT_ATOL,
                proper: bool = False) -> jax.Array:
    """The sorted-point frame (SymPE for point clouds): float[3, 3].

    Args:
      key: PRNG key; same key, same frame.
      points: float[n, 3]; mask: optional bool[n] of real points.
      scores: optional float[n] per-point invariant scores (permutation-equivariant, rotation
        invariant, e.g. atom types or a learned invariant), compared first (larger first).
      atol: values of every key within ``atol`` tie (distances in the coordinates' units).
      proper: a rotation (``e3 = e1 x e2``), SO(3)-equivariant; else O(3)-equivariant.
    Returns:
      F float[3, 3] with columns e1, e2, e3 (see the module docstring for the choices, the law
      and exactly when it is the inversion kernel).
    """
    points, real = _inputs(points, mask, "point_frame")
    atol = checks.check_tolerance(atol, "atol")
    n = points.shape[0]
    y, _, ok = _centred(points, real)
    primary = []
    if scores is not None:
        scores = checks.check_floating(scores, "point_frame: scores", ndim=1)
        if scores.shape != (n,):
            raise ValueError(f"point_frame: scores must have shape ({n},), got {scores.shape}")
        ok = ok & jnp.all(jnp.isfinite(scores) | ~real)
        primary = [jnp.where(jnp.isfinite(scores), scores, 0.0)]
    k_a, k_b, k_c, k_e2, k_sign, k_haar = jax.random.split(key, 6)
    dist = jnp.linalg.norm(y, axis=1)

    # a: the farthest point (after the scores); none off the centroid: Haar.
    elig_a = real & (dist > atol)
    a, found_a = _pick(k_a, elig_a, _lex_rank(primary + [dist], elig_a, atol))
    e1 = _unit(y[a])
    # Projections as exact dot products divided by one norm, so that with exactly representable
    # coordinates equal values stay exactly equal (atol = 0); ordered as the projections on e1, e2, e3.
    p1 = (y @ y[a]) / jnp.maximum(dist[a], 1e-30)
    # b: off the line of e1; farthest, then nearest in angle to a. None: e2 uniform on the circle.
    perp = y - p1[:, None] * e1
    dperp = jnp.linalg.norm(jnp.cross(y, y[a]), axis=1) / jnp.maximum(dist[a], 1e-30)  # exact zeros on the line
    elig_b = real & (dperp > atol)
    b, found_b = _pick(k_b, elig_b, _lex_rank(primary + [dist, p1], elig_b, atol))
    g = jax.random.normal(k_e2, (3,), y.dtype)
    e2_random = _unit(g - (g @ e1) * e1)
    e2 = jnp.where(found_b, _unit(perp[b]), e2_random)
    n3 = jnp.cross(e1, e2)
    if proper:
        e3 = n3
    else:
        # c: off the plane of e1, e2; the sign of e3 puts it on the positive side. None: uniform sign.
        # among points tied in dist and p1, y . y_b orders them as the projection on e2
        p2 = (y @ y[b]) / jnp.maximum(dist[b], 1e-30)
        normal = jnp.cross(y[a], jnp.where(found_b, y[b], e2))
        p3 = (y @ normal) / jnp.maximum(jnp.linalg.norm(normal), 1e-30)
        elig_c = real & (jnp.abs(p3) > atol)
        c, found_c = _pick(k_c, elig_c, _lex_rank(primary + [dist, p1, p2, jnp.abs(p3)], elig_c, atol))
        sign = jnp.where(found_c, jnp.sign(p3[c]), _random_sign(k_sign))
        e3 = sign * n3
    frame = jnp.stack([e1, e2, e3], axis=1)
    haar = orthogonal.random_rotation(k_haar) if proper else orthogonal.random_orthogonal(k_haar)
    frame = jnp.where(found_a, frame, haar)
    return _guard(frame, ok, "point_frame")
