"""Where the trained models miss: solved share against the distance to the nearest phase boundary.

A Hamiltonian's margin is the energy per site by which its ground state's ordered state beats
the next best one (:func:`experiments.ising.data.phase_margin`; 0 on a phase boundary). For each
trained run of a preset (its final checkpoint under runs/), the most likely configuration is
evaluated again on the held-out plane Hamiltonians of ``main.run_one`` (same Hamiltonians,
same key, so the misses are the result file's), and the misses are counted per margin bin and
listed (couplings, field, true and predicted phase, margin, gap).

    python -m experiments.ising.boundary --preset cpu                       # every method and seed trained
    python -m experiments.ising.boundary --preset cpu --L 16 --batch-size 16 --seeds 0 --tag l16

It reads the runs of the config the same flags give ``python -m experiments.ising``; a run with
no final checkpoint is skipped and named. Writes results/ising/<prefix>boundary.json.
"""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from experiments._lib import config as common
from experiments._lib import train as training
from experiments.ising import data as ising
from experiments.ising import main as ising_main

BINS = (0.0, 0.1, 0.2, 0.4, 0.8, float("inf"))
"""Edges of the margin bins, energy per site."""


def miss_table(ev: dict[str, np.ndarray], margin: np.ndarray) -> list[dict]:
    """Per margin bin: Hamiltonians, misses (argmax gap above 1e-6) and the solved share."""
    miss = ev["e_argmax"] - ev["e_min"] > 1e-6
    rows = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        sel = (margin >= lo) & (margin < hi)
        rows.append({"margin_from": lo, "margin_to": hi, "count": int(sel.sum()), "misses": int(miss[sel].sum()),
                     "solved": float(1 - miss[sel].mean()) if sel.any() else float("nan")})
    return rows


def analyse(cfg: ising_main.Config, method: str, seed: int, root: pathlib.Path = ising_main.ROOT) -> dict | None:
    """The margin table of one trained run, or None when it has no final checkpoint."""
    workdir = common.run_workdir(root, "ising", cfg, method, seed)
    if not training.has_checkpoint(workdir, cfg.num_steps):
        print(f"[{method} seed {seed}] no checkpoint of step {cfg.num_steps} in {workdir}: skipped", flush=True)
        return None
    model = ising_main.make_model(cfg, method)
    like = model.init(jax.random.key(0), jax.random.key(0), jnp.zeros((1, cfg.L, cfg.L, 5)))
    params = training.restore_params(workdir, cfg.num_steps, like)
    plane, ev = ising_main.evaluate_plane(model, params, cfg)                   # as run_one
    margin = np.asarray(ising.phase_margin(*plane))
    gap = ev["e_argmax"] - ev["e_min"]
    miss = gap > 1e-6
    missed = [{"jx": float(plane[0][i]), "jy": float(plane[1][i]), "h": float(plane[2][i]),
               "phase_true": ising.PHASES[int(ev["phase_true"][i])],
               "phase_argmax": ising.PHASES[int(ev["phase_argmax"][i])], "margin": float(margin[i]),
               "gap": float(gap[i])} for i in np.flatnonzero(miss)]
    return {"method": method, "seed": seed, "num_eval": cfg.num_eval, "misses": int(miss.sum()),
            "gap_argmax": float(gap.mean()),
            "gap_sampled": float((ev["e_sampled"] - ev["e_min"]).mean()),
            "median_margin_of_misses": float(np.median(margin[miss])) if miss.any() else None,
            "bins": miss_table(ev, margin), "missed": missed}


def main(argv=None, root: pathlib.Path = ising_main.ROOT) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg, _ = ising_main.parse_args(argv)
    runs = [r for m in cfg.encodings for s in cfg.seeds if (r := analyse(cfg, m, s, root)) is not None]
    for r in runs:
        cells = ", ".join(f"[{b['margin_from']:g}, {b['margin_to']:g}) {b['solved']:.2f} of {b['count']}"
                          for b in r["bins"])
        print(f"[{r['method']} seed {r['seed']}] {r['misses']} misses of {r['num_eval']}; solved by margin: {cells}",
              flush=True)
    out = common.results_dir(root, "ising", cfg) / f"{common.summary_prefix(cfg.preset)}boundary.json"
    training.save_json(out, {"preset": cfg.preset, "command": "python -m experiments.ising.boundary " + " ".join(argv),
                             "config": common.run_config(cfg), "bins": list(BINS[:-1]) + ["inf"], "runs": runs})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
