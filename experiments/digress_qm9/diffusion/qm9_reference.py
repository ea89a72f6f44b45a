"""The reference's hard-coded QM9-without-H constants (``QM9infos``, DiGress
``src/datasets/qm9_dataset.py``; ``reference/digress-qm9.md`` sections 1, 2, 4).

These are defaults only: every function of :mod:`experiments.digress_qm9.diffusion` takes marginals and
histograms as arrays, so marginals recomputed from the project's own QM9 data can be passed
instead (they differ from these for double bonds by about 10%, see section 7.1 of the doc).
"""

from __future__ import annotations

__all__ = [
    "ATOM_CLASSES",
    "EDGE_CLASSES",
    "ATOM_MARGINALS",
    "EDGE_MARGINALS",
    "N_NODES_HISTOGRAM",
    "VALENCIES",
    "ATOM_WEIGHTS",
    "MAX_WEIGHT",
    "MAX_N_NODES",
    "BOND_ORDERS",
    "edge_marginals",
]

ATOM_CLASSES = ("C", "N", "O", "F")
EDGE_CLASSES = ("none", "single", "double", "triple", "aromatic")

# Node-class marginals m_X (C, N, O, F): the limit distribution of the marginal transition.
ATOM_MARGINALS = (0.7230, 0.1151, 0.1593, 0.0026)
# Edge-class marginals m_E (none, single, double, triple, aromatic); aromatic never occurs
# (the SDF is kekulized), so the 4-class version drops it (see edge_marginals).
EDGE_MARGINALS = (0.7261, 0.2384, 0.0274, 0.0081, 0.0)
# p(N) for N = 0..9 heavy atoms: the node-count prior (equals counts / 130,831 of all
# characterized QM9 molecules, checked in section 7.1 of the doc).
N_NODES_HISTOGRAM = (0.0, 2.2930e-05, 3.8217e-05, 6.8791e-05, 2.3695e-04, 9.7072e-04, 0.0046472,
                     0.023985, 0.13666, 0.83337)

VALENCIES = (4, 3, 2, 1)             # C, N, O, F
ATOM_WEIGHTS = (12.0, 14.0, 16.0, 19.0)
MAX_WEIGHT = 150.0
MAX_N_NODES = 9
BOND_ORDERS = (0.0, 1.0, 2.0, 3.0, 1.5)   # per edge class; aromatic counts 1.5


def edge_marginals(num_classes: int = 5) -> tuple[float, ...]:
    """The reference's edge marginals for 5 classes, or 4 (aromatic dropped; it is 0.0)."""
    if num_classes not in (4, 5):
        raise ValueError(f"QM9 has 4 or 5 edge classes, got {num_classes}")
    return EDGE_MARGINALS[:num_classes]
