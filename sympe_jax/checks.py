"""Input checks at the library's boundary, eager or under ``jit``.

Shapes and dtypes are static, so they are always checked with a Python exception. Values
(NaN scores, a graph larger than the table it indexes) can only be checked when the arrays
are concrete: eagerly they raise ``ValueError``; under ``jit``/``vmap`` they become
``checkify.debug_check`` calls, which are free when unused and raise when the caller wraps
the function with :func:`checked` (or ``jax.experimental.checkify.checkify``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.experimental import checkify

__all__ = ["checked", "is_concrete", "check_value", "check_floating", "check_mask"]


def is_concrete(*xs: Any) -> bool:
    """True if no argument is a JAX tracer (so its values can be read on the host)."""
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def check_value(pred: jax.Array, message: str, *fmt_args: jax.Array) -> None:
    """Raise ``ValueError(message)`` if ``pred`` is False; under tracing, a checkify debug check.

    ``message`` may contain ``{}`` placeholders filled with ``fmt_args``.
    """
    if is_concrete(pred, *fmt_args):
        if not bool(pred):
            raise ValueError(message.format(*[jax.device_get(a) for a in fmt_args]))
    else:
        checkify.debug_check(pred, message, *fmt_args)


def check_floating(x: jax.Array, name: str, ndim: int | None = None) -> jax.Array:
    """Return ``x`` as an array after checking it has a real floating dtype (and ``ndim``)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must have a real floating dtype, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-d, got shape {x.shape}")
    return x


def check_mask(mask: jax.Array | None, shape: tuple[int, ...], name: str = "mask") -> jax.Array:
    """A boolean mask of ``shape`` (all True if ``mask`` is None), with clear errors otherwise."""
    if mask is None:
        return jnp.ones(shape, bool)
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"{name} must be a boolean array, got dtype {mask.dtype}")
    if mask.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {mask.shape}")
    return mask


def checked(fn: Callable) -> Callable:
    """Wrap ``fn`` (jitted or not) so value checks inside it raise ``ValueError`` under ``jit``.

    Example:
      ranks = checked(jax.jit(sort_permutation))(key, scores)
    """
    checked_fn = checkify.checkify(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        err, out = checked_fn(*args, **kwargs)
        msg = err.get()
        if msg is not None:
            raise ValueError(msg)
        return out

    return wrapper
