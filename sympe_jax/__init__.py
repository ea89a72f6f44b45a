"""sympe_jax: symmetry breaking for equivariant networks, without giving up equivariance.

Lawrence, Portilheiro, Zhang, Kaba. *Improving Equivariant Networks with Probabilistic
Symmetry Breaking.* ICLR 2025, arXiv 2503.21985.

Typical use (see :mod:`sympe_jax.encodings` for the contract every encoding follows)::

    import sympe_jax as sp
    enc = sp.graph_encoding("sympe", n_max=16, features=8)      # or "randperm", "laplacian", ...
    k_init, k_pe = jax.random.split(key)
    params = enc.init(k_init)                                    # {"v": float[16, 8]}
    pe = enc.apply(k_pe, params, adjacency, mask)                # float[..., n, 8]

In a Flax model: ``sp.flax.GraphEncoding("sympe", n_max=16, features=8)(graph)``; in a jraph
pipeline: ``sp.jraph.encode(enc, key, params, graph, n_max=16)``. The primitives underneath:
``sp.sort_permutation`` (S_n), ``sp.argmax_element`` (any finite group, e.g. p4m), and for point
clouds under O(3)/E(3) ``sp.point_cloud_encoding`` over the randomized frames of
:mod:`sympe_jax.frames`.
"""

from sympe_jax import canonicalize, checks, encodings, features, frames, graphs, groups, nn, testing
from sympe_jax import flax, jraph
from sympe_jax.canonicalize import DEFAULT_ATOL, argmax_element, soft_ranks, sort_permutation, tie_groups
from sympe_jax.checks import checked
from sympe_jax.encodings import (GRAPH_ENCODINGS, LATTICE_ENCODINGS, POINT_CLOUD_ENCODINGS, Encoding,
                                 graph_encoding, lattice_encoding, point_cloud_encoding)
from sympe_jax.groups import lattice, orthogonal, permutation

__version__ = "0.2.0"

__all__ = [
    "DEFAULT_ATOL",
    "Encoding",
    "GRAPH_ENCODINGS",
    "LATTICE_ENCODINGS",
    "POINT_CLOUD_ENCODINGS",
    "argmax_element",
    "canonicalize",
    "checked",
    "checks",
    "encodings",
    "features",
    "flax",
    "frames",
    "graph_encoding",
    "graphs",
    "groups",
    "jraph",
    "lattice",
    "lattice_encoding",
    "nn",
    "orthogonal",
    "permutation",
    "point_cloud_encoding",
    "soft_ranks",
    "sort_permutation",
    "testing",
    "tie_groups",
]
