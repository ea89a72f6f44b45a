"""One command-line style for every experiment: the same flags for the same things, and a help
line for every option of every script's parser."""

import argparse

import pytest

from experiments.demo import main as demo
from experiments.digress_qm9 import main as dq
from experiments.digress_qm9 import sampling as ds
from experiments.graph_autoencoder import entropy
from experiments.graph_autoencoder import main as ga
from experiments.ising import main as ising

COMMON_FLAGS = ("--preset", "--encodings", "--seeds", "--force", "--tag", "--summarize-only")


class _Parsed(Exception):
    pass


def _parser_of(entry, argv, monkeypatch) -> argparse.ArgumentParser:
    """The parser ``entry(argv)`` parses its command line with (stopped right there)."""
    seen = []
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        if self.add_help:              # not a parents=[...] pre-parser
            seen.append(self)
            raise _Parsed
        return original(self, args, namespace)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    with pytest.raises(_Parsed):
        entry(argv)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", original)
    return seen[-1]


ENTRIES = {"graph_autoencoder": ga.parse_args, "ising": ising.parse_args, "digress_qm9": dq.parse_args,
           "digress_qm9.sampling": ds.parse_args, "graph_autoencoder.entropy": entropy.main, "demo": demo.main}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_option_has_a_help_line(name, monkeypatch):
    parser = _parser_of(ENTRIES[name], [], monkeypatch)
    options = [a for a in parser._actions if a.option_strings]
    assert len(options) > 1
    for action in options:
        assert action.help and action.help != argparse.SUPPRESS and action.help.strip(), action.option_strings
    parser.format_help()                                   # every help string formats (no stray %)


@pytest.mark.parametrize("name", ["graph_autoencoder", "ising", "digress_qm9", "digress_qm9.sampling"])
def test_experiments_share_the_same_flags(name, monkeypatch):
    parser = _parser_of(ENTRIES[name], [], monkeypatch)
    flags = {s for a in parser._actions for s in a.option_strings}
    assert set(COMMON_FLAGS) <= flags


@pytest.mark.parametrize("module", [ga, ising, dq])
def test_presets_are_named_alike_and_quick_ones_write_under_runs(module, tmp_path):
    assert {"demo", "cpu", "paper"} <= set(module.PRESETS)
    for name, cfg in module.PRESETS.items():
        assert cfg.preset == name
        where = module.common.results_dir(tmp_path, "x", cfg)
        assert (where.parts[-3] == "runs") == (name == "demo"), name


def test_every_config_field_has_help():
    for cls in (ga.Config, ising.Config, dq.Config):
        for field, text in ga.common.field_help(cls).items():
            assert text.strip(), f"{cls.__module__}.{cls.__name__}.{field}"


@pytest.mark.parametrize("module", [ga, ising, dq, demo])
def test_run_errors_end_every_experiment_with_one_line(module, monkeypatch):
    """Bug: a diverged run (or a locked or damaged run directory) ended the CLI with a traceback."""
    from experiments._lib import train as T

    def diverge(*args, **kwargs):
        raise T.TrainingDiverged("Training diverged at step 3: non-finite loss.\nNo checkpoint was saved.",
                                 step=3, quantity="loss", last_checkpoint=None)

    monkeypatch.setattr(module, "graph_part" if module is demo else "parse_args", diverge)
    with pytest.raises(SystemExit) as info:
        module.main([])
    line = info.value.code   # SystemExit(str): printed to stderr, exit status 1
    assert isinstance(line, str) and "\n" not in line
    assert line.startswith("error: Training diverged at step 3") and "smaller --learning-rate" in line
