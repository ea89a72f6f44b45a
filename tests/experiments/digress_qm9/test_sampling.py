"""experiments.digress_qm9.sampling: its summary statistics and arguments (the sampling itself is
the same ``DiGress.sample`` tested in tests/experiments/digress_qm9/diffusion)."""

import json

import numpy as np
import pytest

from experiments import report
from experiments.digress_qm9 import sampling as ds


def _run(valid: list[bool]) -> dict:
    smiles = ["C" if v else None for v in valid]
    return {"metrics": {"num_graphs": len(valid), "validity": float(np.mean(valid)), "relaxed_validity": 1.0,
                        "uniqueness": 1.0, "novelty": None, "valid_connected": float(np.mean(valid))},
            "smiles": smiles}


def test_paired_difference_uses_the_pairing():
    a = np.array([1, 1, 0, 0, 1, 0], bool)
    np.testing.assert_allclose(ds.paired_difference(a, a), [0.0, 0.0])
    d, se = ds.paired_difference(a, ~a)
    assert d == 0.0 and se > 0.4                       # same rate, every pair differs


def test_summarize_pools_seeds_and_pairs_within_seeds():
    results = {"digress": {0: {"step": _run([1, 1, 1, 0])}, 1: {"step": _run([1, 0, 1, 1])}},
               "sympe": {0: {"step": _run([1, 1, 0, 0]), "trajectory": _run([1, 1, 1, 1])},
                         1: {"step": _run([1, 0, 1, 1]), "trajectory": _run([1, 1, 1, 1])}}}
    out = ds.summarize(results, ("digress", "sympe"), ("step", "trajectory"))
    assert set(out["pooled"]) == {"digress/step", "sympe/step", "sympe/trajectory"}   # digress: no model key
    assert out["pooled"]["digress/step"]["num_samples"] == 8
    assert out["pooled"]["digress/step"]["validity"] == 0.75
    assert out["pooled"]["sympe/trajectory"]["validity_se"] == 0.0
    assert out["paired_validity_differences"]["sympe/trajectory - digress/step"][0] == pytest.approx(0.25)
    assert out["paired_validity_differences"]["sympe/step - digress/step"][0] == pytest.approx(-0.125)


def test_parse_args_validates_model_keys():
    cfg, _, keys = ds.parse_args(["--preset", "demo", "--model-keys", "trajectory", "--num-samples", "16"])
    assert keys == ("trajectory",) and cfg.num_samples == 16 and cfg.preset == "demo"
    with pytest.raises(SystemExit):
        ds.parse_args(["--model-keys", "sometimes"])


def test_report_renders_the_study(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.digress_sampling_section() is None
    results = {"digress": {0: {"step": _run([1, 1, 1, 0])}}, "sympe": {0: {"step": _run([1, 1, 0, 0])}}}
    study = {"command": "python -m experiments.digress_qm9.sampling --preset cpu", "num_samples": 4, "seeds": [0],
             **ds.summarize(results, ("digress", "sympe"), ("step",))}
    (tmp_path / "digress_qm9").mkdir()
    (tmp_path / "digress_qm9" / "cpu_sampling.json").write_text(json.dumps(study))
    text = report.digress_sampling_section()
    assert "| sympe | redrawn at every reverse step | 0 | 4 | 0.500 ± 0.250 |" in text
    assert "`sympe/step` -0.250 ± 0.250" in text


def test_previous_runs_are_reused_only_for_the_same_config(tmp_path):
    cfg, _, _ = ds.parse_args(["--preset", "demo", "--num-samples", "4"])
    path = tmp_path / "demo_sampling.json"
    assert ds.previous_runs(path, cfg) == {}
    runs = {"digress": {"0": {"step": _run([1, 0, 1, 1])}}}
    path.write_text(json.dumps({"num_samples": 4, "config": ds.common.run_config(cfg), "runs": runs}))
    assert list(ds.previous_runs(path, cfg)["digress"]) == [0]
    cfg8, _, _ = ds.parse_args(["--preset", "demo", "--num-samples", "8"])
    assert ds.previous_runs(path, cfg8) == {}                   # other sample count: sample again
    assert ds.summarize({}, ("digress",), ("step",))["pooled"] == {}
