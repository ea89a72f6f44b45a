"""Training steps per second of the graph autoencoder at the ``paper`` preset, K updates per call.

The ``paper`` preset of ``python -m experiments.graph_autoencoder`` trains on one graph per
update (batch 1, messages along all pairs, latent 8) for 500,000 updates: a small model whose
step is dominated by the host's per-call dispatch cost. ``--steps-per-call K`` runs K updates
per compiled call (``experiments._lib.train``, a ``jax.lax.scan`` over K stacked batches and
keys; the same updates as K single calls, tested). This benchmark measures what the trainer
does per update, for K = 1, 10, 100 (``--steps-per-call``): the experiment's own batches
(``batch_fn``, built on the host), loss, optimizer and jitted calls (``train.StepRunner``, the
object ``train`` calls), and the divergence check one call late (``train.DivergenceGuard``);
evaluation, logging and checkpoints are left out (the evaluation is timed separately for the
projection below). Rows: ``none`` (no symmetry breaking: the reference's architecture) and
``sympe`` (``--rows``).

**Against the EGNN reference** (``--reference DIR``): DIR is a copy of vgsatorras/egnn
(commit e9ca6c0) and ``--reference-python`` a Python with torch 2.x CPU, networkx and matplotlib
(the reference's ``graph.py`` and ``eval.py`` import them)::

    git clone https://github.com/vgsatorras/egnn ../egnn && git -C ../egnn checkout e9ca6c0
    ../venv-torch/bin/pip install torch networkx matplotlib
    python -m benchmarks.graph_ae_step --reference ../egnn --reference-python ../venv-torch/bin/python

The reference worker runs the body of the training loop of the reference's ``main_ae.py``
(``main_ae.py`` itself parses its arguments and builds its datasets at import, so its loop body
is run on the reference's own modules): ``graph.get_dense_graph(store=True)``, ``zero_grad``,
the model's forward, ``losess.vae_loss``, backward, ``Adam.step`` (lr 1e-4, weight decay 1e-16,
its defaults) and the per-step bookkeeping of that loop (``loss.item()``,
``eval.adjacency_error``, the edge counts and the latent magnitude), for two of its models
with its default sizes: ``ae`` (its GNN autoencoder, 4 layers, width 64, latent 8, no input
noise: the architecture of our ``none`` row) and ``ae_egnn`` (its EGNN autoencoder, the default
``--model`` of ``main_ae.py``). Its graphs are our ``paper`` preset's first 1000 training graphs
(the benchmark's Erdos-Renyi graphs, identical to the reference's own), turned into its
``graph.Graph`` objects with its ``networkx2graph`` after ``to_directed()``, as its dataset
does; every graph's dense form is built and stored once before timing, as after the
reference's first epoch.

How it measures (the machinery of ``benchmarks/digress_step.py``, imported): one worker
process per side (ours in this Python, the reference's in its own), each with 2 threads and
the tuned glibc allocator settings; the workers take turns running timed blocks of about
``--block-seconds`` (a multiple of 100 updates for ours, so every K runs whole calls), the
order reversed every other round, the others waiting idle. Per side: median s / update over
the rounds, updates/s, and per round the ratio t(reference) / t(ours) (median, min, max).
Also recorded: our compile time per K (the first call), the time of one evaluation (500
validation graphs) and a **projection** of the wall time of the full ``paper`` preset
(500,000 updates plus its 100 evaluations) from the measured rates; not a measured run.
The reference's OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, as in the DiGress
comparison). Without ``--reference`` no reference is measured and none is printed.

    python -m benchmarks.graph_ae_step                                     # ours only, K = 1, 10, 100
    python -m benchmarks.graph_ae_step --reference DIR --reference-python PY
    python -m benchmarks.graph_ae_step --quick                             # a smoke test

Writes results/benchmarks/graph_ae_step.json (``--quick``: graph_ae_step_quick.json), with the
command, the environment and the load average at the start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import digress_step as ds

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULE = "benchmarks.graph_ae_step"
PRESET = "paper"
REFERENCE_MODELS = ("ae", "ae_egnn")
REFERENCE_GRAPHS = 1000
# main_ae.py's defaults: --nf 64 --emb_nf 8 --K 8 --n_layers 4 --attention 0 --noise_dim 0 --reg 1e-3
# --clamp 1 --lr 1e-4 --weight_decay 1e-16
REFERENCE_ARGS = {"nf": 64, "emb_nf": 8, "K": 8, "n_layers": 4, "attention": 0, "noise_dim": 0, "reg": 1e-3,
                  "clamp": 1, "lr": 1e-4, "weight_decay": 1e-16}


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.graph_ae_step", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps-per-call", default="1,10,100", help="K values timed (each must divide 100)")
    p.add_argument("--rows", default="none,sympe", help="rows of experiments.graph_autoencoder timed")
    p.add_argument("--rounds", type=int, default=None, help="alternation rounds (default 5; 2 with --quick)")
    p.add_argument("--block-seconds", type=float, default=None, help="target length of a timed block (default 3)")
    p.add_argument("--quick", action="store_true", help="short blocks, two rounds: a smoke test")
    p.add_argument("--out", default=None, help="output JSON (default results/benchmarks/graph_ae_step[_quick].json)")
    g = p.add_argument_group("against the EGNN reference")
    g.add_argument("--reference", default=None, metavar="DIR", help="copy of vgsatorras/egnn (e9ca6c0)")
    g.add_argument("--reference-python", default=None, metavar="PY",
                   help="Python with torch, networkx, matplotlib (default: DIR/../venv-torch/bin/python)")
    g.add_argument("--reference-models", default=",".join(REFERENCE_MODELS),
                   help="main_ae.py --model values timed (the first is the one the ratios are taken against)")
    g.add_argument("--reference-omp-wait-policy", default="PASSIVE",
                   help="OMP_WAIT_POLICY of the reference worker ('' = libgomp's default)")
    a = p.parse_args(argv)
    a.steps_per_call = [int(k) for k in a.steps_per_call.split(",")]
    if any(k < 1 or 100 % k for k in a.steps_per_call):
        p.error("--steps-per-call: every K must divide 100 (timed blocks are whole multiples of 100 updates)")
    a.rows = a.rows.split(",")
    a.reference_models = [m for m in a.reference_models.split(",") if m]
    if any(m not in REFERENCE_MODELS for m in a.reference_models):
        p.error(f"--reference-models: choose from {REFERENCE_MODELS}")
    a.rounds = a.rounds or (2 if a.quick else 5)
    a.block_seconds = a.block_seconds or (0.5 if a.quick else 3.0)
    a.out = a.out or str(ROOT / "results" / "benchmarks" / ("graph_ae_step_quick.json" if a.quick
                                                             else "graph_ae_step.json"))
    return a


# ----------------------------------------------------------------------------- workers


class _Ours:
    """Our training updates: ``experiments.graph_autoencoder`` at the paper preset, through the
    trainer's ``StepRunner`` and ``DivergenceGuard``, K updates per call."""

    def __init__(self):
        import jax
        jax.config.update("jax_enable_compilation_cache", False)     # compile times as a user sees them
        from experiments.graph_autoencoder import main as ga
        self.ga = ga
        self.data = ga.load_splits(ga.PRESETS[PRESET])
        self.sides: dict[str, dict] = {}

    def versions(self) -> dict:
        import jax
        import jaxlib
        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
                "devices": jax.device_count()}

    def graphs(self, path: str, num: int) -> dict:
        """The first ``num`` training graphs of the preset, for the reference (npz: padded adjacencies, sizes)."""
        adjs = self.data[0][:num]
        n = max(a.shape[0] for a in adjs)
        dense = np.zeros((len(adjs), n, n), np.uint8)
        for i, a in enumerate(adjs):
            dense[i, :a.shape[0], :a.shape[0]] = a
        np.savez(path, adjacency=dense, sizes=np.array([a.shape[0] for a in adjs], np.int32))
        return {"graphs": len(adjs)}

    def setup(self, side: str, row: str, steps_per_call: int) -> dict:
        import dataclasses

        import jax

        from experiments._lib import train as T

        cfg = dataclasses.replace(self.ga.PRESETS[PRESET], steps_per_call=steps_per_call)
        run = self.ga.setup_run(cfg, row, 0, self.data)
        runner = T.StepRunner(run.loss_fn, run.optimizer, run.batch_fn, T.data_mesh(),
                              steps_per_call=steps_per_call, batch_spec=run.batch_spec)
        params, opt_state, acc = runner.start(run.params)
        st = {"runner": runner, "key": run.key, "state": (params, opt_state, acc), "index": 0, "run": run}
        self.sides[side] = st
        t0 = time.perf_counter()
        self._steps(st, steps_per_call)           # the first call compiles
        compile_s = time.perf_counter() - t0
        self._steps(st, 100)                       # warm-up (and a second compile for committed inputs, if any)
        t0 = time.perf_counter()
        self._steps(st, 100)
        step_s = (time.perf_counter() - t0) / 100
        eval_s = None
        if steps_per_call == 1:                    # one evaluation of the run (the same for every K)
            params = jax.tree.map(lambda x: x, st["state"][0])
            run.eval_fn(params, jax.random.key(0))
            t0 = time.perf_counter()
            run.eval_fn(params, jax.random.key(1))
            eval_s = time.perf_counter() - t0
        return {"compile_and_first_call_s": compile_s, "step_s": step_s, "eval_s": eval_s,
                "num_params": int(sum(np.size(x) for x in jax.tree.leaves(run.params)))}

    def _steps(self, st: dict, num: int) -> None:
        import jax

        from experiments._lib import train as T

        runner, guard = st["runner"], T.DivergenceGuard()
        params, opt_state, acc = st["state"]
        start = st["index"]
        for index, count in runner.calls(start, start + num):
            params, opt_state, acc, out = runner(params, opt_state, acc, st["key"], index, count)
            guard.push(index + count, out)
        guard.flush()
        jax.block_until_ready(params)
        st["state"], st["index"] = (params, opt_state, acc), start + num

    def block(self, side: str, steps: int) -> dict:
        t0 = time.perf_counter()
        self._steps(self.sides[side], steps)
        return {"step_s": (time.perf_counter() - t0) / steps}


class _Reference:
    """The training-loop body of vgsatorras/egnn ``main_ae.py`` on its own modules."""

    def __init__(self, ref_dir: str):
        import torch
        torch.set_num_threads(ds.THREADS)
        self.torch = torch
        sys.path.insert(0, ref_dir)
        self.ref_dir = ref_dir
        self.sides: dict[str, dict] = {}

    def versions(self) -> dict:
        import torch
        return {"torch": torch.__version__, "threads": torch.get_num_threads()}

    def setup(self, side: str, model: str, graphs: str) -> dict:
        import networkx as nx
        import torch
        from torch import nn, optim

        import graph as gl
        import models

        a = REFERENCE_ARGS
        torch.manual_seed(1)
        data = np.load(graphs)
        dataset = []
        for adj, n in zip(data["adjacency"], data["sizes"]):
            g = nx.from_numpy_array(adj[:n, :n]).to_directed()      # as d_creator: G.to_directed(), networkx2graph
            g.add_nodes_from(range(n))
            dataset.append(gl.networkx2graph(g))
        if model == "ae":
            net = models.AE(hidden_nf=a["nf"], embedding_nf=a["emb_nf"], noise_dim=a["noise_dim"], act_fn=nn.SiLU(),
                            learnable_dec=1, device="cpu", attention=a["attention"], n_layers=a["n_layers"])
        else:
            net = models.AE_EGNN(hidden_nf=a["nf"], K=a["K"], act_fn=nn.SiLU(), device="cpu", n_layers=a["n_layers"],
                                 reg=a["reg"], clamp=a["clamp"])
        opt = optim.Adam(net.parameters(), lr=a["lr"], weight_decay=a["weight_decay"])
        net.train()
        st = {"model": net, "opt": opt, "graphs": dataset, "counter": 0}
        self.sides[side] = st
        t0 = time.perf_counter()
        self._steps(st, len(dataset))            # the first epoch: every graph's dense form is built and stored
        first_epoch_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._steps(st, 100)
        return {"first_epoch_step_s": first_epoch_s / len(dataset), "step_s": (time.perf_counter() - t0) / 100,
                "num_params": sum(p.numel() for p in net.parameters()), "graphs": len(dataset)}

    def _steps(self, st: dict, num: int) -> None:
        import torch

        import eval as ev
        import losess

        model, optimizer, graphs = st["model"], st["opt"], st["graphs"]
        res = {"loss": 0, "bce": 0, "kl": 0, "kl_coords": 0, "adj_err": 0, "counter": 0, "wrong_edges": 0,
               "gt_edges": 0, "possible_edges": 0}
        magnitudes = {"value": 0, "counter": 0}
        for _ in range(num):                     # main_ae.py's train() loop body (without its print)
            graph = graphs[st["counter"] % len(graphs)]
            st["counter"] += 1
            nodes, edges, edge_attr, adj_gt = graph.get_dense_graph(store=True, loops=False)
            n_nodes = nodes.size(0)
            optimizer.zero_grad()
            adj_pred, z = model(nodes, edges, edge_attr)
            bce, kl = losess.vae_loss(adj_pred, adj_gt, None, None)
            kl_coords = torch.zeros(1)
            loss = bce
            loss.backward()
            optimizer.step()
            res["loss"] += loss.item()
            res["bce"] += bce.item()
            res["kl"] += kl.item()
            res["kl_coords"] += kl_coords.item()
            wrong_edges, adj_err = ev.adjacency_error(adj_pred, adj_gt)
            res["adj_err"] += adj_err
            res["counter"] += 1
            res["wrong_edges"] += wrong_edges
            res["gt_edges"] += torch.sum(adj_gt).item()
            res["possible_edges"] += n_nodes ** 2 - n_nodes
            magnitudes["value"] += torch.mean(torch.abs(z))
            magnitudes["counter"] += 1

    def block(self, side: str, steps: int) -> dict:
        t0 = time.perf_counter()
        self._steps(self.sides[side], steps)
        return {"step_s": (time.perf_counter() - t0) / steps}


def _serve(kind: str, argv: list[str]) -> int:
    """digress_step's worker loop, serving this module's workers (a process of its own)."""
    return ds._worker(kind, argv, ours=_Ours, reference=_Reference)


# ----------------------------------------------------------------------------- the comparison


def measure(a: argparse.Namespace) -> dict:
    from experiments.graph_autoencoder import main as ga

    cfg = ga.PRESETS[PRESET]
    out = {"preset": PRESET, "config": {"batch_size": cfg.batch_size, "message_graph": cfg.message_graph,
                                        "latent": cfg.latent, "hidden": cfg.hidden, "num_layers": cfg.num_layers,
                                        "num_steps": cfg.num_steps, "eval_every": cfg.eval_every},
           "threads": ds.THREADS, "allocator": dict(ds.TUNED_MALLOC), "rounds": a.rounds,
           "block_seconds": a.block_seconds, "load_start": list(os.getloadavg()), "ours": {}, "reference": None}
    ref_env = {"OMP_WAIT_POLICY": a.reference_omp_wait_policy} if a.reference_omp_wait_policy else {}
    workers = {"ours": ds._Worker("ours", sys.executable, [], module=MODULE)}
    sides = {}                         # side -> (worker name, setup answer)
    try:
        ours = workers["ours"]
        out["versions"] = {"ours": ours.ask(cmd="versions")}
        for row in a.rows:
            for k in a.steps_per_call:
                side = f"ours:{row}:{k}"
                s = ours.ask(cmd="setup", side=side, row=row, steps_per_call=k)
                sides[side] = ("ours", s)
                print(f"  {side}: compile + first call {s['compile_and_first_call_s']:.1f} s, "
                      f"{s['step_s'] * 1e3:.2f} ms / update", flush=True)
        if a.reference:
            ref_dir = str(pathlib.Path(a.reference).resolve())
            ref_python = ds.reference_python(ref_dir, a.reference_python)
            rev = subprocess.run(["git", "-C", ref_dir, "rev-parse", "HEAD"], capture_output=True, text=True)
            out["reference"] = {"dir": ref_dir, "python": ref_python, "commit": rev.stdout.strip() or None,
                                "env": ref_env, "args": REFERENCE_ARGS, "models": {}}
            workers["reference"] = ds._Worker("reference", ref_python, ["--reference", ref_dir], ref_env, module=MODULE)
            out["versions"]["reference"] = workers["reference"].ask(cmd="versions")
            with tempfile.TemporaryDirectory() as tmp:
                path = str(pathlib.Path(tmp) / "graphs.npz")
                ours.ask(cmd="graphs", path=path, num=REFERENCE_GRAPHS)
                for model in a.reference_models:
                    side = f"reference:{model}"
                    s = workers["reference"].ask(cmd="setup", side=side, model=model, graphs=path)
                    sides[side] = ("reference", s)
                    print(f"  {side}: {s['num_params']:,} parameters, {s['step_s'] * 1e3:.2f} ms / update "
                          f"(first epoch {s['first_epoch_step_s'] * 1e3:.2f})", flush=True)
        else:
            print("  no EGNN reference measured (pass --reference DIR to measure it side by side)", flush=True)

        times = {side: [] for side in sides}
        names = list(sides)
        for r in range(a.rounds):
            for side in (names if r % 2 == 0 else names[::-1]):
                worker, s = sides[side]
                steps = max(1, round(a.block_seconds / max(s["step_s"], 1e-6)))
                if worker == "ours":
                    steps = 100 * max(1, round(steps / 100))
                times[side].append(workers[worker].ask(cmd="block", side=side, steps=steps)["step_s"])
            print(f"    round {r}: " + ", ".join(f"{side} {times[side][-1] * 1e3:.2f} ms" for side in names) +
                  f"; load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for w in workers.values():
            w.close()

    ref_names = [f"reference:{m}" for m in a.reference_models] if a.reference else []
    for side in ref_names:
        s = sides[side][1]
        med = float(np.median(times[side]))
        out["reference"]["models"][side.split(":")[1]] = {
            "median_s": med, "min_s": float(np.min(times[side])), "max_s": float(np.max(times[side])),
            "steps_per_s": 1 / med, "per_block_s": times[side], "num_params": s["num_params"],
            "first_epoch_step_s": s["first_epoch_step_s"], "graphs": s["graphs"]}
    eval_s = {row: sides[f"ours:{row}:{a.steps_per_call[0]}"][1]["eval_s"] for row in a.rows
              if sides[f"ours:{row}:{a.steps_per_call[0]}"][1]["eval_s"] is not None}
    evaluations = cfg.num_steps // cfg.eval_every
    for row in a.rows:
        out["ours"][row] = {}
        for k in a.steps_per_call:
            side = f"ours:{row}:{k}"
            s = sides[side][1]
            med = float(np.median(times[side]))
            steps_s = cfg.num_steps * med
            entry = {"median_s": med, "min_s": float(np.min(times[side])), "max_s": float(np.max(times[side])),
                     "steps_per_s": 1 / med, "per_block_s": times[side], "num_params": s["num_params"],
                     "compile_and_first_call_s": s["compile_and_first_call_s"],
                     "projection": {"note": "projected from the measured rate, not a measured run",
                                    "updates": cfg.num_steps, "train_steps_h": steps_s / 3600}}
            if row in eval_s:
                entry["projection"].update(eval_s=eval_s[row], evaluations=evaluations,
                                           with_evaluations_h=(steps_s + evaluations * eval_s[row]) / 3600)
            entry["ratio_over_reference"] = {}
            for ref in ref_names:
                entry["ratio_over_reference"][ref.split(":")[1]] = ds._ratio_stats(
                    np.array(times[ref]) / np.array(times[side]))
            out["ours"][row][str(k)] = entry
    out["load_end"] = list(os.getloadavg())
    return out


def _print_table(result: dict) -> None:
    m = result["measurement"]
    ref = m["reference"]
    first = next(iter(ref["models"])) if ref else None
    print(f"\nrow | K | ms / update | updates/s | compile s | projected paper run (h) | "
          + (f"ours / reference {first} (updates/s)" if ref else "reference: not measured"))
    for row, by_k in m["ours"].items():
        for k, e in by_k.items():
            proj = e["projection"].get("with_evaluations_h", e["projection"]["train_steps_h"])
            q = e["ratio_over_reference"].get(first) if ref else None
            ratio = f"{q['median']:.2f} [{q['min']:.2f}, {q['max']:.2f}]" if q else "-"
            print(f"{row} | {k} | {e['median_s'] * 1e3:.2f} | {e['steps_per_s']:.0f} | "
                  f"{e['compile_and_first_call_s']:.1f} | {proj:.2f} | {ratio}")
    if ref:
        for model, e in ref["models"].items():
            print(f"reference {model} | - | {e['median_s'] * 1e3:.2f} | {e['steps_per_s']:.0f} | - | "
                  f"{result['measurement']['config']['num_steps'] * e['median_s'] / 3600:.2f} | -")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _serve(argv[1], argv[2:])
    a = _parse(argv)
    print(f"graph autoencoder step, preset {PRESET}: rows {a.rows}, K {a.steps_per_call}; load average "
          f"{os.getloadavg()}", flush=True)
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("  WARNING: the machine is not idle; absolute times are unreliable (same-run ratios less so)",
              flush=True)
    result = {"command": "python -m benchmarks.graph_ae_step " + " ".join(argv), "quick": a.quick,
              "environment": {"start": ds._environment()}}
    result["measurement"] = measure(a)
    result["environment"]["end"] = ds._environment()
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    _print_table(result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
