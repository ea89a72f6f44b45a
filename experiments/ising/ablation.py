"""What keeps SymPE from the antiferromagnetic (checkerboard) phase: a measured ablation.

Every variant trains the SymPE G-CNN alone, with the training budget and evaluation of the
experiment (``main.run_one``), changing one or two things against ``BASE`` (the ``cpu`` preset
before the fix; the ``fix_*`` variants are the fix, ``FIX``, plus one change). Per seed it records the share of the 25 x 25 phase grid at h = 0.5 solved by the most
likely configuration, and the solved share of each true phase on held-out Hamiltonians uniform
on the (J_x, J_y) plane.

    python -m experiments.ising.ablation                        # every variant, seeds 0-2
    python -m experiments.ising.ablation --variants base,lr_1e-3 --seeds 0

Runs resume; a (variant, seed) whose result file exists is not trained again (``--force``
retrains). Writes results/ising/ablation/<variant>_sympe_seed<k>.json; results/ising/ablation.json
and results/ising/ablation.png gather every variant with a result file for each seed (other seeds
than 0-2: ablation_seeds<seeds>.json and .png instead, e.g. ``--seeds 0,1`` writes
ablation_seeds0-1.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import numpy as np

from experiments._lib import config as common
from experiments._lib import rundir
from experiments._lib import train as training
from experiments.ising import main as ising_main

ROOT = ising_main.ROOT

BASE = dataclasses.replace(ising_main.Config(), features=(8, 8, 8), pe_features=4, learning_rate=3e-3,
                           num_steps=2500, batch_size=16, plane_fraction=0.5, atol=1e-4, antiferro_fraction=0.0,
                           antiferro_until=1.0, relax_fraction=0.0, relax_ramp=0.2, anneal_temperature=0.0,
                           anneal_fraction=0.5, boundary_fraction=0.0, boundary_margin=0.4, sign_scale=0.0)
"""The ``cpu`` preset before the fix (expected energy throughout, no extra antiferromagnetic data),
its fields spelled out so that a later change of the preset does not move the ablation (every
variant changes one or two fields of it)."""

FIX = {"relax_fraction": 0.4, "relax_ramp": 0.2, "antiferro_fraction": 0.3, "antiferro_until": 0.2, "batch_size": 64}
"""The fix of the bistability (relaxed energy, early antiferromagnetic data) at 64 Hamiltonians per step.
``BASE`` with these overrides, every Hamiltonian from the plane and the bond-sign inputs is the ``cpu``
preset (variant ``fix_sign_0.3``)."""

VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("the cpu preset before the fix", {}),
    "plane_only": ("all training Hamiltonians uniform on the plane (twice the antiferromagnetic data)",
                   {"plane_fraction": 1.0}),
    "steps_4x": ("4x the training steps (10000)", {"num_steps": 10000}),
    "deeper": ("5 G-CNN layers instead of 3", {"features": (8, 8, 8, 8, 8)}),
    "wider": ("G-CNN width 16 instead of 8", {"features": (16, 16, 16)}),
    "pe_8": ("8 SymPE channels instead of 4", {"pe_features": 8}),
    "pe_32": ("32 SymPE channels instead of 4", {"pe_features": 32}),
    "atol_1e-5": ("tie tolerance 1e-5 (the library default) instead of 1e-4", {"atol": 1e-5}),
    "lr_1e-3": ("peak learning rate 1e-3 instead of 3e-3", {"learning_rate": 1e-3}),
    "batch_64": ("64 Hamiltonians per step instead of 16 (8 antiferromagnetic ones on average)", {"batch_size": 64}),
    "batch_64_lr_1e-3": ("64 Hamiltonians per step and peak learning rate 1e-3", {"batch_size": 64, "learning_rate": 1e-3}),
    "invariant_inputs": ("the phase given as linear input: channels J_x + J_y and abs(J_x - J_y)",
                         {"invariant_inputs": True}),
    "anneal": ("deterministic annealing: free energy at tau_0 = 2.5 (|J_x| + |J_y|), linearly to 0 over 60% of "
               "the steps", {"anneal_temperature": 2.5, "anneal_fraction": 0.6}),
    "antiferro_0.3": ("30% of training Hamiltonians from the antiferromagnetic quadrant", {"antiferro_fraction": 0.3}),
    "relax": ("relaxed (spherical) energy for 40% of the steps, then a crossover to the expected energy over 20%",
              {"relax_fraction": 0.4, "relax_ramp": 0.2}),
    "relax_antiferro_0.3": ("both", {"relax_fraction": 0.4, "relax_ramp": 0.2, "antiferro_fraction": 0.3}),
    "fix_batch_16": ("the fix (relaxed energy, 30% antiferromagnetic data for the first 20% of the steps) at 16 "
                     "Hamiltonians per step, half of them from the paper's law",
                     {"relax_fraction": 0.4, "relax_ramp": 0.2, "antiferro_fraction": 0.3, "antiferro_until": 0.2}),
    "fix_plane_only": ("the fix, then every training Hamiltonian uniform on the plane (the test plane's law: "
                       "no phase outweighs its neighbours at a boundary)", {**FIX, "plane_fraction": 1.0}),
    "fix_boundary_0.25": ("the fix at the plane law, with 25% of the training Hamiltonians drawn within 0.4 of a "
                          "phase boundary (both sides alike)", {**FIX, "plane_fraction": 1.0, "boundary_fraction": 0.25}),
    "fix_sign_0.1": ("the fix at the plane law, with the D4-invariant scalars of the bond signs tanh(J / 0.1) as "
                     "input channels", {**FIX, "plane_fraction": 1.0, "sign_scale": 0.1}),
    "fix_sign_0.3": ("the same with tanh(J / 0.3)", {**FIX, "plane_fraction": 1.0, "sign_scale": 0.3}),
    "fix_invariant_inputs": ("the fix with the D4-invariant bond scalars J_x + J_y and abs(J_x - J_y) as input "
                             "channels (each phase boundary linear in the input), half the Hamiltonians from the paper's law",
                             {**FIX, "invariant_inputs": True}),
}


def variant_config(name: str, seeds: tuple[int, ...]) -> ising_main.Config:
    """The run config of one variant (its preset name is ``ablation-<name>``)."""
    _, overrides = VARIANTS[name]
    return dataclasses.replace(BASE, preset=f"ablation-{name}", encodings=("sympe",), seeds=seeds, **overrides)


def summarize(name: str, records: list[dict]) -> dict:
    """Per-seed lists of the grid and per-phase solved shares of one variant."""
    row = {"description": VARIANTS[name][0], "overrides": {k: list(v) if isinstance(v, tuple) else v
                                                           for k, v in VARIANTS[name][1].items()},
           "seeds": [r["seed"] for r in records],
           "grid_solved_argmax": [r["grid"]["solved_argmax"] for r in records],
           "stripe_solved_argmax": [r["test"]["stripe_solved_argmax"] for r in records],
           "train_wall_time_s": [r["train_wall_time_s"] for r in records]}
    for phase in ising_main.PHASE_KEYS.values():
        row[f"plane_{phase}_solved_argmax"] = [r["test_plane"][f"{phase}_solved_argmax"] for r in records]
    return row


def plot(summary: dict, path: pathlib.Path) -> None:
    """Grid solved (dots: seeds) and antiferromagnetic solved per variant."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["variants"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(names) + 1.2), sharey=True, constrained_layout=True)
    for ax, key, title in ((axes[0], "grid_solved_argmax", "phase grid solved (h = 0.5)"),
                           (axes[1], "plane_antiferro_solved_argmax", "antiferromagnetic solved (plane test set)")):
        for i, name in enumerate(names):
            vals = summary["variants"][name][key]
            ax.scatter(vals, [i] * len(vals), color="#1f77b4", s=18, zorder=3)
            ax.plot([np.mean(vals)] * 2, [i - 0.3, i + 0.3], color="k", lw=1.5)
        ax.axvline(0.95, color="#d62728", ls="--", lw=1)
        ax.set_xlim(-0.02, 1.02)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    fig.suptitle("SymPE on the Ising phase diagram: one change at a time (dots: seeds; bar: mean; dashed: the 95% target)",
                 fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.ising.ablation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated variants to run, of {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--force", action="store_true", help="retrain variants whose result files exist")
    args = parser.parse_args(argv)
    args.variants = tuple(v for v in args.variants.split(",") if v)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    args.seeds = tuple(int(s) for s in args.seeds.split(","))
    return args


@rundir.exit_on_run_error
def main(argv=None, root: pathlib.Path = ROOT) -> int:
    args = parse_args(argv)
    out = pathlib.Path(root) / "results" / "ising"
    t0 = time.time()
    # The summary gathers every variant with results, so the command that regenerates it runs all.
    seeds = "" if args.seeds == (0, 1, 2) else " --seeds " + ",".join(map(str, args.seeds))
    summary = {"command": "python -m experiments.ising.ablation" + seeds,
               "base": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(BASE).items()},
               "method": "sympe", "variants": {}}
    for name in args.variants:
        cfg = variant_config(name, args.seeds)
        for seed in args.seeds:
            ising_main.run_one(cfg, "sympe", seed, args.force, root=root, out_dir=out / "ablation")
    for name in VARIANTS:              # every variant with a result file for each seed, run now or before
        cfg = variant_config(name, args.seeds)
        records = [common.matching_record(common.result_path(out / "ablation", cfg, "sympe", seed), cfg)
                   for seed in args.seeds]
        if any(r is None for r in records):
            continue
        summary["variants"][name] = row = summarize(name, records)
        print(f"[ablation] {name:12s} grid solved {row['grid_solved_argmax']} | antiferro solved "
              f"{row['plane_antiferro_solved_argmax']}", flush=True)
    summary["wall_time_s"] = round(time.time() - t0, 1)
    # other seeds get their own files: the committed summary of seeds 0-2 is not overwritten by a subset
    stem = "ablation" if args.seeds == (0, 1, 2) else "ablation_seeds" + "-".join(map(str, args.seeds))
    training.save_json(out / f"{stem}.json", summary)
    plot(summary, out / f"{stem}.png")
    print(f"wrote {out / f'{stem}.json'} and {out / f'{stem}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
