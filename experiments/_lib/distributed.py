"""Training on several processes (hosts): JAX's own multi-controller runtime, thinly wrapped.

One program runs in every process (SPMD): a SLURM task per node, a TPU-VM worker, or a local
process of :mod:`experiments.launch`. This module holds what the training loop and the
experiments need on top of ``jax.distributed``:

* :func:`initialize`: ``jax.distributed.initialize()`` when asked or when the environment says
  so (``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, a SLURM step
  of several tasks, a multi-host TPU slice); a no-op in a single process.
* Process-local batches: a batch function built with :func:`per_process` returns only this
  process's rows of the global batch (:func:`local_rows`); :func:`global_batch` assembles the
  global array with ``jax.make_array_from_process_local_data``, so no process loads or generates
  another's rows.
* One decision for all processes: :func:`broadcast` (process 0's values, with
  ``jax.experimental.multihost_utils.broadcast_one_to_all``), :func:`broadcast_floats` (exact
  float64 values), :func:`all_ok`, :func:`barrier`.
* Process 0 only: :func:`is_main` guards logs, progress bars, result files and figures.
* :func:`fail_fast`: an error in one process ends it at once instead of waiting in JAX's
  shutdown barrier for processes that wait for it in a collective.

Nothing here is needed in a single process: every function then returns its input or does the
obvious single-process thing, so single-process results are unchanged.

Failure detection is JAX's: when a process dies, the others stop at their next collective
(a closed socket) or when the coordination service misses its heartbeats
(``heartbeat_timeout_seconds``, JAX's default 100 s; :data:`HEARTBEAT_ENV` overrides it), and
JAX terminates them with "Terminating process because the JAX distributed service detected
fatal errors. This most likely indicates that another task died".
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "HEARTBEAT_ENV",
    "detect",
    "initialize",
    "process_index",
    "process_count",
    "is_main",
    "local_rows",
    "per_process",
    "is_process_local",
    "global_batch",
    "replicate",
    "local_copy",
    "broadcast",
    "broadcast_floats",
    "all_ok",
    "barrier",
    "assert_same",
    "fail_fast",
]

HEARTBEAT_ENV = "EXPERIMENTS_HEARTBEAT_TIMEOUT_S"
"""Environment variable: seconds without heartbeats after which JAX declares a process dead
(passed to ``jax.distributed.initialize(heartbeat_timeout_seconds=...)``; unset: JAX's default)."""

PyTree = Any


def detect() -> str | None:
    """The multi-process environment this process was started in, or None.

    ``"JAX_COORDINATOR_ADDRESS"`` (set by :mod:`experiments.launch` or by hand, with
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``), ``"SLURM"`` (a job step of more than one task:
    JAX reads the coordinator, process count and id from SLURM's variables) or ``"TPU"`` (a TPU
    VM of a multi-host slice, ``TPU_WORKER_HOSTNAMES`` naming several workers).
    """
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "JAX_COORDINATOR_ADDRESS"
    if env.get("SLURM_JOB_ID") and int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")) or 1) > 1:
        return "SLURM"
    if "," in env.get("TPU_WORKER_HOSTNAMES", ""):
        return "TPU"
    return None


def initialize(mode: bool | None = None, *, heartbeat_timeout_seconds: int | None = None) -> bool:
    """Joins the multi-process run this process belongs to (``jax.distributed.initialize``).

    Call it first, before anything touches a JAX device. Idempotent.

    Args:
        mode: True: initialize (``--distributed``; JAX finds the coordinator or raises);
            None: only if :func:`detect` finds a multi-process environment; False: never.
        heartbeat_timeout_seconds: seconds without heartbeats after which a process is declared
            dead; default :data:`HEARTBEAT_ENV` if set, else JAX's default.

    Returns:
        Whether this process is one of several (``jax.process_count() > 1``).
    """
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    if mode is False or (mode is None and detect() is None):
        return False
    kwargs: dict[str, Any] = {}
    env = os.environ
    if env.get("JAX_NUM_PROCESSES"):
        kwargs["num_processes"] = int(env["JAX_NUM_PROCESSES"])
    if env.get("JAX_PROCESS_ID"):
        kwargs["process_id"] = int(env["JAX_PROCESS_ID"])
    heartbeat = heartbeat_timeout_seconds or (int(env[HEARTBEAT_ENV]) if env.get(HEARTBEAT_ENV) else None)
    if heartbeat:
        kwargs["heartbeat_timeout_seconds"] = heartbeat
    jax.distributed.initialize(**kwargs)
    return jax.process_count() > 1


def process_index() -> int:
    """This process's index (0 in a single process)."""
    return jax.process_index()


def process_count() -> int:
    """The number of processes (1 in a single process)."""
    return jax.process_count()


def is_main() -> bool:
    """Whether this is process 0, the one that writes logs, result files and figures."""
    return jax.process_index() == 0


def local_rows(global_size: int, index: int | None = None, count: int | None = None) -> slice:
    """The rows of a global batch of ``global_size`` rows that process ``index`` of ``count``
    builds (default: this process): the ``index``-th of ``count`` equal contiguous blocks, the
    block :func:`global_batch` places on this process's devices.

    Raises:
        ValueError: if ``global_size`` is not divisible by ``count``.
    """
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    if global_size % count:
        raise ValueError(f"the global batch of {global_size} rows is not divisible by the {count} processes; "
                         f"use a batch size that is a multiple of {count}")
    size = global_size // count
    return slice(index * size, (index + 1) * size)


def per_process(fn: Callable[[int, int, int], PyTree]) -> Callable[[int], PyTree]:
    """Marks a batch function as process-local, for :func:`~experiments._lib.train.train`.

    Args:
        fn: ``(step, process_index, process_count) -> batch``: the rows
            ``local_rows(B, process_index, process_count)`` of the global batch of update
            ``step`` (a pure function of its three arguments). With one process it is the
            whole batch, so single-process training is unchanged.

    Returns:
        ``step -> batch`` for this process, which ``train`` accepts in a multi-process run.
    """

    @functools.wraps(fn)
    def batch_fn(step: int) -> PyTree:
        return fn(step, jax.process_index(), jax.process_count())

    batch_fn.process_local = True
    return batch_fn


def is_process_local(batch_fn: Callable[..., Any]) -> bool:
    """Whether ``batch_fn`` was built with :func:`per_process`."""
    return bool(getattr(batch_fn, "process_local", False))


def global_batch(local: PyTree, mesh: Mesh, specs: PyTree) -> PyTree:
    """The global batch from this process's rows (``jax.make_array_from_process_local_data``).

    Args:
        local: this process's batch; a leaf sharded along an axis holds this process's block
            of that axis (:func:`local_rows`), a replicated leaf (``P()``) the whole leaf (the
            same in every process).
        mesh: a mesh over all processes' devices, grouped by process (see
            :func:`~experiments._lib.train.data_mesh`).
        specs: one ``PartitionSpec`` per leaf of ``local``.

    Returns:
        Global arrays with ``NamedSharding(mesh, spec)``; a sharded axis is ``process_count``
        times longer than the local one.
    """

    def place(leaf, spec):
        leaf = np.asarray(leaf)
        return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), leaf)

    return jax.tree.map(place, local, specs)


def replicate(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """A private copy of ``tree`` replicated with ``sharding`` (typed PRNG keys included).

    In a multi-process run every process passes the same values (e.g. params initialized from
    the same key); they go through host memory, since ``device_put`` cannot move a device
    array onto other processes' devices. In a single process, a plain ``device_put`` copy.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding, may_alias=False)

    def place(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(x)
            return jax.random.wrap_key_data(place(jax.random.key_data(x)), impl=impl)
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, sharding, may_alias=False)
        return jax.device_put(np.array(x), sharding)

    return jax.tree.map(place, tree)


def local_copy(tree: PyTree) -> PyTree:
    """The replicated arrays of ``tree`` as single-device arrays on this process's first local
    device (what host-side code such as an ``eval_fn`` can compute with). Unchanged in a single
    process and for arrays this process holds entirely.
    """
    if jax.process_count() == 1:
        return tree

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return x
        if not x.is_fully_replicated:
            raise ValueError(f"local_copy needs replicated arrays, got one with sharding {x.sharding}")
        return x.addressable_data(0)

    return jax.tree.map(one, tree)


def broadcast(tree: PyTree) -> PyTree:
    """Process 0's values of ``tree`` (numpy arrays of the same shapes and dtypes in every
    process), in every process; the input as numpy in a single process."""
    return multihost_utils.broadcast_one_to_all(tree)


def broadcast_floats(values: Mapping[str, float]) -> dict[str, float]:
    """Process 0's ``{name: float}`` in every process, exactly (float64 bits, whatever
    ``jax_enable_x64``); every process must pass the same names."""
    if jax.process_count() == 1:
        return dict(values)
    names = sorted(values)
    bits = np.asarray([values[k] for k in names], np.float64).view(np.uint32)
    got = np.asarray(broadcast(bits), np.uint32).view(np.float64)
    return {k: float(v) for k, v in zip(names, got)}


def all_ok(ok: bool) -> bool:
    """Whether ``ok`` holds in every process (one collective; ``ok`` itself in one process)."""
    if jax.process_count() == 1:
        return bool(ok)
    return bool(np.all(multihost_utils.process_allgather(np.int32(bool(ok)))))


def barrier(name: str) -> None:
    """Waits until every process has reached the barrier ``name`` (no-op in one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def assert_same(tree: PyTree, what: str) -> None:
    """Raises ``ValueError`` if ``tree`` (e.g. initial params) differs between processes.

    Compares a fingerprint (per leaf: shape, float64 sum and sum of squares), one small
    collective; a no-op in a single process.
    """
    if jax.process_count() == 1:
        return
    rows = []
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        x = np.asarray(leaf, np.float64)
        rows.append([x.size, x.sum(), np.square(x).sum()])
    mine = np.asarray(rows, np.float64).reshape(-1, 3)
    first = np.asarray(broadcast(mine.view(np.uint32)), np.uint32).view(np.float64).reshape(-1, 3)
    if not all_ok(np.array_equal(mine, first, equal_nan=True)):
        raise ValueError(f"the {what} differ between processes: every process must start from the same "
                         f"{what} (e.g. initialize them from the same key)")


def fail_fast(main: Callable[..., int]) -> Callable[..., int]:
    """Decorates a script's ``main``: in a multi-process run, an exception or a non-zero exit
    ends this process at once (message on stderr, ``os._exit``), instead of waiting in JAX's
    shutdown barrier for processes that are blocked in a collective waiting for this one (they
    then stop within the heartbeat timeout). A single process is unaffected."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except SystemExit as e:
            if jax.process_count() == 1 or e.code in (None, 0):
                raise
            _exit_now(e.code if isinstance(e.code, int) else 1, None if isinstance(e.code, int) else str(e.code))
        except BaseException:
            if jax.process_count() == 1:
                raise
            _exit_now(1, traceback.format_exc())

    return wrapped


def _exit_now(status: int, message: str | None) -> None:
    if message:
        print(f"[process {jax.process_index()} of {jax.process_count()}] {message.rstrip()}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
