"""experiments/report.py: README sections are rendered from result files, and only from them."""

import json

from experiments import report


def _digress_summary(seeds):
    row = {"label": "DiGress + SymPE (nodes only)", "paper_nll": None, "seeds": seeds, "nll": [80.5, 1.5],
           "nll_sem_within_seed": 0.7, "validity": [0.9, 0.0], "relaxed_validity": [0.95, 0.0],
           "uniqueness": [0.99, 0.0], "novelty": None, "train_wall_time_s": 1000.0}
    cfg = {"num_train": 20000, "n_layers": 4, "dx": 128, "T": 100, "num_steps": 2000, "batch_size": 128,
           "num_test": 2048, "num_samples": 512}
    return {"preset": "cpu", "command": "python -m experiments.digress_qm9 --preset cpu", "config": cfg,
            "seeds": seeds, "order": ["sympe"], "rows": {"sympe": row}, "complete": False}


def test_digress_section_reports_the_right_spread(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.digress_section() is None
    (tmp_path / "digress_qm9").mkdir()
    path = tmp_path / "digress_qm9" / "summary.json"
    path.write_text(json.dumps(_digress_summary([0])))
    text = report.digress_section()
    assert "80.50 ± 0.70" in text and "standard error" in text and "Partial" in text   # one seed: the SEM
    path.write_text(json.dumps(_digress_summary([0, 1, 2])))
    assert "80.50 ± 1.50" in report.digress_section()                                  # seeds: their std


def test_render_replaces_only_marked_sections(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    readme = "intro\n<!-- BEGIN digress -->\nstale\n<!-- END digress -->\ntail\n"
    out = report.render(readme)
    assert out.startswith("intro\n") and out.endswith("tail\n") and "stale" not in out
    assert "No result file yet" in out


def test_autoencoder_variants_sit_beside_the_preset_run(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    d = tmp_path / "graph_autoencoder"
    d.mkdir()
    base = {"preset": "cpu", "rows": ["sympe"], "seeds": [0], "latent": 8, "learning_rate": 1e-3}
    (d / "summary.json").write_text(json.dumps({"config": base}))
    assert report.graph_autoencoder_variants_section() is None                  # no variant yet

    def record(preset, latent, error, seed=0):
        return {"row": "sympe", "seed": seed, "config": {**base, "preset": preset, "latent": latent},
                "test": {"edge_error_pct": error}, "train_subset": {"edge_error_pct": error / 2}}
    (d / "cpu_sympe_seed0.json").write_text(json.dumps(record("cpu", 8, 1.3)))
    (d / "cpu-lat16_sympe_seed0.json").write_text(json.dumps(record("cpu-lat16", 16, 1.0)))
    text = report.graph_autoencoder_variants_section()
    assert "--preset cpu --tag lat16 --latent 16 --rows sympe --seeds 0`" in text
    assert "| latent = 16 |" in text and "| 1.00 | 0.50 | 1.30 |" in text
    assert text.count("\n") == 2                                                   # the preset's own run is no variant

    # A second seed joins the same line: mean ± population std, per-seed values, the preset's seeds alike.
    (d / "cpu_sympe_seed1.json").write_text(json.dumps(record("cpu", 8, 1.1, seed=1)))
    (d / "cpu-lat16_sympe_seed1.json").write_text(json.dumps(record("cpu-lat16", 16, 0.8, seed=1)))
    text = report.graph_autoencoder_variants_section()
    assert text.count("\n") == 2 and "--rows sympe --seeds 0,1`" in text
    assert "| 0, 1 | 0.90 ± 0.10 (1.00, 0.80) | 0.45 ± 0.05 | 1.20 ± 0.10 |" in text


def test_autoencoder_on_demand_rows_follow_the_preset_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    (tmp_path / "graph_autoencoder").mkdir()

    def row(label, error, paper=None):
        return {"label": label, "paper": paper, "seeds": [0, 1], "edge_error_pct": [error, 0.1],
                "f1": [0.98, 0.001], "train_edge_error_pct": [error / 2, 0.05]}
    summary = {"preset": "cpu", "command": "python experiments/graph_autoencoder.py --preset cpu",   # an old record
               "config": {"num_steps": 8000, "batch_size": 16, "learning_rate": 1e-3, "num_test": 500},
               "order": ["sympe"], "on_demand": ["features"],
               "rows": {"sympe": row("SymPE", 1.1, 0.77), "features": row("structural features", 8.5)},
               "wl_floor": {"floor_percent": 0.75, "floor_percent_distance_decoder": 1.04,
                            "num_not_fully_refined": 235, "num_graphs": 500},
               "tie_orbit_agreement": {"ties_equal_orbits": 498, "graphs": 500, "tied_non_automorphic_pair_pct": 0.0}}
    (tmp_path / "graph_autoencoder" / "summary.json").write_text(json.dumps(summary))
    lines = report.graph_autoencoder_section().splitlines()
    sympe = next(i for i, line in enumerate(lines) if line.startswith("| SymPE |"))
    assert lines[sympe + 1].startswith("| structural features (on demand) | 2 | 8.50 ± 0.10 |")
    assert "`python -m experiments.graph_autoencoder --preset cpu --rows features`" in "\n".join(lines)

    del summary["on_demand"]                            # summaries written before on-demand rows existed
    (tmp_path / "graph_autoencoder" / "summary.json").write_text(json.dumps(summary))
    assert "on demand" not in report.graph_autoencoder_section()


def test_autoencoder_latent_sweep_names_the_lowest_validation_bce(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    d = tmp_path / "graph_autoencoder"
    d.mkdir()
    base = {"preset": "cpu", "rows": ["sympe", "laplacian"], "seeds": [0], "latent": 32, "num_steps": 8000,
            "learning_rate": 1e-3}
    (d / "summary.json").write_text(json.dumps({"config": base, "order": ["sympe", "laplacian"]}))

    def write(preset, row, latent, bce, error, **changes):
        rec = {"row": row, "seed": 0, "config": {**base, "preset": preset, "latent": latent, **changes},
               "best_val": {"val_bce": bce}, "test": {"edge_error_pct": error}}
        (d / f"{preset}_{row}_seed0.json").write_text(json.dumps(rec))
    write("cpu", "sympe", 32, 0.090, 0.8)
    assert report.graph_autoencoder_latent_section() is None              # one latent: no sweep
    write("cpu", "laplacian", 32, 0.094, 1.0)
    write("cpu-lat8", "sympe", 8, 0.096, 1.3)
    write("cpu-lat8", "laplacian", 8, 0.095, 0.97)
    write("cpu-lr", "sympe", 8, 0.050, 0.1, learning_rate=3e-3)           # another change too: not in the sweep
    text = report.graph_autoencoder_latent_section()
    assert "| sympe | 0.0960, 1.30 (0) | 0.0900, 0.80 (0) |" in text
    assert "latent 8: 0.0955, latent 32: 0.0920. Lowest: latent 32 (the preset's)." in text
    write("cpu-lat8", "laplacian", 8, 0.080, 0.97)                         # now latent 8 is lower on validation
    assert "Lowest: latent 8, not the preset's 32." in report.graph_autoencoder_latent_section()


def test_recorded_script_commands_are_shown_as_module_commands():
    assert report._command("python experiments/ising.py --preset cpu") == "python -m experiments.ising --preset cpu"
    assert (report._command("python experiments/digress_sampling.py --preset cpu")
            == "python -m experiments.digress_qm9.sampling --preset cpu")
    assert (report._command("python experiments/graph_autoencoder_entropy.py --tags a")
            == "python -m experiments.graph_autoencoder.entropy --tags a")
    assert report._command("python benchmarks/gnn_encoder.py --quick") == "python -m benchmarks.gnn_encoder --quick"
    assert report._command("python -m experiments.ising --preset cpu") == "python -m experiments.ising --preset cpu"


def test_sections_in_docs_link_relative_to_docs(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "SECTIONS", {"x": lambda: "![a](results/a.png) [b](docs/b.md) [c](https://c/results/)"})
    page = "<!-- BEGIN x -->\n<!-- END x -->\n"
    assert "![a](results/a.png) [b](docs/b.md)" in report.render(page)                         # README: the root
    assert "![a](../results/a.png) [b](b.md) [c](https://c/results/)" in report.render(page, "../")   # docs/


def test_summary_has_one_line_per_method_and_the_paper_beside(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.summary_section() is None
    (tmp_path / "digress_qm9").mkdir()
    (tmp_path / "digress_qm9" / "summary.json").write_text(json.dumps(_digress_summary([0, 1, 2])))
    (tmp_path / "graph_autoencoder").mkdir()
    row = {"label": "SymPE", "paper": 0.77, "seeds": [0, 1, 2], "edge_error_pct": [0.78, 0.04]}
    (tmp_path / "graph_autoencoder" / "summary.json").write_text(json.dumps({"order": ["sympe"],
                                                                             "rows": {"sympe": row}}))
    lines = report.summary_section().splitlines()
    assert "| [Graph autoencoder](docs/graph_autoencoder.md): test edge error % | SymPE | 0.78 ± 0.04 | 0.77 |" in lines
    assert any(line.startswith("| [DiGress on QM9](docs/digress_qm9.md)") and "| 80.50 ± 1.50 | - |" in line
               for line in lines)


def test_summary_leaves_out_unfinished_digress_rows(tmp_path, monkeypatch):
    """Bug: a row with one seed of three shown in the README beside the others, its standard
    error under the heading "mean ± std over seeds"."""
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    summary = _digress_summary([0, 1, 2])
    summary["rows"]["learned"] = dict(summary["rows"]["sympe"], label="learned", seeds=[0])
    summary["order"].append("learned")
    (tmp_path / "digress_qm9").mkdir()
    (tmp_path / "digress_qm9" / "summary.json").write_text(json.dumps(summary))
    text = report.summary_section()
    assert "| DiGress + SymPE (nodes only) | 80.50 ± 1.50 |" in text and "learned" not in text
    assert "over 3 seeds" in text


def test_check_reports_a_stale_page(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report, "ROOT", tmp_path)
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(report, "TARGETS", ("README.md", "docs/a.md"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("no sections\n")
    (tmp_path / "docs" / "a.md").write_text("<!-- BEGIN digress -->\nstale\n<!-- END digress -->\n")
    assert report.main(["--check"]) == 1 and "docs/a.md" in capsys.readouterr().out
    assert report.main([]) == 0 and report.main(["--check"]) == 0                # written, then current
    assert "No result file yet" in (tmp_path / "docs" / "a.md").read_text()


def test_digress_section_does_not_call_controls_on_fewer_seeds_partial(tmp_path, monkeypatch):
    """Leak controls on seed 0 beside method rows on seeds 0-2 is the planned set, not an unfinished
    run; a method row short of a seed is."""
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    (tmp_path / "digress_qm9").mkdir()
    summary = _digress_summary([0, 1, 2])
    control = {**summary["rows"]["sympe"], "label": "leak control", "seeds": [0], "control": True}
    summary["rows"]["index_pe"], summary["order"] = control, ["sympe", "index_pe"]
    path = tmp_path / "digress_qm9" / "summary.json"
    path.write_text(json.dumps(summary))
    text = report.digress_section()
    assert "Partial" not in text and "leak controls were trained on seed 0 only" in text
    summary["rows"]["sympe"]["seeds"] = [0, 1]
    path.write_text(json.dumps(summary))
    assert "Partial" in report.digress_section()
