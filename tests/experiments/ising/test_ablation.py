"""The Ising ablation and the per-phase evaluation it reads, end to end on a tiny budget."""

import dataclasses
import json

import numpy as np
import pytest

from experiments.ising import ablation, data as ising
from experiments.ising import main as ising_main

TINY = dict(L=4, features=(4,), scorer_features=(2,), pe_features=2, batch_size=4, num_steps=3, warmup_steps=1,
            num_eval=32, grid_n=5, checkpoint_every=3)


def test_summarize_counts_every_phase_against_the_exact_minimum():
    """Bug to catch: per-phase fractions taken over the wrong instances (or only stripes and ferro)."""
    ev = {"e_min": np.zeros(6), "e_inv": np.ones(6), "e_expected": np.ones(6),
          "e_sampled": np.array([0, 1, 0, 0, 1, 0.]), "e_argmax": np.array([0, 1, 0, 1, 0, 0.]),
          "phase_true": np.array([ising.FERRO, ising.FERRO, ising.ANTIFERRO, ising.ANTIFERRO,
                                  ising.ROW_STRIPES, ising.COLUMN_STRIPES])}
    s = ising_main.summarize(ev)
    assert (s["ferro_solved_argmax"], s["antiferro_solved_argmax"]) == (0.5, 0.5)
    assert (s["row_stripes_solved_argmax"], s["column_stripes_solved_argmax"]) == (1.0, 1.0)
    assert (s["row_stripes_solved_sampled"], s["stripe_solved_sampled"]) == (0.0, 0.5)
    assert (s["num_antiferro"], s["num_stripe"]) == (2, 2)


def test_plane_test_set_holds_every_phase():
    jx, jy, h = ising_main.plane_params(1, 512)
    phases = np.asarray(ising.ground_state_phase(jx, jy, h, 8))
    counts = np.bincount(phases, minlength=5)
    assert counts[:4].min() > 0.15 * 512 and counts[4] == 0        # each ordered phase near a quarter


def test_ablation_writes_a_summary_per_variant(tmp_path, monkeypatch):
    """Bugs to catch: a variant missing from the summary, and a run on a subset of the seeds that
    overwrites the summary of seeds 0-2 (it writes its own file)."""
    monkeypatch.setattr(ablation, "BASE", dataclasses.replace(ablation.BASE, **TINY))
    assert ablation.main(["--variants", "base,lr_1e-3", "--seeds", "0"], root=tmp_path) == 0
    assert not (tmp_path / "results/ising/ablation.json").exists()
    summary = json.loads((tmp_path / "results/ising/ablation_seeds0.json").read_text())
    assert list(summary["variants"]) == ["base", "lr_1e-3"]
    row = summary["variants"]["lr_1e-3"]
    assert row["seeds"] == [0] and row["overrides"] == {"learning_rate": 1e-3}
    for key in ("grid_solved_argmax", "plane_antiferro_solved_argmax", "plane_row_stripes_solved_argmax"):
        assert len(row[key]) == 1 and 0 <= row[key][0] <= 1
    assert (tmp_path / "results/ising/ablation_seeds0.png").stat().st_size > 0
    record = json.loads((tmp_path / "results/ising/ablation/ablation-base_sympe_seed0.json").read_text())
    assert record["config"]["learning_rate"] == 3e-3 and record["config"]["L"] == 4
    # a second call trains nothing and keeps both variants
    assert ablation.main(["--variants", "base", "--seeds", "0"], root=tmp_path) == 0
    assert list(json.loads((tmp_path / "results/ising/ablation_seeds0.json").read_text())["variants"]) == ["base", "lr_1e-3"]


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(SystemExit):
        ablation.parse_args(["--variants", "nope"])
