"""Sample quality of trained DiGress rows, with more samples and two ways of drawing the model's randomness.

Reads the final checkpoints written by ``python -m experiments.digress_qm9`` (same preset and config
flags; it trains nothing) and draws ``--num-samples`` molecules per (row, seed, model key):

* ``step``: the denoiser gets a fresh key at every reverse step, so SymPE's g~ (its tie-breaking)
  and the noise row's channels are redrawn at every step: what ``experiments.digress_qm9`` reports;
* ``trajectory``: one key per sample for the whole trajectory (``DiGress.sample(model_key=...)``):
  tied nodes keep their relative order while they stay tied, the noise channels stay fixed.

Every (row, model key) of one seed uses the same sampling key, so all of them share the node
counts, the prior draw G_T and the transition noise: validity differences are paired by sample
(standard errors of paired differences are reported beside the binomial ones). The first 1,024
``step`` samples of a row are exactly the samples of its ``experiments.digress_qm9`` result file.

    python -m experiments.digress_qm9.sampling --preset cpu --encodings digress,noise,sympe,sympe_edges --num-samples 4096

Writes results/digress_qm9/<preset>_sampling.json (the README's sampling table; the ``demo``
preset and ``demo``/``smoke`` tags: under runs/digress_qm9/results/, git-ignored). Entries already
in that file (same config and number of samples) are reused, so adding a seed samples only the
new runs; runs not trained yet are skipped and listed under ``not_trained``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import pathlib
import sys
import time

import numpy as np

from experiments._lib import rundir
from experiments._lib import config as common
from experiments._lib import train as training
from experiments.digress_qm9 import main as dq
from experiments.digress_qm9 import molecules, qm9

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_KEYS = ("step", "trajectory")
NO_MODEL_RANDOMNESS = ("none", "sympe_index_ties", "index_pe")   # modes whose denoiser draws nothing


def validity_flags(smiles: list[str | None]) -> np.ndarray:
    """bool[num]: which samples gave a valid molecule (``MoleculeMetrics.smiles`` is None otherwise)."""
    return np.array([s is not None for s in smiles], bool)


def paired_difference(a: np.ndarray, b: np.ndarray) -> list[float]:
    """``[mean(b - a), standard error]`` of two per-sample 0/1 arrays paired by sample."""
    d = b.astype(float) - a.astype(float)
    return [float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0]


def binomial_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else 0.0


def summarize(results: dict, rows: tuple[str, ...], model_keys: tuple[str, ...]) -> dict:
    """Per (row, model key): metrics pooled over seeds; paired validity differences between
    every two (row, model key) entries (pooled over seeds, paired within a seed)."""
    results = {r: results.get(r, {}) for r in rows}
    entries = [(r, k) for r in rows for k in model_keys if any(k in results[r][s] for s in results[r])]
    pooled = {}
    for row, mk in entries:
        seeds = [s for s in sorted(results[row]) if mk in results[row][s]]
        runs = [results[row][s][mk] for s in seeds]
        n = sum(r["metrics"]["num_graphs"] for r in runs)
        valid = np.concatenate([validity_flags(r["smiles"]) for r in runs])
        entry = {"seeds": seeds, "num_samples": n,
                 "validity": float(valid.mean()), "validity_se": binomial_se(float(valid.mean()), n)}
        for k in ("relaxed_validity", "uniqueness", "novelty", "valid_connected"):
            vals = [r["metrics"][k] for r in runs if r["metrics"][k] is not None]
            entry[k] = float(np.mean(vals)) if vals else None
        pooled[f"{row}/{mk}"] = entry
    diffs = {}
    for (ra, ka), (rb, kb) in itertools.combinations(entries, 2):
        seeds = [s for s in results[ra] if ka in results[ra][s] and s in results[rb] and kb in results[rb][s]]
        if seeds:
            a = np.concatenate([validity_flags(results[ra][s][ka]["smiles"]) for s in seeds])
            b = np.concatenate([validity_flags(results[rb][s][kb]["smiles"]) for s in seeds])
            diffs[f"{rb}/{kb} - {ra}/{ka}"] = paired_difference(a, b)
    return {"pooled": pooled, "paired_validity_differences": diffs}


def previous_runs(path: pathlib.Path, cfg) -> dict:
    """``{row: {seed: {model_key: run}}}`` already in the study file ``path`` if it was written
    with the same run config and number of samples (else empty): adding a seed or a row samples
    only what is new."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    if old.get("num_samples") != cfg.num_samples or old.get("config") != common.run_config(cfg):
        return {}
    return {row: {int(s): dict(v) for s, v in per.items()} for row, per in old.get("runs", {}).items()}


def parse_args(argv=None):
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--model-keys", default=",".join(MODEL_KEYS),
                       help="comma-separated subset of step,trajectory (rows without a model key use step only)")
    known, rest = extra.parse_known_args(argv)
    model_keys = tuple(k for k in known.model_keys.split(",") if k)
    if not model_keys or set(model_keys) - set(MODEL_KEYS):
        extra.error(f"--model-keys must be a non-empty subset of {MODEL_KEYS}, got {known.model_keys!r}")
    cfg, args = dq.parse_args(rest, doc=__doc__, parents=[extra], prog="python -m experiments.digress_qm9.sampling")
    return cfg, args, model_keys


@rundir.exit_on_run_error
def main(argv=None, root: pathlib.Path = ROOT) -> int:
    cfg, args, model_keys = parse_args(argv)
    command = common.command_line("digress_qm9.sampling", argv)
    print(f"DiGress sampling study, preset {cfg.preset}: rows {cfg.encodings}, seeds {cfg.seeds}, "
          f"{cfg.num_samples} samples per row and model key {model_keys}", flush=True)
    t0 = time.time()
    data = dq.load_data(cfg)
    train_smiles = qm9.train_smiles(source=data.source)
    path = common.results_dir(root, "digress_qm9", cfg) / f"{cfg.preset}_sampling.json"
    results = previous_runs(path, cfg)     # every row and seed sampled so far (all are saved)
    missing: list[str] = []
    for row, seed in itertools.product(cfg.encodings, cfg.seeds):
        keys = model_keys if dq.MODE[row] not in NO_MODEL_RANDOMNESS else ("step",)   # no model randomness: one entry
        todo = [mk for mk in keys if mk not in results.get(row, {}).get(seed, {})]
        if not todo:
            print(f"[{row} seed {seed}] sampled before with this config, reusing", flush=True)
            continue
        try:
            dg, result, _, _, k_sample = dq.train_row(cfg, row, seed, data, root, trained_only=True)
        except FileNotFoundError as err:
            print(f"skipped: {err}", flush=True)
            missing.append(f"{row} seed {seed}")
            continue
        for mk in todo:
            t1 = time.time()
            X, E, mask = dq.sample_molecules(dg, result.params, k_sample, cfg.num_samples, cfg.sample_batch,
                                             desc=f"{row} seed {seed}: {mk}", model_key=mk)
            seconds = time.time() - t1
            m = molecules.evaluate(molecules.graphs_from_dense(X, E, mask), train_smiles)
            s = m.scalars()
            results.setdefault(row, {}).setdefault(seed, {})[mk] = {
                "metrics": s, "smiles": m.smiles, "sampling_wall_time_s": round(seconds, 1)}
            print(f"[{row} seed {seed} {mk}] validity {s['validity']:.4f} relaxed {s['relaxed_validity']:.4f} "
                  f"unique {s['uniqueness']:.4f} ({seconds:.0f}s)", flush=True)
    chosen = {r: {s: v for s, v in per.items() if s in cfg.seeds} for r, per in results.items() if r in cfg.encodings}
    summary = summarize(chosen, cfg.encodings, model_keys)
    out = {"preset": cfg.preset, "command": command, "config": common.run_config(cfg), "rows": list(cfg.encodings),
           "seeds": list(cfg.seeds), "model_keys": list(model_keys), "num_samples": cfg.num_samples,
           "not_trained": missing, **summary, "runs": {r: {str(s): v for s, v in per.items()} for r, per in results.items()},
           "wall_time_s": round(time.time() - t0, 1)}
    training.save_json(path, out)
    print("\nrow/model key | samples | validity ± SE | relaxed | unique | novel")
    for name, e in summary["pooled"].items():
        print(f"{name:24s} | {e['num_samples']} | {e['validity']:.4f} ± {e['validity_se']:.4f} | "
              f"{e['relaxed_validity']:.4f} | {e['uniqueness']:.4f} | {e['novelty']}")
    for name, (d, se) in summary["paired_validity_differences"].items():
        print(f"validity {name}: {d:+.4f} ± {se:.4f} (paired)")
    print(f"wrote {path} ({out['wall_time_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
