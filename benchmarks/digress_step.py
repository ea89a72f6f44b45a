"""Throughput of DiGress on QM9 with and without SymPE: training steps and sampling.

At the paper configuration (9 layers, dx 256, de 64, dy 64: 8.2 M parameters; T = 500), with
exactly the model, loss and optimizer ``python -m experiments.digress_qm9`` trains:

* **Training step** (noise, extra features, SymPE encoding, forward, loss, backward,
  AMSGrad update; one jitted function with donated buffers), batch 64 by default (``--batch-sizes
  64,256`` adds 256). After a warm-up, the modes are timed in alternation (``--rounds`` rounds,
  the order reversed every other round, ``--reps`` steps per block), so slow drifts of the
  machine hit every mode alike. Reported: median and IQR of the per-step time per mode,
  molecules/s, and the SymPE overhead as the median over rounds of the per-round ratio
  ``t(sympe) / t(digress)`` (target: at most 1.10).
* **Sampling**: one reverse step (denoiser + posterior + categorical draw) is what a T-step
  sample repeats T times, so ``dg.sample`` is timed with a schedule of ``--sample-steps`` steps
  (the per-step cost does not depend on T) and scaled to T = 500: molecules/s of a full
  T = 500 sampling at ``--sample-batch`` molecules (``--full-sampling`` also times one real
  T = 500 run).

The reference PyTorch DiGress on this CPU (``reference/ecosystem.md``: 2 threads, allocator
settings below) takes 0.674 s per step at batch 64 and 2.81 s at 256; those numbers are stored
beside ours for comparison, not re-measured.

Environment: on these virtual machines glibc's default allocator settings made a PyTorch step
25x slower; ``--allocator both`` (the default of a full run) measures in two child processes,
one with glibc's defaults and one with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1000000000000``,
and stores both. Load averages before and after are recorded: run it on an idle machine (the
ratios are taken within one process, so they suffer less from other load than the absolute
times).

    python -m benchmarks.digress_step                       # paper config, batch 64, both allocators
    python -m benchmarks.digress_step --batch-sizes 64,256 --modes digress,sympe,sympe_edges,noise
    python -m benchmarks.digress_step --quick               # tiny model, a few steps (smoke test)

Writes results/benchmarks/digress_step.json (``--quick``: digress_step_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]

TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "1000000000000"}
REFERENCE_PYTORCH_S_PER_STEP = {"64": 0.674, "256": 2.81, "1024": 10.55}
PAPER_T = 500


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.digress_step", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny model, few steps: a smoke test")
    p.add_argument("--model", choices=("paper", "cpu", "smoke"), default=None,
                   help="model sizes of that digress_qm9 preset (default: paper; smoke with --quick)")
    p.add_argument("--batch-sizes", default=None, help="comma-separated (default 64; 8 with --quick)")
    p.add_argument("--modes", default="digress,sympe", help="rows of digress_qm9 to time (first = baseline)")
    p.add_argument("--rounds", type=int, default=None, help="alternation rounds (default 7; 2 with --quick)")
    p.add_argument("--reps", type=int, default=None, help="steps per timed block (default 3; 2 with --quick)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per mode after compiling")
    p.add_argument("--sample-batch", type=int, default=None, help="molecules per sampling call (default 64)")
    p.add_argument("--sample-steps", type=int, default=None, help="reverse steps timed (default 20; 2 with --quick)")
    p.add_argument("--full-sampling", action="store_true", help="also time one full T = 500 sampling per mode")
    p.add_argument("--allocator", choices=("current", "both"), default=None,
                   help="both: two child processes, glibc defaults vs tuned (default both; current with --quick)")
    p.add_argument("--out", default=None, help="output JSON (default results/benchmarks/digress_step[_quick].json)")
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    q = a.quick
    a.model = a.model or ("smoke" if q else "paper")
    a.batch_sizes = [int(b) for b in (a.batch_sizes or ("8" if q else "64")).split(",")]
    a.modes = a.modes.split(",")
    a.rounds = a.rounds or (2 if q else 7)
    a.reps = a.reps or (2 if q else 3)
    a.sample_batch = a.sample_batch or (8 if q else 64)
    a.sample_steps = a.sample_steps or (2 if q else 20)
    a.allocator = a.allocator or ("current" if q else "both")
    a.out = a.out or str(ROOT / "results" / "benchmarks" / ("digress_step_quick.json" if q else "digress_step.json"))
    return a


def _stats(times) -> dict:
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return {"median_s": float(med), "iqr_s": float(q3 - q1), "min_s": float(np.min(times)), "n": len(times)}


def _environment() -> dict:
    import jax
    return {"MALLOC_MMAP_MAX_": os.environ.get("MALLOC_MMAP_MAX_"),
            "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS"), "cpu_count": os.cpu_count(), "loadavg": list(os.getloadavg()),
            "device": jax.devices()[0].platform, "device_kind": jax.devices()[0].device_kind,
            "jax": jax.__version__, "python": platform.python_version(), "host": platform.node()}


def _batches(num: int, size: int, seed: int = 0):
    """QM9 training molecules (the installed data, else the test fixture), as dense batches."""
    from experiments.digress_qm9 import main as dq
    from experiments.digress_qm9 import qm9
    try:
        train = qm9.load_qm9("train")
    except (ImportError, FileNotFoundError):
        train = qm9.load_qm9("train", source=str(ROOT / dq.FIXTURE))
    rng = np.random.default_rng(seed)
    info = qm9.dataset_info(train)
    return info, [dq.make_batch(train, rng.choice(len(train), size, replace=len(train) < size)) for _ in range(num)]


def measure(a: argparse.Namespace) -> dict:
    """All timings in this process."""
    import dataclasses

    import jax
    import optax

    from experiments.digress_qm9 import main as dq
    from experiments.digress_qm9.graph_transformer import count_params

    cfg = dataclasses.replace(dq.PRESETS[a.model], T=PAPER_T)
    env_start = _environment()
    out = {"model": a.model, "T": cfg.T, "modes": a.modes, "train": {}, "sampling": {}}
    info, _ = _batches(1, 2)

    def make_step(dg, opt):
        def step(params, opt_state, batch, key):
            (loss, _), grads = jax.value_and_grad(dg.training_loss, has_aux=True)(params, key, batch)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss
        return jax.jit(step, donate_argnums=(0, 1))

    # ---- training steps
    for B in a.batch_sizes:
        _, batches = _batches(4, B, seed=B)
        batches = [jax.device_put(b) for b in batches]
        state, compile_s = {}, {}
        for mode in a.modes:
            dg = dq.build(cfg, mode, info)
            params = dq.init_params(dg, jax.random.key(0), batches[0])
            opt = dq.make_optimizer(cfg)
            step = make_step(dg, opt)
            opt_state = opt.init(params)
            t0 = time.perf_counter()
            params, opt_state, loss = step(params, opt_state, batches[0], jax.random.key(1))
            jax.block_until_ready(loss)
            compile_s[mode] = time.perf_counter() - t0
            for i in range(a.warmup):
                params, opt_state, loss = step(params, opt_state, batches[i % 4], jax.random.key(2 + i))
            jax.block_until_ready(params)
            state[mode] = [step, params, opt_state, count_params(params)]
            print(f"  batch {B} {mode}: compiled + first step {compile_s[mode]:.1f}s "
                  f"({state[mode][3]:,} parameters)", flush=True)
        per_step = {m: [] for m in a.modes}
        ratios = {m: [] for m in a.modes[1:]}
        counter = 0
        for r in range(a.rounds):
            order = a.modes if r % 2 == 0 else a.modes[::-1]
            this_round = {}
            for mode in order:
                step, params, opt_state, _ = state[mode]
                t0 = time.perf_counter()
                for i in range(a.reps):
                    counter += 1
                    params, opt_state, loss = step(params, opt_state, batches[counter % 4],
                                                   jax.random.key(100 + counter))
                jax.block_until_ready((params, loss))
                dt = (time.perf_counter() - t0) / a.reps
                state[mode][1], state[mode][2] = params, opt_state
                per_step[mode].append(dt)
                this_round[mode] = dt
            for m in a.modes[1:]:
                ratios[m].append(this_round[m] / this_round[a.modes[0]])
        rows = {}
        for m in a.modes:
            st = _stats(per_step[m])
            st.update(molecules_per_s=B / st["median_s"], compile_and_first_step_s=compile_s[m],
                      num_params=state[m][3], per_block_s=per_step[m])
            if m in ratios:
                st["ratio_to_" + a.modes[0]] = {"median": float(np.median(ratios[m])),
                                                "min": float(np.min(ratios[m])), "max": float(np.max(ratios[m])),
                                                "per_round": ratios[m]}
            rows[m] = st
        out["train"][str(B)] = rows
        ref = REFERENCE_PYTORCH_S_PER_STEP.get(str(B)) if a.model == "paper" else None
        for m, st in rows.items():
            extra = "" if m not in ratios else f" | x{st['ratio_to_' + a.modes[0]]['median']:.3f} vs {a.modes[0]}"
            print(f"  batch {B} {m:12s}: {st['median_s'] * 1e3:8.1f} ms/step (IQR {st['iqr_s'] * 1e3:.1f}) "
                  f"{st['molecules_per_s']:8.1f} mol/s{extra}" + (f" | PyTorch reference {ref} s" if ref else ""),
                  flush=True)
        del state

    # ---- sampling
    scfg = dataclasses.replace(cfg, T=a.sample_steps)
    samplers = {}
    for mode in a.modes:
        dg = dq.build(scfg, mode, info)
        params = dq.init_params(dg, jax.random.key(0), _batches(1, 2)[1][0])
        t0 = time.perf_counter()
        jax.block_until_ready(dg.sample(params, jax.random.key(1), num_samples=a.sample_batch))
        samplers[mode] = (dg, params, time.perf_counter() - t0)
    times = {m: [] for m in a.modes}
    for r in range(a.rounds):
        for mode in (a.modes if r % 2 == 0 else a.modes[::-1]):
            dg, params, _ = samplers[mode]
            t0 = time.perf_counter()
            jax.block_until_ready(dg.sample(params, jax.random.key(10 + r), num_samples=a.sample_batch))
            times[mode].append((time.perf_counter() - t0) / a.sample_steps)
    for mode in a.modes:
        st = _stats(times[mode])
        full_s = st["median_s"] * PAPER_T
        st.update(batch=a.sample_batch, steps_timed=a.sample_steps, per_step_s=st["median_s"],
                  full_sampling_s_extrapolated=full_s, molecules_per_s_extrapolated=a.sample_batch / full_s,
                  compile_and_first_call_s=samplers[mode][2])
        if a.full_sampling:
            dg_full = dq.build(cfg, mode, info)
            params = samplers[mode][1]
            jax.block_until_ready(dg_full.sample(params, jax.random.key(0), num_samples=a.sample_batch))
            t0 = time.perf_counter()
            jax.block_until_ready(dg_full.sample(params, jax.random.key(1), num_samples=a.sample_batch))
            st["full_sampling_s_measured"] = time.perf_counter() - t0
            st["molecules_per_s_measured"] = a.sample_batch / st["full_sampling_s_measured"]
        out["sampling"][mode] = st
        print(f"  sampling {mode:12s}: {st['per_step_s'] * 1e3:8.1f} ms/reverse step at batch {a.sample_batch} -> "
              f"{st['molecules_per_s_extrapolated']:.2f} mol/s for T = {PAPER_T}", flush=True)
    base = a.modes[0]
    for m in a.modes[1:]:
        out["sampling"][m]["ratio_to_" + base] = out["sampling"][m]["per_step_s"] / out["sampling"][base]["per_step_s"]
    out["environment"] = {"start": env_start, "end": _environment()}
    return out


def _child(a: argparse.Namespace, argv: list[str], env_update: dict, drop: tuple[str, ...]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_update)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "out.json"
        cmd = [sys.executable, "-m", "benchmarks.digress_step", *argv, "--allocator", "current",
               "--child-out", str(path)]
        subprocess.run(cmd, env=env, check=True, cwd=ROOT)
        return json.loads(path.read_text())


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = _parse(argv)
    if a.child_out:
        pathlib.Path(a.child_out).write_text(json.dumps(measure(a)))
        return 0
    print(f"DiGress step benchmark: model {a.model}, batches {a.batch_sizes}, modes {a.modes}, allocator {a.allocator}"
          f", load average {os.getloadavg()}", flush=True)
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("  WARNING: the machine is not idle; absolute times are unreliable (ratios less so)", flush=True)
    result = {"command": "python -m benchmarks.digress_step " + " ".join(argv), "quick": a.quick,
              "reference_pytorch_s_per_step_paper_config": REFERENCE_PYTORCH_S_PER_STEP,
              "reference_note": "PyTorch 2.13 CPU, 2 threads, tuned allocator, random QM9-like batches "
                                "(reference/ecosystem.md); not measured by this script"}
    if a.allocator == "current":
        label = "tuned" if all(os.environ.get(k) == v for k, v in TUNED_MALLOC.items()) else "as_launched"
        result["runs"] = {label: measure(a)}
    else:
        strip = []
        for i, x in enumerate(argv):   # drop "--allocator X" / "--allocator=X"; children get "current"
            if x.startswith("--allocator=") or x == "--allocator" or (i and argv[i - 1] == "--allocator"):
                continue
            strip.append(x)
        result["runs"] = {}
        for label, update, drop in (("glibc_default", {}, tuple(TUNED_MALLOC)), ("tuned", TUNED_MALLOC, ())):
            print(f"--- allocator: {label}", flush=True)
            result["runs"][label] = _child(a, strip, update, drop)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
