"""The profile attribution of ``benchmarks.digress_profile`` (issue #22).

Bugs these catch: nested thunk times counted twice (a while loop and its body); a backward
matmul attributed to the forward pass (the ``transpose(jvp)`` name stack read as ``jvp``); a
fusion holding a dot not counted as matmul; torch's ``aten::mm`` or dropout filed as elementwise;
page faults or system time not per step (or swapped with user time).
"""

import mmap
import os

import jax
import jax.numpy as jnp
import pytest

from benchmarks import digress_profile as dp


def test_self_times_subtract_nested_events_on_the_same_thread_only():
    ev = [{"ph": "X", "name": "outer", "ts": 0, "dur": 100, "pid": 1, "tid": 1},
          {"ph": "X", "name": "inner", "ts": 10, "dur": 30, "pid": 1, "tid": 1},
          {"ph": "X", "name": "inner", "ts": 50, "dur": 20, "pid": 1, "tid": 1},
          {"ph": "X", "name": "other", "ts": 20, "dur": 50, "pid": 1, "tid": 2},
          {"ph": "X", "name": "ignored", "ts": 0, "dur": 500, "pid": 1, "tid": 1}]
    out = sorted(dp.self_times(ev, {"outer", "inner", "other"}))
    assert out == [("inner", 20), ("inner", 30), ("other", 50), ("outer", 50)]


def _step_hlo():
    def loss(w, x):
        return jnp.sum(jnp.tanh(x @ w) ** 2)

    def step(w, x):
        value, g = jax.value_and_grad(jax.jit(loss))(w, x)
        return w - 0.1 * g * jnp.sign(w), value

    w, x = jnp.ones((8, 16)), jnp.ones((32, 8))
    return jax.jit(step).lower(w, x).compile().as_text()


def test_classify_finds_forward_and_backward_matmuls_and_the_update():
    inst, comps = dp.parse_hlo(_step_hlo())
    seen = {}
    for name, (op, _, _) in inst.items():
        if op in ("parameter", "constant", "tuple", "get-tuple-element", "bitcast"):
            continue
        pass_, kind, _ = dp.classify(name, inst, comps)
        seen.setdefault(pass_, set()).add(kind)
    assert "matmul" in seen.get("forward", set())
    assert "matmul" in seen.get("backward", set())       # x^T g and g w^T of the dot
    assert "optimizer" in seen


@pytest.mark.parametrize("name, kind", [("aten::mm", "matmul"), ("aten::addmm", "matmul"), ("aten::bmm", "matmul"),
                                        ("aten::native_dropout", "random"), ("aten::bernoulli_", "random"),
                                        ("aten::sum", "reduce"), ("aten::_softmax", "reduce"),
                                        ("aten::copy_", "layout"), ("aten::mul", "elementwise"),
                                        ("MmBackward0", "framework"), ("aten::threshold_backward", "elementwise")])
def test_torch_kind(name, kind):
    assert dp.torch_kind(name) == kind


def test_usage_reports_the_page_faults_of_fresh_memory_per_step():
    size, steps = 32 * 2 ** 20, 2
    payload = b"\1" * size             # written before: its pages are not counted

    def run():                          # per step: map 32 MiB and write every page
        for _ in range(steps):
            with mmap.mmap(-1, size) as m:
                m.write(payload)

    out = dp.usage(run, steps)
    pages = size // os.sysconf("SC_PAGE_SIZE")
    assert pages * 0.9 <= out["minor_faults_per_step"] <= pages * 1.5
    assert out["system_ms_per_step"] > 0 and out["wall_ms_per_step"] > 0
