"""Ising ground states with a p4m G-CNN: SymPE against no symmetry breaking, noise and a CNN.

Run with ``python -m experiments.ising --preset cpu`` (see :mod:`.main`).

* :mod:`.main`: training, evaluation, phase diagram, summary and command line;
* :mod:`.models`: the lattice models compared (G-CNN with and without SymPE, noise, CNN);
* :mod:`.data`: Ising Hamiltonians, energies and exact ground states.
"""
