"""The paper's experiments, one package each, run with ``python -m experiments.<name>``.

* :mod:`experiments.graph_autoencoder`: graph autoencoding of Erdos-Renyi graphs.
* :mod:`experiments.ising`: Ising ground states with a p4m G-CNN.
* :mod:`experiments.digress_qm9`: DiGress on QM9 with and without SymPE.
* :mod:`experiments.demo`: a short SymPE demo (``make demo``).
* :mod:`experiments.report`: renders the README's result sections from ``results/``.
* :mod:`experiments._lib`: what the experiments share (config presets on the command line,
  the training loop).

Experiments import the library ``sympe_jax``; the library never imports them.
"""
