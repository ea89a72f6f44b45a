"""Group actions: S_n on graphs (:mod:`.permutation`) and p4m on the torus (:mod:`.lattice`)."""

from sympe_jax.groups import lattice, permutation

__all__ = ["lattice", "permutation"]
