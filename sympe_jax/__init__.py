"""sympe_jax: symmetry breaking for equivariant networks, without giving up equivariance.

Lawrence, Portilheiro, Zhang, Kaba. *Improving Equivariant Networks with Probabilistic
Symmetry Breaking.* ICLR 2025, arXiv 2503.21985.

Typical use::

    import sympe_jax as sp
    ranks = sp.sort_permutation(key, scores, mask)      # g~ ~ inversion kernel (S_n)
    pe = sp.encodings.graph_sympe(v, ranks, mask)       # node i gets v[ranks[i]]
    index = sp.argmax_element(key, lifted_scores)        # g~ for any finite group (p4m)
"""

from sympe_jax import canonicalize, checks, encodings, features, graphs, groups, testing
from sympe_jax.canonicalize import DEFAULT_ATOL, argmax_element, sort_permutation, tie_groups
from sympe_jax.checks import checked
from sympe_jax.groups import lattice, permutation

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ATOL",
    "argmax_element",
    "canonicalize",
    "checked",
    "checks",
    "encodings",
    "features",
    "graphs",
    "groups",
    "lattice",
    "permutation",
    "sort_permutation",
    "testing",
    "tie_groups",
]
