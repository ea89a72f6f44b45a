"""Exact, host-side solvers that the fast JAX canonicalizers are checked against.

* :mod:`sympe_jax.exact.automorphisms`: automorphism groups, canonical labellings and the exact
  inversion kernel (NumPy; needs the ``exact`` extra: ``pynauty`` and ``scipy``, imported lazily).
"""
