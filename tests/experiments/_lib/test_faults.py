"""Fault injection on a real training process: SIGKILLs at random steps (fixed seed), a duplicate
run started while one is running, a corrupt newest checkpoint and a stray empty step directory;
the resumed run must end exactly as an uninterrupted one, with no log row written twice."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments._lib import train as T
from tests.experiments._lib import _fault_run

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _env():
    env = dict(os.environ)  # XLA_FLAGS as in this process, so the child computes bit for bit alike
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir or ""
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return env


def _spawn(workdir, log, pause=None):
    args = [sys.executable, "-m", "tests.experiments._lib._fault_run", str(workdir)]
    args += [] if pause is None else [str(pause)]
    try:
        with log.open("w") as err:
            return subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=err, text=True)
    except OSError as e:  # only if this environment cannot spawn processes at all
        pytest.skip(f"cannot spawn a subprocess: {e}")


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()


def _wait_until_paused(proc, step, log):
    line = proc.stdout.readline()
    if line != f"paused at {step}\n":
        _kill(proc)
        raise AssertionError(f"expected 'paused at {step}', got {line!r}; stderr:\n{log.read_text()[-3000:]}")


def _kill_when_paused(proc, step, log):
    _wait_until_paused(proc, step, log)
    _kill(proc)


def _finished(proc, log, timeout=180):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out, log.read_text()


def _without_timing(rows):
    return [{k: v for k, v in row.items() if k not in ("steps_per_sec", "wall_time")} for row in rows]


def _step_dirs(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_kills_a_duplicate_and_a_corrupt_checkpoint_end_as_an_uninterrupted_run(tmp_path):
    """Bugs: a duplicate run writes every log row twice; a corrupt newest checkpoint blocks resume."""
    workdir = tmp_path / "run"
    rng = np.random.default_rng(24)
    kills = [int(rng.integers(1, 13)), int(rng.integers(13, 25)), int(rng.integers(25, 40))]

    first = _spawn(workdir, tmp_path / "first.err", kills[0])
    try:
        _wait_until_paused(first, kills[0], tmp_path / "first.err")
        # An identical run started while the first one is alive is refused at once, naming it.
        code, out, err = _finished(_spawn(workdir, tmp_path / "duplicate.err"), tmp_path / "duplicate.err")
        assert code == 1 and out == "", err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: ") and "in use by another run" in last and f"pid {first.pid} " in last
    finally:
        _kill(first)

    for n, step in enumerate(kills[1:]):  # the kill leaves the lock free: the next run resumes
        _kill_when_paused(_spawn(workdir, tmp_path / f"kill{n}.err", step), step, tmp_path / f"kill{n}.err")

    steps = _step_dirs(workdir)
    assert len(steps) >= 2, steps
    newest = workdir / "checkpoints" / str(steps[-1])
    for path in (newest / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(b"\x00garbage" * 4)
    (workdir / "checkpoints" / "1000").mkdir()  # a stray empty step directory

    code, out, err = _finished(_spawn(workdir, tmp_path / "resume.err"), tmp_path / "resume.err")
    assert code == 0, err[-3000:]
    resumed = json.loads(out.strip().splitlines()[-1])
    assert resumed["resumed_from"] == steps[-2]
    assert f"resuming from step {steps[-2]}" in err
    rejected = sorted(p.name.split("-")[0] for p in (workdir / "checkpoints_rejected").iterdir())
    assert rejected == sorted([str(steps[-1]), "1000"])  # moved aside, not deleted

    straight = _fault_run.train(tmp_path / "straight")
    expected = _fault_run.summary(straight)
    assert {k: v for k, v in resumed.items() if k != "resumed_from"} == \
        {k: v for k, v in expected.items() if k != "resumed_from"}
    rows = T.read_log(workdir)
    keys = [(row["step"], row["split"]) for row in rows]
    assert len(keys) == len(set(keys)), "a log row was written twice"
    assert _without_timing(rows) == _without_timing(straight.history)
