"""experiments/_lib/config.py: what identifies a run, so that resuming and skipping are safe."""

import dataclasses
from typing import ClassVar

from experiments._lib import config as common


@dataclasses.dataclass(frozen=True)
class _Config:
    preset: str = "cpu"
    encodings: tuple[str, ...] = ("a", "b")
    seeds: tuple[int, ...] = (0,)
    lr: float = 1e-3


def test_adding_seeds_or_rows_keeps_the_run_identity():
    base = _Config()
    more = dataclasses.replace(base, encodings=("b", "a", "c"), seeds=(0, 1, 2))
    assert common.run_dir_name(base) == common.run_dir_name(more)
    assert common.same_run_config(dataclasses.asdict(base), more)


def test_changing_a_training_field_changes_the_run_identity():
    base, other = _Config(), _Config(lr=3e-4)
    assert common.run_dir_name(base) != common.run_dir_name(other)
    assert not common.same_run_config(dataclasses.asdict(base), other)
    assert not common.same_run_config(None, base)       # a record without a config never matches


@dataclasses.dataclass(frozen=True)
class _LaterConfig(_Config):
    LATE_DEFAULTS: ClassVar[dict] = {"decay": 0.0}
    decay: float = 0.0


def test_a_field_added_later_at_its_old_value_keeps_the_run_identity():
    old_record = dataclasses.asdict(_Config())          # written before "decay" existed
    assert common.run_dir_name(_LaterConfig()) == common.run_dir_name(_Config())
    assert common.same_run_config(old_record, _LaterConfig())
    assert not common.same_run_config(old_record, _LaterConfig(decay=0.1))
    assert common.run_dir_name(_LaterConfig(decay=0.1)) != common.run_dir_name(_Config())


def test_existing_records_match_on_run_config(tmp_path):
    import json
    record = {"row": "a", "seed": 0, "config": dataclasses.asdict(_Config(seeds=(0, 5)))}
    (tmp_path / "cpu_a_seed0.json").write_text(json.dumps(record))
    (tmp_path / "cpu_b_seed0.json").write_text(json.dumps({**record, "row": "b", "config": {"lr": 1.0}}))
    found = common.existing_records(tmp_path, _Config(), ("a", "b"), "row")
    assert [r["row"] for r in found] == ["a"]


def test_collect_records_runs_or_reads_and_says_if_complete(tmp_path):
    import argparse
    import json
    cfg = _Config(encodings=("a", "b"), seeds=(0, 1))
    done = []

    def run(name, seed):
        done.append((name, seed))
        record = {"row": name, "seed": seed, "config": dataclasses.asdict(cfg)}
        if (name, seed) != ("b", 1):
            (tmp_path / f"cpu_{name}_seed{seed}.json").write_text(json.dumps(record))
        return record

    _, records, complete = common.collect_records(cfg, argparse.Namespace(summarize_only=False), tmp_path, run)
    assert done == [("a", 0), ("b", 0), ("a", 1), ("b", 1)] and len(records) == 4 and complete
    shown, records, complete = common.collect_records(cfg, argparse.Namespace(summarize_only=True), tmp_path, run)
    assert len(done) == 4 and len(records) == 3 and not complete and shown.encodings == ("a", "b")
    empty = tmp_path / "empty"
    empty.mkdir()
    import pytest
    with pytest.raises(SystemExit, match="no result files"):
        common.collect_records(cfg, argparse.Namespace(summarize_only=True), empty, run)


def test_command_line_drops_flags_that_do_not_change_results():
    assert (common.command_line("ising", ["--preset", "cpu", "--summarize-only", "--force"])
            == "python -m experiments.ising --preset cpu")
    assert common.command_line("digress_qm9.sampling", []) == "python -m experiments.digress_qm9.sampling"


def test_a_tag_names_a_variant_that_never_overwrites_the_preset(tmp_path):
    import pytest
    presets = {"cpu": _Config()}
    cfg, _ = common.parse_config(_Config, presets, ["--tag", "wd1", "--lr", "0.1"])
    assert cfg.preset == "cpu-wd1" and cfg.lr == 0.1
    assert common.result_path(tmp_path, cfg, "a", 0).name == "cpu-wd1_a_seed0.json"
    assert common.run_dir_name(cfg).startswith("cpu-wd1-")
    with pytest.raises(SystemExit):
        common.parse_config(_Config, presets, ["--tag", "../x"])


def test_only_the_cpu_preset_writes_the_unprefixed_summary():
    assert common.summary_prefix("cpu") == ""
    assert common.summary_prefix("paper") == "paper_"
    assert common.summary_prefix("cpu-wd1") == "cpu-wd1_"


@dataclasses.dataclass(frozen=True)
class _OldRowsConfig:             # a config as recorded before the selection field was renamed
    preset: str = "cpu"
    rows: tuple[str, ...] = ("a", "b")
    seeds: tuple[int, ...] = (0,)
    lr: float = 1e-3


def test_records_written_with_rows_or_methods_match_the_renamed_encodings_field(tmp_path):
    import json
    old = dataclasses.asdict(_OldRowsConfig())
    assert common.same_run_config(old, _Config())
    assert common.same_run_config({**{k: v for k, v in old.items() if k != "rows"}, "methods": ["x"]}, _Config())
    assert common.run_dir_name(_OldRowsConfig()) == common.run_dir_name(_Config())     # same checkpoints
    assert not common.same_run_config(old, _Config(lr=3e-4))
    (tmp_path / "cpu_a_seed0.json").write_text(json.dumps({"row": "a", "seed": 0, "config": old}))
    assert [r["row"] for r in common.existing_records(tmp_path, _Config(), ("a", "b"), "row")] == ["a"]


def test_run_workdir_is_deleted_only_with_force(tmp_path, capsys):
    cfg = _Config()
    workdir = common.run_workdir(tmp_path, "exp", cfg, "a", 3)
    assert workdir == tmp_path / "runs" / "exp" / common.run_dir_name(cfg) / "a_seed3" and not workdir.exists()
    (workdir / "checkpoint").mkdir(parents=True)
    assert common.run_workdir(tmp_path, "exp", cfg, "a", 3) == workdir and workdir.exists()   # resumable
    other = common.run_workdir(tmp_path, "exp", cfg, "b", 3)
    other.mkdir(parents=True)
    assert common.run_workdir(tmp_path, "exp", cfg, "a", 3, force=True) == workdir
    assert not workdir.exists() and other.exists()          # only that run's directory
    assert "--force" in capsys.readouterr().out


def test_demo_and_smoke_results_go_to_an_ignored_path(tmp_path):
    for preset, scratch in (("demo", True), ("smoke", True), ("cpu-demo", True), ("paper-smoke2", True),
                            ("cpu", False), ("paper", False), ("cpu-long", False), ("cpu-lat16", False)):
        assert common.is_scratch(preset) is scratch, preset
        where = common.results_dir(tmp_path, "exp", _Config(preset=preset))
        assert where == (tmp_path / "runs" / "exp" / "results" if scratch else tmp_path / "results" / "exp")


@dataclasses.dataclass(frozen=True)
class _CliConfig:
    preset: str = common.option("cpu", "preset name")
    encodings: tuple[str, ...] = common.option(("a", "b"), "runs", aliases=("--rows",))
    seeds: tuple[int, ...] = common.option((0,), "seeds")
    lr: float = common.option(1e-3, "learning rate (100% of it)")
    shuffle: bool = common.option(True, "shuffle the data")


def test_parse_config_help_bools_and_old_flag_names(capsys):
    import pytest
    presets = {"cpu": _CliConfig(), "demo": _CliConfig(preset="demo", shuffle=False)}
    cfg, _ = common.parse_config(_CliConfig, presets, [])
    assert cfg == _CliConfig()
    cfg, args = common.parse_config(_CliConfig, presets, ["--preset", "demo", "--shuffle", "--rows", "b",
                                                          "--seeds", "1,2", "--tag", "x", "--force"])
    assert cfg == _CliConfig(preset="demo-x", encodings=("b",), seeds=(1, 2), shuffle=True) and args.force
    assert common.parse_config(_CliConfig, presets, ["--no-shuffle"])[0].shuffle is False
    assert common.field_help(_CliConfig)["lr"] == "learning rate (100% of it)"
    with pytest.raises(SystemExit):
        common.parse_config(_CliConfig, presets, ["--help"])
    text = capsys.readouterr().out
    for piece in ("--encodings A,B,..., --rows A,B,...", "shuffle the data", "learning rate (100% of it)",
                  "--summarize-only", "--force", "--tag", "--no-shuffle"):
        assert piece in text, piece
