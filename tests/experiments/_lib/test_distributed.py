"""Multi-process training: several local JAX processes (CPU, gloo collectives) on one machine.

Each test starts processes of ``tests/experiments/_lib/_distributed_worker.py`` (a tiny MLP,
12 steps, checkpoints every 4) with the coordinator variables of :mod:`experiments.launch`, on
free ports and with timeouts, so a broken build fails instead of hanging the suite.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import launch
from experiments._lib import distributed

ROOT = pathlib.Path(__file__).resolve().parents[3]
WORKER = [sys.executable, "-m", "tests.experiments._lib._distributed_worker"]
HEARTBEAT = 6        # seconds without heartbeats before JAX declares a process dead
TIMEOUT = 120        # no process of these tests may run longer


def _env(extra=None):
    env = dict(os.environ)
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _spawn(args, env, **kw):
    try:
        return subprocess.Popen(args, cwd=ROOT, env=env, text=True, start_new_session=True, **kw)
    except OSError as e:  # only if this environment cannot spawn processes at all
        pytest.skip(f"cannot spawn a subprocess: {e}")


def _finish(proc, what):
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{what} did not finish within {TIMEOUT} s (a hang): {err[-2000:]}")
    assert proc.returncode == 0, f"{what} failed with {proc.returncode}: {err[-3000:]}"
    return out


def _launched(workdir, out):
    """2 processes x 2 CPU devices under the local launcher."""
    cmd = [sys.executable, "-m", "experiments.launch", "--num-processes", "2", "--devices-per-process", "2",
           "--timeout", str(TIMEOUT), "--heartbeat-timeout", str(HEARTBEAT), "--", *WORKER, str(workdir), str(out)]
    return _spawn(cmd, _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _single(workdir, out):
    """1 process x 4 CPU devices."""
    env = _env({"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(name, None)
    return _spawn([*WORKER, str(workdir), str(out)], env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _read(out, index=0):
    return json.loads(pathlib.Path(f"{out}.{index}.json").read_text())


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 2 x 2 run (launcher) and a 1 x 4 run, at the same global batch of 8."""
    tmp = tmp_path_factory.mktemp("distributed")
    two, one = _launched(tmp / "two", tmp / "two"), _single(tmp / "one", tmp / "one")
    _finish(two, "the 2-process run")
    _finish(one, "the 1-process run")
    return {"two": [_read(tmp / "two", i) for i in (0, 1)], "one": _read(tmp / "one"), "tmp": tmp}


def test_two_processes_match_one_process_with_the_same_devices(reference):
    """Bugs: each process feeding the whole batch (a global batch twice as large, or every row
    twice), processes seeing different rows or params, model selection differing by process."""
    p0, p1 = reference["two"]
    one = reference["one"]
    assert (p0["process_count"], p0["device_count"], p0["local_batch"]) == (2, 4, 4)
    assert (one["process_count"], one["device_count"], one["local_batch"]) == (1, 4, 8)
    assert len(one["losses"]) == 12 and len(one["evals"]) == 3
    np.testing.assert_allclose(p0["losses"], one["losses"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p0["evals"], one["evals"], rtol=1e-5, atol=1e-6)
    assert _max_diff(p0["params"], one["params"]) < 1e-5
    # Both processes hold the same replicated params and history, and select the same step from
    # process 0's evaluations (the worker's eval_fn differs slightly by process).
    assert p1["params"] == p0["params"] and p1["losses"] == p0["losses"]
    assert p1["evals"] == p0["evals"] and p1["best_step"] == p0["best_step"]


def test_a_killed_process_stops_the_other_and_both_resume_to_the_same_params(reference):
    """Bugs: the surviving process hangs in a collective; a restart does not resume from the
    last checkpoint, or resumes to other params (also with a different process count)."""
    tmp = reference["tmp"]
    port = launch.free_port()
    work, out = tmp / "killed", tmp / "killed"
    procs = [_spawn([*WORKER, str(work), str(out), "--pause-at", "9", "--pause-process", "1"],
                    launch.process_env(i, 2, port, devices=2, heartbeat=HEARTBEAT, base=_env()),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (0, 1)]
    try:
        deadline = time.monotonic() + TIMEOUT
        for line in procs[1].stdout:   # process 1 stops in the batch of update 9
            if line.startswith("paused at 9") or time.monotonic() > deadline:
                break
        while not (work / "checkpoints" / "8").is_dir() and time.monotonic() < deadline:
            time.sleep(0.1)    # the (asynchronous) checkpoint of step 8 is committed
        assert (work / "checkpoints" / "8").is_dir(), procs[0].stderr.read()[-2000:]
        os.killpg(procs[1].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        try:
            _, err = procs[0].communicate(timeout=8 * HEARTBEAT)
        except subprocess.TimeoutExpired:
            pytest.fail("process 0 still runs after its peer was killed (a hang)")
        waited = time.monotonic() - killed_at
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
    assert procs[0].returncode != 0
    assert "another task died" in err and "stopped sending heartbeats" in err, err[-3000:]
    assert waited < 4 * HEARTBEAT

    # Restart both: resumes from step 8 to the uninterrupted run's params. A copy of the same
    # checkpoints resumes with one process of 4 devices (another process count, same global batch).
    shutil.copytree(work, tmp / "killed_one")
    two, one = _launched(work, tmp / "resumed"), _single(tmp / "killed_one", tmp / "resumed_one")
    _finish(two, "the restarted 2-process run")
    _finish(one, "the 1-process resume of a 2-process checkpoint")
    resumed, resumed_one, full = _read(tmp / "resumed"), _read(tmp / "resumed_one"), reference["two"][0]
    assert resumed["resumed_from"] == 8 and resumed_one["resumed_from"] == 8
    assert resumed["losses"] == full["losses"] and resumed["params"] == full["params"]
    np.testing.assert_allclose(resumed_one["losses"], full["losses"], rtol=1e-5, atol=1e-6)
    assert _max_diff(resumed_one["params"], full["params"]) < 1e-5


def test_a_divergence_in_one_process_s_rows_stops_both_at_the_same_step(tmp_path):
    """Bug: the processes decide differently about divergence (one raises, the other waits in
    a collective) or the error does not name the step."""
    proc = _spawn([sys.executable, "-m", "experiments.launch", "--num-processes", "2", "--devices-per-process", "1",
                   "--timeout", str(TIMEOUT), "--heartbeat-timeout", str(HEARTBEAT), "--grace", "20", "--",
                   *WORKER, str(tmp_path / "nan"), str(tmp_path / "nan"), "--nan-at", "5"], _env(),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the diverged run did not stop (a hang)")
    assert proc.returncode == 1, err[-3000:]
    for i in (0, 1):   # every process raised for the same step (before the launcher stopped any)
        assert f"[process {i} of 2] Traceback" in err, err[-3000:]
    assert err.count("TrainingDiverged: Training diverged at step 6 (update 5") == 2, err[-3000:]
    assert sorted(p.name for p in (tmp_path / "nan" / "checkpoints").iterdir()) == ["4"]


def test_the_launcher_stops_the_others_when_one_process_fails(tmp_path):
    """Bug: the launcher waits forever for processes whose peer died, or reports success."""
    script = ("import os, sys, time\n"
              "i = int(os.environ['JAX_PROCESS_ID'])\n"
              "print(i, os.environ['JAX_NUM_PROCESSES'], os.environ['JAX_COORDINATOR_ADDRESS'], "
              "os.environ['XLA_FLAGS'], flush=True)\n"
              "sys.exit(3) if i == 1 else time.sleep(600)\n")
    start = time.monotonic()
    proc = _spawn([sys.executable, "-m", "experiments.launch", "--num-processes", "2", "--devices-per-process", "3",
                   "--grace", "2", "--", sys.executable, "-c", script], _env(),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert time.monotonic() - start < 30
    assert "process 1 of 2 exited with status 3" in err
    lines = sorted(out.split("\n")[:2])
    assert lines[0].startswith("0 2 127.0.0.1:") and lines[1].startswith("1 2 127.0.0.1:")
    assert lines[0].endswith("--xla_force_host_platform_device_count=3")


def test_local_rows_split_the_global_batch():
    assert [distributed.local_rows(8, i, 2) for i in (0, 1)] == [slice(0, 4), slice(4, 8)]
    assert distributed.local_rows(8, 0, 1) == slice(0, 8)
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        distributed.local_rows(8, 0, 3)


def test_a_plain_batch_fn_is_refused_when_launched_without_initializing(monkeypatch):
    """Bug: a process started as one of several but never initialized trains alone."""
    import jax.numpy as jnp
    import optax

    from experiments._lib import train as T

    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    with pytest.raises(RuntimeError, match="jax.distributed is not initialized"):
        T.train(T.TrainConfig(num_steps=1, progress=False), loss_fn=lambda p, b, k: (jnp.sum(p["w"]), {}),
                params={"w": jnp.zeros(2)}, optimizer=optax.sgd(0.1), batch_fn=lambda i: {"x": np.zeros((2, 1))},
                key=0)
