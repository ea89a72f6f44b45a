"""``python -m experiments.demo``: see :mod:`experiments.demo.main`."""

import sys

from experiments.demo.main import main

sys.exit(main())
