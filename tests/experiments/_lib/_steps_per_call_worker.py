"""Helper of tests/experiments/_lib/test_steps_per_call.py: one process of a multi-process run
with several updates per call.

Usage (from the repository root)::

    python -m experiments.launch --num-processes 2 --devices-per-process 2 -- \\
        python -m tests.experiments._lib._steps_per_call_worker WORKDIR OUT

Trains the tiny MLP of ``_distributed_worker`` on the same process-local rows three times:
one update per call; 4 updates per call (the 4 global batches stacked); and 4 per call with
process 1's rows of update 5 NaN (the run must stop at step 6 in every process, with only the
checkpoint of step 4). Writes ``OUT.<process index>.json``.
"""

import json
import sys

import jax
import numpy as np
import optax

from experiments._lib import distributed
from experiments._lib import train as T
from tests.experiments._lib._distributed_worker import NUM_STEPS, eval_fn, rows
from tests.experiments._lib._train_multidevice import init_params, loss_fn


def _train(workdir, steps_per_call, nan_at=None):
    def batch_fn(step, index, count):
        batch = rows(step, index, count)
        if step == nan_at and index == 1:
            batch["x"][:] = np.nan
        return batch

    config = T.TrainConfig(num_steps=NUM_STEPS, log_every=4, eval_every=4, checkpoint_every=4,
                           select_metric="val_loss", progress=False, steps_per_call=steps_per_call)
    return T.train(config, loss_fn=loss_fn, params=init_params(jax.random.key(1)), optimizer=optax.adam(1e-2),
                   batch_fn=distributed.per_process(batch_fn), key=jax.random.key(2), workdir=workdir,
                   eval_fn=eval_fn)


@distributed.fail_fast
def main(workdir, out):
    distributed.initialize()
    result = {"process_count": jax.process_count(), "device_count": jax.device_count()}
    for k in (1, 4):
        r = _train(f"{workdir}/k{k}", k)
        result[f"k{k}"] = {"losses": [row["loss"] for row in r.history if row["split"] == "train"],
                           "best_step": r.best_step,
                           "params": {name: np.asarray(v).tolist()
                                      for name, v in distributed.local_copy(r.params).items()}}
    try:
        _train(f"{workdir}/nan", 4, nan_at=5)
        result["diverged_at"] = None
    except T.TrainingDiverged as e:
        result["diverged_at"] = e.step
        result["diverged_last_checkpoint"] = None if e.last_checkpoint is None else e.last_checkpoint.name
    with open(f"{out}.{jax.process_index()}.json", "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    main(*sys.argv[1:3])
