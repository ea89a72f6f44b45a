"""``python -m experiments.digress_qm9``: see :mod:`experiments.digress_qm9.main`."""

import sys

from experiments.digress_qm9.main import main

sys.exit(main())
