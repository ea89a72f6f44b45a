"""A short SymPE demo: ``python -m experiments.demo`` (or ``make demo``); see :mod:`.main`."""
