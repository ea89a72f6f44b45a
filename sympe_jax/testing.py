"""Equivariance checkers for functions and for samplers, for our tests and for users' models.

* :func:`assert_equivariant`: for deterministic functions, ``f(g . x) == g . f(x)`` for group
  elements drawn from a key (float tolerance).
* :func:`assert_equivariant_in_law`: for samplers (randomized canonicalization, SymPE models),
  the law of ``sampler(key, g . x)`` equals the law of ``g . sampler(key', x)``, checked with a
  two-sample test at significance ``alpha`` on fixed seeds:

  - discrete outputs (integer arrays: ranks, indices, group elements): Pearson chi-square test
    of homogeneity on the joint outcome (each distinct output array is one category);
  - continuous outputs: two-sample Kolmogorov-Smirnov tests on ``n_projections`` random 1-d
    projections, Bonferroni-corrected.

  With fixed seeds the result is deterministic; ``alpha`` bounds the false-alarm rate of a
  correct implementation, and the tests in ``tests/`` show the bound fails wrong ones.

The statistics (:func:`chi2_homogeneity`, :func:`ks_two_sample`) are NumPy and have no SciPy
dependency.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from sympe_jax import checks

__all__ = [
    "assert_equivariant",
    "assert_equivariant_in_law",
    "assert_same_law",
    "chi2_homogeneity",
    "ks_two_sample",
]


def assert_equivariant(fn: Callable[..., Any], key: jax.Array, x: Any, *,
                       sample_element: Callable[[jax.Array], Any],
                       act_in: Callable[[Any, Any], Any], act_out: Callable[[Any, Any], Any],
                       num_elements: int = 8, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """Assert ``fn(act_in(g, x)) == act_out(g, fn(x))`` for ``num_elements`` random g.

    Args:
      fn: deterministic function of the input pytree ``x``.
      key: PRNG key for drawing group elements.
      x: input pytree.
      sample_element: ``key -> g``.
      act_in, act_out: ``(g, value) -> g . value`` on inputs and outputs (pytrees allowed).
      atol, rtol: tolerances of the comparison (``np.allclose``), finite numbers >= 0.
    Raises:
      AssertionError naming the element and the largest deviation.
    """
    atol, rtol = checks.check_tolerance(atol, "atol"), checks.check_tolerance(rtol, "rtol")
    out = fn(x)
    for i, k in enumerate(jax.random.split(key, num_elements)):
        g = sample_element(k)
        lhs, rhs = fn(act_in(g, x)), act_out(g, out)
        for a, b in zip(jax.tree_util.tree_leaves(lhs), jax.tree_util.tree_leaves(rhs)):
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape or not np.allclose(a, b, atol=atol, rtol=rtol):
                dev = np.max(np.abs(a - b)) if a.shape == b.shape else f"shapes {a.shape} vs {b.shape}"
                raise AssertionError(f"not equivariant for element #{i} g = {np.asarray(g).tolist()}: max deviation {dev}")


def _chi2_sf(stat: float, dof: int) -> float:
    """Survival function of the chi-square distribution (regularized upper gamma)."""
    if dof <= 0:
        return 1.0
    return float(jax.scipy.special.gammaincc(dof / 2.0, stat / 2.0))


def chi2_homogeneity(a: np.ndarray, b: np.ndarray) -> tuple[float, int, float]:
    """Pearson chi-square test that two samples of discrete outcomes share a law.

    Args:
      a, b: int arrays [num_samples, ...]; each distinct row (flattened) is one category.
    Returns:
      (statistic, degrees of freedom, p-value).
    """
    a = np.asarray(a).reshape(len(a), -1)
    b = np.asarray(b).reshape(len(b), -1)
    _, inverse = np.unique(np.concatenate([a, b]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    k = int(inverse.max()) + 1
    table = np.stack([np.bincount(inverse[: len(a)], minlength=k), np.bincount(inverse[len(a):], minlength=k)])
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    dof = k - 1
    return stat, dof, _chi2_sf(stat, dof)


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test (asymptotic p-value). a float[n], b float[m]."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    en = math.sqrt(len(a) * len(b) / (len(a) + len(b)))
    lam = (en + 0.12 + 0.11 / en) * d
    p = 2.0 * sum((-1) ** (j - 1) * math.exp(-2.0 * j * j * lam * lam) for j in range(1, 101))
    return d, float(min(max(p, 0.0), 1.0))


def assert_same_law(a: Any, b: Any, *, alpha: float = 1e-3, n_projections: int = 8, seed: int = 0) -> float:
    """Assert that two batches of samples [num_samples, ...] have the same law; return the p-value.

    Integer/bool samples use :func:`chi2_homogeneity`; float samples use
    :func:`ks_two_sample` on random projections, Bonferroni-corrected (the reported p-value
    is the smallest times ``n_projections``).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"sample shapes differ: {a.shape} vs {b.shape}")
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        _, dof, p = chi2_homogeneity(a, b)
        what = f"chi-square homogeneity test ({dof} dof)"
    else:
        fa, fb = a.reshape(len(a), -1), b.reshape(len(b), -1)
        dirs = np.random.default_rng(seed).normal(size=(fa.shape[1], n_projections))
        p = min(1.0, n_projections * min(ks_two_sample(fa @ d, fb @ d)[1] for d in dirs.T))
        what = f"KS tests on {n_projections} projections (Bonferroni)"
    if not p >= alpha:
        raise AssertionError(f"laws differ: {what} gives p = {p:.3g} < alpha = {alpha}")
    return p


def assert_equivariant_in_law(sampler: Callable[[jax.Array, Any], Any], key: jax.Array, x: Any, g: Any, *,
                              act_in: Callable[[Any, Any], Any], act_out: Callable[[Any, Any], Any],
                              num_samples: int = 4000, alpha: float = 1e-3, n_projections: int = 8) -> float:
    """Assert that ``sampler(k, g . x)`` and ``g . sampler(k', x)`` have the same law.

    The sampler is vmapped over ``num_samples`` independent keys for each side (the two sides
    use disjoint keys). Returns the p-value of :func:`assert_same_law`.

    Args:
      sampler: ``(key, x) -> output`` (an array).
      key: PRNG key (fixed in tests, so the verdict is deterministic).
      x: input pytree; g: group element.
      act_in, act_out: ``(g, value) -> g . value``.
    """
    k_a, k_b = jax.random.split(key)
    gx = act_in(g, x)
    moved = jax.jit(jax.vmap(lambda k: act_out(g, sampler(k, x))))(jax.random.split(k_a, num_samples))
    direct = jax.jit(jax.vmap(lambda k: sampler(k, gx)))(jax.random.split(k_b, num_samples))
    return assert_same_law(moved, direct, alpha=alpha, n_projections=n_projections)
