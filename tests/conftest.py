"""Shared test set-up: persistent JAX compilation cache and fresh PRNG keys."""

import os
import pathlib

import jax
import pytest

_CACHE = pathlib.Path(os.environ.get("SYMPE_JAX_CACHE", pathlib.Path(__file__).resolve().parents[1] / ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def key():
    """A fixed PRNG key; tests split it for what they need."""
    return jax.random.key(0)
