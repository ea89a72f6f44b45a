"""Where the DiGress training step spends its time: ours beside the PyTorch reference, by pass and kind.

The step timed by :mod:`benchmarks.digress_step` (same worker processes, batches, 2 threads and
allocator settings), run for ``--steps`` steps under each side's own profiler after a warm-up:

* **ours**: a JAX profiler trace (its perfetto JSON) of the jitted step. Each XLA thunk's self
  time (nested thunks subtracted) is attributed, through the compiled HLO's metadata, to its
  **pass** (``forward``: under ``jvp``, i.e. noise, features, network and loss; ``backward``:
  under ``transpose(jvp)``; ``optimizer``: the rest) and its **kind** (``matmul``: a dot or a
  fusion holding one, with what XLA fused into it; ``random``: threefry rounds (an ``xor``) and
  the random draws; ``reduce``: a fusion holding a reduction; ``layout``: copies, transposes,
  concatenations; ``elementwise``: the rest), and to the model path it comes from (layer
  indices dropped, so the layers add up).
* **reference**: ``torch.profiler`` around the phases ``digress_step`` times (noise + extra
  features and forward + loss are ``forward`` here), each op's self CPU time attributed to its
  pass and a kind by its ``aten`` name (``framework``: the time outside ``aten`` ops, i.e.
  autograd nodes and Python).

Beside the profiles, each side's process CPU time per step (user and system) and minor page
faults over an unprofiled block of the same steps (``getrusage``): the system time of faulting
fresh memory in is in no kernel's trace (it was 1 s per step at paper:256 before
``MALLOC_ARENA_MAX=1``; see ``experiments._lib.host``).

Thunks of one XLA step can run on both threads at once, and a profiler slows each side a little,
so the per-kind sums are a breakdown, not the step time: the step time and the ratio are
``digress_step``'s. Writes results/benchmarks/digress_profile.json::

    python -m benchmarks.digress_profile --reference /work/ref/DiGress --reference-python /work/ref/venv-torch/bin/python
    python -m benchmarks.digress_profile --configs cpu:32 --steps 2     # ours only, small
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import pathlib
import re
import resource
import sys
import tempfile
import time
from typing import Any, Callable

from benchmarks import digress_step as ds

MODULE = "benchmarks.digress_profile"
PASSES = ("forward", "backward", "optimizer")
KINDS = ("matmul", "reduce", "elementwise", "layout", "random", "framework")
_RANDOM = re.compile(r"threefry|random_bits|_uniform|_gumbel|_randint|random_wrap|random_unwrap")
_LAYOUT_OPS = {"copy", "transpose", "concatenate", "bitcast", "reshape", "slice", "dynamic-slice",
               "dynamic-update-slice", "pad", "parameter", "broadcast", "tuple", "get-tuple-element"}
_CONTROL_OPS = {"while", "conditional", "call"}


# ----------------------------------------------------------------------------- ours: HLO + trace


def parse_hlo(text: str) -> tuple[dict, dict]:
    """``(instructions, computations)`` of an optimized HLO module's text: ``instructions[name] =
    (opcode, op_name metadata, called computation or None)``, ``computations[name] = {opcodes}``."""
    inst, comps, current = {}, {}, None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith("{"):
            m = re.match(r"^(?:ENTRY )?%?([\w.\-]+)", line)
            current = m.group(1) if m else None
            comps.setdefault(current, set())
            continue
        m = re.match(r"^\s+(?:ROOT )?%([\w.\-]+) = .*? ([a-z][\w\-]*)\(", line)
        if m and current is not None:
            name, op = m.group(1), m.group(2)
            comps[current].add(op)
            op_name = re.search(r'op_name="([^"]*)"', line)
            calls = re.search(r"calls=%([\w.\-]+)", line)
            inst[name] = (op, op_name.group(1) if op_name else "", calls.group(1) if calls else None)
    return inst, comps


def classify(name: str, inst: dict, comps: dict) -> tuple[str, str, str]:
    """``(pass, kind, model path)`` of the thunk ``name`` (see the module docstring)."""
    op, op_name, calls = inst[name]
    ops = comps.get(calls, set()) if calls else {op}
    pass_ = "backward" if "transpose(" in op_name else "forward" if "jvp(" in op_name else "optimizer"
    if ops & {"dot", "convolution"}:
        kind = "matmul"
    elif _RANDOM.search(op_name) or ops & {"rng", "rng-bit-generator", "xor"}:     # xor: threefry rounds
        kind = "random"
    elif ops & {"reduce", "reduce-window"}:
        kind = "reduce"
    elif ops <= _LAYOUT_OPS:
        kind = "layout"
    else:
        kind = "elementwise"
    m = re.search(r"GraphTransformer/(.*)", op_name)
    path = re.sub(r"tf_layers_\d+", "layer", m.group(1)) if m else re.sub(r"^jit\(step\)/", "", op_name)
    path = re.sub(r"^(transpose\()?jvp\(jit\(_training_loss\)\)\)?/", "", path)
    return pass_, kind, "/".join(path.split("/")[:3])


def self_times(events: list[dict], names: set) -> list[tuple[str, float]]:
    """``(name, self time in us)`` of the complete trace events named in ``names``: each event's
    duration minus that of the named events nested in it on the same thread."""
    by_thread = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and e.get("name") in names:
            by_thread[(e.get("pid"), e.get("tid"))].append(e)
    out = []
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []                                  # [event, child time]
        for e in evs:
            while stack and e["ts"] >= stack[-1][0]["ts"] + stack[-1][0]["dur"]:
                done, child = stack.pop()
                out.append((done["name"], done["dur"] - child))
            if stack:
                stack[-1][1] += e["dur"]
            stack.append([e, 0.0])
        out.extend((e["name"], e["dur"] - child) for e, child in stack)
    return out


def _table(times: list[tuple[str, str, str, float]], steps: int, top: int) -> dict:
    """ms per step by pass and kind, and the ``top`` largest (pass, path) entries."""
    by = {p: dict.fromkeys(KINDS, 0.0) for p in PASSES}
    paths = collections.Counter()
    for pass_, kind, path, us in times:
        by[pass_][kind] += us / 1e3 / steps
        paths[(pass_, path)] += us / 1e3 / steps
    total = sum(sum(k.values()) for k in by.values())
    return {"ms_per_step": by, "total_ms_per_step": total,
            "top": [{"pass": p, "where": w, "ms_per_step": ms} for (p, w), ms in paths.most_common(top)]}


def usage(run: Callable[[], Any], steps: int) -> dict:
    """Runs ``run()`` (``steps`` training steps) and returns per step: wall ms, the process's user
    and system CPU ms and its minor page faults (``getrusage``; a profiler trace of kernels does
    not show the system time of faulting fresh memory in)."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run()
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_ms_per_step": (t1 - t0) / steps * 1e3,
            "user_ms_per_step": (r1.ru_utime - r0.ru_utime) / steps * 1e3,
            "system_ms_per_step": (r1.ru_stime - r0.ru_stime) / steps * 1e3,
            "minor_faults_per_step": (r1.ru_minflt - r0.ru_minflt) / steps}


class _Ours(ds._OursWorker):
    def profile(self, steps: int, top: int = 15) -> dict:
        import jax
        st = self.state
        inst, comps = parse_hlo(st["step"].as_text())
        cpu = usage(lambda: self.block(reps=steps), steps)
        with tempfile.TemporaryDirectory() as tmp:
            with jax.profiler.trace(tmp, create_perfetto_trace=True):
                self.block(reps=steps)
            path = sorted(pathlib.Path(tmp).rglob("perfetto_trace.json.gz"))[-1]
            trace = json.loads(gzip.open(path).read())
        events = trace["traceEvents"] if isinstance(trace, dict) else trace
        times = [(*classify(n, inst, comps), us) for n, us in self_times(events, set(inst))
                 if inst[n][0] not in _CONTROL_OPS]
        return {**cpu, **_table(times, steps, top)}


# ----------------------------------------------------------------------------- reference: torch.profiler

_TORCH_MATMUL = {"mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "linear", "_mkldnn_linear", "mkldnn_linear"}
_TORCH_REDUCE = ("sum", "mean", "max", "min", "softmax", "norm", "var", "std", "logsumexp", "cumsum", "argmax",
                 "prod", "amax", "amin", "topk", "sort")
_TORCH_RANDOM = ("bernoulli", "uniform", "dropout", "rand", "multinomial", "normal")
_TORCH_LAYOUT = {"copy_", "contiguous", "clone", "cat", "stack", "t", "transpose", "permute", "expand", "view",
                 "reshape", "_reshape_alias", "index_select", "narrow", "slice", "select", "unsqueeze", "squeeze",
                 "as_strided", "empty", "empty_like", "empty_strided", "zeros", "zeros_like", "zero_", "fill_",
                 "resize_", "to", "_to_copy", "flatten", "unflatten", "split", "chunk", "repeat", "new_zeros",
                 "ones", "ones_like", "full", "detach", "alias", "lift_fresh", "_unsafe_view", "index", "gather",
                 "scatter", "index_put_", "masked_fill", "masked_fill_", "where", "triu", "diag_embed", "diagonal"}


def torch_kind(name: str) -> str:
    """The kind of a profiler event by its name: ``aten::<op>`` by op, else ``framework``."""
    if not name.startswith("aten::"):
        return "framework"
    op = name[6:]
    if op in _TORCH_MATMUL:
        return "matmul"
    if any(r in op for r in _TORCH_RANDOM):
        return "random"
    if op in _TORCH_LAYOUT:
        return "layout"
    if any(r in op for r in _TORCH_REDUCE):
        return "reduce"
    return "elementwise"


class _Reference(ds._ReferenceWorker):
    def profile(self, steps: int, top: int = 15) -> dict:
        from torch.profiler import ProfilerActivity, profile, record_function
        cpu = usage(lambda: self.block(reps=steps), steps)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                self.step(lambda name: record_function("@" + name))
        times = []
        for e in prof.events():
            if e.name.startswith("@"):
                continue
            parent = e.cpu_parent
            while parent is not None and not parent.name.startswith("@"):
                parent = parent.cpu_parent
            if parent is None:
                continue
            pass_ = "forward" if parent.name == "@noise_features" else parent.name[1:]
            times.append((pass_, torch_kind(e.name), e.name, e.self_cpu_time_total))
        return {**cpu, **_table(times, steps, top)}


def _serve(kind: str, argv: list[str]) -> int:
    return ds._worker(kind, argv, ours=_Ours, reference=_Reference)


# ----------------------------------------------------------------------------- driver


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m " + MODULE, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="paper:64,cpu:128", help="model:batch configurations profiled")
    p.add_argument("--steps", type=int, default=3, help="profiled steps per side and configuration")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    p.add_argument("--dropout-rng", default="bits16", choices=("uniform", "bits16"), help="our dropout masks")
    p.add_argument("--top", type=int, default=15, help="largest model paths / ops kept per side")
    p.add_argument("--reference", default=None, metavar="DIR", help="checkout of cvignac/DiGress (780242b)")
    p.add_argument("--reference-python", default=None, metavar="PY",
                   help="Python of the reference's venv (default: DIR/../venv-torch/bin/python)")
    p.add_argument("--arena-max", type=int, default=int(ds.TUNED_MALLOC["MALLOC_ARENA_MAX"]),
                   help="MALLOC_ARENA_MAX of both workers (default: digress_step's; 16 = glibc's own limit on "
                        "2 cores, one arena per thread: the per-step page faults of XLA's temporary buffer)")
    p.add_argument("--out", default=str(ds.ROOT / "results" / "benchmarks" / "digress_profile.json"))
    a = p.parse_args(argv)
    a.configs = ds._pairs(a.configs)
    if a.steps < 1:
        p.error(f"--steps must be at least 1, got {a.steps}")
    if a.arena_max < 1:
        p.error(f"--arena-max must be at least 1, got {a.arena_max}")
    return a


def _print(side: str, res: dict) -> None:
    print(f"  {side}: step {res['wall_ms_per_step']:.0f} ms (CPU: user {res['user_ms_per_step']:.0f} ms, system "
          f"{res['system_ms_per_step']:.0f} ms, {res['minor_faults_per_step']:.0f} page faults); profiled "
          f"{res['total_ms_per_step']:.0f} ms / step")
    for pass_ in PASSES:
        cells = ", ".join(f"{k} {v:.0f}" for k, v in res["ms_per_step"][pass_].items() if v >= 0.5)
        print(f"    {pass_:9s} {cells}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _serve(argv[1], argv[2:])
    a = _parse(argv)
    print(f"DiGress step profile: {a.configs}, {a.steps} steps, load average {os.getloadavg()}", flush=True)
    arenas = {"MALLOC_ARENA_MAX": str(a.arena_max)}
    out = {"command": f"python -m {MODULE} " + " ".join(argv), "steps": a.steps, "dropout_rng": a.dropout_rng,
           "threads": ds.THREADS, "allocator": {**ds.TUNED_MALLOC, **arenas}, "load_start": list(os.getloadavg()),
           "configurations": {}}
    ref_dir = str(pathlib.Path(a.reference).resolve()) if a.reference else None
    ref_python = ds.reference_python(ref_dir, a.reference_python) if a.reference else None

    def start() -> dict:
        workers = {"ours": ds._Worker("ours", sys.executable, [], arenas, module=MODULE)}
        if a.reference:
            workers["reference"] = ds._Worker("reference", ref_python, ["--reference", ref_dir],
                                              {"OMP_WAIT_POLICY": "PASSIVE", **arenas}, module=MODULE)
        return workers

    with tempfile.TemporaryDirectory() as tmp:
        for model, B in a.configs:
            name = f"{model}:{B}"
            path = pathlib.Path(tmp) / f"batches_{B}.npz"
            if not path.exists():
                ds._compare_batches(path, B)
            print(f"{name}", flush=True)
            entry = out["configurations"][name] = {}
            # fresh workers per configuration: a profiler trace leaves tracing costs in the process
            # (they slowed the next configuration's unprofiled steps by 10-35%)
            workers = start()
            try:
                if "versions" not in out:
                    out["versions"] = {side: w.ask(cmd="versions") for side, w in workers.items()}
                for side, w in workers.items():
                    setup = dict(cmd="setup", model=model, dims=ds.COMPARE_MODELS[model], batches=str(path),
                                 T=ds.PAPER_T, warmup=a.warmup, phases=False)
                    if side == "ours":
                        setup["dropout_rng"] = a.dropout_rng
                    w.ask(**setup)
                    entry[side] = w.ask(cmd="profile", steps=a.steps, top=a.top)
                    _print(side, entry[side])
            finally:
                for w in workers.values():
                    w.close()
    out["load_end"] = list(os.getloadavg())
    path = pathlib.Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
