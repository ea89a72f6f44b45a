"""Several updates per jitted call (``TrainConfig.steps_per_call`` = K): a scan over K stacked
batches and keys must be the same training as K single steps, divergence inside a block must
stop the run without saving it, and resuming must work across K.

Equality is bitwise (``assert_array_equal``, logged floats compared with ``==``): the scan body
runs the same per-update computation (same batches, keys ``fold_in(train_key, i)``, optimizer
update) and XLA on CPU compiles it to the same kernels, so nothing justifies a tolerance. The
experiments' own model is checked the same way in
``tests/experiments/graph_autoencoder/test_steps_per_call.py``.
"""

import subprocess
import sys

import numpy as np
import pytest

from experiments._lib import train as T
from tests.experiments._lib.test_train import (assert_trees_equal, batch_fn, checkpoint_steps, killed_run, run,
                                               without_timing)


def _same_run(a, b):
    assert_trees_equal(a.params, b.params)
    assert_trees_equal(a.opt_state, b.opt_state)
    assert_trees_equal(a.best_params, b.best_params)
    assert a.best_step == b.best_step and a.best_metrics == b.best_metrics and a.step == b.step
    assert without_timing(a.history) == without_timing(b.history)


@pytest.mark.parametrize("num_steps", [30, 23])  # 23: the last 3 updates run one per call
def test_k_updates_per_call_equal_k_single_updates(key, num_steps):
    """Bug guarded: a scan that reused one batch or one key for the K updates of a block, or
    shifted them by one, trains a different model (the loss uses the per-update key)."""
    kw = dict(log_every=5, eval_every=10, select_metric="val_loss")
    single = run(None, num_steps, key, **kw)
    blocks = run(None, num_steps, key, steps_per_call=5, **kw)
    _same_run(blocks, single)
    assert [r["step"] for r in blocks.history if r["split"] == "train"][-1] == num_steps


def test_the_runner_covers_updates_in_aligned_blocks():
    runner = T.StepRunner(lambda p, b, k: (0.0, {}), T.make_optimizer(0.1, 10), batch_fn, T.data_mesh(),
                          steps_per_call=5)
    assert list(runner.calls(3, 23)) == [(3, 1), (4, 1), (5, 5), (10, 5), (15, 5), (20, 1), (21, 1), (22, 1)]
    stacked = runner.batches(5, 5)
    assert stacked["x"].shape == (5, 8, 3)
    np.testing.assert_array_equal(np.asarray(stacked["x"][3]), batch_fn(8)["x"])  # block row j = update 5 + j


@pytest.mark.parametrize("bad_update", [10, 12, 14])  # first, middle and last update of the block 10..14
def test_nan_inside_a_block_stops_and_is_never_checkpointed(tmp_path, key, bad_update):
    """Bug guarded: the block's flags read as one (e.g. only its last update's), or a block
    checkpointed at its end although an update inside it was non-finite."""
    def poisoned_batch_fn(i):
        batch = batch_fn(i)
        if i == bad_update:  # one bad batch: later updates of the block see NaN params
            batch["y"][0] = np.nan
        return batch

    with pytest.raises(T.TrainingDiverged) as info:
        run(tmp_path, 30, key, batch_fn=poisoned_batch_fn, checkpoint_every=5, log_every=5, steps_per_call=5)
    error = info.value
    last = tmp_path / "checkpoints" / "10"
    assert error.step == bad_update + 1 and error.quantity == "loss" and error.last_checkpoint == last
    assert f"step {bad_update + 1}" in str(error) and "loss=nan" in str(error)
    assert checkpoint_steps(tmp_path) == [5, 10]  # the block ending at the checkpoint step 15 was not saved
    rows = T.read_log(tmp_path)
    assert max(r["step"] for r in rows) == 10 and all(np.isfinite(r["loss"]) for r in rows)


def test_resume_with_k_updates_per_call_is_exact(tmp_path, key):
    """Killed inside a block, resumed with K = 5; and a K = 1 run stopped at step 13 (not a
    multiple of K) extended with K = 5: both equal the uninterrupted single-update run."""
    kw = dict(checkpoint_every=10, eval_every=10, log_every=5, select_metric="val_loss")
    straight = run(tmp_path / "straight", 30, key, **kw)

    killed_run(tmp_path / "killed", 30, key, at=17, steps_per_call=5, **kw)   # asked while building block 15..19
    assert checkpoint_steps(tmp_path / "killed") == [10]
    resumed = run(tmp_path / "killed", 30, key, steps_per_call=5, **kw)
    assert resumed.resumed_from == 10
    _same_run(resumed, straight)
    assert without_timing(T.read_log(tmp_path / "killed")) == without_timing(straight.history)

    odd = dict(kw, log_every=1)
    run(tmp_path / "odd", 13, key, **odd)   # checkpoints at 10 and at its final step 13
    extended = run(tmp_path / "odd", 30, key, steps_per_call=5, **kw)
    assert extended.resumed_from == 13
    assert_trees_equal(extended.params, straight.params)
    assert_trees_equal(extended.opt_state, straight.opt_state)
    late = [r for r in extended.history if r["step"] > 15]
    assert without_timing(late) == without_timing([r for r in straight.history if r["step"] > 15])


def test_steps_per_call_must_divide_the_cadences():
    with pytest.raises(ValueError, match=r"steps_per_call=4 must divide log_every=10"):
        T.TrainConfig(num_steps=100, steps_per_call=4)
    with pytest.raises(ValueError, match=r"must divide checkpoint_every=30"):
        T.TrainConfig(num_steps=100, log_every=20, checkpoint_every=30, steps_per_call=20)
    with pytest.raises(ValueError, match=r"must divide eval_every=50"):
        T.TrainConfig(num_steps=100, log_every=20, eval_every=50, steps_per_call=20)
    with pytest.raises(ValueError, match="steps_per_call must be an integer >= 1"):
        T.TrainConfig(num_steps=100, steps_per_call=0)
    T.TrainConfig(num_steps=101, log_every=20, eval_every=40, checkpoint_every=0, steps_per_call=20)  # fine


def test_several_processes_stack_their_rows_of_k_batches(tmp_path):
    """2 processes x 2 devices: K = 4 equals K = 1 (each process stacks its rows of the 4 global
    batches), and a NaN in process 1's rows inside a block stops both at the same step."""
    from tests.experiments._lib.test_distributed import HEARTBEAT, TIMEOUT, _env, _finish, _read, _spawn

    cmd = [sys.executable, "-m", "experiments.launch", "--num-processes", "2", "--devices-per-process", "2",
           "--timeout", str(TIMEOUT), "--heartbeat-timeout", str(HEARTBEAT), "--",
           sys.executable, "-m", "tests.experiments._lib._steps_per_call_worker", str(tmp_path), str(tmp_path / "out")]
    _finish(_spawn(cmd, _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE), "the 2-process run")
    p0, p1 = _read(tmp_path / "out", 0), _read(tmp_path / "out", 1)
    assert (p0["process_count"], p0["device_count"]) == (2, 4)
    assert len(p0["k1"]["losses"]) == 3
    assert p0["k4"] == p0["k1"] and p1["k4"] == p0["k4"]   # bitwise: losses, selection, params
    for p in (p0, p1):
        assert p["diverged_at"] == 6 and p["diverged_last_checkpoint"] == "4"
    assert sorted(d.name for d in (tmp_path / "nan" / "checkpoints").iterdir()) == ["4"]
