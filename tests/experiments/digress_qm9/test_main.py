"""experiments.digress_qm9 without training: presets, data and batches, summary and figure.

Nothing here compiles a model; the end-to-end demo run is
``python -m experiments.digress_qm9 --preset demo`` (a tiny model, 4 steps, on the fixture;
about 1.5 min with a cold compilation cache, so it is not part of the suite).
"""

import numpy as np
import pytest

from experiments.digress_qm9 import main as dq
from experiments.digress_qm9.graph_transformer import GraphTransformerConfig


def test_presets_parse_and_reject_unknown_rows():
    cfg, _ = dq.parse_args(["--preset", "cpu"])
    assert cfg.encodings == ("digress", "noise", "sympe") and cfg.T == 100 and cfg.n_layers == 4
    cfg, _ = dq.parse_args(["--preset", "paper", "--encodings", "sympe_edges", "--num-steps", "7"])
    assert cfg.T == 500 and cfg.encodings == ("sympe_edges",) and cfg.num_steps == 7
    assert dq.net_config(cfg) == GraphTransformerConfig.paper(out_dim_E=4)
    assert dq.parse_args(["--rows", "sympe"])[0].encodings == ("sympe",)     # the old flag name still parses
    with pytest.raises(SystemExit):
        dq.parse_args(["--encodings", "sympe_nodes"])
    assert set(dq.MODE) == set(dq.ROWS)
    assert set(dq.PRESETS) == {"demo", "cpu", "paper"}


def test_old_records_with_rows_match_the_new_config():
    import dataclasses
    cfg = dq.PRESETS["cpu"]
    old = {("rows" if k == "encodings" else k): v for k, v in dataclasses.asdict(cfg).items()}
    assert "rows" in old and "encodings" not in old
    assert dq.common.same_run_config(old, cfg)
    assert dq.common.same_run_config(old, dataclasses.replace(cfg, encodings=("sympe_edges",), seeds=(4,)))
    assert not dq.common.same_run_config(old, dataclasses.replace(cfg, T=50))


def test_force_deletes_the_run_directory(tmp_path):
    cfg = dq.PRESETS["demo"]
    workdir = dq.common.run_workdir(tmp_path, "digress_qm9", cfg, "digress", 0, eval_fields=dq.EVAL_FIELDS)
    (workdir / "state").mkdir(parents=True)
    assert dq.common.run_workdir(tmp_path, "digress_qm9", cfg, "digress", 0, eval_fields=dq.EVAL_FIELDS) == workdir
    assert workdir.exists()
    dq.common.run_workdir(tmp_path, "digress_qm9", cfg, "digress", 0, force=True, eval_fields=dq.EVAL_FIELDS)
    assert not workdir.exists()


def test_data_batches_and_chunks(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMPE_JAX_CACHE", str(tmp_path))          # process the fixture into a temporary cache
    cfg = dq.PRESETS["demo"]
    data = dq.load_data(cfg)
    assert len(data.test_idx) == cfg.num_test and len(data.train_idx) == len(data.train) > 100
    np.testing.assert_allclose(data.info.edge_marginals.sum(), 1.0)
    b = dq.make_batch(data.train, data.train_idx[:5])
    assert b.X.shape == (5, 9, 4) and b.E.shape == (5, 9, 9, 4)
    np.testing.assert_array_equal(b.X.sum(-1), b.node_mask)
    pairs = b.node_mask[:, :, None] & b.node_mask[:, None, :] & ~np.eye(9, dtype=bool)
    np.testing.assert_array_equal(b.E.sum(-1), pairs)                  # one-hot on real pairs only
    chunks = list(dq._padded_chunks(np.arange(10), 4))
    assert [real for _, real in chunks] == [4, 4, 2] and all(len(c) == 4 for c, _ in chunks)
    assert dq.build(cfg, "sympe_edges", data.info).denoiser.mode == "sympe_edges"


def _record(row, seed, nll, smiles):
    return {"row": row, "label": dq.LABELS[row], "seed": seed,
            "test_nll": {"nll": nll, "node_count": 1.0, "prior_kl": 0.0, "diffusion": nll - 3, "reconstruction": 2.0,
                         "nll_sem": 0.5},
            "metrics": {"validity": 0.5, "relaxed_validity": 0.75, "uniqueness": 1.0, "novelty": None,
                        "valid_connected": 0.5},
            "samples_smiles": smiles, "train": {"wall_time_s": 1.0}}


def test_summary_and_figure(tmp_path):
    cfg = dq.PRESETS["demo"]
    records = [_record("digress", 0, 40.0, ["CCO", None]), _record("digress", 1, 42.0, [None]),
               _record("sympe_edges", 0, 30.0, ["c1ccccc1O", "CC(C)(C)C(=O)N", "C#N"])]
    summary = dq.aggregate(cfg, records, "python -m experiments.digress_qm9 --preset demo")
    assert summary["rows"]["digress"]["nll"] == [41.0, 1.0] and summary["rows"]["digress"]["novelty"] is None
    assert summary["rows"]["sympe_edges"]["paper_nll"] == 30.3
    dq.plot_samples(records, cfg, tmp_path / "samples.png")
    assert (tmp_path / "samples.png").stat().st_size > 5000


def test_training_seconds_counts_each_logged_step_once():
    history = [{"split": "train", "step": 50, "steps_per_sec": 1.0}, {"split": "eval", "step": 50},
               {"split": "train", "step": 100, "steps_per_sec": 2.0},
               {"split": "train", "step": 100, "steps_per_sec": 2.0}]   # logged again after a resume
    assert dq.training_seconds(history) == 50 / 1.0 + 50 / 2.0


def test_paired_differences_are_later_row_minus_earlier_row():
    cfg, _ = dq.parse_args(["--preset", "cpu", "--encodings", "digress,sympe", "--seeds", "0,1"])
    recs = [{"row": "digress", "seed": 0, "test_nll": {"per_molecule": [10.0, 12.0, 11.0]}},
            {"row": "sympe", "seed": 0, "test_nll": {"per_molecule": [9.0, 11.5, 10.0]}},
            {"row": "digress", "seed": 1, "test_nll": {"per_molecule": [10.0, 10.0, 10.0]}},
            {"row": "sympe", "seed": 1, "test_nll": {"per_molecule": [11.0, 10.0, 11.0]}}]
    out, per_seed = dq._paired_differences(cfg, recs)
    assert list(out) == ["sympe - digress"]
    np.testing.assert_allclose(out["sympe - digress"][0], (-2.5 + 2.0) / 6)      # pooled over molecules and seeds
    np.testing.assert_allclose(per_seed["sympe - digress"]["0"][0], -2.5 / 3)
    np.testing.assert_allclose(per_seed["sympe - digress"]["1"][0], 2.0 / 3)
    out, per_seed = dq._paired_differences(cfg, recs[:3])                        # seed 1 lacks sympe: seed 0 only
    assert list(per_seed["sympe - digress"]) == ["0"]
