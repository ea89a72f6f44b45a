"""Input checks at the library's boundary, eager or under ``jit``: the one validation rule.

**The rule** (every public function of ``sympe_jax`` follows it):

1. Shapes, dtypes and static parameters (``atol``, ``L``, ``n_max``, ...) are known at trace
   time, so they are always checked with a Python exception (``TypeError``/``ValueError``),
   eagerly and under ``jit`` alike.
2. Values (NaN scores, a repeated entry in a permutation, a p4m element out of range, an
   asymmetric adjacency, a batch whose ``n_node`` disagrees with its nodes) are checked where
   they are concrete: eagerly they raise ``ValueError`` naming the problem.
3. Under ``jit``/``vmap`` (values are tracers) an invalid value **poisons the output**: every
   floating output is NaN, every integer output (ranks, group elements, indices) is -1, and
   every library function that receives such a -1 poisons its own output in turn, so the NaN
   reaches the loss and a training loop that checks it stops. The same check is a
   ``checkify.debug_check``: wrap the function with :func:`checked` to get the ``ValueError``
   instead. Boolean outputs (masks) cannot be poisoned and are left as computed.

A finite wrong answer is never returned. :func:`guard` applies rules 2 and 3 in one call.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = ["checked", "is_concrete", "check_value", "poison", "guard", "check_floating", "check_mask",
           "check_tolerance"]


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


def poison(out: Any, ok: jax.Array) -> Any:
    """``out`` where ``ok`` (bool[], or broadcastable to each leaf), else NaN (floating leaves) or
    -1 (integer leaves; unsigned: the largest value). Boolean leaves pass through. Any pytree."""
    ok = jnp.asarray(ok, bool)

    def one(x):
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.inexact):
            bad = jnp.nan
        elif jnp.issubdtype(x.dtype, jnp.integer):
            bad = jnp.array(-1).astype(x.dtype) if jnp.issubdtype(x.dtype, jnp.signedinteger) \
                else jnp.iinfo(x.dtype).max
        else:
            return x
        return jnp.where(ok, x, jnp.asarray(bad, x.dtype))

    return jax.tree.map(one, out)


def guard(ok: jax.Array, out: Any, message: str, *fmt_args: jax.Array) -> Any:
    """The validation rule in one call: :func:`check_value` then :func:`poison`.

    Eagerly: ``ValueError(message)`` if ``ok`` is False, else ``out``. Under tracing: a checkify
    debug check (raised by :func:`checked`) and ``out`` poisoned where ``ok`` is False.
    """
    check_value(ok, message, *fmt_args)
    return poison(out, ok)


def check_tolerance(value: Any, name: str = "atol") -> float:
    """A static tolerance as a Python float: a finite real number >= 0 (``bool`` is rejected).

    Accepts Python ints/floats, NumPy scalars and 0-d concrete arrays; a traced value is a
    ``TypeError`` (tolerances decide tie groups, so they must be static).
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got the bool {value!r}")
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{name} must be a static number, not a traced array (pass it outside jit)")
    arr = np.asarray(value)
    if arr.shape != () or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a real scalar, got {value!r}")
    out = float(arr)
    if not 0 <= out < float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return out


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
