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

**Against the PyTorch reference** (``--reference DIR``): DIR is a checkout of cvignac/DiGress
(commit 780242b) and ``--reference-python`` a Python with torch 2.x CPU, torch_geometric 2.3.1,
torchmetrics 0.11.4, pytorch_lightning 2.0.4, omegaconf 2.3.0, numpy<2 and setuptools<70 (rdkit,
hydra and wandb are not needed)::

    git clone https://github.com/cvignac/DiGress /work/ref/DiGress && git -C /work/ref/DiGress checkout 780242b
    python3.11 -m venv /work/ref/venv-torch
    /work/ref/venv-torch/bin/pip install torch==2.13.0 torch_geometric==2.3.1 torchmetrics==0.11.4 \
        pytorch_lightning==2.0.4 omegaconf==2.3.0 "numpy<2"
    /work/ref/venv-torch/bin/pip install --no-deps "setuptools<70"
    python -m benchmarks.digress_step --reference /work/ref/DiGress --reference-python /work/ref/venv-torch/bin/python

Two worker processes, 2 threads each and the tuned allocator settings below for both: one
builds the reference's own modules (``GraphTransformer``, ``PredefinedNoiseScheduleDiscrete``,
``MarginalUniformTransition``, ``ExtraFeatures``, ``ExtraMolecularFeatures``, the
``apply_noise`` / ``compute_extra_data`` / ``forward`` methods of its
``DiscreteDenoisingDiffusion``, ``TrainLossDiscrete``, ``torch.optim.AdamW(amsgrad=True)``) and
the other ours (the ``digress`` row of ``experiments.digress_qm9`` with 5 edge classes, as the
reference). Both read the same QM9 batches (5 edge classes, aromatic never set) from one file
and take turns running timed blocks (the order reversed every other round); the other waits
idle. Reported per configuration (paper model at batch 64 and 256, ``cpu`` preset dims at
batch 128): the ratio t(reference) / t(ours) per round (median, min, max), the same per phase
(noise + extra features, forward + loss, backward, optimizer: the reference timed between
its eager calls, ours as separately jitted pieces, backward = t(forward + backward) -
t(forward)), XLA's FLOP count of our step and the fraction of the measured float32 matmul
limit (a large ``jnp.matmul``) that each side reaches, our compile time; then, in fresh
processes, the peak resident memory of a process that builds the model and runs two steps, at
batch 256 and 1024 (skipped when the prediction from the smaller batch exceeds the available
memory). Sampling (``--compare-sampling``, the same configurations): the reference's reverse
step ``sample_p_zs_given_zt`` (network in eval mode, no autograd, called as its ``sample_batch``
loop calls it) against our jitted sampler (10 reverse steps per ``lax.scan`` call), in
alternating blocks; reported per reverse step, with the ratio's spread. Without ``--reference``
no reference is measured and none is printed.

Environment: on these virtual machines glibc's default allocator settings made a PyTorch step
25x slower; ``--allocator both`` (the default of a full run) measures in two child processes,
one with glibc's defaults and one with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1000000000000
MALLOC_ARENA_MAX=1``, and stores both. ``MALLOC_ARENA_MAX=1`` matters for XLA: a buffer larger than
a thread arena's heap (64 MiB), e.g. the step's temporary buffer, is ``mmap``-ed from a worker
thread's arena whatever ``MALLOC_MMAP_MAX_`` says and unmapped when freed, so every step
page-faults it in again (0.6 M faults and 1 s of system time per step at the paper model, batch
256); with one arena it stays in the heap. Load averages before and after are recorded: run it on an idle machine (the
ratios are taken within one process, so they suffer less from other load than the absolute
times).

    python -m benchmarks.digress_step                       # paper config, batch 64, both allocators
    python -m benchmarks.digress_step --batch-sizes 64,256 --modes digress,sympe,sympe_edges,noise
    python -m benchmarks.digress_step --quick               # tiny model, a few steps (smoke test)
    python -m benchmarks.digress_step --reference DIR --reference-python PY   # against PyTorch (above)

Writes results/benchmarks/digress_step.json (``--quick``: digress_step_quick.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from experiments._lib import host

ROOT = pathlib.Path(__file__).resolve().parents[1]

TUNED_MALLOC = dict(host.ENVIRONMENT)
PAPER_T = 500


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.digress_step", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny model, few steps: a smoke test")
    p.add_argument("--model", choices=("paper", "cpu", "demo"), default=None,
                   help="model sizes of that digress_qm9 preset (default: paper; demo with --quick)")
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
    g = p.add_argument_group("against the PyTorch reference")
    g.add_argument("--reference", default=None, metavar="DIR", help="checkout of cvignac/DiGress (780242b): "
                   "measure it side by side with ours")
    g.add_argument("--reference-python", default=None, metavar="PY",
                   help="Python of the reference's venv (default: DIR/../venv-torch/bin/python)")
    g.add_argument("--compare", default="paper:64,paper:256,cpu:128",
                   help="model:batch configurations timed side by side")
    g.add_argument("--memory", default="paper:256,paper:1024,cpu:256,cpu:1024",
                   help="model:batch configurations whose peak memory is measured (fresh processes); '' = none")
    g.add_argument("--compare-sampling", default="paper:64,paper:256,cpu:128",
                   help="model:batch configurations whose reverse (sampling) step is timed side by side; '' = none")
    g.add_argument("--compare-rounds", type=int, default=5, help="alternation rounds per configuration")
    g.add_argument("--compare-seconds", type=float, default=6.0,
                   help="target length of a timed block (steps per block = this / the reference's step time)")
    g.add_argument("--reference-omp-wait-policy", default="PASSIVE",
                   help="OMP_WAIT_POLICY of the reference worker ('' = libgomp's default, spinning): on a "
                        "machine shared with other jobs, spinning OpenMP threads made its step 10-25x slower")
    g.add_argument("--ours-dropout-rng", default="uniform,bits16",
                   help="our dropout_rng settings timed (one worker each; ratios per setting)")
    g.add_argument("--with-modes", action="store_true",
                   help="with --reference: also run the modes/sampling part (otherwise skipped)")
    a = p.parse_args(argv)
    q = a.quick
    a.model = a.model or ("demo" if q else "paper")
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
        for m, st in rows.items():
            extra = "" if m not in ratios else f" | x{st['ratio_to_' + a.modes[0]]['median']:.3f} vs {a.modes[0]}"
            print(f"  batch {B} {m:12s}: {st['median_s'] * 1e3:8.1f} ms/step (IQR {st['iqr_s'] * 1e3:.1f}) "
                  f"{st['molecules_per_s']:8.1f} mol/s{extra}", flush=True)
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


# ----------------------------------------------------------------------------- against the PyTorch reference

# Model sizes of the two configurations compared (the presets of experiments.digress_qm9; the
# reference's QM9-without-H input widths X 12, E 5, y 13 and outputs X 4, E 5, y 0).
COMPARE_MODELS = {
    "paper": dict(n_layers=9, dx=256, de=64, dy=64, n_head=8, mlp_X=256, mlp_E=128, mlp_y=128,
                  dim_ffX=256, dim_ffE=128, dim_ffy=2048),
    "cpu": dict(n_layers=4, dx=128, de=32, dy=32, n_head=8, mlp_X=256, mlp_E=128, mlp_y=128,
                dim_ffX=256, dim_ffE=128, dim_ffy=2048),
}
PHASES = ("noise_features", "forward", "backward", "optimizer")
LEARNING_RATE, WEIGHT_DECAY = 2e-4, 1e-12      # the reference's QM9 optimizer (no clipping)
THREADS = 2


def _pairs(text: str) -> list[tuple[str, int]]:
    out = []
    for item in filter(None, text.split(",")):
        model, _, batch = item.partition(":")
        if model not in COMPARE_MODELS or not batch.isdigit():
            raise SystemExit(f"bad configuration {item!r}: expected model:batch with model in {tuple(COMPARE_MODELS)}")
        out.append((model, int(batch)))
    return out


def _compare_batches(path: pathlib.Path, batch: int, num: int = 4, seed: int = 0) -> None:
    """``num`` QM9 training batches with DiGress's 5 edge classes, written to ``path`` (npz)."""
    from experiments.digress_qm9 import main as dq
    from experiments.digress_qm9 import qm9
    try:
        train = qm9.load_qm9("train")
    except (ImportError, FileNotFoundError):
        train = qm9.load_qm9("train", source=str(ROOT / dq.FIXTURE))
    rng = np.random.default_rng(seed + batch)
    idx = [rng.choice(len(train), batch, replace=len(train) < batch) for _ in range(num)]
    X = np.stack([qm9.node_one_hot(train.X[i]) for i in idx]).astype(np.float32)
    E = np.stack([qm9.edge_one_hot(train.E[i], train.mask[i], 5) for i in idx]).astype(np.float32)
    mask = np.stack([train.mask[i] for i in idx]).astype(bool)
    np.savez(path, X=X, E=E, node_mask=mask)


def _worker_env() -> dict:
    env = dict(os.environ)
    env.update(TUNED_MALLOC)
    env.update(OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS), PYTHONUNBUFFERED="1")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


class _Worker:
    """A worker process spoken to by JSON lines (answers are the stdout lines starting with ``@@``)."""

    def __init__(self, kind: str, python: str, extra: list[str], env: dict | None = None,
                 module: str = "benchmarks.digress_step"):
        """``python -m <module> --worker <kind> <extra>``: the module's ``main`` serves the worker."""
        self.kind = kind
        self.proc = subprocess.Popen([python, "-m", module, "--worker", kind, *extra], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env={**_worker_env(), **(env or {})},
                                     cwd=ROOT)

    def ask(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.kind} worker died (exit code {self.proc.wait()})")
            if line.startswith("@@"):
                answer = json.loads(line[2:])
                if "error" in answer:
                    raise RuntimeError(f"{self.kind} worker: {answer['error']}")
                return answer
            print(f"    [{self.kind}] {line.rstrip()}", flush=True)

    def close(self) -> None:
        try:
            self.ask(cmd="quit")
        except (RuntimeError, BrokenPipeError, json.JSONDecodeError):
            pass
        self.proc.wait(timeout=60)


def _ratio_stats(values) -> dict:
    return {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values)),
            "per_round": [float(v) for v in values]}


def _mem_available_gib() -> float:
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return float("inf")


def reference_python(ref_dir: str, python: str | None) -> str:
    """``python``, or by default the reference venv's beside its checkout: ``ref_dir/../venv-torch/bin/python``."""
    return python or str(pathlib.Path(ref_dir).parent / "venv-torch" / "bin" / "python")


def compare_with_reference(a: argparse.Namespace) -> dict:
    """Side-by-side timings and memory of the reference's step and ours (see the module docstring)."""
    ref_dir = str(pathlib.Path(a.reference).resolve())
    ref_python = reference_python(ref_dir, a.reference_python)
    ours_python = sys.executable
    ref_env = {"OMP_WAIT_POLICY": a.reference_omp_wait_policy} if a.reference_omp_wait_policy else {}
    out = {"reference_dir": ref_dir, "reference_python": ref_python, "threads": THREADS,
           "allocator": dict(TUNED_MALLOC), "reference_env": ref_env, "load_start": list(os.getloadavg()),
           "configurations": {}, "memory": {}}
    try:
        rev = subprocess.run(["git", "-C", ref_dir, "rev-parse", "HEAD"], capture_output=True, text=True)
        out["reference_commit"] = rev.stdout.strip() or None
    except OSError:
        out["reference_commit"] = None
    variants = [v for v in a.ours_dropout_rng.split(",") if v]
    sides = ["reference"] + [f"ours_{v}" for v in variants]
    out["sides"] = sides
    with tempfile.TemporaryDirectory() as tmp:
        workers = {"reference": _Worker("reference", ref_python, ["--reference", ref_dir], ref_env)}
        for v in variants:
            workers[f"ours_{v}"] = _Worker("ours", ours_python, [])
        ref = workers["reference"]
        ours = workers[sides[1]]
        try:
            out["matmul_gflops"] = {"ours_xla": ours.ask(cmd="matmul")["gflops"],
                                    "reference_torch": ref.ask(cmd="matmul")["gflops"]}
            limit = out["matmul_gflops"]["ours_xla"]
            out["versions"] = {"ours": ours.ask(cmd="versions"), "reference": ref.ask(cmd="versions")}
            print(f"  matmul limit: XLA {limit:.0f} GFLOP/s, torch {out['matmul_gflops']['reference_torch']:.0f} "
                  "GFLOP/s", flush=True)
            for model, B in _pairs(a.compare):
                name = f"{model}:{B}"
                path = pathlib.Path(tmp) / f"batches_{B}.npz"
                if not path.exists():
                    _compare_batches(path, B)
                setup = dict(cmd="setup", model=model, dims=COMPARE_MODELS[model], batches=str(path), T=PAPER_T,
                             warmup=2)
                s_ref = ref.ask(**setup)
                s_ours = {side: workers[side].ask(**setup, dropout_rng=side[len("ours_"):]) for side in sides[1:]}
                reps = max(1, int(round(a.compare_seconds / max(s_ref["step_s"], 1e-3))))
                print(f"  {name}: reference {s_ref['num_params']:,} parameters, first step {s_ref['step_s']:.2f}s; "
                      f"ours {s_ours[sides[1]]['num_params']:,} parameters, compile " +
                      ", ".join(f"{k} {v['compile_s']:.1f}s" for k, v in s_ours.items()) +
                      f"; {reps} steps per block", flush=True)
                step = {side: [] for side in sides}
                phases = {side: {p: [] for p in PHASES} for side in sides}
                for r in range(a.compare_rounds):
                    order = sides if r % 2 == 0 else sides[::-1]
                    for side in order:
                        ans = workers[side].ask(cmd="block", reps=reps)
                        step[side].append(float(np.median(ans["step_s"])))
                        for p in PHASES:
                            phases[side][p].append(float(np.median(ans["phases"][p])))
                    print(f"    round {r}: " + ", ".join(f"{side} {step[side][-1] * 1e3:.0f} ms" for side in sides) +
                          f"; load {os.getloadavg()[0]:.1f}", flush=True)
                flops = s_ours[sides[1]]["flops"]
                row = {"model": model, "batch": B, "steps_per_block": reps, "rounds": a.compare_rounds,
                       "ratio_reference_over_ours": {}, "phase_ratio_reference_over_ours": {},
                       "xla_flops_per_step": flops,
                       "compile": {k: {q: v[q] for q in ("lower_s", "compile_s")} for k, v in s_ours.items()},
                       "num_params": {"reference": s_ref["num_params"], "ours": s_ours[sides[1]]["num_params"]},
                       "load_end": list(os.getloadavg())}
                for side in sides[1:]:
                    row["ratio_reference_over_ours"][side] = _ratio_stats(
                        np.array(step["reference"]) / np.array(step[side]))
                    row["phase_ratio_reference_over_ours"][side] = {
                        p: _ratio_stats(np.array(phases["reference"][p]) / np.maximum(phases[side][p], 1e-9))
                        for p in PHASES}
                for side in sides:
                    med = float(np.median(step[side]))
                    row[side] = {"median_s": med, "min_s": float(np.min(step[side])),
                                 "max_s": float(np.max(step[side])), "per_block_s": step[side],
                                 "phases_median_s": {p: float(np.median(v)) for p, v in phases[side].items()},
                                 "molecules_per_s": B / med,
                                 "fraction_of_matmul_limit": (flops / med / 1e9 / limit) if flops else None}
                out["configurations"][name] = row
                for side in sides[1:]:
                    q = row["ratio_reference_over_ours"][side]
                    print(f"  {name}: reference {row['reference']['median_s'] * 1e3:.0f} ms, {side} "
                          f"{row[side]['median_s'] * 1e3:.0f} ms; reference / ours {q['median']:.2f} "
                          f"[{q['min']:.2f}, {q['max']:.2f}]; phases " +
                          ", ".join(f"{p} {row['phase_ratio_reference_over_ours'][side][p]['median']:.2f}"
                                    for p in PHASES), flush=True)
                for w in workers.values():
                    w.ask(cmd="release")
            out["sampling"] = _compare_sampling(a, ref, ours, pathlib.Path(tmp))
        finally:
            for w in workers.values():
                w.close()
        # Peak memory: fresh processes, one per side and configuration.
        for model, B in _pairs(a.memory):
            name = f"{model}:{B}"
            path = pathlib.Path(tmp) / f"batches_{B}.npz"
            if not path.exists():
                _compare_batches(path, B, num=2)
            row = {}
            for side, python, extra in (("reference", ref_python, ["--reference", ref_dir]),
                                        *((s, ours_python, []) for s in sides[1:])):
                smaller = [(b, r[side]["peak_rss_gib"]) for k, r in out["memory"].items()
                           if r.get(side, {}).get("peak_rss_gib") and k.startswith(model + ":")
                           for b in [int(k.split(":")[1])] if b < B]
                predicted = max((g * B / b for b, g in smaller), default=0.0)
                available = _mem_available_gib()
                if predicted > 0.85 * available:
                    row[side] = {"skipped": f"predicted {predicted:.1f} GiB (linear in the batch from the smaller "
                                            f"batch) > 85% of the {available:.1f} GiB available"}
                    print(f"  memory {name} {side}: skipped ({row[side]['skipped']})", flush=True)
                    continue
                w = _Worker("reference" if side == "reference" else "ours", python, extra,
                            ref_env if side == "reference" else None)
                try:
                    base = w.ask(cmd="rss")
                    w.ask(cmd="setup", model=model, dims=COMPARE_MODELS[model], batches=str(path), T=PAPER_T,
                          warmup=1, phases=False,
                          **({"dropout_rng": side[len("ours_"):]} if side.startswith("ours_") else {}))
                    peak = w.ask(cmd="rss")
                finally:
                    w.close()
                row[side] = {"peak_rss_gib": peak["peak_gib"], "rss_after_imports_gib": base["current_gib"],
                             "steps": 2}
                print(f"  memory {name} {side}: peak {peak['peak_gib']:.2f} GiB (after imports "
                      f"{base['current_gib']:.2f} GiB)", flush=True)
            out["memory"][name] = row
    out["load_end"] = list(os.getloadavg())
    return out


SAMPLE_STEPS = 10   # reverse steps per call of our sampler (a T = 10 schedule; a step's cost does not depend on T)


def _compare_sampling(a: argparse.Namespace, ref: _Worker, ours: _Worker, tmp: pathlib.Path) -> dict:
    """Reverse-step time of the reference's ``sample_p_zs_given_zt`` (eager, no autograd) and of
    our jitted sampler (``SAMPLE_STEPS`` steps per call), alternating timed blocks; no dropout
    in sampling, so one worker of ours."""
    out = {}
    for model, B in _pairs(a.compare_sampling):
        name = f"{model}:{B}"
        path = tmp / f"batches_{B}.npz"
        if not path.exists():
            _compare_batches(path, B)
        s_ref = ref.ask(cmd="sample_setup", model=model, dims=COMPARE_MODELS[model], batches=str(path), T=PAPER_T)
        s_ours = ours.ask(cmd="sample_setup", model=model, dims=COMPARE_MODELS[model], batch=B, steps=SAMPLE_STEPS)
        ref_step = float(np.median(ref.ask(cmd="sample_block", reps=2)["step_s"]))
        steps = max(SAMPLE_STEPS, int(round(a.compare_seconds / max(ref_step, 1e-3))))
        calls = max(1, steps // SAMPLE_STEPS)
        times = {"reference": [], "ours": []}
        for r in range(a.compare_rounds):
            for side in (("reference", "ours") if r % 2 == 0 else ("ours", "reference")):
                if side == "reference":
                    ans = ref.ask(cmd="sample_block", reps=calls * SAMPLE_STEPS)
                else:
                    ans = ours.ask(cmd="sample_block", reps=calls)
                times[side].append(float(np.median(ans["step_s"])))
        ratio = _ratio_stats(np.array(times["reference"]) / np.array(times["ours"]))
        out[name] = {"model": model, "batch": B, "rounds": a.compare_rounds,
                     "reverse_steps_per_block": calls * SAMPLE_STEPS, "ratio_reference_over_ours": ratio,
                     "compile_and_first_call_s": {"reference": s_ref["compile_and_first_call_s"],
                                                  "ours": s_ours["compile_and_first_call_s"]},
                     "load_end": list(os.getloadavg())}
        for side in times:
            med = float(np.median(times[side]))
            out[name][side] = {"median_s": med, "per_block_s": times[side], "molecules_per_s": B / med,
                               "full_sampling_s_at_T500": med * PAPER_T}
        print(f"  sampling {name}: reference {out[name]['reference']['median_s'] * 1e3:.0f} ms, ours "
              f"{out[name]['ours']['median_s'] * 1e3:.0f} ms per reverse step; reference / ours "
              f"{ratio['median']:.2f} [{ratio['min']:.2f}, {ratio['max']:.2f}]", flush=True)
        for w in (ref, ours):
            w.ask(cmd="release")
    return out


# ----------------------------------------------------------------------------- workers


def _rss() -> dict:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20          # KiB -> GiB
    current = None
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return {"peak_gib": peak, "current_gib": current}


def _worker(kind: str, argv: list[str], ours: type | None = None, reference: type | None = None) -> int:
    """Serve JSON-line commands on stdin (``rss``, ``quit``, and any method of the worker: setup,
    block, matmul, versions, release, ...). ``ours`` / ``reference``: the worker classes (default
    this module's); the reference's is built with the ``--reference`` directory."""
    if kind == "ours":
        impl = (ours or _OursWorker)()
    elif kind == "reference":
        impl = (reference or _ReferenceWorker)(argv[argv.index("--reference") + 1])
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        if cmd == "quit":
            print("@@" + json.dumps({}), flush=True)
            break
        try:
            if cmd == "rss":
                answer = _rss()
            else:
                answer = getattr(impl, cmd)(**msg)
        except Exception as e:  # noqa: BLE001 - reported to the parent, which raises
            import traceback
            traceback.print_exc(file=sys.stderr)
            answer = {"error": f"{type(e).__name__}: {e}"}
        print("@@" + json.dumps(answer), flush=True)
    return 0


class _OursWorker:
    """Our step: the ``digress`` row of experiments.digress_qm9 (5 edge classes, the reference's marginals)."""

    def __init__(self):
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        import jax
        jax.config.update("jax_enable_compilation_cache", False)
        self.state = None

    def versions(self) -> dict:
        import jax
        import jaxlib
        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "XLA_FLAGS": os.environ.get("XLA_FLAGS")}

    def matmul(self, size: int = 2048, reps: int = 5) -> dict:
        import jax
        import jax.numpy as jnp
        a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
        f = jax.jit(lambda x, y: x @ y)
        f(a, a).block_until_ready()
        best = min(_timed(lambda: f(a, a).block_until_ready()) for _ in range(reps))
        return {"gflops": 2 * size ** 3 / best / 1e9, "size": size}

    def setup(self, model: str, dims: dict, batches: str, T: int, warmup: int, phases: bool = True,
              dropout_rng: str = "uniform") -> dict:
        import jax
        import jax.numpy as jnp
        import optax

        from experiments.digress_qm9.diffusion.loss import cross_entropy_loss
        from experiments.digress_qm9.graph_transformer import count_params

        self.state = None
        data = np.load(batches)
        self.batches = [{"X": jnp.asarray(data["X"][i]), "E": jnp.asarray(data["E"][i]),
                         "node_mask": jnp.asarray(data["node_mask"][i])} for i in range(data["X"].shape[0])]
        den, dg = self._digress(dims, T, dropout_rng)
        opt = optax.chain(optax.scale_by_amsgrad(), optax.add_decayed_weights(WEIGHT_DECAY),
                          optax.scale(-LEARNING_RATE))
        b0 = self.batches[0]
        params = den.init(jax.random.key(0), b0["X"], b0["E"], b0["node_mask"])
        opt_state = opt.init(params)

        def step(params, opt_state, batch, key):
            (loss, _), grads = jax.value_and_grad(dg.training_loss, has_aux=True)(params, key, batch)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        key = jax.random.key(1)
        t0 = time.perf_counter()
        lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, b0, key)
        lower_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t0
        host.release_free_memory()   # as experiments._lib.train.StepRunner does after compiling
        try:
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            flops = float(cost.get("flops", 0.0)) or None
        except Exception:  # noqa: BLE001 - not every backend reports costs
            flops = None
        p_phase = jax.tree_util.tree_map(jnp.copy, params) if phases else None
        # the first call waited for, as experiments._lib.train does (its progress bar waits for it)
        params, opt_state, loss = jax.block_until_ready(compiled(params, opt_state, b0, key))
        t0 = time.perf_counter()
        for i in range(warmup):
            params, opt_state, loss = compiled(params, opt_state, self.batches[(i + 1) % len(self.batches)],
                                               jax.random.key(2 + i))
        jax.block_until_ready((params, loss))
        step_s = (time.perf_counter() - t0) / max(warmup, 1)
        self.state = {"step": compiled, "params": params, "opt_state": opt_state, "counter": 0}

        if phases:
            base = den.base
            B = b0["X"].shape[0]

            def noise_features(key, batch):
                k_t, k_noise = jax.random.split(key)
                t = jax.random.randint(k_t, (B,), dg.config.t_min_train, T + 1)
                X_t, E_t = dg.noise(k_noise, batch["X"], batch["E"], batch["node_mask"], t)
                y_t = jnp.zeros((B, 0), X_t.dtype)
                return base.network_inputs(X_t, E_t, y_t, batch["node_mask"], t.astype(jnp.float32) / T)

            def loss_fn(params, key, inputs, batch):
                X_logits, E_logits, _ = base.net(params["net"], key, *inputs, batch["node_mask"],
                                                 deterministic=False)
                return cross_entropy_loss(X_logits, E_logits, batch["X"], batch["E"], batch["node_mask"])[0]

            def update(params, opt_state, grads):
                updates, opt_state = opt.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), opt_state

            self.state["phases"] = {"noise_features": jax.jit(noise_features), "forward": jax.jit(loss_fn),
                                    "forward_backward": jax.jit(jax.value_and_grad(loss_fn)),
                                    "optimizer": jax.jit(update, donate_argnums=(0, 1))}
            self.state["p_phase"], self.state["o_phase"] = p_phase, opt.init(p_phase)
            self.block(reps=1)                        # compiles the phase functions
        return {"num_params": count_params(params), "lower_s": lower_s, "compile_s": compile_s, "flops": flops,
                "step_s": step_s}

    def block(self, reps: int) -> dict:
        import jax
        st = self.state
        times = []
        t0 = time.perf_counter()
        for _ in range(reps):
            st["counter"] += 1
            batch = self.batches[st["counter"] % len(self.batches)]
            st["params"], st["opt_state"], loss = st["step"](st["params"], st["opt_state"], batch,
                                                            jax.random.key(100 + st["counter"]))
            jax.block_until_ready(loss)
            t1 = time.perf_counter()
            times.append(t1 - t0)
            t0 = t1
        jax.block_until_ready(st["params"])
        ph = {p: [] for p in PHASES}
        f = st.get("phases")
        for i in range(reps if f else 0):
            batch = self.batches[i % len(self.batches)]
            key = jax.random.key(1000 + st["counter"] + i)
            t0 = time.perf_counter()
            inputs = jax.block_until_ready(f["noise_features"](key, batch))
            t1 = time.perf_counter()
            jax.block_until_ready(f["forward"](st["p_phase"], key, inputs, batch))
            t2 = time.perf_counter()
            _, grads = jax.block_until_ready(f["forward_backward"](st["p_phase"], key, inputs, batch))
            t3 = time.perf_counter()
            st["p_phase"], st["o_phase"] = jax.block_until_ready(f["optimizer"](st["p_phase"], st["o_phase"], grads))
            t4 = time.perf_counter()
            ph["noise_features"].append(t1 - t0)
            ph["forward"].append(t2 - t1)
            ph["backward"].append(max(t3 - t2 - (t2 - t1), 0.0))
            ph["optimizer"].append(t4 - t3)
        return {"step_s": times, "phases": ph}

    @staticmethod
    def _digress(dims: dict, T: int, dropout_rng: str = "uniform"):
        """Our ``digress`` row with the reference's 5 edge classes and marginals: (denoiser, DiGress)."""
        from experiments.digress_qm9.diffusion import DiffusionConfig, DiGress, qm9_reference
        from experiments.digress_qm9.diffusion import sympe as sympe_lib
        from experiments.digress_qm9.graph_transformer import GraphTransformerConfig

        netcfg = GraphTransformerConfig(**dims, out_dim_X=4, out_dim_E=5, dropout_rng=dropout_rng)
        den = sympe_lib.make_denoiser("none", netcfg)
        return den, DiGress(den, x_marginals=qm9_reference.ATOM_MARGINALS, e_marginals=qm9_reference.EDGE_MARGINALS,
                            n_nodes_histogram=qm9_reference.N_NODES_HISTOGRAM, config=DiffusionConfig(T=T))

    def sample_setup(self, model: str, dims: dict, batch: int, steps: int) -> dict:
        """``dg.sample`` of ``batch`` molecules with a schedule of ``steps`` reverse steps (one jitted
        ``lax.scan``; the cost of a step does not depend on T), compiled and run once."""
        import jax
        import jax.numpy as jnp
        self.state = None
        den, dg = self._digress(dims, steps)
        n = dg.n_max
        params = den.init(jax.random.key(0), jnp.zeros((1, n, 4)), jnp.zeros((1, n, n, 5)), jnp.ones((1, n), bool))
        t0 = time.perf_counter()
        jax.block_until_ready(dg.sample(params, jax.random.key(1), num_samples=batch))
        first_s = time.perf_counter() - t0
        self.state = {"dg": dg, "params": params, "batch": batch, "steps": steps, "counter": 0}
        return {"compile_and_first_call_s": first_s}

    def sample_block(self, reps: int) -> dict:
        """``reps`` sampling calls; the time per reverse step of each."""
        import jax
        st = self.state
        times = []
        for _ in range(reps):
            st["counter"] += 1
            t0 = time.perf_counter()
            jax.block_until_ready(st["dg"].sample(st["params"], jax.random.key(10 + st["counter"]),
                                                  num_samples=st["batch"]))
            times.append((time.perf_counter() - t0) / st["steps"])
        return {"step_s": times}

    def release(self) -> dict:
        self.state = None
        import gc
        gc.collect()
        return {}


class _ReferenceWorker:
    """The reference's own modules (cvignac/DiGress), built without Lightning's trainer, hydra or wandb."""

    def __init__(self, ref_dir: str):
        import types

        import torch
        torch.set_num_threads(THREADS)
        self.torch = torch
        stub = types.ModuleType("wandb")        # imported by the reference's modules; only used for logging
        stub.run = None
        stub.log = lambda *args, **kwargs: None
        sys.modules.setdefault("wandb", stub)
        sys.path[:0] = [ref_dir, os.path.join(ref_dir, "src")]
        self.ref_dir = ref_dir
        self.state = None

    def versions(self) -> dict:
        import torch
        return {"torch": torch.__version__, "threads": torch.get_num_threads()}

    def matmul(self, size: int = 2048, reps: int = 5) -> dict:
        torch = self.torch
        a = torch.randn(size, size)
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(reps))
        return {"gflops": 2 * size ** 3 / best / 1e9, "size": size}

    def setup(self, model: str, dims: dict, batches: str, T: int, warmup: int, phases: bool = True) -> dict:
        torch = self.torch
        from src.metrics.train_metrics import TrainLossDiscrete

        self.state = None
        torch.manual_seed(0)
        self.batches = self._load(batches)
        r = self._reference(dims, T)
        net = r.model
        r.train()
        loss_fn = TrainLossDiscrete(lambda_train=[5, 0])
        opt = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, amsgrad=True, weight_decay=WEIGHT_DECAY)
        self.state = {"r": r, "loss": loss_fn, "opt": opt, "counter": 0}
        self.block(reps=1)
        t0 = time.perf_counter()
        self.block(reps=warmup)
        step_s = (time.perf_counter() - t0) / max(warmup, 1)
        return {"num_params": sum(p.numel() for p in net.parameters()), "step_s": step_s}

    def step(self, phase) -> None:
        """One training step on the next batch, each of ``PHASES`` run inside the context manager
        ``phase(name)`` (``block`` times them, ``benchmarks.digress_profile`` labels them)."""
        st = self.state
        r, loss_fn, opt = st["r"], st["loss"], st["opt"]
        st["counter"] += 1
        X, E, y, node_mask = self.batches[st["counter"] % len(self.batches)]
        with phase("noise_features"):
            noisy = r.apply_noise(X, E, y, node_mask)
            extra = r.compute_extra_data(noisy)
        with phase("forward"):
            pred = r.forward(noisy, extra, node_mask)
            loss = loss_fn(masked_pred_X=pred.X, masked_pred_E=pred.E, pred_y=pred.y, true_X=X, true_E=E,
                           true_y=y, log=False)
        with phase("backward"):
            loss.backward()
        with phase("optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)

    def block(self, reps: int) -> dict:
        times, ph = [], {p: [] for p in PHASES}

        @contextlib.contextmanager
        def timed(name):
            t0 = time.perf_counter()
            yield
            ph[name].append(time.perf_counter() - t0)

        for _ in range(reps):
            self.step(timed)
            times.append(sum(ph[p][-1] for p in PHASES))
        return {"step_s": times, "phases": ph}

    def _load(self, batches: str) -> list:
        torch = self.torch
        data = np.load(batches)
        return [(torch.from_numpy(data["X"][i]), torch.from_numpy(data["E"][i]),
                 torch.zeros(data["X"].shape[1], 0), torch.from_numpy(data["node_mask"][i]))
                for i in range(data["X"].shape[0])]

    def _reference(self, dims: dict, T: int):
        """The reference's network, schedule, transitions and extra features, on an object carrying
        the attributes its ``DiscreteDenoisingDiffusion`` methods read."""
        import types

        torch = self.torch
        from src.diffusion.extra_features import ExtraFeatures
        from src.diffusion.extra_features_molecular import ExtraMolecularFeatures
        from src.diffusion.noise_schedule import MarginalUniformTransition, PredefinedNoiseScheduleDiscrete
        from src.diffusion_model_discrete import DiscreteDenoisingDiffusion
        from src.models.transformer_model import GraphTransformer

        # QM9infos (remove_h=True) of the reference: the values its molecular features read.
        infos = types.SimpleNamespace(max_n_nodes=9, remove_h=True, valencies=[4, 3, 2, 1],
                                      atom_weights={0: 12, 1: 14, 2: 16, 3: 19}, max_weight=150)
        hidden = {k: dims[k] for k in ("dx", "de", "dy", "n_head", "dim_ffX", "dim_ffE")}
        net = GraphTransformer(n_layers=dims["n_layers"], input_dims={"X": 12, "E": 5, "y": 13},
                               hidden_mlp_dims={"X": dims["mlp_X"], "E": dims["mlp_E"], "y": dims["mlp_y"]},
                               hidden_dims=hidden, output_dims={"X": 4, "E": 5, "y": 0},
                               act_fn_in=torch.nn.ReLU(), act_fn_out=torch.nn.ReLU())

        class Reference(torch.nn.Module):
            """The attributes the reference's DiscreteDenoisingDiffusion methods read."""
            apply_noise = DiscreteDenoisingDiffusion.apply_noise
            compute_extra_data = DiscreteDenoisingDiffusion.compute_extra_data
            forward = DiscreteDenoisingDiffusion.forward
            sample_p_zs_given_zt = DiscreteDenoisingDiffusion.sample_p_zs_given_zt
            device = torch.device("cpu")

        r = Reference()
        r.model = net
        r.T = T
        r.Xdim_output, r.Edim_output, r.ydim_output = 4, 5, 0
        r.noise_schedule = PredefinedNoiseScheduleDiscrete("cosine", timesteps=T)
        r.transition_model = MarginalUniformTransition(
            x_marginals=torch.tensor([0.7230, 0.1151, 0.1593, 0.0026]),
            e_marginals=torch.tensor([0.7261, 0.2384, 0.0274, 0.0081, 0.0]), y_classes=0)
        r.extra_features = ExtraFeatures("all", dataset_info=infos)
        r.domain_features = ExtraMolecularFeatures(dataset_infos=infos)
        return r

    def sample_setup(self, model: str, dims: dict, batches: str, T: int) -> dict:
        """The reference's reverse step, ``sample_p_zs_given_zt`` of its DiscreteDenoisingDiffusion
        (network in eval mode, no autograd), as its ``sample_batch`` loop calls it, from the first
        batch's graphs at t = T downwards."""
        torch = self.torch
        self.state = None
        torch.manual_seed(0)
        X, E, y, node_mask = self._load(batches)[0]
        r = self._reference(dims, T)
        r.eval()
        self.state = {"r": r, "start": (X, E, y, node_mask), "z": (X, E, y), "s": T - 1}
        t0 = time.perf_counter()
        self.sample_block(reps=1)
        return {"compile_and_first_call_s": time.perf_counter() - t0}

    def sample_block(self, reps: int) -> dict:
        torch = self.torch
        st = self.state
        r, (_, _, _, node_mask) = st["r"], st["start"]
        bs = node_mask.shape[0]
        times = []
        with torch.no_grad():
            for _ in range(reps):
                if st["s"] < 0:                      # back to t = T after a full trajectory
                    st["z"], st["s"] = st["start"][:3], r.T - 1
                X, E, y = st["z"]
                t0 = time.perf_counter()
                s_array = st["s"] * torch.ones((bs, 1))
                sampled, _ = r.sample_p_zs_given_zt(s_array / r.T, (s_array + 1) / r.T, X, E, y, node_mask)
                times.append(time.perf_counter() - t0)
                st["z"], st["s"] = (sampled.X, sampled.E, sampled.y), st["s"] - 1
        return {"step_s": times}

    def release(self) -> dict:
        self.state = None
        import gc
        gc.collect()
        return {}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


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
    if argv[:1] == ["--worker"]:
        return _worker(argv[1], argv[2:])
    a = _parse(argv)
    if a.child_out:
        pathlib.Path(a.child_out).write_text(json.dumps(measure(a)))
        return 0
    if a.reference and not a.with_modes:
        print(f"DiGress step against the PyTorch reference: {a.compare}; memory {a.memory or '-'}; load average "
              f"{os.getloadavg()}", flush=True)
    else:
        print(f"DiGress step benchmark: model {a.model}, batches {a.batch_sizes}, modes {a.modes}, allocator "
              f"{a.allocator}, load average {os.getloadavg()}", flush=True)
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("  WARNING: the machine is not idle; absolute times are unreliable (ratios less so)", flush=True)
    result = {"command": "python -m benchmarks.digress_step " + " ".join(argv), "quick": a.quick}
    if a.reference:
        result["reference"] = compare_with_reference(a)
    out = pathlib.Path(a.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    if not a.reference:
        print("  no PyTorch reference measured (pass --reference DIR to measure it side by side)", flush=True)
        result["reference"] = None
        if previous.get("reference"):   # keep the previous same-run comparison, saying so
            result["reference"] = previous["reference"]
            result["reference_command"] = previous.get("reference_command", previous.get("command"))
            result["reference_note"] = "reference comparison: copied from the previous result file, not re-measured"
    if a.reference and not a.with_modes:
        # The modes/sampling part was not re-measured: keep the previous file's, saying so.
        if previous.get("runs"):
            result["runs"] = previous["runs"]
            result["runs_command"] = previous.get("runs_command", previous.get("command"))
            result["runs_note"] = "modes and sampling: copied from the previous result file, not re-measured"
    elif a.allocator == "current":
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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
