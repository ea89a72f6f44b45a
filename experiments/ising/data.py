"""Square-lattice Ising ground states on an L x L torus (experiment 3).

Conventions (see :mod:`sympe_jax.groups.lattice`): site ``s = (x, y)`` is stored at
``field[x, y]``, so axis ``-2`` of a spin array is x and axis ``-1`` is y. A bond field has shape
``(..., L, L, 4)`` with channels ``[J_right, J_up, J_left, J_down]``; channel ``k`` at site ``s``
is the coupling between ``s`` and ``s + e_k``.

Energy (each bond counted once, per site)::

    E(sigma) = - sum_s J_right(s) sigma(s) sigma(s + e_x)
               - sum_s J_up(s)    sigma(s) sigma(s + e_y)
               - sum_s h(s) sigma(s)
    e = E / L^2

Only ``J_right`` and ``J_up`` enter; the other two channels exist so that p4m can act on the
bond field (reflections and rotations map right-bonds to left-bonds etc.). A bond field is
*consistent* when it describes each bond once from both ends::

    J_left(s) = J_right(s - e_x),    J_down(s) = J_up(s - e_y),

which :func:`bond_field` builds. Only for a consistent field is :func:`energy` p4m-invariant,
``energy(g . sigma, g . J, g . h) == energy(sigma, J, h)``.

With constant couplings ``(J_x, J_y, h)`` and even L the exact minimum energy per site is::

    e_min = min(-(J_x + J_y) - |h|, -(|J_x| + |J_y|))

and the best energy of a symmetry-preserving model (every site gets the same independent law of
mean m, which is all an equivariant model can output for a constant input) is::

    e_inv = min_{m in [-1, 1]} -(J_x + J_y) m^2 - h m.

Both are closed forms here (:func:`e_min`, :func:`e_inv`), checked by brute force in the tests.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "PHASES",
    "FERRO",
    "ANTIFERRO",
    "ROW_STRIPES",
    "COLUMN_STRIPES",
    "NO_ORDER",
    "IsingParams",
    "sample_params",
    "grid_params",
    "bond_field",
    "constant_bonds",
    "to_input",
    "energy",
    "energy_const",
    "expected_energy",
    "mean_from_logits",
    "entropy_from_logits",
    "relaxed_energy",
    "e_min",
    "e_inv",
    "ground_state_phase",
    "ground_state",
    "classify",
]

PHASES = ("ferromagnetic", "antiferromagnetic", "row stripes", "column stripes", "no order")
"""Names of the phase labels returned by :func:`ground_state_phase` and :func:`classify`."""

FERRO, ANTIFERRO, ROW_STRIPES, COLUMN_STRIPES, NO_ORDER = range(5)


class IsingParams(NamedTuple):
    """Constant Hamiltonian parameters, one entry per instance.

    Attributes:
        jx: float32[n], coupling along x (bonds ``s -- s + e_x``).
        jy: float32[n], coupling along y.
        h: float32[n], external field.
    """

    jx: jax.Array
    jy: jax.Array
    h: jax.Array


# ---------------------------------------------------------------------------------------------
# Validation helpers (checks on values only run on concrete arrays, never under jit/vmap).
# ---------------------------------------------------------------------------------------------


def _concrete(x) -> np.ndarray | None:
    """``np.asarray(x)`` or None when ``x`` is a tracer."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _check_finite(name: str, x) -> None:
    arr = _concrete(x)
    if arr is not None and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got non-finite values")


def _check_size(L) -> int:
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2:
        raise ValueError(f"lattice size L must be an int >= 2; got {L!r}")
    return int(L)


def _check_frustration(L: int, jx, jy) -> None:
    """Odd L with an antiferromagnetic axis is frustrated: the closed forms do not hold."""
    if L % 2 == 0:
        return
    for name, j in (("jx", jx), ("jy", jy)):
        arr = _concrete(j)
        if arr is not None and np.any(arr < 0):
            raise ValueError(
                f"odd L = {L} with an antiferromagnetic axis ({name} < 0) is frustrated on the "
                "torus; use an even L")


def _spin_lattice(spins: jax.Array, what: str) -> int:
    if spins.ndim < 2 or spins.shape[-1] != spins.shape[-2]:
        raise ValueError(f"{what}: expected spins of shape (..., L, L); got {spins.shape}")
    return _check_size(spins.shape[-1])


def _check_bonds(bonds: jax.Array, L: int, what: str) -> None:
    if bonds.ndim < 3 or bonds.shape[-3:] != (L, L, 4):
        raise ValueError(
            f"{what}: expected a bond field of shape (..., {L}, {L}, 4) with channels "
            f"[J_right, J_up, J_left, J_down]; got {bonds.shape}")


def _check_field(h: jax.Array, L: int, what: str) -> None:
    if (h.ndim >= 1 and h.shape[-1] not in (1, L)) or (h.ndim >= 2 and h.shape[-2] not in (1, L)):
        raise ValueError(
            f"{what}: h must be a scalar or a site field broadcastable to (..., {L}, {L}); "
            f"got shape {h.shape} (for one field per instance use h[..., None, None])")


# ---------------------------------------------------------------------------------------------
# Parameters and inputs.
# ---------------------------------------------------------------------------------------------


def sample_params(key: jax.Array, n: int) -> IsingParams:
    """Draw parameters from the paper's law.

    ``J_x = 1``, ``J_y ~ U(-3, 3)``, ``h ~ U(0, 2)``, then with probability 1/2 the axes are
    swapped, ``(J_x, J_y) -> (J_y, J_x)`` (a 90 degree rotation of the Hamiltonian).

    Args:
        key: PRNG key.
        n: number of instances.
    Returns:
        :class:`IsingParams` of float32[n] arrays.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int; got {n!r}")
    return _sample_params(key, int(n))


@partial(jax.jit, static_argnums=1)
def _sample_params(key: jax.Array, n: int) -> IsingParams:
    k_j, k_h, k_swap = jax.random.split(key, 3)
    j_other = jax.random.uniform(k_j, (n,), jnp.float32, -3.0, 3.0)
    h = jax.random.uniform(k_h, (n,), jnp.float32, 0.0, 2.0)
    swap = jax.random.bernoulli(k_swap, 0.5, (n,))
    one = jnp.ones((n,), jnp.float32)
    return IsingParams(jx=jnp.where(swap, j_other, one), jy=jnp.where(swap, one, j_other), h=h)


def grid_params(jx_values, jy_values, h=0.0) -> IsingParams:
    """All pairs of a ``(J_x, J_y)`` grid (for the phase diagram), at one field ``h``.

    Args:
        jx_values: float[nx].
        jy_values: float[ny].
        h: scalar field shared by all points.
    Returns:
        :class:`IsingParams` of float32[nx * ny] arrays in row-major ``(jx, jy)`` order:
        ``.reshape(nx, ny)`` recovers the grid with jx along axis 0.
    """
    jx_values = jnp.asarray(jx_values, jnp.float32)
    jy_values = jnp.asarray(jy_values, jnp.float32)
    h = jnp.asarray(h, jnp.float32)
    if jx_values.ndim != 1 or jy_values.ndim != 1:
        raise ValueError(f"grid_params: expected 1-D value arrays; got shapes {jx_values.shape} "
                         f"and {jy_values.shape}")
    if h.ndim != 0:
        raise ValueError(f"grid_params: h must be a scalar; got shape {h.shape}")
    for name, v in (("jx_values", jx_values), ("jy_values", jy_values), ("h", h)):
        _check_finite(name, v)
    jx, jy = jnp.meshgrid(jx_values, jy_values, indexing="ij")
    jx, jy = jx.reshape(-1), jy.reshape(-1)
    return IsingParams(jx=jx, jy=jy, h=jnp.broadcast_to(h, jx.shape))


def bond_field(j_right: jax.Array, j_up: jax.Array) -> jax.Array:
    """A consistent bond field from the right- and up-couplings of every site.

    Args:
        j_right: [..., L, L], coupling of ``s -- s + e_x`` stored at s.
        j_up: [..., L, L], coupling of ``s -- s + e_y`` stored at s.
    Returns:
        [..., L, L, 4] channels ``[J_right, J_up, J_left, J_down]`` with
        ``J_left(s) = J_right(s - e_x)`` and ``J_down(s) = J_up(s - e_y)``.
    """
    j_right, j_up = jnp.asarray(j_right), jnp.asarray(j_up)
    if j_right.shape != j_up.shape or j_right.ndim < 2 or j_right.shape[-1] != j_right.shape[-2]:
        raise ValueError(f"bond_field: expected two arrays of the same shape (..., L, L); got "
                         f"{j_right.shape} and {j_up.shape}")
    return _bond_field(j_right, j_up)


@jax.jit
def _bond_field(j_right, j_up):
    j_left = jnp.roll(j_right, 1, axis=-2)  # J_left[x, y] = J_right[x - 1, y]
    j_down = jnp.roll(j_up, 1, axis=-1)  # J_down[x, y] = J_up[x, y - 1]
    return jnp.stack([j_right, j_up, j_left, j_down], axis=-1)


def constant_bonds(jx, jy, L: int) -> jax.Array:
    """Constant bond field: ``[J_x, J_y, J_x, J_y]`` at every site.

    Args:
        jx, jy: float[...] (broadcastable), one value per instance.
        L: lattice size.
    Returns:
        float32[..., L, L, 4].
    """
    return _constant_bonds(jnp.asarray(jx, jnp.float32), jnp.asarray(jy, jnp.float32),
                           _check_size(L))


@partial(jax.jit, static_argnums=2)
def _constant_bonds(jx, jy, L):
    jx, jy = jnp.broadcast_arrays(jx, jy)
    per_site = jnp.stack([jx, jy, jx, jy], axis=-1)[..., None, None, :]
    return jnp.broadcast_to(per_site, jx.shape + (L, L, 4))


def to_input(jx, jy, h, L: int, *, allow_frustrated: bool = False) -> jax.Array:
    """Network input for constant parameters: channels ``[J_right, J_up, J_left, J_down, h]``.

    Args:
        jx, jy, h: float[...] (broadcastable), one value per instance.
        L: lattice size.
        allow_frustrated: allow odd L with an antiferromagnetic axis (then :func:`e_min` is
            not the true minimum).
    Returns:
        float32[..., L, L, 5]; p4m acts on it by :func:`~sympe_jax.groups.lattice.act_on_bonds`
        on the first 4 channels and :func:`~sympe_jax.groups.lattice.act_on_field` on the last.
    Raises:
        ValueError: non-finite parameters, L < 2, or odd L with ``jx < 0`` or ``jy < 0``.
    """
    L = _check_size(L)
    jx, jy, h = _params(jx, jy, h, None if allow_frustrated else L, "to_input")
    return _to_input(jx, jy, h, L)


@partial(jax.jit, static_argnums=3)
def _to_input(jx, jy, h, L):
    jx, jy, h = jnp.broadcast_arrays(jx, jy, h)
    hfield = jnp.broadcast_to(h[..., None, None, None], h.shape + (L, L, 1))
    return jnp.concatenate([_constant_bonds(jx, jy, L), hfield], axis=-1)


# ---------------------------------------------------------------------------------------------
# Energies.
# ---------------------------------------------------------------------------------------------


@jax.jit
def _energy_formula(m: jax.Array, bonds: jax.Array, h: jax.Array) -> jax.Array:
    L = m.shape[-1]
    right = jnp.roll(m, -1, axis=-2)  # right[x, y] = m[x + 1, y]
    up = jnp.roll(m, -1, axis=-1)  # up[x, y] = m[x, y + 1]
    per_site = bonds[..., 0] * m * right + bonds[..., 1] * m * up + h * m
    return -jnp.sum(per_site, axis=(-2, -1)) / (L * L)


def _checked_energy(values: jax.Array, bonds, h, what: str) -> jax.Array:
    """Validate (spins or means, bonds, h) for ``what`` and evaluate the energy formula."""
    bonds, h = jnp.asarray(bonds), jnp.asarray(h)
    L = _spin_lattice(values, what)
    _check_bonds(bonds, L, what)
    _check_field(h, L, what)
    _check_finite("bonds", bonds)
    _check_finite("h", h)
    return _energy_formula(values, bonds, h)


def energy(spins: jax.Array, bonds: jax.Array, h=0.0) -> jax.Array:
    """Energy per site of a spin configuration, each bond counted once.

    ``e = -(1/L^2) [sum_s J_right(s) s_s s_{s+e_x} + J_up(s) s_s s_{s+e_y} + h(s) s_s]``;
    ``J_left`` and ``J_down`` are not read (see the module docstring on consistent fields).

    Args:
        spins: [..., L, L], values in {-1, +1} (any float is accepted and used as is).
        bonds: [..., L, L, 4] channels ``[J_right, J_up, J_left, J_down]``, broadcastable
            against ``spins`` in the leading axes.
        h: scalar or site field broadcastable to ``spins`` (for one scalar per instance of a
            batch pass ``h[..., None, None]``).
    Returns:
        float[...] energy per site.
    """
    spins = jnp.asarray(spins)
    if not jnp.issubdtype(spins.dtype, jnp.floating):
        spins = spins.astype(jnp.float32)
    return _checked_energy(spins, bonds, h, "energy")


def energy_const(spins: jax.Array, jx, jy, h=0.0) -> jax.Array:
    """:func:`energy` for constant parameters.

    Args:
        spins: [..., L, L].
        jx, jy, h: float, or float[...] one value per instance (broadcastable to
            ``spins.shape[:-2]``).
    Returns:
        float[...] energy per site.
    """
    spins = jnp.asarray(spins)
    L = _spin_lattice(spins, "energy_const")
    h = jnp.asarray(h, jnp.float32)[..., None, None]
    return energy(spins, constant_bonds(jx, jy, L), h)


def expected_energy(m: jax.Array, bonds: jax.Array, h=0.0) -> jax.Array:
    """Expected energy per site under independent spins with means ``m`` (the training loss).

    For a product law ``E[s_i s_j] = m_i m_j`` (i != j, which holds on a torus with L >= 2), so
    this is :func:`energy` evaluated at ``m``. Differentiable in ``m``, ``bonds`` and ``h``.

    Args:
        m: [..., L, L], ``E[sigma]`` per site in [-1, 1] (e.g. :func:`mean_from_logits`).
        bonds: [..., L, L, 4] as in :func:`energy`.
        h: scalar or site field broadcastable to ``m``.
    Returns:
        float[...] expected energy per site.
    """
    return _checked_energy(jnp.asarray(m), bonds, h, "expected_energy")


def relaxed_energy(logits: jax.Array, bonds: jax.Array, h=0.0, eps: float = 1e-2) -> jax.Array:
    """Energy per site of the spherical relaxation: the spins replaced by the real field
    ``logits / rms(logits)`` (unit mean square over the lattice): [..., L, L] -> [...].

    With constant couplings and ``h = 0`` this is a Rayleigh quotient of the coupling matrix, whose
    eigenvectors are the Fourier modes with eigenvalues ``-(J_x cos k_x + J_y cos k_y)``: its
    minimum is the ground-state mode (uniform, stripes or checkerboard) and every other mode is a
    saddle, never a local minimum. The expected energy of independent spins, in contrast, has a
    local minimum at every saturated ordered state that no single flip improves (stripes on an
    antiferromagnetic Hamiltonian, for one), which a network that found that state first does not
    leave. ``eps`` keeps the gradient finite at all-zero logits.
    """
    logits = jnp.asarray(logits)
    rms = jnp.sqrt(jnp.mean(logits ** 2, axis=(-2, -1), keepdims=True) + eps)
    return expected_energy(logits / rms, bonds, h)


def entropy_from_logits(logits: jax.Array) -> jax.Array:
    """Entropy in nats of each spin with ``P(sigma = +1) = sigmoid(logit)``: [...] -> [...].

    ``p softplus(-l) + (1 - p) softplus(l)``, finite for every finite logit (0 as |l| -> inf).
    """
    logits = jnp.asarray(logits)
    p = jax.nn.sigmoid(logits)
    return p * jax.nn.softplus(-logits) + (1 - p) * jax.nn.softplus(logits)


def mean_from_logits(logits: jax.Array) -> jax.Array:
    """Spin means for ``P(sigma = +1) = sigmoid(logit)``: ``m = tanh(logit / 2)``."""
    return jnp.tanh(jnp.asarray(logits) / 2)


# ---------------------------------------------------------------------------------------------
# Closed forms and phases (constant couplings, even L).
# ---------------------------------------------------------------------------------------------


def _params(jx, jy, h, L, what):
    """float32 arrays (not yet broadcast; the jitted kernels broadcast), validated."""
    jx, jy, h = (jnp.asarray(v, jnp.float32) for v in (jx, jy, h))
    try:
        np.broadcast_shapes(jx.shape, jy.shape, h.shape)
    except ValueError:
        raise ValueError(f"{what}: jx, jy, h must be broadcastable; got shapes {jx.shape}, "
                         f"{jy.shape}, {h.shape}") from None
    for name, v in (("jx", jx), ("jy", jy), ("h", h)):
        _check_finite(f"{what}: {name}", v)
    if L is not None:
        _check_frustration(_check_size(L), jx, jy)
    return jx, jy, h


def e_min(jx, jy, h, L: int | None = None) -> jax.Array:
    """Exact minimum energy per site, ``min(-(J_x + J_y) - |h|, -(|J_x| + |J_y|))``.

    Valid for even L (or any L when both couplings are ferromagnetic).

    Args:
        jx, jy, h: float[...] (broadcastable).
        L: optional lattice size; if given, odd L with an antiferromagnetic axis raises.
    Returns:
        float32[...].
    """
    return _e_min(*_params(jx, jy, h, L, "e_min"))


@jax.jit
def _e_min(jx, jy, h):
    return jnp.minimum(-(jx + jy) - jnp.abs(h), -(jnp.abs(jx) + jnp.abs(jy)))


def e_inv(jx, jy, h) -> jax.Array:
    """Best energy per site with the same independent law at every site (any L).

    ``min_{m in [-1, 1]} -a m^2 - h m`` with ``a = J_x + J_y``: ``-a - |h|`` when ``a >= 0`` or
    ``|h| >= 2|a|``, else ``-h^2 / (4|a|)`` (at ``m = h / (2|a|)``).

    Args:
        jx, jy, h: float[...] (broadcastable).
    Returns:
        float32[...].
    """
    return _e_inv(*_params(jx, jy, h, None, "e_inv"))


@jax.jit
def _e_inv(jx, jy, h):
    a = jx + jy
    polarized = -a - jnp.abs(h)
    interior = (a < 0) & (jnp.abs(h) < -2 * a)
    safe = jnp.where(interior, -a, 1.0)  # no 0 / 0 in either branch (clean gradients)
    return jnp.where(interior, -h * h / (4 * safe), polarized)


def ordered_energies(jx, jy, h) -> jax.Array:
    """Energy per site of the four ordered states, in :data:`PHASES` order (any even L).

    Ferromagnet ``sigma = sign(h)``: ``-(J_x + J_y) - |h|``; checkerboard: ``J_x + J_y``; row
    stripes ``(-1)^y``: ``J_y - J_x``; column stripes ``(-1)^x``: ``J_x - J_y`` (the field
    averages out on the last three).

    Args:
        jx, jy, h: float[...] (broadcastable).
    Returns:
        float32[..., 4].
    """
    return _ordered_energies(*_params(jx, jy, h, None, "ordered_energies"))


@jax.jit
def _ordered_energies(jx, jy, h):
    jx, jy, h = jnp.broadcast_arrays(jx, jy, h)
    return jnp.stack([-(jx + jy) - jnp.abs(h), jx + jy, jy - jx, jx - jy], axis=-1)


def phase_margin(jx, jy, h) -> jax.Array:
    """Energy per site by which the ground state's ordered state beats the next best one: the
    second lowest of :func:`ordered_energies` minus the lowest, 0 on a phase boundary.

    Args:
        jx, jy, h: float[...] (broadcastable).
    Returns:
        float32[...] >= 0.
    """
    e = jnp.sort(ordered_energies(jx, jy, h), axis=-1)
    return e[..., 1] - e[..., 0]


def ground_state_phase(jx, jy, h, L: int | None = None) -> jax.Array:
    """Phase of the true ground state (indices into :data:`PHASES`).

    The ordered state wins iff ``|h| < 2 A`` with ``A`` the sum of ``|J_a|`` over
    antiferromagnetic axes (``J_a < 0``); otherwise the ferromagnet ``sigma = sign(h)`` is a ground
    state (ties go to ferro). Ordered: antiferromagnetic (checkerboard) when both couplings are
    negative, row stripes ``sigma = s (-1)^y`` when ``J_x >= 0 > J_y``, column stripes
    ``sigma = s (-1)^x`` when ``J_x < 0 <= J_y`` (at ``J_x = 0`` or ``J_y = 0`` several phases are
    degenerate; the stripes are reported).

    Args:
        jx, jy, h: float[...] (broadcastable).
        L: optional lattice size; if given, odd L with an antiferromagnetic axis raises.
    Returns:
        int32[...] in {0, 1, 2, 3}.
    """
    return _phase(*_params(jx, jy, h, L, "ground_state_phase"))


@jax.jit
def _phase(jx, jy, h):
    jx, jy, h = jnp.broadcast_arrays(jx, jy, h)
    afx, afy = jx < 0, jy < 0
    A = jnp.where(afx, -jx, 0.0) + jnp.where(afy, -jy, 0.0)
    ordered = jnp.abs(h) < 2 * A
    label = jnp.select([afx & afy, afy, afx], [ANTIFERRO, ROW_STRIPES, COLUMN_STRIPES], FERRO)
    return jnp.where(ordered, label, FERRO).astype(jnp.int32)


def _patterns(L: int) -> jax.Array:
    """float32[4, L, L]: uniform, checkerboard, row stripes (-1)^y, column stripes (-1)^x."""
    x, y = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    pats = [np.ones((L, L)), (-1.0) ** (x + y), (-1.0) ** y, (-1.0) ** x]
    return jnp.asarray(np.stack(pats), jnp.float32)


def ground_state(jx, jy, h, L: int) -> jax.Array:
    """One exact ground state (for even L): the pattern of :func:`ground_state_phase`.

    Ferro: ``sigma = sign(h)`` (``+1`` at ``h = 0``); ordered phases: the pattern with
    ``sigma(0, 0) = +1`` (the other degenerate state is its unit translate).

    Args:
        jx, jy, h: float[...] (broadcastable).
        L: lattice size (odd L with an antiferromagnetic axis raises).
    Returns:
        float32[..., L, L] spins in {-1, +1}.
    """
    L = _check_size(L)
    return _ground_state(*_params(jx, jy, h, L, "ground_state"), L)


@partial(jax.jit, static_argnums=3)
def _ground_state(jx, jy, h, L):
    phase = _phase(jx, jy, h)
    h = jnp.broadcast_to(h, phase.shape)
    sign = jnp.where((phase == FERRO) & (h < 0), -1.0, 1.0)
    return sign[..., None, None] * _patterns(L)[phase]


def classify(spins: jax.Array) -> jax.Array:
    """Phase label of a configuration (indices into :data:`PHASES`).

    With ``s = sigma(0, 0)``: uniform -> ferromagnetic; ``s (-1)^(x+y)`` -> antiferromagnetic
    (checkerboard); ``s (-1)^y`` (depends only on y, alternating) -> row stripes; ``s (-1)^x`` ->
    column stripes; anything else -> no order.

    Args:
        spins: [..., L, L]; real values are mapped to their sign (``0 -> +1``).
    Returns:
        int32[...] in {0, ..., 4}.
    """
    spins = jnp.asarray(spins)
    _spin_lattice(spins, "classify")
    return _classify(spins)


@jax.jit
def _classify(spins):
    L = spins.shape[-1]
    sigma = jnp.where(spins >= 0, 1.0, -1.0)
    sigma = sigma * sigma[..., :1, :1]  # gauge: sigma(0, 0) = +1
    match = jnp.all(sigma[..., None, :, :] == _patterns(L), axis=(-2, -1))  # [..., 4]
    labels = jnp.asarray([FERRO, ANTIFERRO, ROW_STRIPES, COLUMN_STRIPES], jnp.int32)
    return jnp.where(jnp.any(match, axis=-1), labels[jnp.argmax(match, axis=-1)], NO_ORDER).astype(
        jnp.int32)
