"""DiGress on QM9 without hydrogens: with and without SymPE, at the same budget.

Run with ``python -m experiments.digress_qm9 --preset cpu`` (see :mod:`.main`).

* :mod:`.main`: training, test NLL, sampling metrics, summary and command line;
* :mod:`.sampling`: sample quality of trained rows (``python -m experiments.digress_qm9.sampling``);
* :mod:`.diffusion`: discrete graph diffusion (DiGress) and its SymPE denoisers;
* :mod:`.graph_transformer`: DiGress's graph transformer;
* :mod:`.qm9`: the QM9 data; :mod:`.molecules`: RDKit conversion and sample metrics;
* :mod:`.make_fixture`: regenerates the QM9 test fixture
  (``python -m experiments.digress_qm9.make_fixture``).
"""
