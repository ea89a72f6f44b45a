"""Tests of the shared training loop, on tiny regression problems."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments._lib import rundir
from experiments._lib import train as T

W_TRUE = np.array([1.0, -2.0, 0.5], dtype=np.float32)


def batch_fn(i):
    """Batch of update i: a pure function of i, so resuming is exact."""
    rng = np.random.default_rng((0, i))
    x = rng.normal(size=(8, 3)).astype(np.float32)
    return {"x": x, "y": x @ W_TRUE + 0.3}


def loss_fn(params, batch, key):
    noise = 0.01 * jax.random.normal(key, batch["y"].shape)  # uses the per-step key
    err = batch["x"] @ params["w"] + params["b"] - batch["y"] - noise
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


def eval_fn(params, key):
    del key
    batch = batch_fn(10**6)
    return {"val_loss": float(jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"]) ** 2))}


def init_params():
    return {"w": jnp.zeros(3), "b": jnp.zeros(())}


def run(workdir, num_steps, key, *, batch_fn=batch_fn, loss_fn=loss_fn, params=None, **config):
    config = T.TrainConfig(num_steps=num_steps, progress=False, **{"log_every": 1, **config})
    return T.train(config, loss_fn=loss_fn, params=init_params() if params is None else params,
                   optimizer=T.make_optimizer(0.3, 30, warmup_steps=3), batch_fn=batch_fn, key=key,
                   workdir=workdir, eval_fn=eval_fn)


def train_losses(history, first=1):
    return {row["step"]: row["loss"] for row in history if row["split"] == "train" and row["step"] >= first}


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in ("steps_per_sec", "wall_time")} for row in rows]


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def checkpoint_steps(workdir):
    return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(pathlib.Path(directory).rglob("*"))
            if p.is_file()}


def test_regression_trains_and_logs(tmp_path, key):
    params = init_params()
    result = run(tmp_path, 30, key, params=params, log_every=5, eval_every=10, select_metric="val_loss")
    rows = result.history
    assert rows == T.read_log(tmp_path)  # metrics.jsonl holds exactly the history
    assert [(r["step"], r["split"]) for r in rows] == [
        (5, "train"), (10, "train"), (10, "eval"), (15, "train"), (20, "train"), (20, "eval"),
        (25, "train"), (30, "train"), (30, "eval")]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert set(train_rows[0]) == {"step", "split", "loss", "grad_norm", "mae", "steps_per_sec", "wall_time"}
    assert train_rows[-1]["loss"] < 0.1 * train_rows[0]["loss"]
    evals = [r["val_loss"] for r in rows if r["split"] == "eval"]
    assert result.best_metrics == {"val_loss": min(evals)}
    assert result.best_step == 10 * (1 + int(np.argmin(evals)))
    assert result.best_metrics["val_loss"] == pytest.approx(eval_fn(result.best_params, None)["val_loss"])
    assert result.step == 30 and result.resumed_from is None and result.steps_per_second > 0
    # The caller's params are copied before the step donates its buffers.
    np.testing.assert_array_equal(np.asarray(params["w"]), np.zeros(3))


def test_make_optimizer_schedules():
    cosine = T.make_schedule(1.0, 10, warmup_steps=2)
    np.testing.assert_allclose([cosine(0), cosine(1), cosine(2), cosine(10)], [0.0, 0.5, 1.0, 0.0], atol=1e-6)
    linear = T.make_schedule(1.0, 10, warmup_steps=0, schedule="linear", end_lr_ratio=0.1)
    np.testing.assert_allclose([linear(0), linear(5), linear(10)], [1.0, 0.55, 0.1], atol=1e-6)
    constant = T.make_schedule(1.0, 10, warmup_steps=4, schedule="constant")
    np.testing.assert_allclose([constant(2), constant(4), constant(9)], [0.5, 1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="warmup_steps"):
        T.make_schedule(1.0, 10, warmup_steps=11)
    opt = T.make_optimizer(0.1, 10, weight_decay=0.01, clip_norm=1.0)
    params = init_params()
    updates, _ = opt.update(jax.tree.map(jnp.ones_like, params), opt.init(params), params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)


def killed_run(workdir, num_steps, key, *, at, **config):
    """A run interrupted when it asks for the batch of update ``at`` (as by a kill)."""
    def killed_batch_fn(i):
        if i == at:
            raise KeyboardInterrupt("simulated kill")
        return batch_fn(i)

    with pytest.raises(KeyboardInterrupt):
        run(workdir, num_steps, key, batch_fn=killed_batch_fn, **config)


def test_resume_after_kill_is_exact(tmp_path, key):
    kw = dict(checkpoint_every=5, eval_every=10, select_metric="val_loss")
    straight = run(tmp_path / "straight", 30, key, **kw)
    killed_run(tmp_path / "resumed", 30, key, at=17, **kw)
    assert checkpoint_steps(tmp_path / "resumed") == [10, 15]
    assert T.has_checkpoint(tmp_path / "resumed", 15) and not T.has_checkpoint(tmp_path / "resumed", 30)
    assert max(r["step"] for r in T.read_log(tmp_path / "resumed")) == 17  # rows past the checkpoint

    resumed = run(tmp_path / "resumed", 30, key, **kw)
    assert resumed.resumed_from == 15
    assert_trees_equal(resumed.params, straight.params)
    assert_trees_equal(resumed.opt_state, straight.opt_state)
    assert_trees_equal(resumed.best_params, straight.best_params)
    assert resumed.best_step == straight.best_step and resumed.best_metrics == straight.best_metrics
    # The log has no duplicates and equals the uninterrupted one (timings aside).
    assert without_timing(resumed.history) == without_timing(straight.history)
    assert without_timing(T.read_log(tmp_path / "resumed")) == without_timing(straight.history)


def test_extending_a_finished_run_is_exact(tmp_path, key):
    straight = run(tmp_path / "straight", 30, key)
    first = run(tmp_path / "extended", 15, key, checkpoint_every=5)
    assert first.resumed_from is None and checkpoint_steps(tmp_path / "extended") == [10, 15]
    extended = run(tmp_path / "extended", 30, key, checkpoint_every=5)
    assert extended.resumed_from == 15
    assert_trees_equal(extended.params, straight.params)
    assert train_losses(extended.history, 16) == train_losses(straight.history, 16)
    assert len(train_losses(extended.history, 16)) == 15


@pytest.mark.parametrize("bad_update", [12, 14])  # step 13 is checked one step late; 15 is a checkpoint step
def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, key, bad_update):
    def poisoned_batch_fn(i):
        batch = batch_fn(i)
        if i >= bad_update:
            batch["y"][0] = np.nan
        return batch

    with pytest.raises(T.TrainingDiverged) as info:
        run(tmp_path, 30, key, batch_fn=poisoned_batch_fn, checkpoint_every=5, log_every=5)
    error = info.value
    last = tmp_path / "checkpoints" / "10"
    assert error.step == bad_update + 1 and error.quantity == "loss" and error.last_checkpoint == last
    message = str(error)
    assert f"step {bad_update + 1}" in message and "non-finite loss" in message and str(last) in message
    assert checkpoint_steps(tmp_path) == [5, 10]  # nothing saved at or after the bad step
    rows = T.read_log(tmp_path)
    assert max(r["step"] for r in rows) <= bad_update and all(np.isfinite(r["loss"]) for r in rows)

    # The last good checkpoint is intact: it restores (num_steps=10: nothing left to train).
    restored = run(tmp_path, 10, key, checkpoint_every=5)
    assert restored.resumed_from == 10 and restored.step == 10
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(restored.params))
    clean = run(None, 10, key)
    assert_trees_equal(restored.params, clean.params)


def test_nonfinite_gradients_are_named(key):
    def sqrt_loss(params, batch, key):  # finite loss, NaN gradient at w = 0
        return jnp.sum(jnp.sqrt(jnp.abs(params["w"]))) + 0 * params["b"], {}

    with pytest.raises(T.TrainingDiverged, match="non-finite gradients") as info:
        run(None, 5, key, loss_fn=sqrt_loss)
    assert info.value.step == 1 and info.value.last_checkpoint is None
    assert "No checkpoint was saved" in str(info.value)


def _garble_arrays(step_dir):
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    for p in files:
        p.write_bytes(b"\x00garbage" * 4)


def _garble_metadata(step_dir):
    (step_dir / "meta" / "metadata").write_text("{not json")


def _stray_step_dir(step_dir):
    """A stray empty step directory above the newest checkpoint (a copy cut short, a mistake)."""
    (step_dir.parent / "99").mkdir()
    return step_dir.parent / "99"


def _rejected(workdir):
    """``{step: snapshot}`` of the checkpoints moved to ``checkpoints_rejected/<step>-<time>``."""
    directory = pathlib.Path(workdir) / "checkpoints_rejected"
    if not directory.exists():
        return {}
    return {int(p.name.split("-")[0]): snapshot(p) for p in directory.iterdir()}


# orbax leaves its other pending reads unawaited when one fails: harmless, reported by pytest.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", [_garble_arrays, _garble_metadata, _stray_step_dir])
def test_a_checkpoint_that_does_not_restore_is_moved_aside_and_the_previous_one_resumes(tmp_path, key, damage,
                                                                                         caplog):
    """Bug: a corrupt newest checkpoint, or a stray empty step directory, blocked resume."""
    straight = run(tmp_path / "straight", 20, key, checkpoint_every=5)
    workdir = tmp_path / "run"
    killed_run(workdir, 20, key, at=12, checkpoint_every=5)
    bad = damage(workdir / "checkpoints" / "10") or workdir / "checkpoints" / "10"
    bad_bytes, bad_step = snapshot(bad), int(bad.name)
    resumed = run(workdir, 20, key, checkpoint_every=5)
    assert resumed.resumed_from == (5 if bad_step == 10 else 10)
    assert _rejected(workdir) == {bad_step: bad_bytes}  # moved aside byte for byte, never deleted
    [line] = [r.getMessage() for r in caplog.records if "do not restore" in r.getMessage()]
    assert f"resuming from step {resumed.resumed_from}" in line and "checkpoints_rejected" in line
    assert str(bad) in line  # names the checkpoint and why it failed
    assert_trees_equal(resumed.params, straight.params)
    assert without_timing(resumed.history) == without_timing(straight.history)
    assert without_timing(T.read_log(workdir)) == without_timing(straight.history)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_checkpoint_that_restores_raises_and_keeps_files(tmp_path, key):
    run(tmp_path, 10, key, checkpoint_every=5)
    for step in (5, 10):
        _garble_metadata(tmp_path / "checkpoints" / str(step))
    before = snapshot(tmp_path)
    with pytest.raises(T.CheckpointError) as info:
        run(tmp_path, 20, key, checkpoint_every=5)
    message = str(info.value)
    assert info.value.directory == tmp_path / "checkpoints" / "10"
    assert "No checkpoint" in message and "Nothing was deleted, moved or overwritten" in message
    assert str(tmp_path / "checkpoints" / "10") in message and str(tmp_path / "checkpoints" / "5") in message
    assert snapshot(tmp_path) == before  # not a byte deleted, moved or changed, log included


def test_checkpoint_of_another_model_gives_clear_error(tmp_path, key):
    run(tmp_path, 5, key, checkpoint_every=5)
    bigger = {"w": jnp.zeros(4), "b": jnp.zeros(())}
    with pytest.raises(T.CheckpointError, match="different model") as info:
        run(tmp_path, 10, key, params=bigger, checkpoint_every=5,
            batch_fn=lambda i: {"x": np.ones((8, 4), np.float32), "y": np.ones(8, np.float32)})
    assert "saved params/w is float32(3,), expected float32(4,)" in str(info.value)
    with pytest.raises(T.CheckpointError, match="best_params/w is missing"):
        run(tmp_path, 10, key, checkpoint_every=5, eval_every=5, select_metric="val_loss")
    assert checkpoint_steps(tmp_path) == [5]


def test_restore_params_gives_a_checkpoints_params_and_refuses_other_models(tmp_path, key):
    """Bug: the latest checkpoint's params instead of the step asked for, or another model's
    params restored without an error."""
    early = run(tmp_path / "early", 5, key, checkpoint_every=5)
    result = run(tmp_path, 10, key, checkpoint_every=5)
    assert_trees_equal(T.restore_params(tmp_path, 10, init_params()), result.params)
    assert_trees_equal(T.restore_params(tmp_path, 5, init_params()), early.params)
    with pytest.raises(T.CheckpointError, match="no checkpoint of step 7"):
        T.restore_params(tmp_path, 7, init_params())
    with pytest.raises(T.CheckpointError, match="another model"):
        T.restore_params(tmp_path, 10, {"w": jnp.zeros(4), "b": jnp.zeros(())})
    with pytest.raises(T.CheckpointError, match="another model"):
        T.restore_params(tmp_path, 10, {"w": jnp.zeros(3)})


def test_argument_errors(tmp_path, key):
    with pytest.raises(ValueError, match="needs a workdir"):
        run(None, 5, key, checkpoint_every=5)
    with pytest.raises(ValueError, match="select_mode"):
        T.TrainConfig(num_steps=5, select_mode="best")
    with pytest.raises(TypeError, match=r"must return \(loss, metrics\)"):
        run(None, 5, key, loss_fn=lambda p, b, k: jnp.sum(p["w"]))
    with pytest.raises(ValueError, match="reserved"):
        run(None, 5, key, loss_fn=lambda p, b, k: (jnp.sum(p["w"]), {"step": jnp.sum(p["w"])}))
    with pytest.raises(ValueError, match="has no axis 0"):
        T.shard_batch({"x": np.float32(1.0)}, T.data_mesh())


def test_four_devices_match_one_device(tmp_path):
    """Data parallel over 4 host CPU devices: same losses as 1 device (needs a fresh process)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir or ""
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    root = pathlib.Path(__file__).resolve().parents[3]
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.experiments._lib._train_multidevice", str(tmp_path)],
                              env=env, cwd=root, capture_output=True, text=True, timeout=300)
    except OSError as e:  # only if this environment cannot spawn processes at all
        pytest.skip(f"cannot spawn a subprocess: {e}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["device_count"] == 4
    assert out["batch_devices"] == 4 and out["param_devices"] == 4  # batch sharded, params replicated
    assert len(out["losses_1"]) == 20
    np.testing.assert_allclose(out["losses_4"], out["losses_1"], rtol=1e-5, atol=1e-6)
    assert out["params_max_diff"] < 1e-5
    # A 4-device checkpoint resumes on 1 device.
    assert out["resumed_from"] == 10
    np.testing.assert_allclose(out["resumed_losses"], out["losses_1"], rtol=1e-5, atol=1e-6)
    assert out["resumed_params_max_diff"] < 1e-5
    # Batch size 6 on 4 devices: a clear error.
    error = out["indivisible_error"]
    assert error is not None and "not divisible by the 4 devices" in error and "(6, 3)" in error


def test_a_run_directory_in_use_is_refused_at_once(tmp_path, key):
    """Bug: two runs in one directory both trained, writing every log row twice."""
    with rundir.lock(tmp_path):
        with pytest.raises(rundir.RunDirLocked, match=f"in use by another run \\(pid {os.getpid()} on "):
            run(tmp_path, 5, key, checkpoint_every=5)
        assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "checkpoints").exists()
    assert run(tmp_path, 5, key, checkpoint_every=5).step == 5  # released: the next run goes ahead


def _checkpoints_file(workdir):
    (workdir / "checkpoints").write_text("not a directory")
    return workdir / "checkpoints", "is a file"


def _log_directory(workdir):
    (workdir / "metrics.jsonl").unlink()
    (workdir / "metrics.jsonl").mkdir()
    return workdir / "metrics.jsonl", "not a regular file"


def _log_not_utf8(workdir):
    with open(workdir / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 6, "split": "\xff\xfe"}\n')
    return workdir / "metrics.jsonl", "line 7 .* is not UTF-8 text"


@pytest.mark.parametrize("damage", [_checkpoints_file, _log_directory, _log_not_utf8])
def test_foreign_files_in_a_run_directory_give_a_clear_error(tmp_path, key, damage):
    """Bug: raw NotADirectoryError (after a flood of orbax tracebacks), IsADirectoryError, UnicodeDecodeError."""
    run(tmp_path, 5, key, log_every=1)
    path, problem = damage(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(rundir.RunDirError, match=problem) as info:
        run(tmp_path, 10, key, checkpoint_every=5)
    assert info.value.path == path and str(path) in str(info.value) and "move it away" in str(info.value).lower()
    assert snapshot(tmp_path) == before


def test_a_last_log_line_cut_by_a_kill_does_not_break_resume(tmp_path, key):
    straight = run(tmp_path / "straight", 10, key, checkpoint_every=5)
    killed_run(tmp_path / "run", 10, key, at=7, checkpoint_every=5)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "split": "train", "loss": 0.1')
    with pytest.warns(UserWarning, match="malformed"):
        resumed = run(tmp_path / "run", 10, key, checkpoint_every=5)
    assert resumed.resumed_from == 5
    assert without_timing(T.read_log(tmp_path / "run")) == without_timing(straight.history)


def test_a_diverged_run_resumes_with_a_smaller_learning_rate(tmp_path, key):
    """The advice of TrainingDiverged: same workdir, an optimizer of the same structure, other settings."""
    def adamw(schedule):  # the structure of make_optimizer's optimizer
        return optax.chain(optax.adamw(schedule, weight_decay=0.0))

    config = T.TrainConfig(num_steps=30, checkpoint_every=5, progress=False)
    args = dict(loss_fn=loss_fn, batch_fn=batch_fn, key=key, workdir=tmp_path)
    blowup = adamw(lambda count: jnp.where(count < 12, 0.05, 1e38))
    with pytest.raises(T.TrainingDiverged) as info:
        T.train(config, params=init_params(), optimizer=blowup, **args)
    assert info.value.last_checkpoint == tmp_path / "checkpoints" / "10"
    assert "same settings diverge again" in str(info.value) and "smaller learning rate" in str(info.value)
    assert "--learning-rate" in info.value.cli_advice and "from scratch" in info.value.cli_advice
    resumed = T.train(config, params=init_params(), optimizer=T.make_optimizer(0.05, 30, schedule="constant"),
                      **args)
    assert resumed.resumed_from == 10 and resumed.step == 30
    clean = T.train(config, params=init_params(), optimizer=T.make_optimizer(0.05, 30, schedule="constant"),
                    **{**args, "workdir": tmp_path / "clean"})
    assert_trees_equal(resumed.params, clean.params)


def test_a_selection_metric_never_finite_is_reported(key, caplog):
    """Bug: an always-NaN select_metric gave best_metrics == {} and the last step without a word."""
    config = T.TrainConfig(num_steps=10, eval_every=5, select_metric="val_loss", progress=False)
    args = dict(loss_fn=loss_fn, params=init_params(), optimizer=T.make_optimizer(0.3, 10), batch_fn=batch_fn,
                key=key)
    result = T.train(config, eval_fn=lambda p, k: {"val_loss": float("nan")}, **args)
    assert result.selection == "no finite value of val_loss in 2 evaluations; kept the last step"
    assert result.best_step == 10 and result.best_metrics == {}
    assert any("no finite value of val_loss" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert T.train(config, eval_fn=eval_fn, **args).selection == "best val_loss (min)"
    assert T.train(dataclasses.replace(config, select_metric=None), eval_fn=eval_fn, **args).selection == "last step"
