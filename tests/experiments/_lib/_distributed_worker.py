"""Helper of tests/experiments/_lib/test_distributed.py: one process of a tiny multi-process run.

Usage (from the repository root), under the local launcher or alone with forced host devices::

    python -m experiments.launch --num-processes 2 --devices-per-process 2 -- \\
        python -m tests.experiments._lib._distributed_worker WORKDIR OUT [--pause-at I --pause-process P]
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m tests.experiments._lib._distributed_worker WORKDIR OUT

Trains a small MLP (dropout, noisy targets, an evaluation with model selection) for
``NUM_STEPS`` updates on a global batch of ``BATCH`` rows, checkpointing every
``CHECKPOINT_EVERY`` steps in WORKDIR; each process builds only its own rows (one numpy
generator per global row). Every process writes ``OUT.<process index>.json``: its process and
device counts, the logged train losses, the final params, the step it resumed from. With
``--pause-at I`` process ``P`` prints ``paused at I`` when asked for the batch of update ``I``
and sleeps there until killed; with ``--nan-at I`` process 1's rows of update ``I`` are NaN
(training diverges at step I + 1). An error ends a process at once (``distributed.fail_fast``).
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments._lib import distributed
from experiments._lib import train as T
from tests.experiments._lib._train_multidevice import init_params, loss_fn   # the same tiny MLP as the multi-device test

BATCH = 8            # 2 rows per device with 4 devices
NUM_STEPS = 12
CHECKPOINT_EVERY = 4


def rows(step, index, count):
    """Rows ``local_rows(BATCH, index, count)`` of the global batch of update ``step``: row r
    from its own generator seeded (1, step, r), so no process generates another's rows."""
    x, y = [], []
    for r in range(BATCH)[distributed.local_rows(BATCH, index, count)]:
        rng = np.random.default_rng((1, step, r))
        xr = rng.normal(size=3).astype(np.float32)
        x.append(xr)
        y.append(np.sin(xr.sum(keepdims=True)).astype(np.float32))
    return {"x": np.stack(x), "y": np.stack(y)}


VAL = rows(10**6, 0, 1)


def eval_fn(params, key):
    """Validation MSE plus a small term that differs by process (as evaluations on different
    hosts may), so that only a broadcast decision makes the processes select alike."""
    err = jnp.tanh(VAL["x"] @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"] - VAL["y"]
    noise = jax.random.uniform(jax.random.fold_in(key, jax.process_index()))
    return {"val_loss": float(jnp.mean(err**2)) + 0.1 * float(noise)}


@distributed.fail_fast
def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("out")
    parser.add_argument("--pause-at", type=int, default=None)
    parser.add_argument("--pause-process", type=int, default=1)
    parser.add_argument("--nan-at", type=int, default=None, help="process 1's rows of this update are NaN")
    args = parser.parse_args(argv)
    distributed.initialize()
    me = jax.process_index()

    def batch_fn(step, index, count):
        if step == args.pause_at and index == args.pause_process:
            print(f"paused at {step}", flush=True)
            time.sleep(600)
        batch = rows(step, index, count)
        if step == args.nan_at and index == 1:
            batch["x"][:] = np.nan
        return batch

    config = T.TrainConfig(num_steps=NUM_STEPS, log_every=1, eval_every=4, checkpoint_every=CHECKPOINT_EVERY,
                           select_metric="val_loss", progress=False)
    result = T.train(config, loss_fn=loss_fn, params=init_params(jax.random.key(1)), optimizer=optax.adam(1e-2),
                     batch_fn=distributed.per_process(batch_fn), key=jax.random.key(2), workdir=args.workdir,
                     eval_fn=eval_fn)
    params = distributed.local_copy(result.params)
    out = {"process_count": jax.process_count(), "device_count": jax.device_count(),
           "local_batch": int(rows(0, me, jax.process_count())["x"].shape[0]),
           "losses": [row["loss"] for row in result.history if row["split"] == "train"],
           "evals": [row["val_loss"] for row in result.history if row["split"] == "eval"],
           "best_step": result.best_step, "resumed_from": result.resumed_from, "step": result.step,
           "params": {k: np.asarray(v).tolist() for k, v in params.items()}}
    with open(f"{args.out}.{me}.json", "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    main()
