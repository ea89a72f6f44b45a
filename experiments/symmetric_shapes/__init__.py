"""Symmetric shapes under E(3): SymPE frames against no symmetry breaking, noise, Haar and covariance
frames, and a non-equivariant MLP.

Run with ``python -m experiments.symmetric_shapes --preset cpu`` (see :mod:`.main`).

* :mod:`.main`: training, evaluation, figure, summary and command line;
* :mod:`.models`: the E(3)-equivariant model with each symmetry breaker, and the MLP;
* :mod:`.data`: the shapes, their point groups, the targets and the exact loss floor.
"""
