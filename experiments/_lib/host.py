"""glibc ``malloc`` settings for training with XLA on a CPU host (no-ops without glibc).

XLA's CPU runtime allocates an executable's temporary buffer (hundreds of MiB to GiB for a
DiGress training step) on every call, from one of its worker threads. glibc serves a request
larger than a thread arena's heap (64 MiB) with ``mmap`` whatever ``M_MMAP_MAX`` says and unmaps
it when it is freed, so every call page-faults the whole buffer in again: at the DiGress paper
model and batch 256, 0.6 M faults and about 1 s of system time per step. With a single arena
and no ``mmap`` the buffer comes from the heap and stays mapped (:func:`tune_malloc`); the
memory that compiling left free is handed back with :func:`release_free_memory`.

The price of one arena: XLA's worker threads share its lock, so a program of many small calls
slows down (the DiGress sampler at the paper model and batch 64: 161 against 109 ms per reverse
step, ``benchmarks.digress_step``'s modes table); a training step gains in proportion to its
temporary buffer (level at batch 64; 1777 against 2125 ms at batch 256,
``benchmarks.digress_profile``).

The environment variables of :data:`ENVIRONMENT` set the same before a process starts (what
``benchmarks.digress_step`` does for both of its sides); a variable that is set wins over
:func:`tune_malloc`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

__all__ = ["ENVIRONMENT", "tune_malloc", "release_free_memory"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
# environment variable, mallopt parameter, its value for mallopt (-1: never trim the heap's top)
# and for the environment (the same, as glibc reads it at start-up)
_SETTINGS = (("MALLOC_MMAP_MAX_", _M_MMAP_MAX, 0, "0"),
             ("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, -1, "1000000000000"),
             ("MALLOC_ARENA_MAX", _M_ARENA_MAX, 1, "1"))
ENVIRONMENT = {env: value for env, _, _, value in _SETTINGS}
"""The settings of :func:`tune_malloc` as environment variables, for a process started anew."""


@functools.lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def tune_malloc() -> dict[str, int]:
    """One malloc arena, no ``mmap``, no trimming of the heap (see the module docstring).

    Call it at the start of a training process, before JAX runs anything: a thread that has
    already allocated keeps its arena. Returns the settings applied (``{}`` without glibc);
    a setting whose environment variable is set is left to it.
    """
    libc = _libc()
    if libc is None:
        return {}
    done = {}
    for env, param, value, _ in _SETTINGS:
        if env not in os.environ and libc.mallopt(param, value) == 1:
            done[env] = value
    return done


def release_free_memory() -> bool:
    """Return the free memory of the heap to the system (``malloc_trim(0)``), e.g. what compiling
    left behind; the next allocations map it again as needed. False without glibc."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0) >= 0)
