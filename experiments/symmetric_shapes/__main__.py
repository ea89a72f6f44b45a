"""``python -m experiments.symmetric_shapes``: see :mod:`experiments.symmetric_shapes.main`."""

import sys

from experiments.symmetric_shapes.main import main

sys.exit(main())
