"""Exact, host-side solvers that the fast JAX canonicalizers are checked against (NumPy).

This subpackage needs the ``exact`` extra (``pip install 'sympe_jax[exact]'``: ``pynauty`` and
``scipy``). Both are imported lazily, when a function first needs them, so importing
``sympe_jax.exact`` always works; calling such a function without them raises an ImportError that
names the extra.

* :mod:`sympe_jax.exact.automorphisms`: automorphism groups (:class:`AutGroup`, with a certified
  Schreier-Sims stabilizer chain), orbits, exact group orders, nauty's canonical labelling, exactly
  uniform automorphisms and the exact SymPE inversion kernel, plus the input validation and
  permutation helpers (:func:`as_adjacency`, :func:`as_mask`, :func:`compose`, ...).
* :mod:`sympe_jax.exact.wl`: 1-WL colour refinement (:func:`wl_colors`, :func:`wl_refine`,
  :func:`unique_rows`); pure NumPy.

Every public name of both modules is re-exported here.
"""

from sympe_jax.exact import automorphisms, wl
from sympe_jax.exact.automorphisms import (
    AutGroup,
    as_adjacency,
    as_mask,
    automorphism_group,
    automorphism_groups,
    canonical_ranks,
    compose,
    group_order,
    inverse,
    inversion_kernel_sample,
    inversion_kernel_sample_batch,
    is_automorphism,
    orbits,
    permute_adjacency,
    sample_automorphism,
)
from sympe_jax.exact.wl import unique_rows, wl_colors, wl_refine

# Both modules' public names (automorphisms re-exports wl_colors), each once.
__all__ = ["automorphisms", "wl", *automorphisms.__all__,
           *(name for name in wl.__all__ if name not in automorphisms.__all__)]
