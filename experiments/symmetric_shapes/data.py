"""Symmetric point clouds with known point groups, an asymmetric target, and the exact floor.

Every shape is a template (centred, RMS radius 1) with one marked vertex. An instance is the
template under a random scale s ~ U(0.5, 2), a Haar-random element of O(3), a Gaussian
translation and a random order of its points (padding last, to ``N_MAX`` points). Its target is
the displacement field that pushes the marked vertex outward by ``PUSH`` times its position
about the centroid and leaves every other point in place. The shape's symmetries make every image
``g . D`` (g in the point group G_x: rotate the field and permute the points) an equally correct
answer, so the loss is the minimum over G_x, relative to the target's size:

    loss(pred) = min_{g in G_x} ||pred - g . D||^2 / ||D||^2.

**Floor of a symmetry-preserving model.** An equivariant model without symmetry breaking maps a
symmetric input to a G_x-invariant field D' (g . D' = D'), for which every term of the minimum is
the same, ``||D' - D||^2``; the best invariant field is the group average ``D_bar = mean_g g . D``
(the orthogonal projection on the invariant fields), so the floor is

    floor = ||D - D_bar||^2 / ||D||^2 = 1 - 1/m     (m = size of the marked vertex's orbit),

computed here by averaging over the enumerated group (:func:`floor`), with the closed form as a
test. No model that keeps the symmetry can go below it; a symmetry-breaking one can reach 0.
"""

from __future__ import annotations

import itertools

import numpy as np

from sympe_jax.groups import orthogonal

N_MAX = 8
MAX_ORDER = 48
PUSH = 0.5


def _templates() -> dict[str, tuple[np.ndarray, int]]:
    tet = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)
    cube = np.array(list(itertools.product([-1, 1], repeat=3)), float)
    octa = np.concatenate([np.eye(3), -np.eye(3)])
    poly = lambda k: np.array([[np.cos(2 * np.pi * i / k), np.sin(2 * np.pi * i / k), 0.0] for i in range(k)])
    pyramid = np.array([[1, 1, 0], [1, -1, 0], [-1, -1, 0], [-1, 1, 0], [0, 0, 1.5]], float)
    prism = np.concatenate([poly(3) + [0, 0, 0.7], poly(3) - [0, 0, 0.7]])
    shapes = {"tetrahedron": (tet, 0), "cube": (cube, 0), "octahedron": (octa, 0), "triangle": (poly(3), 0),
              "square": (poly(4), 0), "hexagon": (poly(6), 0), "square_pyramid": (pyramid, 0),
              "triangular_prism": (prism, 0)}
    out = {}
    for name, (pts, vertex) in shapes.items():
        y = pts - pts.mean(0)
        out[name] = (y / np.sqrt(np.mean(np.sum(y * y, 1))), vertex)
    return out


TEMPLATES = _templates()
SHAPE_NAMES = tuple(TEMPLATES)


def target(name: str) -> np.ndarray:
    """The template's target D float[n, 3]: the marked vertex pushed outward by PUSH times its position."""
    pts, vertex = TEMPLATES[name]
    d = np.zeros_like(pts)
    d[vertex] = PUSH * pts[vertex]
    return d


def orbit(name: str) -> np.ndarray:
    """Every symmetry image ``g . D`` of the template's target, float[|G_x|, n, 3]:
    ``(g . D)[perm[i]] = M D[i]``."""
    pts, _ = TEMPLATES[name]
    mats, perms = orthogonal.symmetry_group(pts, atol=1e-6)
    d = target(name)
    out = np.zeros((len(mats),) + d.shape)
    for k, (m, p) in enumerate(zip(mats, perms)):
        out[k, p] = d @ m.T
    return out


def floor(name: str) -> float:
    """The exact loss floor of a G_x-invariant prediction: ``||D - mean_g g . D||^2 / ||D||^2``."""
    images = orbit(name)
    d = target(name)
    return float(np.sum((d - images.mean(0)) ** 2) / np.sum(d ** 2))


def vertex_orbit_size(name: str) -> int:
    """m: the number of distinct images of the marked vertex under the point group."""
    pts, vertex = TEMPLATES[name]
    _, perms = orthogonal.symmetry_group(pts, atol=1e-6)
    return len(set(perms[:, vertex].tolist()))


_ORBITS = {name: orbit(name) for name in SHAPE_NAMES}
FLOORS = {name: floor(name) for name in SHAPE_NAMES}


def _haar(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))[None, :]


def sample(rng: np.random.Generator, batch: int, shapes: tuple[str, ...] = SHAPE_NAMES) -> dict[str, np.ndarray]:
    """A batch of instances.

    Returns: ``points`` float32[B, N_MAX, 3], ``mask`` bool[B, N_MAX], ``targets``
    float32[B, MAX_ORDER, N_MAX, 3] (every correct answer, the list padded by repeating the
    first), ``shape`` int32[B] (index into ``shapes``), ``rotation`` float32[B, 3, 3], ``scale``,
    ``translation`` and ``order`` (the point order: row i of ``points`` is template point order[i]).
    """
    out = {k: [] for k in ("points", "mask", "targets", "shape", "rotation", "scale", "translation", "order")}
    for _ in range(batch):
        idx = int(rng.integers(len(shapes)))
        name = shapes[idx]
        pts, _ = TEMPLATES[name]
        n = len(pts)
        r, s, t, perm = _haar(rng), rng.uniform(0.5, 2.0), rng.normal(size=3), rng.permutation(n)
        x = np.zeros((N_MAX, 3))
        x[:n] = s * pts[perm] @ r.T + t
        images = _ORBITS[name]
        tg = np.zeros((MAX_ORDER, N_MAX, 3))
        tg[:len(images), :n] = s * images[:, perm] @ r.T
        tg[len(images):] = tg[0]
        order = np.concatenate([perm, np.arange(n, N_MAX)])
        for k, v in zip(out, (x, np.arange(N_MAX) < n, tg, idx, r, s, t, order)):
            out[k].append(v)
    res = {k: np.stack(v) for k, v in out.items()}
    for k in ("points", "targets", "rotation", "scale", "translation"):
        res[k] = res[k].astype(np.float32)
    res["shape"] = res["shape"].astype(np.int32)
    return res


def relative_errors(pred: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``min_g ||pred - g . D||^2 / ||D||^2`` per instance (NumPy or jax.numpy arrays): float[B]."""
    xp = np if isinstance(pred, np.ndarray) else __import__("jax.numpy", fromlist=["numpy"])
    m = mask[:, None, :, None]
    sq = xp.sum(xp.where(m, (pred[:, None] - targets) ** 2, 0.0), axis=(-2, -1))
    norm = xp.sum(xp.where(m, targets[:, :1] ** 2, 0.0), axis=(-3, -2, -1))
    return xp.min(sq, axis=1) / norm
