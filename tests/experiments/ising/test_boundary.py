"""The boundary analysis re-evaluates a trained run exactly as its result file did."""

import dataclasses
import json

import numpy as np

from experiments.ising import boundary
from experiments.ising import data as ising
from experiments.ising import main as ising_main
from tests.experiments.ising.test_ablation import TINY


def test_miss_table_bins_by_margin():
    """Bug: misses counted against the wrong Hamiltonians, or a margin on a bin edge counted twice."""
    ev = {"e_min": np.zeros(5), "e_argmax": np.array([1e-3, 0.0, 0.0, 2e-7, 1.0])}
    rows = boundary.miss_table(ev, np.array([0.05, 0.1, 0.3, 0.5, 5.0]))
    assert [r["count"] for r in rows] == [1, 1, 1, 1, 1]
    assert [r["misses"] for r in rows] == [1, 0, 0, 0, 1]


def test_the_analysis_finds_the_result_files_misses(tmp_path):
    """Bug: another test set, key or checkpoint than the run's own evaluation."""
    cfg = dataclasses.replace(ising_main.PRESETS["cpu"], encodings=("sympe",), seeds=(0,), **TINY)
    record = ising_main.run_one(cfg, "sympe", 0, root=tmp_path, out_dir=tmp_path / "out")
    out = boundary.analyse(cfg, "sympe", 0, root=tmp_path)
    assert out["misses"] == round((1 - record["test_plane"]["solved_argmax"]) * cfg.num_eval)
    for gap in ("gap_argmax", "gap_sampled"):
        np.testing.assert_allclose(out[gap], record["test_plane"][gap], rtol=1e-6, atol=0)
    assert sum(b["count"] for b in out["bins"]) == cfg.num_eval
    assert len(out["missed"]) == out["misses"] and all(m["gap"] > 1e-6 for m in out["missed"])
    assert all(m["phase_true"] in ising.PHASES for m in out["missed"])
    assert boundary.analyse(cfg, "none", 0, root=tmp_path) is None          # never trained: skipped
    assert boundary.main(["--preset", "cpu", "--encodings", "sympe", "--seeds", "0", "--L", "4", "--features", "4",
                          "--scorer-features", "2", "--pe-features", "2", "--batch-size", "4", "--num-steps", "3",
                          "--warmup-steps", "1", "--num-eval", "32", "--grid-n", "5", "--checkpoint-every", "3",
                          "--tag", "tiny"], root=tmp_path) == 0
