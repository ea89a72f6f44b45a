"""Regenerate the QM9 test fixture ``tests/experiments/digress_qm9/fixtures/qm9_tiny.csv`` from qm9pack.

The fixture holds 300 real QM9 molecules (``Index`` and ``SMILES`` columns only, increasing
``Index``), so the QM9 tests run without the 104 MB ``qm9pack`` wheel: QM9 molecules 1-10 (the
smallest), up to 3 random molecules of each size n = 1..9, the first 8 charged SMILES, and
random molecules up to 300, all drawn from ``numpy.random.default_rng(0)``. Since the split is a
function of ``Index``, the fixture's molecules fall into train/val/test as in the full data.

    pip install qm9pack rdkit
    python -m experiments.digress_qm9.make_fixture   # writes the fixture above
"""

from __future__ import annotations

import argparse
import csv
import pathlib

import numpy as np

from experiments.digress_qm9 import molecules, qm9

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "tests/experiments/digress_qm9/fixtures/qm9_tiny.csv"


def select(rows: list[tuple[int, str]], size: int, seed: int) -> list[tuple[int, str]]:
    """The fixture's molecules: smallest, every size, some charged, then random; sorted."""
    rng = np.random.default_rng(seed)
    sizes = np.array([molecules.smiles_to_graph(s)[0].shape[0] for _, s in rows])
    chosen = set(range(min(10, len(rows))))
    for n in range(1, qm9.MAX_NODES + 1):
        of_size = np.flatnonzero(sizes == n)
        chosen.update(rng.choice(of_size, size=min(3, of_size.size), replace=False).tolist())
    chosen.update([k for k, (_, s) in enumerate(rows) if "+" in s or "-" in s][:8])
    rest = np.setdiff1d(np.arange(len(rows)), sorted(chosen))
    chosen.update(rng.choice(rest, size=max(0, size - len(chosen)), replace=False).tolist())
    return sorted((rows[k] for k in chosen), key=lambda r: r[0])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.digress_qm9.make_fixture",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=FIXTURE)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = sorted((int(i), s) for i, s in qm9.read_source())
    picked = select(rows, args.size, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["Index", "SMILES"])
        writer.writerows(picked)
    print(f"wrote {len(picked)} molecules to {args.out}")


if __name__ == "__main__":
    main()
