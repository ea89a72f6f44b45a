"""Helper of tests/experiments/_lib/test_faults.py: one tiny training run, in its own process so
that the test can SIGKILL it, start a duplicate of it, and resume it.

Usage (from the repository root): ``python -m tests.experiments._lib._fault_run WORKDIR [PAUSE]``.
With ``PAUSE``, the run prints ``paused at PAUSE`` when it asks for the batch of update ``PAUSE``
and sleeps there (holding its run directory, possibly with a checkpoint being written) until
killed. Otherwise it trains to the end and prints one JSON line (see :func:`summary`). Like an
experiment's CLI, it exits with one line on stderr and status 1 on a run error.
"""

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments._lib import rundir
from experiments._lib import train as T

W_TRUE = np.array([1.0, -2.0, 0.5], dtype=np.float32)
CONFIG = T.TrainConfig(num_steps=40, eval_every=8, checkpoint_every=4, log_every=2, max_to_keep=2,
                       select_metric="val_loss", progress=False)


def batch_fn(i):
    """(8, 3) inputs and (8,) targets of update i, a pure function of i."""
    rng = np.random.default_rng((7, i))
    x = rng.normal(size=(8, 3)).astype(np.float32)
    return {"x": x, "y": x @ W_TRUE + 0.3}


def loss_fn(params, batch, key):
    noise = 0.01 * jax.random.normal(key, batch["y"].shape)
    err = batch["x"] @ params["w"] + params["b"] - batch["y"] - noise
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


def eval_fn(params, key):
    batch = batch_fn(10**6)
    noise = 0.01 * jax.random.normal(key, batch["y"].shape)
    return {"val_loss": float(jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"] - noise) ** 2))}


def train(workdir, pause=None):
    """Trains the toy model in ``workdir``, sleeping in the batch of update ``pause`` if given."""

    def paused_batch_fn(i):
        if i == pause:
            print(f"paused at {i}", flush=True)
            time.sleep(600)
        return batch_fn(i)

    return T.train(CONFIG, loss_fn=loss_fn, params={"w": jnp.zeros(3), "b": jnp.zeros(())},
                   optimizer=T.make_optimizer(0.1, CONFIG.num_steps, warmup_steps=4), batch_fn=paused_batch_fn,
                   key=jax.random.key(3), workdir=workdir, eval_fn=eval_fn)


def summary(result):
    """What the test compares: final and best params (exact float32 values), best step and metrics."""
    as_lists = lambda tree: {k: np.asarray(v).tolist() for k, v in tree.items()}  # noqa: E731
    return {"params": as_lists(result.params), "best_params": as_lists(result.best_params),
            "best_step": result.best_step, "best_metrics": result.best_metrics, "step": result.step,
            "resumed_from": result.resumed_from}


@rundir.exit_on_run_error
def main(argv):
    result = train(argv[0], int(argv[1]) if len(argv) > 1 else None)
    print(json.dumps(summary(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
