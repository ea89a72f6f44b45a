"""Throughput of randomized canonicalization, beside what a user would otherwise do.

Measured side by side in one run (run it on an idle machine):

* ``sort_permutation`` under ``jit(vmap(...))`` on a batch of 1024 graphs x n nodes,
  n in {16, 64, 256, 1024}; scores are node degrees of G(n, 0.25) (integer-valued: many ties,
  the harder case for tie-breaking), against
  - the same algorithm as a NumPy loop over graphs (cluster the sorted scores, lexsort by
    (cluster, random key)),
  - a plain ``jnp.argsort`` (no tie-breaking: wrong, but the floor a sort can reach),
  - the exact inversion kernel through the automorphism group (pynauty canonical labelling +
    Schreier-Sims uniform automorphism, :mod:`sympe_jax.exact.automorphisms`) on actual G(n, 0.25)
    graphs, timed on a subset and reported per graph and per 1024 graphs;
* ``argmax_element`` on lifted p4m scores (1024, 8, L, L), L in {8, 16, 32}, against a NumPy
  loop (uniform choice among the maxima within atol).

Prints medians with the interquartile range, ratios, and the log-log slope of time against n.
Writes ``results/benchmarks/canonicalization.json`` and ``.md``.

    python -m benchmarks.canonicalization            # full run, a few minutes
    python -m benchmarks.canonicalization --quick    # smaller, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import sympe_jax as sp
from sympe_jax.exact import automorphisms

ROOT = pathlib.Path(__file__).resolve().parents[1]
ATOL = sp.DEFAULT_ATOL


def _time(fn, reps: int) -> tuple[float, float]:
    """Median and IQR of wall time in seconds (fn must block until done)."""
    fn()  # warm-up (compilation)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return float(med), float(q3 - q1)


def numpy_sort_permutation(rng: np.random.Generator, scores: np.ndarray, atol: float) -> np.ndarray:
    """The same rule as ``sort_permutation`` for one graph, in NumPy."""
    n = scores.shape[0]
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    group_sorted = np.concatenate([[0], np.cumsum(np.diff(s) > atol)])
    group = np.empty(n, np.int64)
    group[order] = group_sorted
    final = np.lexsort((rng.random(n), group))
    ranks = np.empty(n, np.int32)
    ranks[final] = np.arange(n)
    return ranks


def numpy_argmax_element(rng: np.random.Generator, scores: np.ndarray, atol: float) -> int:
    flat = scores.reshape(-1)
    cand = np.flatnonzero(flat >= flat.max() - atol)
    return int(cand[rng.integers(len(cand))])


def bench_sort(sizes, batch, reps, exact_graphs, seed=0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        scores_np = rng.binomial(n - 1, 0.25, size=(batch, n)).astype(np.float32)
        scores = jnp.asarray(scores_np)
        keys = jax.random.split(jax.random.key(seed), batch)
        ours = jax.jit(jax.vmap(lambda k, s: sp.sort_permutation(k, s, atol=ATOL)))
        plain = jax.jit(jax.vmap(lambda s: jnp.argsort(s)))
        t_ours, iqr_ours = _time(lambda: ours(keys, scores).block_until_ready(), reps)
        t_plain, _ = _time(lambda: plain(scores).block_until_ready(), reps)
        t_np, iqr_np = _time(lambda: [numpy_sort_permutation(rng, s, ATOL) for s in scores_np], max(3, reps // 3))
        # Exact inversion kernel on real graphs (a subset; per-graph cost is what matters).
        m = exact_graphs.get(n, 0)
        t_exact = None
        if m:
            graphs = []
            for _ in range(m):
                a = np.triu(rng.random((n, n)) < 0.25, 1)
                graphs.append((a | a.T).astype(np.uint8))
            t0 = time.perf_counter()
            for a in graphs:
                automorphisms.inversion_kernel_sample(a, rng)
            t_exact = (time.perf_counter() - t0) / m * batch
        row = {
            "n": n, "batch": batch,
            "sort_permutation_ms": 1e3 * t_ours, "sort_permutation_iqr_ms": 1e3 * iqr_ours,
            "graphs_per_s": batch / t_ours,
            "plain_argsort_ms": 1e3 * t_plain,
            "numpy_loop_ms": 1e3 * t_np, "numpy_loop_iqr_ms": 1e3 * iqr_np,
            "exact_kernel_ms_per_batch": None if t_exact is None else 1e3 * t_exact,
            "exact_graphs_timed": m,
            "speedup_vs_numpy": t_np / t_ours,
            "speedup_vs_exact": None if t_exact is None else t_exact / t_ours,
            "overhead_vs_plain_argsort": t_ours / t_plain,
        }
        rows.append(row)
        print(f"  sort n={n:5d}: ours {row['sort_permutation_ms']:8.2f} ms | argsort {row['plain_argsort_ms']:7.2f} ms"
              f" | numpy loop {row['numpy_loop_ms']:9.1f} ms | exact "
              + ("-" if t_exact is None else f"{row['exact_kernel_ms_per_batch']:10.1f} ms (from {m} graphs)"), flush=True)
    return rows


def bench_argmax(sizes, batch, reps, seed=0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for L in sizes:
        scores_np = rng.integers(0, 4, size=(batch, 8, L, L)).astype(np.float32)  # ties
        scores = jnp.asarray(scores_np)
        keys = jax.random.split(jax.random.key(seed), batch)
        ours = jax.jit(jax.vmap(lambda k, s: sp.argmax_element(k, s, atol=ATOL)))
        t_ours, iqr = _time(lambda: ours(keys, scores).block_until_ready(), reps)
        t_np, _ = _time(lambda: [numpy_argmax_element(rng, s, ATOL) for s in scores_np], max(3, reps // 3))
        rows.append({"L": L, "group_order": 8 * L * L, "batch": batch, "argmax_element_ms": 1e3 * t_ours,
                     "argmax_element_iqr_ms": 1e3 * iqr, "numpy_loop_ms": 1e3 * t_np, "speedup_vs_numpy": t_np / t_ours})
        print(f"  argmax L={L:3d} (|G|={8 * L * L:5d}): ours {1e3 * t_ours:8.2f} ms | numpy loop {1e3 * t_np:9.1f} ms", flush=True)
    return rows


def _slope(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def _ratio(x: float | None) -> str:
    return "-" if x is None else (f"{x:.0f}x" if x >= 10 else f"{x:.2g}x")


def _markdown(result: dict) -> str:
    load = ", ".join(f"{x:.1f}" for x in result["load_average"])
    lines = [f"Batch of {result['sort'][0]['batch']} graphs, jit+vmap, {result['machine']}; medians of "
             f"{result['reps']} runs; load average before the run {load} (other work on the 2 cores inflates "
             f"all columns; compare within a row). Command: `{result['command']}`. Speed-ups above 1x mean "
             "sort_permutation / argmax_element is faster.", "",
             "| n | sort_permutation (ms) | plain argsort (ms) | NumPy loop (ms) | exact kernel, pynauty (ms) | vs NumPy | vs exact |",
             "|---|---|---|---|---|---|---|"]
    for r in result["sort"]:
        exact = "-" if r["exact_kernel_ms_per_batch"] is None else f"{r['exact_kernel_ms_per_batch']:.0f}"
        vs_exact = _ratio(r["speedup_vs_exact"])
        lines.append(f"| {r['n']} | {r['sort_permutation_ms']:.2f} | {r['plain_argsort_ms']:.2f} | "
                     f"{r['numpy_loop_ms']:.1f} | {exact} | {_ratio(r['speedup_vs_numpy'])} | {vs_exact} |")
    lines += ["", f"Time grows as n^{result['sort_time_slope']:.2f} (sort_permutation) vs n^{result['numpy_time_slope']:.2f} (NumPy loop).",
              "", "| L | group order | argmax_element (ms) | NumPy loop (ms) | vs NumPy |", "|---|---|---|---|---|"]
    for r in result["argmax"]:
        lines.append(f"| {r['L']} | {r['group_order']} | {r['argmax_element_ms']:.2f} | {r['numpy_loop_ms']:.1f} | {_ratio(r['speedup_vs_numpy'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.canonicalization", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "canonicalization"))
    args = parser.parse_args(argv)
    if args.quick:
        sizes, lsizes, batch, reps, exact = [16, 64], [8], 64, 3, {16: 8, 64: 4}
    else:
        sizes, lsizes, batch, reps, exact = [16, 64, 256, 1024], [8, 16, 32], 1024, args.reps, {16: 256, 64: 64, 256: 16, 1024: 4}
    load_average = os.getloadavg()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores, load {load_average}")
    sort_rows = bench_sort(sizes, batch, reps, exact)
    argmax_rows = bench_argmax(lsizes, batch, reps)
    result = {
        "command": "python -m benchmarks.canonicalization" + (" --quick" if args.quick else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.devices()[0].platform})",
        "env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "OPENBLAS_CORETYPE", "XLA_FLAGS")},
        "reps": reps, "atol": ATOL, "load_average": list(load_average), "sort": sort_rows, "argmax": argmax_rows,
        "sort_time_slope": _slope([r["n"] for r in sort_rows], [r["sort_permutation_ms"] for r in sort_rows]),
        "numpy_time_slope": _slope([r["n"] for r in sort_rows], [r["numpy_loop_ms"] for r in sort_rows]),
        "date": time.strftime("%Y-%m-%d"),
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    md = _markdown(result)
    out.with_suffix(".md").write_text(md)
    print("\n" + md)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
