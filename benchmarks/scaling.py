"""Multi-process data parallelism on one CPU machine: a correctness and overhead check, NOT a speed-up.

Trains DiGress (``python -m experiments.digress_qm9``'s model, loss and optimizer, row
``digress``) with the shared training loop at one fixed global batch on 4 CPU devices, split
over 1, 2 and 4 local processes (4, 2 and 1 devices each, started by ``experiments.launch``).
Every configuration does the same arithmetic on the same global batches; only where the
gradient all-reduce runs changes (inside one process, or across processes through JAX's gloo
CPU collectives). The processes share this machine's cores, so more processes cannot be faster:
the numbers show the overhead of the multi-process path, and that the losses agree.

Per configuration (process 0's view):

* ``steps_per_second``: ``TrainResult.steps_per_second`` of ``train()`` (compilation excluded);
* ``allreduce_ms``: the median time of an all-reduce of a gradient-sized float32 buffer over
  the same 4-device mesh, timed alone, and ``allreduce_share`` = that / the step time;
* ``allreduce_bytes_per_step``: the bytes the compiled train step all-reduces, read from XLA's
  optimized HLO (all-reduce ops and their result shapes), beside the gradient's size
  (4 bytes x parameters): the communication volume docs/distributed.md scales to a GPU cluster;
  ``collective_bytes_per_step`` also counts the other collectives XLA inserted;
* ``final_loss`` and ``max_loss_difference`` against 1 process (float reduction order only).

Also printed: the gradient bytes of the ``paper`` preset's model (counted, not trained).

    python -m benchmarks.scaling            # the digress_qm9 cpu model, global batch 32, 12 steps
    python -m benchmarks.scaling --quick    # the demo model (smoke test)

Writes results/benchmarks/scaling.json (``--quick``: scaling_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEVICES = 4
_HLO_DTYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "s32": 4, "u32": 4, "pred": 1, "s8": 1, "u8": 1}


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the demo model, few steps: a smoke test")
    p.add_argument("--model", choices=("cpu", "demo"), default=None,
                   help="model sizes of that digress_qm9 preset (default cpu; demo with --quick)")
    p.add_argument("--processes", default="1,2,4", help="comma-separated process counts (divisors of 4)")
    p.add_argument("--batch", type=int, default=None, help="global batch (default 32; 8 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default 12; 4 with --quick)")
    p.add_argument("--reps", type=int, default=20, help="timed all-reduces per run")
    p.add_argument("--timeout", type=float, default=1200, help="seconds allowed per configuration")
    p.add_argument("--out", default=None, help="output JSON (default results/benchmarks/scaling[_quick].json)")
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.model = a.model or ("demo" if a.quick else "cpu")
    a.batch = a.batch or (8 if a.quick else 32)
    a.steps = a.steps or (4 if a.quick else 12)
    a.processes = [int(n) for n in a.processes.split(",")]
    if any(DEVICES % n for n in a.processes):
        p.error(f"--processes must divide {DEVICES}")
    a.out = a.out or str(ROOT / "results" / "benchmarks" / ("scaling_quick.json" if a.quick else "scaling.json"))
    return a


COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")


def collective_bytes(hlo_text: str) -> dict[str, int]:
    """Bytes of the results of each kind of collective op in an optimized HLO module (tuple
    results summed; ``*-start`` ops counted, their ``*-done`` not): ``{"all-reduce": ..., ...}``."""
    totals = dict.fromkeys(COLLECTIVES, 0)
    pattern = re.compile(r"=\s*(.+?)\s+(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
    for line in hlo_text.splitlines():
        m = pattern.search(line)
        if not m:
            continue
        for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", m.group(1)):
            if dtype in _HLO_DTYPE_BYTES:
                totals[m.group(2)] += _HLO_DTYPE_BYTES[dtype] * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
    return totals


def _config(model: str):
    from experiments.digress_qm9 import main as dq
    return dq.PRESETS[model]


def _train_split():
    """QM9's training split (the installed data, else the test fixture)."""
    from experiments.digress_qm9 import main as dq
    from experiments.digress_qm9 import qm9
    try:
        return qm9.load_qm9("train")
    except (ImportError, FileNotFoundError):
        return qm9.load_qm9("train", source=str(ROOT / dq.FIXTURE))


def _count_params(cfg) -> int:
    """Parameters of the row ``digress`` model of ``cfg`` (shapes only, nothing computed)."""
    import jax

    from experiments.digress_qm9 import main as dq
    dg = dq.build(cfg, "digress")
    batch = dq.make_batch(_train_split(), np.arange(2))
    shapes = jax.eval_shape(lambda: dq.init_params(dg, jax.random.key(0), batch))
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def measure(a: argparse.Namespace) -> dict:
    """One configuration, in every process of a launched run; returns process 0's numbers."""
    from experiments._lib import distributed
    distributed.initialize()
    import functools

    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from experiments._lib import train as T
    from experiments.digress_qm9 import main as dq
    from experiments.digress_qm9 import qm9

    cfg = _config(a.model)
    split = _train_split()
    info = qm9.dataset_info(split)
    dg = dq.build(cfg, "digress", info)

    def rows(step, index, count):   # the global batch of a step, this process's rows only
        idx = np.random.default_rng((5, step)).choice(len(split), a.batch, replace=len(split) < a.batch)
        return dq.make_batch(split, idx[distributed.local_rows(a.batch, index, count)])

    batch_fn = distributed.per_process(rows)
    params = dq.init_params(dg, jax.random.key(0), rows(0, 0, 1))
    optimizer = dq.make_optimizer(cfg)

    def loss_fn(p, batch, k):
        return dg.training_loss(p, k, batch)

    tcfg = T.TrainConfig(num_steps=a.steps, log_every=1, progress=False)
    t0 = time.perf_counter()
    result = T.train(tcfg, loss_fn=loss_fn, params=params, optimizer=optimizer, batch_fn=batch_fn, key=1)
    wall = time.perf_counter() - t0
    num_params = int(sum(np.size(x) for x in jax.tree.leaves(params)))

    # What the compiled step all-reduces (XLA's optimized HLO).
    mesh = T.data_mesh()
    replicated = NamedSharding(mesh, P())
    step = jax.jit(functools.partial(T._train_step, loss_fn=loss_fn, optimizer=optimizer), out_shardings=replicated)
    acc = T._put(T._zero_acc(T._metric_names(loss_fn, params, rows(0, 0, 1), jax.random.key(1))), replicated)
    abstract = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)  # noqa: E731
    batch = T.shard_batch(batch_fn(0), mesh)
    hlo = step.lower(abstract(result.params), abstract(result.opt_state), abstract(acc), abstract(batch),
                     T._put(jax.random.key(1), replicated), 0).compile().as_text()
    step_bytes = collective_bytes(hlo)

    # An all-reduce of a gradient-sized float32 buffer over the same mesh, timed alone.
    per_device = jax.make_array_from_process_local_data(
        NamedSharding(mesh, P("data")), np.ones((jax.local_device_count(), num_params), np.float32))
    reduce = jax.jit(lambda x: jnp.sum(x, axis=0), out_shardings=replicated)
    reduce(per_device).block_until_ready()
    times = []
    for _ in range(a.reps):
        t = time.perf_counter()
        reduce(per_device).block_until_ready()
        times.append(time.perf_counter() - t)
    allreduce_s = float(np.median(times))
    losses = [row["loss"] for row in result.history if row["split"] == "train"]
    return {"processes": jax.process_count(), "devices_per_process": jax.local_device_count(),
            "devices": jax.device_count(), "global_batch": a.batch, "steps": a.steps,
            "steps_per_second": result.steps_per_second, "step_ms": 1e3 / result.steps_per_second,
            "train_wall_s_with_compile": wall, "allreduce_ms": 1e3 * allreduce_s,
            "allreduce_share": allreduce_s * result.steps_per_second,
            "allreduce_bytes_per_step": step_bytes["all-reduce"], "collective_bytes_per_step": step_bytes,
            "gradient_bytes": 4 * num_params, "num_params": num_params,
            "losses": losses, "final_loss": losses[-1]}


def _environment() -> dict:
    import jax
    return {"cpu_count": os.cpu_count(), "loadavg": list(os.getloadavg()), "jax": jax.__version__,
            "python": platform.python_version(), "host": platform.node(),
            "cpu_collectives": jax.config.jax_cpu_collectives_implementation}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parse(argv)
    if a.child_out:
        from experiments._lib import distributed
        out = measure(a)
        if distributed.is_main():
            pathlib.Path(a.child_out).write_text(json.dumps(out))
        return 0
    from experiments import launch
    print(f"Multi-process overhead check (NOT a speed-up claim: all processes share {os.cpu_count()} cores): "
          f"DiGress {a.model} model, global batch {a.batch}, {DEVICES} CPU devices, processes {a.processes}; "
          f"load average {os.getloadavg()}", flush=True)
    env_start = _environment()
    runs = []
    for n in a.processes:
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "out.json"
            cmd = [sys.executable, "-m", "benchmarks.scaling", *argv, "--child-out", str(path)]
            status = launch.run(cmd, n, DEVICES // n, timeout=a.timeout)
            if status != 0:
                raise SystemExit(f"the run with {n} processes failed (exit status {status})")
            runs.append(json.loads(path.read_text()))
        r = runs[-1]
        print(f"  {n} process(es) x {r['devices_per_process']} devices: {r['steps_per_second']:.3g} steps/s "
              f"({r['step_ms']:.1f} ms/step), all-reduce alone {r['allreduce_ms']:.2f} ms "
              f"= {100 * r['allreduce_share']:.1f}% of a step, {r['allreduce_bytes_per_step']:,} bytes all-reduced "
              f"per step (gradient: {r['gradient_bytes']:,} bytes; other collectives: "
              f"{ {k: v for k, v in r['collective_bytes_per_step'].items() if v and k != 'all-reduce'} }), "
              f"final loss {r['final_loss']:.6f}", flush=True)
    base = runs[0]["losses"]
    for r in runs:
        r["max_loss_difference"] = float(np.max(np.abs(np.asarray(r["losses"]) - np.asarray(base))))
    paper = _count_params(_config("paper"))
    result = {"command": "python -m benchmarks.scaling " + " ".join(argv), "quick": a.quick, "model": a.model,
              "label": "correctness and overhead check on one CPU machine (processes share the cores): not a "
                       "speed-up measurement",
              "runs": runs, "paper_model": {"num_params": paper, "gradient_bytes": 4 * paper},
              "environment": {"start": env_start, "end": _environment()}}
    diffs = ", ".join(f"{r['processes']} processes {r['max_loss_difference']:.2e}" for r in runs)
    print(f"  max |loss - loss with 1 process| over the steps: {diffs}")
    print(f"  paper-preset model: {paper:,} parameters = {4 * paper:,} gradient bytes all-reduced per step")
    from experiments._lib.train import save_json
    save_json(a.out, result)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
