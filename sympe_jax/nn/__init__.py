"""Equivariant network building blocks.

* :mod:`sympe_jax.nn.gcnn`: p4m group convolutions on the lattice.
* :mod:`sympe_jax.nn.mpnn`: a reusable S_n-equivariant message-passing network on padded
  ``jraph`` batches (``MLP``, ``EdgeMLP``, ``MPNNEncoder``).
* :mod:`sympe_jax.nn.scorers`: learned node scorers for SymPE's sort (``NodeScoreHead``).
* :mod:`sympe_jax.nn.e3`: an E(3)-equivariant message-passing network on dense point clouds
  (``E3PointNet``; needs e3nn-jax, the ``[e3]`` extra).
"""
