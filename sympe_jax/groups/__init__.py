"""Group actions: S_n on graphs (:mod:`.permutation`), p4m on the torus (:mod:`.lattice`), and
O(3), SO(3), E(3) on point clouds (:mod:`.orthogonal`)."""

from sympe_jax.groups import lattice, orthogonal, permutation

__all__ = ["lattice", "orthogonal", "permutation"]
