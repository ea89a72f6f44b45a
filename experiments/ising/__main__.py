"""``python -m experiments.ising``: see :mod:`experiments.ising.main`."""

import sys

from experiments.ising.main import main

sys.exit(main())
