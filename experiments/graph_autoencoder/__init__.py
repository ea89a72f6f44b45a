"""Graph autoencoding of Erdos-Renyi graphs: SymPE against the paper's ablations.

Run with ``python -m experiments.graph_autoencoder --preset cpu`` (see :mod:`.main`).

* :mod:`.configs`: the config, presets, rows and labels;
* :mod:`.encoding`: the symmetry breaking of every row, and the model built from it;
* :mod:`.main`: training, evaluation, analysis, figures, summary and command line;
* :mod:`.models`: the autoencoder (MPNN encoder + distance decoder), losses and metrics;
* :mod:`.data`: Erdos-Renyi graphs and padded batches;
* :mod:`.floors`: the exact 1-WL error floor;
* :mod:`.entropy`: edge error against the randomness of the node ordering
  (``python -m experiments.graph_autoencoder.entropy``).
"""
