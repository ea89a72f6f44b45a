"""``python -m experiments.digress_qm9``: see :mod:`experiments.digress_qm9.main`."""

import sys

from experiments._lib import host

host.tune_malloc()  # before JAX starts its threads: one malloc arena (see experiments._lib.host)

from experiments.digress_qm9.main import main  # noqa: E402

sys.exit(main())
