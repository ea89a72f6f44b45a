"""Graph autoencoder: edge error against the randomness of the node ordering, at one budget.

The rows that give every node an identity differ in how random that identity is on a given
graph: the exact inversion kernel draws uniformly from the automorphism coset (log2 |Aut(G)|
bits per graph), SymPE's sort breaks ties at random within its tie groups (more bits as the
tolerance ``atol`` grows), a uniformly random permutation of v carries log2(n!) bits. This
script reads the per-run result files of the ``experiments.graph_autoencoder`` variants named
by ``--tags`` (same preset and budget), computes those entropies exactly on the test set, and
plots test and train-subset edge error against them, with the Laplacian rows (no ordering) as
reference bands. It trains nothing.

    python -m experiments.graph_autoencoder.entropy --tags long,long-atol

Writes results/graph_autoencoder/<preset>-entropy.json and <preset>-entropy.png (the ``demo``
preset: under runs/graph_autoencoder/results/, git-ignored). Variants tagged ``demo...`` or
``smoke...`` are read from there too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

import numpy as np

from experiments._lib import config as common
from experiments._lib import train as training
from experiments.graph_autoencoder import main as ga

ROOT = pathlib.Path(__file__).resolve().parents[2]
# which ordering each row's encoding draws (None: the row has no node ordering)
ORDERING = {"none": None, "noise": None, "laplacian": None, "features": None, "laplacian_features": None,
            "randperm": "randperm", "randperm_features": "randperm",
            "sympe": "sympe", "sympe_features": "sympe", "sympe_laplacian": "sympe", "sympe_decoder": "sympe",
            "sympe_learned": "sympe", "exact": "exact", "exact_features": "exact"}


def load_groups(preset: str, tags: list[str]) -> dict[tuple[str, str], list[dict]]:
    """{(configuration, row): result records} for the runs of ``<preset>-<tag>``, one budget."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for tag in tags:
        name = f"{preset}-{tag}"
        results = common.results_dir(ROOT, "graph_autoencoder", dataclasses.replace(ga.PRESETS[preset], preset=name))
        paths = sorted(results.glob(f"{name}_*_seed*.json"))
        if not paths:
            raise SystemExit(f"no result files for configuration {name!r} in {results}")
        for path in paths:
            rec = json.loads(path.read_text())
            if rec["config"]["preset"] == name:
                groups.setdefault((name, rec["row"]), []).append(rec)
    steps = {recs[0]["config"]["num_steps"] for recs in groups.values()}
    if len(steps) != 1:
        raise SystemExit(f"the configurations train for different budgets {sorted(steps)}: compare one budget")
    return groups


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.graph_autoencoder.entropy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", choices=sorted(ga.PRESETS),
                        help="preset the tagged variants were run from (default: %(default)s)")
    parser.add_argument("--tags", required=True,
                        help="comma-separated --tag names of python -m experiments.graph_autoencoder runs")
    args = parser.parse_args(argv)
    groups = load_groups(args.preset, args.tags.split(","))
    base = ga.PRESETS[args.preset]
    test_adjs = ga.load_splits(base)[2]
    bits_at: dict[float, dict] = {}
    rows = []
    data_fields = ("dataset", "num_train", "num_val", "num_test", "n_max")
    for (name, row), recs in sorted(groups.items()):
        cfg = recs[0]["config"]
        if any(cfg[f] != getattr(base, f) for f in data_fields):
            raise SystemExit(f"{name} {row} was trained on other data than preset {args.preset!r} "
                             f"({ {f: cfg[f] for f in data_fields} }): its entropies would be wrong")
        kind = ORDERING.get(row)
        if kind is not None and cfg["atol"] not in bits_at:
            ties = ga.tie_orbit_agreement(test_adjs, dataclasses.replace(base, atol=cfg["atol"]))
            bits_at[cfg["atol"]] = ties["ordering_entropy_bits"]
        test = np.array([r["test"]["edge_error_pct"] for r in recs])
        train = np.array([r["train_subset"]["edge_error_pct"] for r in recs])
        rows.append({"configuration": name, "row": row, "label": ga.LABELS[row], "atol": cfg["atol"],
                     "features": row.endswith("_features"), "seeds": [r["seed"] for r in recs],
                     "ordering": kind, "ordering_entropy_bits": None if kind is None else bits_at[cfg["atol"]][kind],
                     "test_edge_error_pct": [float(test.mean()), float(test.std())],
                     "train_edge_error_pct": [float(train.mean()), float(train.std())],
                     "per_seed_test_edge_error_pct": test.tolist()})
    out = {"preset": args.preset, "tags": args.tags.split(","), "num_steps": next(iter(groups.values()))[0]["config"]["num_steps"],
           "command": "python -m experiments.graph_autoencoder.entropy "
                      + (f"--preset {args.preset} " if args.preset != "cpu" else "") + f"--tags {args.tags}",
           "rows": rows}
    out_dir = common.results_dir(ROOT, "graph_autoencoder", base)
    training.save_json(out_dir / f"{args.preset}-entropy.json", out)
    plot(out, out_dir / f"{args.preset}-entropy.png")
    for r in rows:
        bits = "-" if r["ordering_entropy_bits"] is None else f"{r['ordering_entropy_bits']:.2f}"
        print(f"{r['configuration']:16s} {r['row']:18s} bits {bits:>6s}  test {r['test_edge_error_pct'][0]:.3f} "
              f"± {r['test_edge_error_pct'][1]:.3f}  train {r['train_edge_error_pct'][0]:.3f}")
    return 0


def plot(out: dict, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = {"": "tab:blue", "features": "tab:orange", "laplacian": "tab:green"}
    for r in out["rows"]:
        mean, std = r["test_edge_error_pct"]
        extras = ga.pe_kind(r["row"])[2]
        color = colors[extras[0] if extras else ""]
        if r["ordering"] is None:
            if r["row"].startswith("laplacian"):
                ax.axhspan(mean - std, mean + std, color=color, alpha=0.15)
                ax.axhline(mean, color=color, ls="--", lw=1, label=f"{r['label']} (no ordering), test")
            continue
        x = r["ordering_entropy_bits"]
        ax.errorbar(x, mean, yerr=std, fmt="o", color=color, capsize=3)
        ax.plot(x, r["train_edge_error_pct"][0], "x", color=color)
        ax.annotate(f"{r['row']}" + (f" (atol {r['atol']:g})" if r["ordering"] == "sympe" else ""), (x, mean),
                    textcoords="offset points", xytext=(6, {"tab:green": -11}.get(color, -1)), fontsize=7)
    ax.plot([], [], "o", color="gray", label="test (mean ± std over seeds)")
    ax.plot([], [], "x", color="gray", label="train subset")
    for extra, color in colors.items():
        ax.plot([], [], "s", color=color, label=f"+ {'structural features' if extra == 'features' else 'Laplacian eigenvectors'}"
                if extra else "node ordering only")
    ax.set_xscale("log")
    ax.set_xlabel("randomness of the node ordering on a test graph (bits, mean over the test set)")
    ax.set_ylabel("edge error %")
    ax.set_title(f"Graph autoencoder, {out['num_steps']} steps: error vs ordering entropy", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
