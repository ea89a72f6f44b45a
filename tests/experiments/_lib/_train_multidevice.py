"""Helper of tests/experiments/_lib/test_train.py, run in a subprocess with 4 host CPU devices.

Usage (from the repository root): ``XLA_FLAGS=--xla_force_host_platform_device_count=4
python -m tests.experiments._lib._train_multidevice WORKDIR``.
The flag must be set before jax is imported, hence the subprocess. Prints one JSON object
with what the test asserts on.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments._lib import train as T

BATCH = 8  # 2 examples per device


def batch_fn(i):
    rng = np.random.default_rng((1, i))
    x = rng.normal(size=(BATCH, 3)).astype(np.float32)
    y = np.sin(x.sum(axis=1, keepdims=True)).astype(np.float32)
    return {"x": x, "y": y}


def init_params(key):
    k1, k2 = jax.random.split(key)
    return {"w1": 0.5 * jax.random.normal(k1, (3, 16)), "b1": jnp.zeros(16),
            "w2": 0.5 * jax.random.normal(k2, (16, 1)), "b2": jnp.zeros(1)}


def loss_fn(params, batch, key):
    # Dropout and target noise make the test also cover the per-step keys under sharding.
    k_drop, k_noise = jax.random.split(key)
    h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
    h = h * jax.random.bernoulli(k_drop, 0.9, h.shape) / 0.9
    pred = h @ params["w2"] + params["b2"]
    target = batch["y"] + 0.01 * jax.random.normal(k_noise, batch["y"].shape)
    err = pred - target
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


def run(devices, num_steps, workdir=None, batch_fn=batch_fn, checkpoint_every=0):
    config = T.TrainConfig(num_steps=num_steps, log_every=1, checkpoint_every=checkpoint_every,
                           progress=False)
    return T.train(config, loss_fn=loss_fn, params=init_params(jax.random.key(1)),
                   optimizer=optax.adam(1e-2), batch_fn=batch_fn, key=jax.random.key(2),
                   workdir=workdir, devices=devices)


def losses(result):
    return [row["loss"] for row in result.history if row["split"] == "train"]


def max_diff(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b))
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def main(workdir):
    devices = jax.local_devices()
    out = {"device_count": len(devices)}
    one = run(devices[:1], 20)
    four = run(devices, 20)
    out["losses_1"], out["losses_4"] = losses(one), losses(four)
    out["params_max_diff"] = max_diff(one.params, four.params)
    out["param_devices"] = len(four.params["w1"].sharding.device_set)
    out["batch_devices"] = len(T.shard_batch(batch_fn(0), T.data_mesh(devices))["x"].sharding.device_set)

    # A checkpoint written on 4 devices resumes on 1 (orbax reshards to the target).
    run(devices, 10, workdir, checkpoint_every=5)
    resumed = run(devices[:1], 20, workdir, checkpoint_every=5)
    out["resumed_from"] = resumed.resumed_from
    out["resumed_losses"] = losses(resumed)
    out["resumed_params_max_diff"] = max_diff(one.params, resumed.params)

    def odd_batch_fn(i):
        return {key: value[:6] for key, value in batch_fn(i).items()}

    try:
        run(devices, 2, batch_fn=odd_batch_fn)
        out["indivisible_error"] = None
    except ValueError as e:
        out["indivisible_error"] = str(e)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
