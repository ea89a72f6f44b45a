"""The wallpaper group p4m acting on an L x L torus.

Conventions (used everywhere in ``sympe_jax``):

* A site ``s = (x, y)`` of the torus is stored at ``field[x, y]``: axis 0 is the x
  coordinate ("right" is +x), axis 1 is the y coordinate ("up" is +y).
* The point group D4 has 8 elements indexed ``d = 4 * f + k`` (``k`` in 0..3, ``f`` in 0..1);
  element ``d`` is the integer matrix ``M_d = R^k F^f`` with ``R = [[0, -1], [1, 0]]`` (rotation
  by +90 degrees) and ``F = [[1, 0], [0, -1]]`` (the reflection y -> -y).
* A p4m element is an integer array ``g = [d, tx, ty]`` of shape (3,) (batches: (..., 3)); it
  maps a site by ``s -> M_d s + t (mod L)``. ``compose(g, h)`` is "g after h". Outputs are int32.
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

Validation (the rule of :mod:`sympe_jax.checks`):

* ``d`` must be in 0..7. Translations and sites may be any integers: they are taken mod L
  (``[0, L + 1, -1]`` is the element ``[0, 1, L - 1]``; :func:`index_of_element` reduces them too).
* Elements, indices and sites must have an integer dtype (floats are a ``TypeError``, never
  truncated); ``L`` must be a Python int >= 1.
* Eagerly, a ``d`` outside 0..7 or an index outside ``0..8 L^2 - 1`` is a ``ValueError``. Under
  ``jit``/``vmap`` the output is poisoned instead: an invalid element or index gives the element
  ``[-1, -1, -1]`` (which is itself invalid, so it propagates), and every function receiving an
  invalid element returns -1 for integer outputs (sites, indices) and NaN for floating fields
  (integer fields: -1; boolean fields cannot be poisoned).

All functions are pure ``jax.numpy``, jit- and vmap-safe (elements may be traced); the checks
cost O(size of the elements), plus one ``where`` over the output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sympe_jax import checks

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


# ----------------------------------------------------------------------------- input checks


def _check_size(L: int) -> int:
    """The lattice side as a Python int >= 1 (``TypeError`` for bools, floats and arrays)."""
    if isinstance(L, (bool, np.bool_)) or not isinstance(L, (int, np.integer)):
        raise TypeError(f"L (the lattice side) must be a Python int, got {L!r}")
    if L < 1:
        raise ValueError(f"L (the lattice side) must be >= 1, got {L}")
    return int(L)


def _as_int(x: jax.Array, what: str) -> jax.Array:
    """``x`` as an int32 array; a non-integer dtype is a ``TypeError`` (never truncated)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{what} must have an integer dtype, got {x.dtype}")
    return x.astype(jnp.int32)


def _first_bad(values: jax.Array, ok: jax.Array) -> jax.Array:
    """int32[]: the first entry of ``values`` where ``ok`` is False (for error messages)."""
    flat, flat_ok = values.reshape(-1), ok.reshape(-1)
    return flat[jnp.argmin(flat_ok)] if flat.size else jnp.int32(0)


def _split(g: jax.Array, what: str, single: bool = False):
    """Check p4m element(s) g int[..., 3]: ``(d int32[...], t int32[..., 2], ok bool[...])``.

    ``ok`` is False where ``d`` is outside 0..7; eagerly that is a ``ValueError``. The returned
    ``d`` is clipped into 0..7, so table lookups stay in range (callers poison where not ``ok``).
    With ``single``, g must be one element of shape (3,).
    """
    g = _as_int(g, f"{what}: a p4m element [d, tx, ty]")
    if g.shape[-1:] != (3,) or (single and g.shape != (3,)):
        want = "(3,)" if single else "(..., 3)"
        raise ValueError(f"{what}: a p4m element is an int array of shape {want} [d, tx, ty]; got shape {g.shape}")
    d, t = g[..., 0], g[..., 1:]
    ok = (d >= 0) & (d < 8)
    checks.check_value(jnp.all(ok), f"{what}: invalid p4m element, d must be in 0..7 "
                                    "([-1, -1, -1] marks an invalid element); got d = {}", _first_bad(d, ok))
    return jnp.clip(d, 0, 7), t, ok


def _join(d: jax.Array, t: jax.Array, ok: jax.Array) -> jax.Array:
    """int32[..., 3] elements ``[d, tx, ty]``, ``[-1, -1, -1]`` where ``ok`` is False."""
    g = jnp.concatenate([jnp.broadcast_to(d[..., None], t.shape[:-1] + (1,)), t], axis=-1)
    return checks.poison(g.astype(jnp.int32), ok[..., None])


# ----------------------------------------------------------------------------- the group


def order(L: int) -> int:
    """Number of elements of p4m on an L x L torus: ``8 L^2``."""
    L = _check_size(L)
    return 8 * L * L


def identity() -> jax.Array:
    """The identity element ``[0, 0, 0]`` (int32[3])."""
    return jnp.zeros((3,), jnp.int32)


def _rotate(d, s):
    """``M_d s`` for d int[...] in 0..7 and s int[..., 2]."""
    mats = jnp.asarray(D4_MATRICES)[d]  # (..., 2, 2)
    return jnp.einsum("...ij,...j->...i", mats, s)


def _inverse(d, t, L):
    """Unchecked inverse ``s -> M_d^-1 (s - t)``: (d int32[...], t int32[..., 2]) -> the same."""
    dinv = jnp.asarray(D4_INVERSE)[d]
    return dinv, jnp.mod(-_rotate(dinv, t), L)


def compose(g: jax.Array, h: jax.Array, L: int) -> jax.Array:
    """Group product ``g h`` ("g after h"): ``(g h) s = g (h s)``.

    Args:
        g, h: int[..., 3] elements ``[d, tx, ty]`` (broadcastable).
        L: lattice size.
    Returns:
        int32[..., 3]; ``[-1, -1, -1]`` where g or h is invalid (under ``jit``).
    """
    L = _check_size(L)
    dg, tg, okg = _split(g, "compose: g")
    dh, th, okh = _split(h, "compose: h")
    d = jnp.asarray(D4_TABLE)[dg, dh]
    t = jnp.mod(_rotate(dg, th) + tg, L)
    return _join(d, t, okg & okh)


def inverse(g: jax.Array, L: int) -> jax.Array:
    """Inverse element: ``s -> M_d^-1 (s - t)``. int[..., 3] -> int32[..., 3] (invalid: -1)."""
    L = _check_size(L)
    d, t, ok = _split(g, "inverse")
    return _join(*_inverse(d, t, L), ok)


def _from_index(index: jax.Array, L: int) -> jax.Array:
    """Unchecked :func:`element_from_index`."""
    return jnp.stack([index // (L * L), (index // L) % L, index % L], axis=-1).astype(jnp.int32)


def element_from_index(index: jax.Array, L: int) -> jax.Array:
    """Element at a flat index into a lifted ``(8, L, L)`` array (row-major): int[...] -> int32[..., 3].

    An index outside ``0..8 L^2 - 1`` (e.g. the -1 of an argmax over invalid scores) is a
    ``ValueError`` eagerly and gives ``[-1, -1, -1]`` under ``jit``.
    """
    L = _check_size(L)
    index = _as_int(index, "element_from_index: index")
    ok = (index >= 0) & (index < 8 * L * L)
    checks.check_value(jnp.all(ok), f"element_from_index: index out of range 0..{8 * L * L - 1} "
                                    f"(8 L^2 - 1 for L = {L}); got {{}}", _first_bad(index, ok))
    return checks.poison(_from_index(index, L), ok[..., None])


def index_of_element(g: jax.Array, L: int) -> jax.Array:
    """Inverse of :func:`element_from_index`: int[..., 3] -> int32[...] (translations mod L; invalid: -1)."""
    L = _check_size(L)
    d, t, ok = _split(g, "index_of_element")
    t = jnp.mod(t, L)
    return checks.poison((d * L * L + t[..., 0] * L + t[..., 1]).astype(jnp.int32), ok)


def elements(L: int) -> jax.Array:
    """All ``8 L^2`` elements, int32[8 L^2, 3], in the row-major order of a lifted ``(8, L, L)`` array."""
    return _from_index(jnp.arange(order(L), dtype=jnp.int32), L)


def random_element(key: jax.Array, L: int, shape: tuple[int, ...] = ()) -> jax.Array:
    """Uniformly random element(s), int32[*shape, 3]."""
    return _from_index(jax.random.randint(key, shape, 0, order(L)), L)


# ----------------------------------------------------------------------------- actions


def act_on_sites(g: jax.Array, sites: jax.Array, L: int) -> jax.Array:
    """Move sites: ``s -> M_d s + t mod L``. g int[..., 3], sites int[..., 2] -> int32[..., 2] (invalid g: -1)."""
    L = _check_size(L)
    d, t, ok = _split(g, "act_on_sites")
    sites = _as_int(sites, "act_on_sites: sites")
    if sites.shape[-1:] != (2,):
        raise ValueError(f"act_on_sites: sites must have shape (..., 2), got {sites.shape}")
    return checks.poison(jnp.mod(_rotate(d, sites) + t, L).astype(jnp.int32), ok[..., None])


def _source_sites(d: jax.Array, t: jax.Array, L: int) -> jax.Array:
    """Unchecked: int32[L, L, 2], for every target site s the site ``g^-1 s`` it reads from (d int32[], t int32[2])."""
    grid = jnp.stack(jnp.meshgrid(jnp.arange(L), jnp.arange(L), indexing="ij"), axis=-1)
    dinv, tinv = _inverse(d, t, L)
    return jnp.mod(_rotate(dinv, grid) + tinv, L).astype(jnp.int32)


def _move_sites(d: jax.Array, t: jax.Array, field: jax.Array) -> jax.Array:
    """Unchecked ``(g . f)(s) = f(g^-1 s)`` for one element, field [L, L, ...]."""
    src = _source_sites(d, t, field.shape[0])
    return field[src[..., 0], src[..., 1]]


def _check_square(field: jax.Array, axes: tuple[int, int], what: str) -> int:
    if field.ndim <= max(axes) or field.shape[axes[0]] != field.shape[axes[1]]:
        raise ValueError(f"{what}: expected square lattice axes {axes}, got shape {field.shape}")
    return field.shape[axes[0]]


def act_on_field(g: jax.Array, field: jax.Array) -> jax.Array:
    """Act on a scalar site field: ``(g . f)(s) = f(g^-1 s)``.

    Args:
        g: int[3] element ``[d, tx, ty]``.
        field: [L, L, ...] values per site (channels are scalars: they do not move).
    Returns:
        [L, L, ...], same dtype; NaN (integer fields: -1) if g is invalid (under ``jit``).
    """
    field = jnp.asarray(field)
    _check_square(field, (0, 1), "act_on_field")
    d, t, ok = _split(g, "act_on_field", single=True)
    return checks.poison(_move_sites(d, t, field), ok)


def act_on_lifted(g: jax.Array, field: jax.Array) -> jax.Array:
    """Act on a lifted field (a function on p4m), regular representation.

  ``(g . F)(h) = F(g^-1 h)``: entry ``[d', s]`` of the result is entry
  ``[D4_TABLE[d_g^-1, d'], g^-1 s]`` of the input.

    Args:
        g: int[3].
        field: [8, L, L, ...].
    Returns:
        [8, L, L, ...]; NaN (integer fields: -1) if g is invalid (under ``jit``).
    """
    field = jnp.asarray(field)
    if field.ndim < 3 or field.shape[0] != 8:
        raise ValueError(f"act_on_lifted: expected a lifted field of shape (8, L, L, ...), got {field.shape}")
    _check_square(field, (1, 2), "act_on_lifted")
    d, t, ok = _split(g, "act_on_lifted", single=True)
    src = _source_sites(d, t, field.shape[1])
    src_d = jnp.asarray(D4_TABLE)[jnp.asarray(D4_INVERSE)[d], jnp.arange(8)]  # (8,)
    return checks.poison(field[src_d[:, None, None], src[None, ..., 0], src[None, ..., 1]], ok)


def act_on_bonds(g: jax.Array, bonds: jax.Array) -> jax.Array:
    """Act on a bond field with direction channels ``[J_right, J_up, J_left, J_down]``.

    The coupling stored at site s in direction k moves to site ``g s`` in direction
  ``M_d e_k``: ``(g . J)[s, M_d e_k] = J[g^-1 s, k]``.

    Args:
        g: int[3].
        bonds: [L, L, 4] (any array-like).
    Returns:
        [L, L, 4]; NaN (integer bonds: -1) if g is invalid (under ``jit``).
    """
    bonds = jnp.asarray(bonds)
    if bonds.ndim != 3 or bonds.shape[-1] != 4:
        raise ValueError(f"act_on_bonds: expected bond channels of shape (L, L, 4), got {bonds.shape}")
    _check_square(bonds, (0, 1), "act_on_bonds")
    d, t, ok = _split(g, "act_on_bonds", single=True)
    inv_perm = jnp.argsort(jnp.asarray(D4_DIRECTION_PERM)[d])  # old channel feeding new channel k'
    return checks.poison(_move_sites(d, t, bonds)[..., inv_perm], ok)
