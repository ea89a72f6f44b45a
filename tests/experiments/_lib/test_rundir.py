"""Tests of the run directories' lock, checks and errors (no training: see test_train.py)."""

import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

from experiments._lib import config as common
from experiments._lib import rundir

ROOT = pathlib.Path(__file__).resolve().parents[3]
HOLD = "import sys, time; from experiments._lib import rundir\nwith rundir.lock(sys.argv[1]):\n" \
       "    print('locked', flush=True)\n    time.sleep(600)"


@dataclasses.dataclass(frozen=True)
class _Config:
    preset: str = "cpu"
    lr: float = 1e-3
    seeds: tuple[int, ...] = (0,)


def test_the_lock_names_its_holder_and_is_released_when_it_is_killed(tmp_path):
    """A killed run must not leave a stale lock; the refusal names the holder (pid, host, start)."""
    try:
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                                  text=True)
    except OSError as e:  # only if this environment cannot spawn processes at all
        pytest.skip(f"cannot spawn a subprocess: {e}")
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(rundir.RunDirLocked) as info:
            with rundir.lock(tmp_path):
                pass
        message = str(info.value)
        assert str(tmp_path) in message and f"pid {holder.pid} on {socket.gethostname()}, started " in message
        assert info.value.holder["pid"] == holder.pid and info.value.path == tmp_path
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with rundir.lock(tmp_path) as path:  # at once: the kernel released the dead holder's lock
        record = json.loads(path.read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert path.read_text() == ""  # a finished holder leaves no record


def test_the_lock_excludes_a_second_holder_in_the_same_process(tmp_path):
    with rundir.lock(tmp_path / "run"):
        with pytest.raises(rundir.RunDirLocked, match=f"pid {os.getpid()} "):
            with rundir.lock(tmp_path / "run"):
                pass
    with rundir.lock(tmp_path / "run"):
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(rundir.RunDirError, match="should be a run directory but is a file"):
        with rundir.lock(tmp_path / "file"):
            pass


def test_force_does_not_delete_a_run_directory_in_use(tmp_path, capsys):
    """Bug: --force deleted the directory of a run in progress (which then went on in a new one)."""
    workdir = common.run_workdir(tmp_path, "exp", _Config(), "row", 0)
    workdir.mkdir(parents=True)
    (workdir / "keep").write_text("checkpoint")
    with rundir.lock(workdir):
        with pytest.raises(rundir.RunDirLocked):
            common.run_workdir(tmp_path, "exp", _Config(), "row", 0, force=True)
        assert (workdir / "keep").read_text() == "checkpoint"
    assert common.run_workdir(tmp_path, "exp", _Config(), "row", 0, force=True) == workdir
    assert not workdir.exists() and "--force: deleting" in capsys.readouterr().out


def test_check_run_dir_accepts_a_new_or_sound_directory(tmp_path):
    rundir.check_run_dir(tmp_path / "absent")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "spl')  # last line cut by a kill
    rundir.check_run_dir(tmp_path)
    (tmp_path / "checkpoints_rejected").write_text("x")
    with pytest.raises(rundir.RunDirError, match="rejected checkpoints but is a file"):
        rundir.check_run_dir(tmp_path)


def test_exit_on_run_error_ends_with_one_line_and_status_1():
    def fails(error):
        @rundir.exit_on_run_error
        def main(argv=None):
            raise error
        return main

    error = rundir.RunDirError("first line\n  second line", path=pathlib.Path("x"))
    with pytest.raises(SystemExit) as info:
        fails(error)()
    assert info.value.code == "error: first line second line"  # printed to stderr, exit status 1

    class Advised(rundir.RunError):
        cli_advice = "Do this\ninstead."

    with pytest.raises(SystemExit) as info:
        fails(Advised("It failed."))()
    assert info.value.code == "error: It failed. Do this instead."
    with pytest.raises(KeyError):  # other errors are bugs: their traceback is kept
        fails(KeyError("bug"))()
    assert rundir.exit_on_run_error(lambda argv=None: 0)() == 0
