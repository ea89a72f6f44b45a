"""The wallpaper group p4m acting on an L x L torus.

Conventions (used everywhere in ``sympe_jax``):

* A site ``s = (x, y)`` of the torus is stored at ``field[x, y]``: axis 0 is the x
  coordinate ("right" is +x), axis 1 is the y coordinate ("up" is +y).
* The point group D4 has 8 elements indexed ``d = 4 * f + k`` (``k`` in 0..3, ``f`` in 0..1);
  element ``d`` is the integer matrix ``M_d = R^k F^f`` with ``R = [[0, -1], [1, 0]]`` (rotation
  by +90 degrees) and ``F = [[1, 0], [0, -1]]`` (the reflection y -> -y).
* A p4m element is an int32 array ``g = [d, tx, ty]`` of shape (3,) (batches: (..., 3)); it
  maps a site by ``s -> M_d s + t (mod L)``. ``compose(g, h)`` is "g after h".
* Group elements act on functions on the torus by ``(g . f)(s) = f(g^-1 s)``:

  - scalar site fields ``(L, L, c)``: :func:`act_on_field`;
  - lifted fields ``(8, L, L, c)``, functions on the group with the D4 axis first, entry
    ``[d, x, y]`` being the value at the group element ``(d, x, y)``:
    ``(g . F)(h) = F(g^-1 h)`` (the regular representation), :func:`act_on_lifted`;
  - bond fields ``(L, L, 4)`` with channels ``[J_right, J_up, J_left, J_down]``
    (channel ``k`` holds the coupling from site s to ``s + e_k`` with ``e_0 = +x``,
    ``e_1 = +y``, ``e_2 = -x``, ``e_3 = -y``): the sites move as in a scalar field and the
    direction channels are permuted as ``M_d`` permutes the directions,
    :func:`act_on_bonds`.

All functions are pure ``jax.numpy``, jit- and vmap-safe (elements may be traced).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "D4_MATRICES",
    "D4_TABLE",
    "D4_INVERSE",
    "D4_DIRECTION_PERM",
    "order",
    "identity",
    "compose",
    "inverse",
    "elements",
    "element_from_index",
    "index_of_element",
    "random_element",
    "act_on_sites",
    "act_on_field",
    "act_on_lifted",
    "act_on_bonds",
]


def _d4_matrices() -> np.ndarray:
    rot = np.array([[0, -1], [1, 0]], dtype=np.int32)
    flip = np.array([[1, 0], [0, -1]], dtype=np.int32)
    mats = []
    for f in range(2):
        for k in range(4):
            mats.append(np.linalg.matrix_power(rot, k) @ np.linalg.matrix_power(flip, f))
    return np.stack(mats).astype(np.int32)


D4_MATRICES = _d4_matrices()
"""int32[8, 2, 2]: ``D4_MATRICES[d] = R^k F^f`` for ``d = 4 f + k``."""


def _d4_table(mats: np.ndarray) -> np.ndarray:
    lookup = {m.tobytes(): i for i, m in enumerate(mats)}
    return np.array([[lookup[(a @ b).astype(np.int32).tobytes()] for b in mats] for a in mats],
                                    dtype=np.int32)


D4_TABLE = _d4_table(D4_MATRICES)
"""int32[8, 8]: ``D4_TABLE[a, b]`` is the index of ``M_a M_b``."""

D4_INVERSE = np.argmax(D4_TABLE == 0, axis=1).astype(np.int32)
"""int32[8]: index of the inverse of each D4 element."""

_DIRECTIONS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int32)
D4_DIRECTION_PERM = np.array(
        [[int(np.argmax((_DIRECTIONS == (m @ e)).all(axis=1))) for e in _DIRECTIONS]
          for m in D4_MATRICES], dtype=np.int32)
"""int32[8, 4]: ``D4_DIRECTION_PERM[d, k]`` is the direction ``M_d e_k`` (0: +x, 1: +y, 2: -x, 3: -y)."""


def order(L: int) -> int:
    """Number of elements of p4m on an L x L torus: ``8 L^2``."""
    return 8 * L * L


def identity() -> jax.Array:
    """The identity element ``[0, 0, 0]`` (int32[3])."""
    return jnp.zeros((3,), jnp.int32)


def _split(g):
    g = jnp.asarray(g, jnp.int32)
    if g.shape[-1:] != (3,):
        raise ValueError(f"a p4m element is an int array of shape (..., 3) [d, tx, ty]; got shape {g.shape}")
    return g[..., 0], g[..., 1:]


def _rotate(d, s):
    """``M_d s`` for d int[...] and s int[..., 2]."""
    mats = jnp.asarray(D4_MATRICES)[d]  # (..., 2, 2)
    return jnp.einsum("...ij,...j->...i", mats, s)


def compose(g: jax.Array, h: jax.Array, L: int) -> jax.Array:
    """Group product ``g h`` ("g after h"): ``(g h) s = g (h s)``.

    Args:
        g, h: int32[..., 3] elements ``[d, tx, ty]`` (broadcastable).
        L: lattice size.
    Returns:
        int32[..., 3].
    """
    dg, tg = _split(g)
    dh, th = _split(h)
    d = jnp.asarray(D4_TABLE)[dg, dh]
    t = jnp.mod(_rotate(dg, th) + tg, L)
    return jnp.concatenate([d[..., None], t], axis=-1).astype(jnp.int32)


def inverse(g: jax.Array, L: int) -> jax.Array:
    """Inverse element: ``s -> M_d^-1 (s - t)``. int32[..., 3] -> int32[..., 3]."""
    d, t = _split(g)
    dinv = jnp.asarray(D4_INVERSE)[d]
    tinv = jnp.mod(-_rotate(dinv, t), L)
    return jnp.concatenate([dinv[..., None], tinv], axis=-1).astype(jnp.int32)


def element_from_index(index: jax.Array, L: int) -> jax.Array:
    """Element at a flat index into a lifted ``(8, L, L)`` array (row-major): int[...] -> int32[..., 3]."""
    index = jnp.asarray(index, jnp.int32)
    d = index // (L * L)
    tx = (index // L) % L
    ty = index % L
    return jnp.stack([d, tx, ty], axis=-1).astype(jnp.int32)


def index_of_element(g: jax.Array, L: int) -> jax.Array:
    """Inverse of :func:`element_from_index`: int32[..., 3] -> int32[...]."""
    d, t = _split(g)
    return (d * L * L + t[..., 0] * L + t[..., 1]).astype(jnp.int32)


def elements(L: int) -> jax.Array:
    """All ``8 L^2`` elements, int32[8 L^2, 3], in the row-major order of a lifted ``(8, L, L)`` array."""
    return element_from_index(jnp.arange(order(L)), L)


def random_element(key: jax.Array, L: int, shape: tuple[int, ...] = ()) -> jax.Array:
    """Uniformly random element(s), int32[*shape, 3]."""
    return element_from_index(jax.random.randint(key, shape, 0, order(L)), L)


def act_on_sites(g: jax.Array, sites: jax.Array, L: int) -> jax.Array:
    """Move sites: ``s -> M_d s + t mod L``. sites int[..., 2] -> int32[..., 2]."""
    d, t = _split(g)
    return jnp.mod(_rotate(d, jnp.asarray(sites, jnp.int32)) + t, L).astype(jnp.int32)


def _source_sites(g: jax.Array, L: int) -> jax.Array:
    """int32[L, L, 2]: for every target site s, the site ``g^-1 s`` it reads from."""
    grid = jnp.stack(jnp.meshgrid(jnp.arange(L), jnp.arange(L), indexing="ij"), axis=-1)
    return act_on_sites(inverse(g, L), grid, L)


def _check_square(field: jax.Array, axes: tuple[int, int], what: str) -> int:
    if field.ndim <= max(axes) or field.shape[axes[0]] != field.shape[axes[1]]:
        raise ValueError(f"{what}: expected square lattice axes {axes}, got shape {field.shape}")
    return field.shape[axes[0]]


def act_on_field(g: jax.Array, field: jax.Array) -> jax.Array:
    """Act on a scalar site field: ``(g . f)(s) = f(g^-1 s)``.

    Args:
        g: int32[3] element ``[d, tx, ty]``.
        field: [L, L, ...] values per site (channels are scalars: they do not move).
    Returns:
        [L, L, ...], same dtype.
    """
    field = jnp.asarray(field)
    L = _check_square(field, (0, 1), "act_on_field")
    src = _source_sites(g, L)
    return field[src[..., 0], src[..., 1]]


def act_on_lifted(g: jax.Array, field: jax.Array) -> jax.Array:
    """Act on a lifted field (a function on p4m), regular representation.

  ``(g . F)(h) = F(g^-1 h)``: entry ``[d', s]`` of the result is entry
  ``[D4_TABLE[d_g^-1, d'], g^-1 s]`` of the input.

    Args:
        g: int32[3].
        field: [8, L, L, ...].
    Returns:
        [8, L, L, ...].
    """
    field = jnp.asarray(field)
    if field.ndim < 3 or field.shape[0] != 8:
        raise ValueError(f"act_on_lifted: expected a lifted field of shape (8, L, L, ...), got {field.shape}")
    L = _check_square(field, (1, 2), "act_on_lifted")
    d, _ = _split(g)
    src = _source_sites(g, L)
    src_d = jnp.asarray(D4_TABLE)[jnp.asarray(D4_INVERSE)[d], jnp.arange(8)]  # (8,)
    return field[src_d[:, None, None], src[None, ..., 0], src[None, ..., 1]]


def act_on_bonds(g: jax.Array, bonds: jax.Array) -> jax.Array:
    """Act on a bond field with direction channels ``[J_right, J_up, J_left, J_down]``.

    The coupling stored at site s in direction k moves to site ``g s`` in direction
  ``M_d e_k``: ``(g . J)[s, M_d e_k] = J[g^-1 s, k]``.

    Args:
        g: int32[3].
        bonds: [L, L, 4].
    Returns:
        [L, L, 4].
    """
    if bonds.ndim != 3 or bonds.shape[-1] != 4:
        raise ValueError(f"act_on_bonds: expected bond channels of shape (L, L, 4), got {bonds.shape}")
    moved = act_on_field(g, bonds)
    d, _ = _split(g)
    perm = jnp.asarray(D4_DIRECTION_PERM)[d]  # new direction of old channel k
    inv_perm = jnp.argsort(perm)  # old channel feeding new channel k'
    return moved[..., inv_perm]
