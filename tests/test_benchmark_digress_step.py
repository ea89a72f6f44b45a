"""What ``benchmarks.digress_step`` keeps when it re-measures only part of its result file (issue #22).

Bug this catches: a run without ``--reference`` (the modes part) overwriting the same-run
comparison with the PyTorch reference, or keeping it under the wrong command line.
"""

import json

from benchmarks import digress_step as ds


def test_a_run_without_reference_keeps_the_previous_comparison(tmp_path, monkeypatch):
    out = tmp_path / "digress_step.json"
    out.write_text(json.dumps({"command": "python -m benchmarks.digress_step --reference DIR",
                               "reference": {"configurations": {"paper:64": {"ratio": 2.0}}}, "runs": {"old": {}}}))
    monkeypatch.setattr(ds, "measure", lambda a: {"new": True})
    assert ds.main(["--quick", "--allocator", "current", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["reference"] == {"configurations": {"paper:64": {"ratio": 2.0}}}
    assert result["reference_command"] == "python -m benchmarks.digress_step --reference DIR"
    assert "not re-measured" in result["reference_note"]
    assert list(result["runs"].values()) == [{"new": True}] and result["command"].endswith(str(out))


def test_without_a_previous_file_no_reference_is_stored(tmp_path, monkeypatch):
    out = tmp_path / "digress_step.json"
    monkeypatch.setattr(ds, "measure", lambda a: {"new": True})
    assert ds.main(["--quick", "--allocator", "current", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["reference"] is None and "reference_note" not in result
