"""``python -m experiments.graph_autoencoder``: see :mod:`experiments.graph_autoencoder.main`."""

import sys

from experiments.graph_autoencoder.main import main

sys.exit(main())
