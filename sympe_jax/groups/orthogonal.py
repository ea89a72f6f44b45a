"""The orthogonal groups O(3), SO(3) and the Euclidean group E(3) acting on point clouds.

Conventions (used everywhere in ``sympe_jax``, written once here):

* An O(3) element is a float array ``R`` of shape ``(3, 3)`` (batches: ``(..., 3, 3)``) with
  ``R^T R = I``; SO(3) elements have ``det R = +1``. ``R`` acts on a point or vector ``p``
  (a row of an array ``x`` of shape ``(n, 3)``) by ``p -> R p``, i.e. ``x -> x R^T``.
* An E(3) element is a homogeneous float array ``g`` of shape ``(4, 4)`` (batches:
  ``(..., 4, 4)``), ``g = [[R, t], [0, 0, 0, 1]]``; it maps points by ``p -> R p + t`` and vectors
  (differences of points, forces, displacements) by ``u -> R u`` only. :func:`euclidean` builds
  one from ``(R, t)``, :func:`rotation_part` and :func:`translation_part` take it apart.
* ``compose(g, h)`` is "g after h" (the matrix product ``g @ h``), for O(3) and E(3) alike.
* Features transform by the rotation part: vectors ``(..., 3)`` by ``R u`` (pseudovectors,
  ``pseudo=True``, by ``det(R) R u``); Cartesian tensors of order k ``(..., 3, ..., 3)`` by ``R``
  on every index (:func:`act_on_tensors`); e3nn-jax ``IrrepsArray`` by their irreps' Wigner
  matrices (:func:`act_on_irreps`, parity included).

Validation (the rule of :mod:`sympe_jax.checks`): elements must have a real floating dtype and
the shape ``(..., 3, 3)`` or ``(..., 4, 4)`` (else ``TypeError``/``ValueError``, always). Values:
an element whose rotation part is not orthogonal within ``tol`` (``max |R^T R - I| > tol``,
default :data:`DEFAULT_TOL`), a homogeneous last row other than ``[0, 0, 0, 1]`` or a non-finite
entry is a ``ValueError`` eagerly; under ``jit``/``vmap`` every floating output is NaN instead (an
all-NaN element is itself invalid, so the poison propagates).

Haar measure: :func:`random_rotation` is Haar on SO(3) and :func:`random_orthogonal` Haar on O(3)
(the QR decomposition of a Gaussian matrix with the signs of R's diagonal fixed, Mezzadri 2007).
E(3) is not compact and has no uniform law: :func:`random_euclidean` is a Haar rotation with an
independent isotropic Gaussian translation, and says so.

:func:`symmetry_group` (NumPy, on the host) enumerates the exact point group of a finite point
cloud, for tests, floors and benchmarks.

All other functions are pure ``jax.numpy``, jit- and vmap-safe.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from sympe_jax import checks

__all__ = [
    "DEFAULT_TOL",
    "identity",
    "euclidean",
    "rotation_part",
    "translation_part",
    "is_element",
    "compose",
    "inverse",
    "random_rotation",
    "random_orthogonal",
    "random_euclidean",
    "act_on_points",
    "act_on_vectors",
    "act_on_tensors",
    "act_on_irreps",
    "symmetry_group",
]

DEFAULT_TOL = 1e-4
"""Default orthogonality tolerance of elements: float32 products of a few matrices stay within 1e-5."""


def _check(g: jax.Array, what: str, *, tol: float = DEFAULT_TOL) -> tuple[jax.Array, jax.Array]:
    """``(g, ok bool[...])`` for element(s) g float[..., d, d], d in (3, 4); eagerly a ValueError if not ok."""
    g = checks.check_floating(g, f"{what}: an O(3)/E(3) element")
    if g.ndim < 2 or g.shape[-2:] not in ((3, 3), (4, 4)):
        raise ValueError(f"{what}: an element is a float array of shape (..., 3, 3) (O(3)) or (..., 4, 4) (E(3)), "
                         f"got shape {g.shape}")
    ok = _ok(g, tol)
    checks.check_value(jnp.all(ok), f"{what}: not an orthogonal matrix (or homogeneous E(3) matrix) within tol = {tol}: "
                                    "max |R^T R - I| = {}", jnp.max(_defect(g)))
    return g, ok


def _defect(g: jax.Array) -> jax.Array:
    """float[...]: ``max |R^T R - I|`` plus the homogeneous row's deviation (inf for non-finite entries)."""
    r = g[..., :3, :3]
    d = jnp.max(jnp.abs(jnp.swapaxes(r, -1, -2) @ r - jnp.eye(3, dtype=g.dtype)), axis=(-2, -1))
    if g.shape[-1] == 4:
        d = d + jnp.max(jnp.abs(g[..., 3, :] - jnp.array([0, 0, 0, 1], g.dtype)), axis=-1)
    return jnp.where(jnp.all(jnp.isfinite(g), axis=(-2, -1)), d, jnp.inf)


def _ok(g: jax.Array, tol: float) -> jax.Array:
    return _defect(g) <= tol


def is_element(g: jax.Array, tol: float = DEFAULT_TOL) -> jax.Array:
    """bool[...]: whether g float[..., 3, 3] is orthogonal (float[..., 4, 4]: a homogeneous E(3) matrix) within ``tol``."""
    g = checks.check_floating(g, "is_element: g")
    if g.ndim < 2 or g.shape[-2:] not in ((3, 3), (4, 4)):
        raise ValueError(f"is_element: expected shape (..., 3, 3) or (..., 4, 4), got {g.shape}")
    return _ok(g, checks.check_tolerance(tol, "tol"))


def identity(dim: int = 3) -> jax.Array:
    """The identity: float32[3, 3] (O(3)) or, with ``dim=4``, float32[4, 4] (E(3))."""
    if dim not in (3, 4):
        raise ValueError(f"identity: dim must be 3 (O(3)) or 4 (E(3)), got {dim!r}")
    return jnp.eye(dim, dtype=jnp.float32)


def euclidean(rotation: jax.Array, translation: jax.Array) -> jax.Array:
    """The E(3) element ``p -> R p + t``: R float[..., 3, 3], t float[..., 3] -> float[..., 4, 4] (invalid R: NaN)."""
    r, ok = _check(rotation, "euclidean: rotation")
    if r.shape[-2:] != (3, 3):
        raise ValueError(f"euclidean: the rotation must be (..., 3, 3), got {r.shape}")
    t = checks.check_floating(translation, "euclidean: translation")
    if t.shape[-1:] != (3,):
        raise ValueError(f"euclidean: the translation must be (..., 3), got {t.shape}")
    shape = jnp.broadcast_shapes(r.shape[:-2], t.shape[:-1])
    r, t = jnp.broadcast_to(r, shape + (3, 3)), jnp.broadcast_to(t, shape + (3,))
    top = jnp.concatenate([r, t[..., None]], axis=-1)
    bottom = jnp.broadcast_to(jnp.array([0, 0, 0, 1], top.dtype), shape + (1, 4))
    return checks.poison(jnp.concatenate([top, bottom], axis=-2), jnp.broadcast_to(ok, shape)[..., None, None])


def rotation_part(g: jax.Array) -> jax.Array:
    """The O(3) part R of element(s) g (float[..., 3, 3] or float[..., 4, 4]) -> float[..., 3, 3] (invalid: NaN)."""
    g, ok = _check(g, "rotation_part")
    return checks.poison(g[..., :3, :3], ok[..., None, None])


def translation_part(g: jax.Array) -> jax.Array:
    """The translation t of element(s) g -> float[..., 3] (zero for an O(3) element; invalid: NaN)."""
    g, ok = _check(g, "translation_part")
    t = g[..., :3, 3] if g.shape[-1] == 4 else jnp.zeros(g.shape[:-2] + (3,), g.dtype)
    return checks.poison(t, ok[..., None])


def compose(g: jax.Array, h: jax.Array) -> jax.Array:
    """``g h`` ("g after h"), the matrix product: two O(3) or two E(3) elements (broadcastable) -> the same kind.

    NaN where g or h is invalid (under ``jit``; eagerly a ValueError)."""
    g, ok_g = _check(g, "compose: g")
    h, ok_h = _check(h, "compose: h")
    if g.shape[-1] != h.shape[-1]:
        raise ValueError(f"compose: cannot compose an element of shape {g.shape} with one of shape {h.shape} "
                         "(embed O(3) into E(3) with euclidean(R, zeros))")
    return checks.poison(g @ h, (ok_g & ok_h)[..., None, None])


def inverse(g: jax.Array) -> jax.Array:
    """Inverse element: ``R^T`` for O(3), ``[[R^T, -R^T t], [0, 1]]`` for E(3). Exact up to rounding (invalid: NaN)."""
    g, ok = _check(g, "inverse")
    rt = jnp.swapaxes(g[..., :3, :3], -1, -2)
    if g.shape[-1] == 3:
        out = rt
    else:
        t = -jnp.einsum("...ij,...j->...i", rt, g[..., :3, 3])
        top = jnp.concatenate([rt, t[..., None]], axis=-1)
        out = jnp.concatenate([top, g[..., 3:, :]], axis=-2)
    return checks.poison(out, ok[..., None, None])


def random_rotation(key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Haar-random element(s) of SO(3): float32[*shape, 3, 3].

    Law: the Q of the QR decomposition of a matrix of i.i.d. N(0, 1) entries, with the columns'
    signs chosen so that R has a positive diagonal (Haar on O(3), Mezzadri 2007), then the last
    column negated where ``det Q = -1`` (Haar on SO(3): the left-invariant image of Haar on O(3)
    under the right multiplication by ``diag(1, 1, det Q)``, which commutes with the left action).
    """
    q = random_orthogonal(key, shape)
    det = jnp.linalg.det(q)
    return q * jnp.concatenate([jnp.ones(shape + (1, 2), q.dtype), jnp.sign(det)[..., None, None]], axis=-1)


def random_orthogonal(key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Haar-random element(s) of O(3) (both components, probability 1/2 each): float32[*shape, 3, 3].

    Law: the Q of the QR decomposition of i.i.d. N(0, 1) entries, with R's diagonal made
    positive (the Gaussian law is invariant under ``Z -> U Z`` for orthogonal U, and so is Q).
    """
    z = jax.random.normal(key, shape + (3, 3), jnp.float32)
    q, r = jnp.linalg.qr(z)
    d = jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))
    d = jnp.where(d == 0, 1.0, d)  # probability 0; keeps Q orthogonal
    return q * d[..., None, :]


def random_euclidean(key: jax.Array, shape: tuple[int, ...] = (), *, translation_scale: float = 1.0,
                     proper: bool = False) -> jax.Array:
    """Random E(3) element(s): float32[*shape, 4, 4].

    Law: the rotation part Haar on O(3) (``proper=True``: on SO(3)), the translation independent
    ``N(0, translation_scale^2 I)`` (E(3) has no uniform probability law).
    """
    scale = checks.check_tolerance(translation_scale, "translation_scale")
    k_r, k_t = jax.random.split(key)
    r = random_rotation(k_r, shape) if proper else random_orthogonal(k_r, shape)
    return euclidean(r, scale * jax.random.normal(k_t, shape + (3,), jnp.float32))


def _check_last(x: jax.Array, what: str) -> jax.Array:
    x = checks.check_floating(x, what)
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"{what} must have shape (..., 3), got {x.shape}")
    return x


def act_on_points(g: jax.Array, points: jax.Array) -> jax.Array:
    """Move points: ``p -> R p`` (O(3)) or ``p -> R p + t`` (E(3)).

    Args:
      g: one element float[3, 3] or float[4, 4] (or a batch whose leading axes broadcast with
        the points' leading axes, e.g. g [B, 3, 3] and points [B, n, 3]).
      points: float[..., n, 3].
    Returns:
      float[..., n, 3]; NaN if g is invalid (under ``jit``).
    """
    g, ok = _check(g, "act_on_points: g")
    x = _check_last(points, "act_on_points: points")
    if x.ndim < 2:
        raise ValueError(f"act_on_points: points must have shape (..., n, 3), got {x.shape}")
    out = jnp.einsum("...ij,...nj->...ni", g[..., :3, :3], x)
    if g.shape[-1] == 4:
        out = out + g[..., None, :3, 3]
    return checks.poison(out, ok[..., None, None])


def act_on_vectors(g: jax.Array, vectors: jax.Array, *, pseudo: bool = False) -> jax.Array:
    """Rotate vectors (or, ``pseudo=True``, pseudovectors such as angular momenta): ``u -> R u`` (``det(R) R u``).

    Translations do not move vectors. g float[3, 3] or float[4, 4]; vectors float[..., 3] ->
    float[..., 3] (NaN if g is invalid, under ``jit``). For batched g [B, d, d], vectors must be
    [B, ..., 3] with the batch first.
    """
    g, ok = _check(g, "act_on_vectors: g")
    u = _check_last(vectors, "act_on_vectors: vectors")
    r = g[..., :3, :3]
    batch = r.shape[:-2]
    if u.shape[:len(batch)] != batch:
        raise ValueError(f"act_on_vectors: batched elements {g.shape} need vectors with the same leading axes, got {u.shape}")
    mid = u.ndim - len(batch) - 1
    r_b = r.reshape(batch + (1,) * mid + (3, 3))
    out = jnp.einsum("...ij,...j->...i", r_b, u)
    if pseudo:
        out = out * jnp.linalg.det(r).reshape(batch + (1,) * (mid + 1))
    return checks.poison(out, ok.reshape(batch + (1,) * (mid + 1)))


def act_on_tensors(g: jax.Array, tensors: jax.Array, order: int) -> jax.Array:
    """Rotate Cartesian tensors of ``order`` k on their last k axes: ``T'_{i..l} = R_ia ... R_ld T_{a..d}``.

    g one element float[3, 3] or float[4, 4] (translations do not act); tensors float[..., 3, ..., 3]
    (k trailing axes of size 3) -> the same shape (NaN if g is invalid, under ``jit``). Order 1 is
    :func:`act_on_vectors`; order 2 maps a covariance ``C`` to ``R C R^T``.
    """
    if not isinstance(order, int) or isinstance(order, bool) or order < 0:
        raise ValueError(f"act_on_tensors: order must be an int >= 0, got {order!r}")
    g, ok = _check(g, "act_on_tensors: g")
    if g.ndim != 2:
        raise ValueError(f"act_on_tensors: one element (shape (3, 3) or (4, 4)) at a time, got {g.shape}; use vmap")
    t = checks.check_floating(tensors, "act_on_tensors: tensors")
    if t.ndim < order or t.shape[t.ndim - order:] != (3,) * order:
        raise ValueError(f"act_on_tensors: an order-{order} tensor needs {order} trailing axes of size 3, got {t.shape}")
    r = g[:3, :3]
    for axis in range(t.ndim - order, t.ndim):
        t = jnp.moveaxis(jnp.tensordot(t, r, axes=([axis], [1])), -1, axis)
    return checks.poison(t, ok)


def act_on_irreps(g: jax.Array, x):
    """Act on an e3nn-jax ``IrrepsArray`` by the rotation part of g (one element): each irrep
    ``l`` with parity ``p`` by ``det(R)^{(1-p)/2}`` times its Wigner matrix, as
    ``IrrepsArray.transform_by_matrix``. NaN if g is invalid (under ``jit``).

    Needs e3nn-jax (the ``[e3]`` extra); imported here only.
    """
    import e3nn_jax as e3nn  # optional dependency, loaded on use

    g, ok = _check(g, "act_on_irreps: g")
    if g.ndim != 2:
        raise ValueError(f"act_on_irreps: one element (shape (3, 3) or (4, 4)) at a time, got {g.shape}; use vmap")
    if not isinstance(x, e3nn.IrrepsArray):
        raise TypeError(f"act_on_irreps: expected an e3nn_jax.IrrepsArray, got {type(x).__name__}")
    # transform_by_matrix needs a proper angle decomposition: feed it a rotation and apply the
    # parity by hand (its own handling of det < 0 is the same, this keeps NaN out of the angles).
    r = g[:3, :3]
    det = jnp.sign(jnp.linalg.det(r))
    r_proper = jnp.where(ok, r * det, jnp.eye(3, dtype=r.dtype))
    out = x.transform_by_matrix(r_proper)
    parity = jnp.concatenate([jnp.full((mul * ir.dim,), 1.0 if ir.p == 1 else -1.0) for mul, ir in x.irreps]) \
        if x.irreps.dim else jnp.zeros((0,))
    factor = jnp.where(det < 0, parity, 1.0).astype(out.array.dtype)
    return e3nn.IrrepsArray(out.irreps, checks.poison(out.array * factor, ok))


# ----------------------------------------------------------------------------- exact point groups (host)


def symmetry_group(points, mask=None, *, atol: float = 1e-5):
    """The exact point group of a finite point cloud, enumerated on the host (NumPy).

    The group G_x of the orthogonal maps R with ``R (x - c) = (x - c)`` up to a permutation of
    the points, c the centroid of the real points (an E(3) symmetry of a finite set fixes its
    centroid, so this is also its E(3) stabilizer, conjugated by the translation to c).

    Method: pick a basis of the centred points (two independent points and, for a planar
    cloud, their normal; a collinear cloud or a single point has an infinite group: a
    ``ValueError``); every candidate image of the basis among points with the same norms and
    Gram matrix (within ``atol``) defines one linear map; keep those that are orthogonal and map
    the cloud onto itself within ``atol``. O(n^3) candidates, each checked in O(n^2).

    Args:
      points: float[n, 3] (array-like).
      mask: optional bool[n]: only the True points form the cloud.
      atol: distance tolerance of the matching.
    Returns:
      ``(matrices float64[m, 3, 3], perms int64[m, n_real])``: ``matrices[k]`` maps real point i
      (centred, in the order of the real points) to real point ``perms[k, i]``; the identity
      first. ``m = |G_x|``.
    """
    x = np.asarray(points, np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"symmetry_group: points must have shape (n, 3), got {x.shape}")
    if mask is not None:
        x = x[np.asarray(mask, bool)]
    if len(x) == 0 or not np.all(np.isfinite(x)):
        raise ValueError("symmetry_group: needs at least one real point, all finite")
    atol = checks.check_tolerance(atol, "atol")
    y = x - x.mean(0)
    n = len(y)
    norms = np.linalg.norm(y, axis=1)
    far = int(np.argmax(norms))
    if norms[far] <= atol:
        raise ValueError("symmetry_group: every point is at the centroid: the group is all of O(3)")
    cross = np.linalg.norm(np.cross(y[far], y), axis=1)
    if np.all(cross <= atol * max(norms[far], 1.0)):
        raise ValueError("symmetry_group: collinear points: the group is infinite (rotations about the line)")
    second = int(np.argmax(cross))
    third_candidates = np.abs(y @ np.cross(y[far], y[second]))
    planar = np.all(third_candidates <= atol * max(norms[far] ** 2, 1.0))
    basis_idx = [far, second] if planar else [far, second, int(np.argmax(third_candidates))]

    def frame(rows):
        b = np.stack(rows)
        return np.vstack([b, np.cross(b[0], b[1])]) if planar else b

    src = frame([y[i] for i in basis_idx])
    src_inv = np.linalg.inv(src)
    gram = y[basis_idx] @ y[basis_idx].T
    cands = [np.flatnonzero(np.abs(norms - norms[i]) <= atol) for i in basis_idx]
    mats, perms = [], []
    for images in itertools.product(*cands):
        if len(set(images)) < len(images) or np.max(np.abs(y[list(images)] @ y[list(images)].T - gram)) > atol * 10:
            continue
        signs = (1.0, -1.0) if planar else (1.0,)
        for s in signs:
            dst = frame([y[i] for i in images])
            if planar:
                dst[2] *= s
            m = (src_inv @ dst).T  # m @ src[k] = dst[k]
            if np.max(np.abs(m.T @ m - np.eye(3))) > 1e-6 + atol:
                continue
            moved = y @ m.T
            dist = np.linalg.norm(moved[:, None, :] - y[None, :, :], axis=-1)
            perm = np.argmin(dist, axis=1)
            if np.max(dist[np.arange(n), perm]) <= atol * 10 and len(set(perm.tolist())) == n:
                mats.append(m)
                perms.append(perm)
    order = sorted(range(len(mats)), key=lambda k: not np.allclose(mats[k], np.eye(3), atol=1e-6))
    return np.stack([mats[k] for k in order]), np.stack([perms[k] for k in order])
