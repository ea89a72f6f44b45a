"""Unit tests of the train loop's parts: the train state's periodic actions, each alone."""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments._lib import train as T


@pytest.fixture
def sharding():
    return NamedSharding(T.data_mesh(), P())


def step_output(finite=(True, True, True), loss=1.0):
    return T._StepOutput(jnp.asarray(loss), jnp.asarray(2.0), jnp.asarray(finite))


def state(step=0, params=None, **kw):
    params = {"w": jnp.arange(3.0)} if params is None else params
    return T.TrainState(step=step, params=params, opt_state=(), **kw)


def test_global_norm_forwards_to_optax():
    tree = {"a": jnp.arange(6.0).reshape(2, 3), "b": [jnp.ones(2, jnp.bfloat16)]}
    expected = math.sqrt(sum(x * x for x in range(6)) + 2)
    assert float(T.global_norm(tree)) == pytest.approx(expected, rel=1e-6)
    assert T.global_norm(tree).dtype == jnp.float32


def test_divergence_guard_raises_one_step_late_naming_last_checkpoint(tmp_path):
    last = tmp_path / "checkpoints" / "10"
    guard = T.DivergenceGuard(lambda: last)
    guard.push(11, step_output())
    guard.push(12, step_output((False, True, True), loss=np.nan))  # read only on the next push
    with pytest.raises(T.TrainingDiverged) as info:
        guard.push(13, step_output())
    error = info.value
    assert error.step == 12 and error.quantity == "loss" and error.last_checkpoint == last
    assert "step 12" in str(error) and str(last) in str(error)


def test_divergence_guard_flush_checks_at_once():
    guard = T.DivergenceGuard()
    guard.push(1, step_output())
    guard.flush()
    guard.flush()  # nothing pending: no-op
    guard.push(2, step_output((True, True, False)))
    with pytest.raises(T.TrainingDiverged, match="non-finite updated parameters") as info:
        guard.flush()
    assert info.value.step == 2 and info.value.last_checkpoint is None
    assert "No checkpoint was saved" in str(info.value)


def test_metrics_log_truncates_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "split": "train", "loss": float(s)} for s in (1, 2, 3, 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "spl')  # cut by a kill
    with pytest.warns(UserWarning, match="malformed"):
        log = T.MetricsLog(path, resume_step=2)
    with log:
        assert log.rows == rows[:2]
        assert T.read_log(path) == rows[:2]  # rewritten before anything is appended
        log.append({"step": 3, "split": "train", "loss": 9.0})
    assert [r["loss"] for r in T.read_log(path)] == [1.0, 2.0, 9.0]
    memory = T.MetricsLog(None, resume_step=0)
    memory.append({"step": 1})
    assert memory.rows == [{"step": 1}]


def test_log_train_metrics_writes_means_and_resets_sums(sharding):
    log = T.MetricsLog(None, 0)
    action = T.LogTrainMetrics(5, log, ["loss", "grad_norm"], sharding, start=0)
    assert action.due(5, last=False) and action.due(7, last=True) and not action.due(7, last=False)
    acc = {"count": jnp.asarray(4, jnp.int32), "sums": {"loss": jnp.asarray(2.0), "grad_norm": jnp.asarray(8.0)}}
    new = action(state(step=4, acc=acc))
    (row,) = log.rows
    assert (row["step"], row["split"], row["loss"], row["grad_norm"]) == (4, "train", 0.5, 2.0)
    assert row["steps_per_sec"] > 0
    assert int(new.acc["count"]) == 0 and float(new.acc["sums"]["loss"]) == 0.0


def test_evaluate_and_select_keeps_best_params(sharding):
    values = iter([np.nan, 3.0, 1.0, 2.0])

    def eval_fn(params, key):
        return {"val_loss": next(values), "w0": params["w"][0]}

    log = T.MetricsLog(None, 0)
    action = T.EvaluateAndSelect(1, eval_fn, jax.random.key(0), log, sharding, "val_loss", "min")
    s = state()
    for step in (1, 2, 3, 4):
        s = action(s._replace(step=step, params={"w": jnp.full(3, float(step))}))
    assert s.best_step == 3 and s.best_metrics == {"val_loss": 1.0, "w0": 3.0}
    np.testing.assert_array_equal(np.asarray(s.best_params["w"]), np.full(3, 3.0))
    assert [r["step"] for r in log.rows] == [1, 2, 3, 4] and {r["split"] for r in log.rows} == {"eval"}

    # Without select_metric: the last evaluation, no params copy.
    last = T.EvaluateAndSelect(0, lambda p, k: {"acc": 0.5}, jax.random.key(0), log, sharding)
    s = last(state(step=7))
    assert (s.best_step, s.best_metrics, s.best_params) == (7, {"acc": 0.5}, None)
    with pytest.raises(KeyError, match="select_metric"):
        T.EvaluateAndSelect(1, lambda p, k: {"acc": 0.5}, jax.random.key(0), log, sharding, "val_loss")(s)


def test_evaluate_and_select_max_mode(sharding):
    values = iter([0.2, 0.9, 0.5])
    action = T.EvaluateAndSelect(1, lambda p, k: {"acc": next(values)}, jax.random.key(0),
                                 T.MetricsLog(None, 0), sharding, "acc", "max")
    s = state()
    for step in (1, 2, 3):
        s = action(s._replace(step=step))
    assert s.best_step == 2 and s.best_metrics == {"acc": 0.9}


def test_checkpoint_saves_and_restores_the_train_state(tmp_path, sharding):
    config = T.TrainConfig(num_steps=10, checkpoint_every=4, select_metric="val_loss",
                           async_checkpointing=False)
    key = jax.random.key(3)
    params = {"w": jnp.arange(3.0)}
    opt_state = optax.adam(0.1).init(params)
    acc = {"count": jnp.asarray(2, jnp.int32), "sums": {"loss": jnp.asarray(1.5)}}
    saved = T.TrainState(step=8, params=params, opt_state=opt_state, acc=acc,
                         best_params={"w": jnp.ones(3)}, best_step=4, best_metrics={"val_loss": 0.25})
    with T.Checkpoint(tmp_path, config, key, sharding) as ckpt:
        assert ckpt.last_good() is None
        assert ckpt.due(4, False) and ckpt.due(10, True) and not ckpt.due(5, False)
        assert ckpt(saved) is saved
        assert ckpt.last_good() == tmp_path / "8"
    fresh = T.TrainState(step=0, params={"w": jnp.zeros(3)}, opt_state=optax.adam(0.1).init({"w": jnp.zeros(3)}))
    with T.Checkpoint(tmp_path, config, key, sharding) as ckpt:
        restored, meta = ckpt.restore_latest(fresh)
    assert meta["acc"] == {"count": 2, "sums": {"loss": 1.5}} and meta["step"] == 8
    assert (restored.step, restored.best_step, restored.best_metrics) == (8, 4, {"val_loss": 0.25})
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), np.arange(3.0))
    np.testing.assert_array_equal(np.asarray(restored.best_params["w"]), np.ones(3))
    assert jax.tree.structure(restored.opt_state) == jax.tree.structure(opt_state)
    # Without checkpoint_every it only restores.
    never = T.Checkpoint(tmp_path, T.TrainConfig(num_steps=10), key, sharding)
    with never:
        assert not never.due(10, True)


def test_progress_counts_steps(sharding):
    with T.Progress(T.TrainConfig(num_steps=3, progress=False), start=0) as progress:
        for _ in range(3):
            progress.update(jnp.zeros(()))
        progress.show({"loss": 1.0, "steps_per_sec": 2.0})
        assert progress.steps_per_second(3) > 0
