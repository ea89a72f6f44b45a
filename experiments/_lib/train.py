"""The training loop every ``sympe_jax`` experiment shares: optax, jit, orbax, data parallel.

One call trains a model from a loss function, an optax optimizer and a batch function::

    config = TrainConfig(num_steps=10_000, eval_every=500, checkpoint_every=1000,
                         select_metric="val_loss")
    result = train(config, loss_fn=loss_fn, params=params,
                   optimizer=make_optimizer(3e-4, config.num_steps, warmup_steps=500),
                   batch_fn=batch_fn, key=jax.random.key(0), workdir="runs/ae", eval_fn=eval_fn)
    result.best_params, result.history

The three user functions:

* ``loss_fn(params, batch, key) -> (loss, metrics)``: ``loss`` is a scalar, ``metrics`` a
  (possibly empty) dict of scalars. It is traced once, inside the jitted train step, and
  differentiated with respect to ``params`` (a pytree of float arrays).
* ``batch_fn(i) -> batch``: the batch (a pytree of arrays, numpy or jax) used by update ``i``
  (0-based). It must be a pure function of ``i`` (e.g. a numpy ``Generator`` seeded with
  ``(seed, i)``) so that resuming is exact. Every leaf is sharded along axis 0 over the
  devices by default, so its leading dimension must be divisible by the device count. In a
  multi-process run it returns only this process's rows: build it with
  :func:`experiments._lib.distributed.per_process` from a pure function of
  ``(i, process_index, process_count)``.
* ``eval_fn(params, key) -> dict[str, float]`` (optional): called on the host every
  ``eval_every`` steps and after the final step; jit it yourself if it is expensive.

Conventions:

* Steps count completed updates. Update ``i`` (0-based) consumes ``batch_fn(i)`` and the key
  ``fold_in(train_key, i)``; afterwards ``step = i + 1``, which is what logs and checkpoints
  record. ``train_key, eval_key = jax.random.split(key)`` and evaluation after step ``s`` uses
  ``fold_in(eval_key, s)``. Keys are stateless functions of the step, so a resumed run sees
  exactly the keys and batches of an uninterrupted one.
* Logged train rows hold the *mean* of ``loss``, ``grad_norm`` and every metric over the steps
  since the previous train row (the running sums are checkpointed, so they survive a resume).
  A train row is written every ``log_every`` steps and after the final step; an eval row after
  every evaluation.
* Data parallelism: a 1-D mesh named ``"data"`` over ``jax.devices()`` (or ``devices``);
  batch leaves are sharded along axis 0 (``batch_spec`` overrides this), params and optimizer
  state are replicated; XLA inserts the gradient all-reduce. With one device it is a no-op,
  and with several the losses equal the one-device ones up to float reduction order.
* Several processes (hosts; :mod:`experiments._lib.distributed`, after
  ``distributed.initialize()``): the mesh spans ``jax.devices()`` of every process, grouped by
  process; each process's ``batch_fn`` returns its own block of rows and the global batch is
  assembled with ``jax.make_array_from_process_local_data``. Every process calls ``train`` with
  the same arguments (checked: the initial params and key must agree) and runs the same steps;
  every process calls the orbax save (each writes its own part; orbax's primary host, process
  0, the metadata). Process 0 alone holds the run lock, writes ``metrics.jsonl`` and draws the
  progress bar; the divergence check and model selection use process 0's values, broadcast, so
  every process takes the same decision (the divergence flags are agreed at every log,
  evaluation or checkpoint step and after the last step, so a non-finite state is still never
  written). ``eval_fn`` runs in every process on single-device copies of the params
  (:func:`~experiments._lib.distributed.local_copy`). Resuming works with any process count
  at the same global batch (the checkpoint holds replicated arrays; orbax reshards them).
* Several updates per call (``TrainConfig.steps_per_call`` = K > 1): one jitted call runs K
  updates, a ``jax.lax.scan`` of the same step over K batches stacked along a new leading axis
  (``batch_fn(i), ..., batch_fn(i + K - 1)``) and the same K keys, so a small model does not
  pay the host's dispatch cost per update. Calls start at multiples of K (a run resumed or
  extended at another step, or a ``num_steps`` that K does not divide, runs its odd updates one
  per call), and K must divide ``log_every``, ``eval_every`` and ``checkpoint_every``, so every
  action still runs exactly at its step. Params, optimizer state, logged rows and checkpoints
  equal those of K single steps: bitwise on CPU (tested; also at the graph autoencoder's
  ``paper`` preset with XLA's default flags), though another backend may compile the loop body
  differently and round differently. A non-finite update inside a block is found from the
  block's per-update flags and reported with its own step; the block's later updates are
  discarded with it.
* Non-finite values: the jitted step returns one fused flag vector (loss, gradients, updated
  params all finite). The host reads it one step late (so dispatch stays asynchronous) and
  always before logging, evaluating or checkpointing, so a non-finite state is never written.
  On the first non-finite step :class:`TrainingDiverged` is raised, naming the step, the
  quantity and the last good checkpoint (which is left untouched).

Structure (as in the flax examples with CommonLoopUtils): the loop carries a
:class:`TrainState` (step, params, opt_state, running log sums, best params and metrics) and,
after each step, calls the :class:`PeriodicAction` s that are due, each ``state -> state`` with
one job: :class:`LogTrainMetrics` (train rows into the :class:`MetricsLog`),
:class:`EvaluateAndSelect` (eval rows, model selection) and :class:`Checkpoint` (orbax save;
also the restore). A :class:`DivergenceGuard` reads the finiteness flags one step late and is
flushed before any action runs; :class:`Progress` draws the bar and times the call.

``workdir`` layout (all optional: ``workdir=None`` trains in memory; see
:mod:`experiments._lib.rundir`)::

    workdir/run.lock              locked by the running call (one run per workdir)
    workdir/checkpoints/<step>/   orbax CheckpointManager steps: item "state" (params,
                                  opt_state, key, best_params if select_metric) and item
                                  "meta" (JSON: step, running log sums, best/last eval, config)
    workdir/checkpoints_rejected/<step>-<time>/   checkpoints that did not restore, moved aside
    workdir/metrics.jsonl         one JSON object per row: {"step", "split": "train"|"eval",
                                  values..., ["steps_per_sec"], "wall_time"}

One run at a time: ``train`` holds an OS file lock on ``workdir/run.lock`` (released by the
kernel when the process ends, killed or not); a second call on the same workdir raises
:class:`~experiments._lib.rundir.RunDirLocked` at once, naming the first one's pid, host and
start time. Foreign or damaged files (``checkpoints`` a file, a ``metrics.jsonl`` that is a
directory or not UTF-8 text) raise :class:`~experiments._lib.rundir.RunDirError` before
anything is read or changed.

Resuming is automatic: if ``workdir/checkpoints`` holds a checkpoint, ``train`` restores the
newest one that restores (params, optimizer state, log sums, best params) and continues to
``num_steps``; rows of ``metrics.jsonl`` with a step beyond the restored one are dropped (atomic
rewrite), so the log never has duplicates and equals that of an uninterrupted run (a last line
cut short by a kill is dropped too). Newer checkpoints that do not restore (corrupt files, a
stray empty step directory) are moved to ``workdir/checkpoints_rejected/`` (never deleted), and
one log line says so. A run that had not reached its first checkpoint restarts from scratch
(its log is reset). Use a new workdir to start afresh. If no checkpoint restores, or they were
written for a different model, optimizer or ``select_metric``, :class:`CheckpointError` is
raised and nothing on disk is deleted, moved or overwritten.

Caveat: exactness holds for interruptions (kill, exception, divergence). *Extending* a finished
run (calling again with a larger ``num_steps``) continues exactly from the final state, but the
shorter run had logged, evaluated and checkpointed at its final step, and an optimizer whose
schedule depends on ``num_steps`` is a different optimizer.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from experiments._lib import distributed, host, rundir
from experiments._lib.rundir import CHECKPOINT_SUBDIR, METRICS_FILE, REJECTED_SUBDIR

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "CheckpointError",
    "LossFn",
    "BatchFn",
    "EvalFn",
    "train",
    "StepRunner",
    "make_schedule",
    "make_optimizer",
    "global_norm",
    "data_mesh",
    "shard_batch",
    "read_log",
    "save_json",
    "has_checkpoint",
]

_LOG = logging.getLogger(__name__)

PyTree = Any
LossFn = Callable[[PyTree, PyTree, jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]
BatchFn = Callable[[int], PyTree]
EvalFn = Callable[[PyTree, jax.Array], Mapping[str, float]]

DATA_AXIS = "data"
# Keys of logged rows that metric names may not use.
_RESERVED = ("step", "split", "loss", "grad_norm", "steps_per_sec", "wall_time")
_QUANTITIES = ("loss", "gradients", "updated parameters")
# optax >= 0.2.5 has ``optax.tree.norm``; older versions only ``optax.tree_utils.tree_l2_norm``.
_tree_l2_norm = getattr(getattr(optax, "tree", None), "norm", None) or optax.tree_utils.tree_l2_norm


class TrainingDiverged(rundir.RunError):
    """A train step produced a non-finite loss, gradient or parameter.

    Training is deterministic, so calling ``train`` again with the same arguments resumes from
    the last good checkpoint and diverges again at the same step. What works: the same workdir
    with an optimizer of the same state structure but other settings (e.g. a smaller learning
    rate: the restored optimizer state is reused), or other settings in a new workdir.

    Attributes:
        step: the step (1-based count of updates) whose update was non-finite.
        quantity: ``"loss"``, ``"gradients"`` or ``"updated parameters"``.
        last_checkpoint: directory of the last good checkpoint, or None if there is none.
    """

    cli_advice = ("Rerunning the same command diverges again at the same step (training is "
                  "deterministic); a run directory is named by its config, so rerunning with other "
                  "settings (e.g. a smaller --learning-rate) trains a new run from scratch.")

    def __init__(self, message: str, *, step: int, quantity: str, last_checkpoint: Path | None):
        super().__init__(message)
        self.step = step
        self.quantity = quantity
        self.last_checkpoint = last_checkpoint


class CheckpointError(rundir.RunError):
    """A checkpoint could not be read or written; nothing on disk was deleted.

    Attributes:
        directory: the checkpoint step directory concerned.
    """

    def __init__(self, message: str, *, directory: Path):
        super().__init__(message)
        self.directory = directory


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Schedule of one training run.

    Attributes:
        num_steps: total number of updates (including those of a resumed run).
        eval_every: evaluate every this many steps (and after the final step, whenever an
            ``eval_fn`` is given); 0: only after the final step.
        checkpoint_every: save a checkpoint every this many steps and after the final step;
            0: never (a workdir is then only used for the metrics log, and for resuming
            from checkpoints already in it).
        log_every: write a train row (window means) every this many steps and after the
            final step.
        max_to_keep: number of most recent checkpoints kept on disk.
        select_metric: eval metric used to keep the best params (e.g. ``"val_loss"``); None:
            ``best_params`` are the final params.
        select_mode: ``"min"`` or ``"max"``: whether a smaller or larger ``select_metric`` is
            better.
        progress: show a tqdm progress bar (only when stderr is a terminal).
        async_checkpointing: let orbax write checkpoints in a background thread; the loop
            waits for them before returning or raising.
        steps_per_call: updates per jitted call, K (a ``jax.lax.scan`` over K stacked batches
            and keys; see the module docstring). It must divide ``log_every`` and the nonzero
            ``eval_every`` and ``checkpoint_every``. 1 (default): one update per call.
    """

    num_steps: int
    eval_every: int = 0
    checkpoint_every: int = 0
    log_every: int = 10
    max_to_keep: int = 2
    select_metric: str | None = None
    select_mode: str = "min"
    progress: bool = True
    async_checkpointing: bool = True
    steps_per_call: int = 1

    def __post_init__(self):
        for name in ("num_steps", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}")
        for name in ("log_every", "max_to_keep", "steps_per_call"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        if self.select_mode not in ("min", "max"):
            raise ValueError(f"TrainConfig.select_mode must be 'min' or 'max', got {self.select_mode!r}")
        if self.select_metric in _RESERVED:
            raise ValueError(f"TrainConfig.select_metric may not be one of {_RESERVED}")
        k = self.steps_per_call
        for name in ("log_every", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value % k:
                raise ValueError(
                    f"TrainConfig.steps_per_call={k} must divide {name}={value} (a call runs {k} updates, and "
                    f"{name} must fall on a call's last step); use a {name} that is a multiple of {k}")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        params: final params (replicated over the mesh).
        opt_state: final optimizer state.
        best_params: params at the best ``select_metric`` evaluation; the final params if
            ``select_metric`` is None or no evaluation gave a finite value of it.
        best_metrics: eval metrics of ``best_params`` (the last evaluation if ``select_metric``
            is None); empty without an ``eval_fn``.
        best_step: step of ``best_params``.
        step: final step (``num_steps``, or the checkpoint step if that was already beyond).
        history: every logged row (with a workdir, also those of earlier, resumed runs), as
            written to ``metrics.jsonl``.
        steps_per_second: throughput of this call, wall-clock, excluding the first
            (compiling) jitted call when more than one ran; includes evaluation and
            checkpointing time. 0.0 if no step ran.
        resumed_from: step of the checkpoint this call resumed from, or None.
        selection: how ``best_params`` were chosen: ``"best <metric> (<mode>)"``, ``"last
            step"`` (no ``select_metric``), or ``"no finite value of <metric> in <n>
            evaluations; kept the last step"`` (also logged as a warning).
        wall_time_s: wall-clock seconds of this call (compiling, evaluating and checkpointing
            included; a resumed run's earlier calls are not).
    """

    params: PyTree
    opt_state: PyTree
    best_params: PyTree
    best_metrics: dict[str, float]
    best_step: int | None
    step: int
    history: list[dict[str, Any]]
    steps_per_second: float
    resumed_from: int | None
    selection: str = "last step"
    wall_time_s: float = 0.0


# --------------------------------------------------------------------------------------
# Optimizer.


def make_schedule(
    learning_rate: float,
    num_steps: int,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    end_lr_ratio: float = 0.0,
) -> optax.Schedule:
    """Learning-rate schedule: linear warmup from 0, then cosine/linear decay or constant.

    Args:
        learning_rate: peak learning rate, reached after ``warmup_steps``.
        num_steps: total number of steps, warmup included; the decay ends there.
        warmup_steps: number of linear warmup steps (0: start at the peak).
        schedule: ``"cosine"``, ``"linear"`` (decay to ``end_lr_ratio * learning_rate``) or
            ``"constant"``.
        end_lr_ratio: final learning rate as a fraction of the peak (decaying schedules).

    Returns:
        An optax schedule mapping the update count (0-based) to the learning rate.
    """
    if not 0 <= warmup_steps <= num_steps:
        raise ValueError(f"need 0 <= warmup_steps <= num_steps, got {warmup_steps} and {num_steps}")
    end_value = learning_rate * end_lr_ratio
    if schedule == "cosine":
        if num_steps == warmup_steps:  # no decay phase
            schedule = "constant"
        else:
            return optax.warmup_cosine_decay_schedule(
                init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps,
                decay_steps=num_steps, end_value=end_value)
    if schedule == "linear":
        main = optax.linear_schedule(learning_rate, end_value, num_steps - warmup_steps)
    elif schedule == "constant":
        main = optax.constant_schedule(learning_rate)
    else:
        raise ValueError(f"schedule must be 'cosine', 'linear' or 'constant', got {schedule!r}")
    if warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.join_schedules([warmup, main], [warmup_steps])


def make_optimizer(
    learning_rate: float,
    num_steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    schedule: str = "cosine",
    end_lr_ratio: float = 0.0,
    weight_decay_mask: Any = None,
) -> optax.GradientTransformation:
    """AdamW on a :func:`make_schedule` schedule, optionally after global-norm clipping.

    Args:
        learning_rate, num_steps, warmup_steps, schedule, end_lr_ratio: see
            :func:`make_schedule`.
        weight_decay: decoupled weight decay (0: plain Adam).
        clip_norm: clip gradients to this global norm first (None: no clipping).
        weight_decay_mask: optax mask (pytree of bools or callable) of the params to decay.

    Returns:
        The optax gradient transformation.
    """
    lr = make_schedule(learning_rate, num_steps, warmup_steps, schedule, end_lr_ratio)
    parts = []
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(clip_norm))
    parts.append(optax.adamw(lr, weight_decay=weight_decay, mask=weight_decay_mask))
    return optax.chain(*parts)


# --------------------------------------------------------------------------------------
# Small helpers: files and sharding.


def has_checkpoint(workdir: str | os.PathLike, step: int) -> bool:
    """Whether ``workdir`` holds a finished checkpoint of ``step`` (``workdir/checkpoints/<step>/``;
    orbax writes to a temporary directory and renames it when the step is complete)."""
    return (Path(workdir) / CHECKPOINT_SUBDIR / str(step)).is_dir()


def restore_params(workdir: str | os.PathLike, step: int, params_like: PyTree) -> PyTree:
    """The params of the checkpoint of ``step`` in a run directory written by :func:`train`,
    to evaluate a trained model again without its loss, data or optimizer.

    Args:
        workdir: the run directory given to :func:`train`.
        step: a checkpointed step (e.g. ``num_steps``).
        params_like: params of the same model (e.g. from ``model.init``): the checkpoint's must
            have their tree structure, shapes and dtypes.
    Returns:
        the params, as ``params_like``'s tree of (host) arrays.
    Raises:
        CheckpointError: no such checkpoint, or one of another model, or non-finite values.
    """
    step_dir = Path(workdir) / CHECKPOINT_SUBDIR / str(step)
    if not has_checkpoint(workdir, step):
        raise CheckpointError(f"no checkpoint of step {step} in {Path(workdir) / CHECKPOINT_SUBDIR}",
                              directory=step_dir)
    with ocp.PyTreeCheckpointer() as ckpt, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sharding info not provided")   # host arrays are asked for
        state = ckpt.restore(str(step_dir / "state"))
    saved = state.get("params") if isinstance(state, dict) else None
    try:
        params = jax.tree_util.tree_map(_host_like, params_like, saved)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"the checkpoint of step {step} in {step_dir} holds params of another model: "
                              f"{e}", directory=step_dir) from None
    if not _host_finite(params):
        raise CheckpointError(f"the checkpoint of step {step} in {step_dir} holds non-finite params",
                              directory=step_dir)
    return params


def _host_like(like, x) -> np.ndarray:
    """``x`` as a host array of ``like``'s dtype; ValueError if the shapes differ."""
    if np.shape(like) != np.shape(x):
        raise ValueError(f"shape {np.shape(x)} where the model has {np.shape(like)}")
    return np.asarray(x).astype(np.asarray(like).dtype, copy=False)


def save_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Writes ``obj`` as JSON atomically (temporary file in the same directory, then rename)."""
    _atomic_write_text(Path(path), json.dumps(obj, indent=indent) + "\n")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads a ``metrics.jsonl`` log (a workdir or the file itself) into a list of rows.

    Malformed lines (e.g. a line cut short by a kill) are skipped with a warning; a file that
    is not UTF-8 text raises :class:`~experiments._lib.rundir.RunDirError`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    return [row for _, row in _read_log_lines(path)]


def _read_log_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for number, line in enumerate(rundir.read_log_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not an object with an integer 'step'")
        except ValueError as e:
            warnings.warn(f"{path}:{number}: skipping malformed log line ({e})", stacklevel=3)
            continue
        out.append((line, row))
    return out


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: ``jax.devices()``, every
    process's devices, grouped by process so that each process's rows are one block)."""
    if devices is None:
        devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    devices = list(devices)
    if not devices:
        raise ValueError("data_mesh needs at least one device")
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def shard_batch(batch: PyTree, mesh: Mesh, batch_spec: Any = None) -> PyTree:
    """Places a host batch on ``mesh``, by default sharding every leaf along axis 0.

    In a multi-process run, ``batch`` is this process's block of rows (its sharded axes are
    ``process_count`` times shorter than the global ones, replicated leaves whole) and the
    global arrays are assembled with :func:`experiments._lib.distributed.global_batch`.

    Args:
        batch: pytree of arrays; with the default spec every leaf has shape ``(B, ...)``
            with ``B`` divisible by the size of the mesh's ``"data"`` axis (in a multi-process
            run: by the number of this process's devices on it).
        mesh: the mesh (see :func:`data_mesh`).
        batch_spec: a ``PartitionSpec``, or a pytree prefix of ``batch`` with
            ``PartitionSpec`` leaves (``P()`` replicates a leaf); default ``P("data")``.

    Returns:
        The batch as jax arrays with ``NamedSharding(mesh, spec)``.

    Raises:
        ValueError: if a sharded dimension is missing or not divisible by its mesh size.
    """
    specs = _leaf_specs(batch, batch_spec)
    if jax.process_count() > 1:
        jax.tree_util.tree_map_with_path(
            lambda path, leaf, spec: _check_divisible(path, np.shape(leaf), spec, mesh, jax.process_count()),
            batch, specs)
        return distributed.global_batch(batch, mesh, specs)

    def place(path, leaf, spec):
        _check_divisible(path, np.shape(leaf), spec, mesh)
        return jax.device_put(leaf, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map_with_path(place, batch, specs)


def _leaf_specs(batch: PyTree, batch_spec: Any = None) -> PyTree:
    """One ``PartitionSpec`` per leaf of ``batch``: ``batch_spec`` (a prefix) broadcast, default ``P("data")``."""
    spec_tree = P(DATA_AXIS) if batch_spec is None else batch_spec
    try:  # broadcast the prefix to one spec per batch leaf
        return jax.tree.map(lambda spec, sub: jax.tree.map(lambda _: spec, sub), spec_tree, batch,
                            is_leaf=lambda x: isinstance(x, P))
    except (ValueError, TypeError) as e:
        raise ValueError(f"batch_spec {batch_spec!r} is not a pytree prefix of the batch: {e}") from e


def _check_divisible(path, shape: tuple[int, ...], spec: P, mesh: Mesh, processes: int = 1) -> None:
    """``processes`` > 1: ``shape`` is one process's block, held by 1/processes of the devices."""
    for dim, names in enumerate(spec):
        if names is None:
            continue
        names = names if isinstance(names, tuple) else (names,)
        size = math.prod(mesh.shape[name] for name in names) // processes
        where = f"batch leaf {jax.tree_util.keystr(path) or '<root>'} of shape {shape}"
        if dim >= len(shape):
            raise ValueError(f"{where} has no axis {dim} to shard with {spec}; give it a leading "
                             f"batch axis or replicate it with batch_spec=P()")
        if shape[dim] % size:
            raise ValueError(
                f"{where}: size {shape[dim]} of axis {dim} is not divisible by the {size} devices "
                f"it is sharded over ({spec}); use a batch size that is a multiple of {size}")


def _replicate_copy(tree: PyTree, sharding: NamedSharding) -> PyTree:
    # A private copy, so donating it to the train step never deletes the caller's arrays.
    return distributed.replicate(tree, sharding)


def _put(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """``device_put`` onto ``sharding``; across processes through host memory (same values)."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return distributed.replicate(tree, sharding)


def _key_data(key: jax.Array) -> np.ndarray:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key)


def _abstract(tree: PyTree, sharding: NamedSharding) -> PyTree:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _host_finite(tree: PyTree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree)
               if jnp.issubdtype(x.dtype, jnp.inexact))


def _all_finite(tree: PyTree) -> jax.Array:
    flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
             if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.asarray(True)


def _to_float(value: Any, what: str) -> float:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be a scalar, got {value!r}") from e


# --------------------------------------------------------------------------------------
# The jitted step.


def global_norm(tree: PyTree) -> jax.Array:
    """() float32: the L2 norm of all leaves of ``tree`` together (e.g. a gradient).

    A thin forward to optax's tree norm (``optax.tree.norm``, or
    ``optax.tree_utils.tree_l2_norm`` on older optax), on the leaves cast to float32.
    """
    return _tree_l2_norm(jax.tree.map(lambda g: jnp.asarray(g, jnp.float32), tree))


class _StepOutput(NamedTuple):
    """One call's output: shapes (), (), (3,) for one update; [K], [K], [K, 3] for K (stacked)."""
    loss: jax.Array  # () the step's loss
    grad_norm: jax.Array  # () global gradient norm
    finite: jax.Array  # (3,) bool: loss, gradients, updated params all finite


def _first_nonfinite(step: int, out: _StepOutput) -> tuple[int, int] | None:
    """``(step, quantity index)`` of the first non-finite update of a call whose last update
    brought the count to ``step`` (one or K updates), or None if all are finite."""
    finite = np.asarray(out.finite).reshape(-1, len(_QUANTITIES))
    if finite.all():
        return None
    row = int(np.argmin(finite.all(axis=1)))
    return step - len(finite) + 1 + row, int(np.argmin(finite[row]))


def _values_at(step: int, calls: Mapping[int, _StepOutput]) -> tuple[float, float]:
    """(loss, grad_norm) of update ``step`` among ``{last step of a call: its output}``; NaN if absent."""
    for end, out in calls.items():
        losses = np.reshape(np.asarray(jax.device_get(out.loss)), -1)
        if end - len(losses) < step <= end:
            norms = np.reshape(np.asarray(jax.device_get(out.grad_norm)), -1)
            row = step - (end - len(losses)) - 1
            return float(losses[row]), float(norms[row])
    return math.nan, math.nan


def _train_step(params, opt_state, acc, batch, key, index, *, loss_fn, optimizer):
    """One update; ``acc`` = {"count": () int32, "sums": {name: () float32}} of logged values."""
    step_key = jax.random.fold_in(key, index)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, step_key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    grad_norm = global_norm(grads)
    finite = jnp.stack([jnp.all(jnp.isfinite(loss)), _all_finite(grads), _all_finite(new_params)])
    values = {"loss": loss, "grad_norm": grad_norm, **metrics}
    acc = {
        "count": acc["count"] + 1,
        "sums": {k: acc["sums"][k] + jnp.asarray(v, jnp.float32) for k, v in values.items()},
    }
    return new_params, opt_state, acc, _StepOutput(loss, grad_norm, finite)


def _train_steps(params, opt_state, acc, batches, key, index, *, loss_fn, optimizer, num):
    """``num`` updates in one call: :func:`_train_step` scanned over ``batches``, whose every
    leaf has a leading axis of length ``num`` (the batches of updates ``index, ...,
    index + num - 1``). Returns the final state and the per-update outputs stacked:
    loss [num], grad_norm [num], finite [num, 3]."""
    step = functools.partial(_train_step, loss_fn=loss_fn, optimizer=optimizer)

    def body(carry, xs):
        batch, i = xs
        *carry, out = step(*carry, batch, key, i)
        return tuple(carry), out

    indices = index + jnp.arange(num, dtype=jnp.int32)
    (params, opt_state, acc), outs = jax.lax.scan(body, (params, opt_state, acc), (batches, indices))
    return params, opt_state, acc, outs


class StepRunner:
    """The updates of a run, as ``train`` calls them: one per jitted call, or ``steps_per_call``
    = K per call (:func:`_train_steps`, a scan over K stacked batches and keys).

    ``runner(params, opt_state, acc, key, index, count)`` runs updates ``index .. index +
    count - 1`` (count 1 or K) on the batches of ``batch_fn`` and returns the new params,
    optimizer state and log sums (the first three are donated) and the step output (per update,
    stacked, when count is K). :meth:`calls` says which calls cover a range of updates.
    Benchmarks use it to time the loop's calls (``benchmarks/graph_ae_step.py``).
    """

    def __init__(self, loss_fn: LossFn, optimizer: optax.GradientTransformation, batch_fn: BatchFn, mesh: Mesh,
                 *, steps_per_call: int = 1, batch_spec: Any = None):
        replicated = NamedSharding(mesh, P())
        self.batch_fn, self.mesh, self.batch_spec, self.steps_per_call = batch_fn, mesh, batch_spec, steps_per_call
        self.loss_fn, self.optimizer, self.replicated = loss_fn, optimizer, replicated
        self.single = jax.jit(functools.partial(_train_step, loss_fn=loss_fn, optimizer=optimizer),
                              donate_argnums=(0, 1, 2), out_shardings=replicated)
        self.multi, self._compiled = None, {}
        if steps_per_call > 1:
            self.multi = jax.jit(functools.partial(_train_steps, loss_fn=loss_fn, optimizer=optimizer,
                                                   num=steps_per_call),
                                 donate_argnums=(0, 1, 2), out_shardings=replicated)

    def start(self, params: PyTree) -> tuple[PyTree, PyTree, dict[str, Any]]:
        """``(params, opt_state, acc)`` of a fresh run, as ``train`` starts one without a
        checkpoint: a replicated copy of ``params``, the optimizer's initial state, zero log sums."""
        params = _replicate_copy(params, self.replicated)
        opt_state = jax.jit(self.optimizer.init, out_shardings=self.replicated)(params)
        names = _metric_names(self.loss_fn, params, shard_batch(self.batch_fn(0), self.mesh, self.batch_spec),
                              jax.random.key(0))
        return params, opt_state, _put(_zero_acc(names), self.replicated)

    def calls(self, start: int, stop: int) -> Iterator[tuple[int, int]]:
        """``(index, count)`` of the calls covering updates ``start .. stop - 1``: K updates per
        call from each multiple of K, the others (before the first multiple, after the last)
        one by one."""
        k, i = self.steps_per_call, start
        while i < stop:
            count = k if k > 1 and i % k == 0 and i + k <= stop else 1
            yield i, count
            i += count

    def batches(self, index: int, count: int, first: PyTree = None) -> PyTree:
        """The sharded batch of update ``index`` (count 1), or the batches of updates ``index ..
        index + count - 1`` stacked along a new leading axis. ``first``: batch_fn(index), if the
        caller already has it."""
        host = [first if j == 0 and first is not None else self.batch_fn(index + j) for j in range(count)]
        if count == 1:
            return shard_batch(host[0], self.mesh, self.batch_spec)
        specs = jax.tree.map(lambda spec: P(None, *spec), _leaf_specs(host[0], self.batch_spec),
                             is_leaf=lambda x: isinstance(x, P))
        stacked = jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *host)
        return shard_batch(stacked, self.mesh, specs)

    def __call__(self, params, opt_state, acc, key, index: int, count: int, first: PyTree = None):
        if count not in (1, self.steps_per_call):
            raise ValueError(f"a call runs 1 or {self.steps_per_call} updates, not {count}")
        args = (params, opt_state, acc, self.batches(index, count, first), key, index)
        if count not in self._compiled:
            # compiled ahead of the first call, so that the memory compiling leaves free goes back to the
            # system before the step allocates its buffers (experiments._lib.host)
            self._compiled[count] = (self.single if count == 1 else self.multi).lower(*args).compile()
            host.release_free_memory()
        return self._compiled[count](*args)


def _metric_names(loss_fn: LossFn, params: PyTree, batch: PyTree, key: jax.Array) -> list[str]:
    """Traces ``loss_fn`` abstractly and checks its output format; returns the metric names."""
    out = jax.eval_shape(loss_fn, params, batch, key)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping)):
        raise TypeError("loss_fn(params, batch, key) must return (loss, metrics) with metrics a dict "
                        f"of scalars (possibly empty), got {out}")
    loss, metrics = out
    if getattr(loss, "shape", None) != ():
        raise TypeError(f"loss_fn must return a scalar loss, got {loss}")
    for name, value in metrics.items():
        if not isinstance(name, str) or name in _RESERVED:
            raise ValueError(f"metric name {name!r} is reserved or not a string; avoid {_RESERVED}")
        if getattr(value, "shape", None) != ():
            raise TypeError(f"metric {name!r} must be a scalar, got {value}")
    return ["loss", "grad_norm", *metrics]


def _zero_acc(names: Sequence[str]) -> dict[str, Any]:
    return {"count": jnp.zeros((), jnp.int32), "sums": {k: jnp.zeros((), jnp.float32) for k in names}}


# --------------------------------------------------------------------------------------
# Checkpoints and the metrics log.


class _Checkpoints:
    """Thin wrapper of an orbax ``CheckpointManager`` with items "state" and "meta"."""

    def __init__(self, directory: Path, config: TrainConfig):
        self.directory = directory
        options = ocp.CheckpointManagerOptions(
            max_to_keep=config.max_to_keep,
            create=True,
            cleanup_tmp_directories=False,
            enable_async_checkpointing=config.async_checkpointing,
        )
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of the finished checkpoints, newest first."""
        return sorted(self._manager.all_steps(), reverse=True)

    def step_dir(self, step: int) -> Path:
        return self.directory / str(step)

    def check_structure(self, step: int, abstract_state: PyTree) -> None:
        """Raises :class:`CheckpointError` if the checkpoint of ``step`` was saved for another
        model, optimizer or select_metric (its array metadata disagree with ``abstract_state``)."""
        mismatch = self._structure_mismatch(step, abstract_state)
        if mismatch:
            step_dir = self.step_dir(step)
            raise CheckpointError(
                f"The checkpoint of step {step} in {step_dir} was written for a different model, "
                f"optimizer or select_metric: {mismatch}. Nothing was deleted or overwritten; use a "
                f"new workdir (or restore the original settings) to train.", directory=step_dir)

    def reject(self, step: int) -> Path:
        """Moves the checkpoint of ``step`` to ``<workdir>/checkpoints_rejected/<step>-<time>``
        (never deletes it) and returns where it went."""
        rejected = self.directory.parent / REJECTED_SUBDIR
        target = rejected / f"{step}-{time.strftime('%Y%m%dT%H%M%S')}"
        if distributed.is_main():  # process 0 moves it; the others wait for it
            rejected.mkdir(parents=True, exist_ok=True)
            target = rundir.move_aside(self.step_dir(step), target, sep="-")
        distributed.barrier(f"reject checkpoint {step}")
        self._manager.reload()  # orbax caches its list of steps
        return target

    def restore(self, step: int, abstract_state: PyTree) -> tuple[PyTree, dict[str, Any]]:
        """The checkpoint of ``step``; raises :class:`CheckpointError` (cause in its message)
        if it is corrupt, unreadable or non-finite."""
        step_dir = self.step_dir(step)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
            state, meta = restored["state"], restored["meta"]
            if not isinstance(meta, dict) or meta.get("step") != step or not {"acc", "best"} <= set(meta):
                raise ValueError(f"its metadata is not that of step {step} written by train(): {meta!r}")
            if not _host_finite(state):
                raise ValueError("it holds non-finite values")
        except Exception as e:  # noqa: BLE001 -- any failure means the checkpoint is unusable.
            detail = " ".join(f"{type(e).__name__}: {e}".split())
            if len(detail) > 300:
                detail = detail[:300] + " ..."
            raise CheckpointError(f"cannot restore the checkpoint of step {step} from {step_dir}: "
                                  f"{detail}", directory=step_dir) from e
        return state, meta

    def _structure_mismatch(self, step: int, abstract_state: PyTree) -> str:
        """Compares the saved array metadata with the restore target; "" if they agree.

        Best effort: if the metadata cannot be read, the restore itself reports the problem.
        """
        try:
            saved = self._manager.item_metadata(step)["state"]
            saved = _signatures(getattr(saved, "tree", saved))
        except Exception:  # noqa: BLE001
            return ""
        if not saved:
            return ""
        expected = _signatures(abstract_state)
        problems = [f"saved {path} is {saved[path]}, expected {expected[path]}" for path in expected
                    if path in saved and saved[path] != expected[path]]
        problems += [f"{path} is missing" for path in expected if path not in saved]
        problems += [f"{path} is saved but not expected" for path in saved if path not in expected]
        if len(problems) > 4:
            problems = problems[:4] + [f"and {len(problems) - 4} more differences"]
        return "; ".join(problems)

    def save(self, step: int, state: PyTree, meta: dict[str, Any]) -> None:
        if step in self._manager.all_steps():
            raise CheckpointError(f"refusing to overwrite the existing checkpoint {self.step_dir(step)}",
                                  directory=self.step_dir(step))
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def _signatures(tree: PyTree) -> dict[str, str]:
    """``{"params/w": "float32(3, 4)", ...}`` for the array leaves of a state or its metadata.

    Path entries are normalized (dict keys, attributes and indices alike), as orbax's
    metadata stores namedtuples as dicts; typed PRNG keys are described by their key data.
    """

    def entry(k):
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                return str(getattr(k, attr))
        return str(k)

    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
        if shape is None or dtype is None:
            continue
        if jnp.issubdtype(dtype, jax.dtypes.prng_key):
            data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, dtype))
            shape, dtype = data.shape, data.dtype
        out["/".join(entry(k) for k in path)] = f"{np.dtype(dtype).name}{tuple(shape)}"
    return out


# --------------------------------------------------------------------------------------
# The train state and the periodic actions the loop calls.


class TrainState(NamedTuple):
    """Everything the loop carries from one step to the next (and checkpoints).

    Attributes:
        step: completed updates (host int).
        params, opt_state: replicated over the mesh; donated to the next step.
        acc: ``{"count": () int32, "sums": {name: () float32}}``: running sums of the logged
            values since the last train row (None until the metric names are known).
        best_params: a private copy of the params of the best evaluation (``select_metric``
            only; after a resume, the checkpointed ones), else None.
        best_step, best_metrics: the best evaluation (``select_metric``) or the last one.
    """

    step: int
    params: PyTree
    opt_state: PyTree
    acc: dict[str, Any] | None = None
    best_params: PyTree = None
    best_step: int | None = None
    best_metrics: dict[str, float] = {}


class PeriodicAction:
    """A job the loop runs every ``every`` steps and after the final step (``every=0``: only
    then), once the step's state is known to be finite: ``state = action(state)``."""

    every: int = 0

    def due(self, step: int, last: bool) -> bool:
        return last or bool(self.every and step % self.every == 0)

    def __call__(self, state: TrainState) -> TrainState:
        raise NotImplementedError


class MetricsLog:
    """``metrics.jsonl`` (or memory only): drops rows beyond the resume step (atomic rewrite),
    then appends one JSON line per row, flushed. ``write=False`` (processes other than 0):
    reads the earlier rows but never changes the file."""

    def __init__(self, path: Path | None, resume_step: int, write: bool = True):
        self.rows: list[dict[str, Any]] = []
        self._file = None
        if path is None:
            return
        lines = _read_log_lines(path)
        kept = [(line, row) for line, row in lines if row["step"] <= resume_step]
        if not write:
            self.rows = [row for _, row in kept]
            return
        text = "".join(line + "\n" for line, _ in kept)
        if path.exists() and path.read_text() != text:
            _LOG.info("dropping %d log rows beyond step %d from %s",
                      len(lines) - len(kept), resume_step, path)
            _atomic_write_text(path, text)
        self.rows = [row for _, row in kept]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a")

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Progress:
    """The tqdm progress bar (shown only on a terminal) and the throughput of this call."""

    def __init__(self, config: TrainConfig, start: int):
        self._bar = tqdm.tqdm(total=config.num_steps, initial=start, unit="step", dynamic_ncols=True,
                              disable=None if config.progress else True, file=sys.stderr)
        self._start, self._t_start, self._t_first, self._first_count = start, time.perf_counter(), None, 1

    def update(self, out: Any, count: int = 1) -> None:
        """After a call of ``count`` updates."""
        if self._t_first is None:  # the first call compiles: time the rest
            jax.block_until_ready(out)
            self._t_first, self._first_count = time.perf_counter(), count
        self._bar.update(count)

    def show(self, row: dict[str, Any]) -> None:
        self._bar.set_postfix(loss=f"{row['loss']:.4g}", steps_per_sec=f"{row['steps_per_sec']:.3g}",
                              refresh=False)

    def steps_per_second(self, step: int) -> float:
        ran, now = step - self._start, time.perf_counter()
        if ran > self._first_count:
            return (ran - self._first_count) / max(now - self._t_first, 1e-9)
        return ran / max(now - self._t_start, 1e-9)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()


class LogTrainMetrics(PeriodicAction):
    """Appends a train row (window means of loss, grad_norm and the metrics, steps/s) to the
    log and resets the running sums."""

    def __init__(self, every: int, log: MetricsLog, names: Sequence[str], sharding: NamedSharding,
                 start: int, progress: Progress | None = None):
        self.every, self.log, self.names, self.sharding = every, log, names, sharding
        self.progress = progress
        self._window_start, self._t_window = start, time.perf_counter()

    def __call__(self, state: TrainState) -> TrainState:
        count, sums = jax.device_get((state.acc["count"], state.acc["sums"]))
        acc = _put(_zero_acc(self.names), self.sharding)
        now = time.perf_counter()
        rate = (state.step - self._window_start) / max(now - self._t_window, 1e-9)
        self._t_window, self._window_start = now, state.step
        means = {k: float(sums[k]) / max(int(count), 1) for k in self.names}
        row = {"step": state.step, "split": "train", **means, "steps_per_sec": rate,
               "wall_time": time.time()}
        self.log.append(row)
        if self.progress is not None:
            self.progress.show(row)
        _LOG.info("step %d: loss %.6g, grad_norm %.4g, %.3g steps/s", state.step, row["loss"],
                  row["grad_norm"], rate)
        return state._replace(acc=acc)


class EvaluateAndSelect(PeriodicAction):
    """Calls ``eval_fn(params, fold_in(eval_key, step))``, logs an eval row and keeps the best
    evaluation by ``select_metric`` (with a copy of its params), or the last one if None."""

    def __init__(self, every: int, eval_fn: EvalFn, eval_key: jax.Array, log: MetricsLog,
                 sharding: NamedSharding, select_metric: str | None = None, select_mode: str = "min"):
        self.every, self.eval_fn, self.eval_key, self.log = every, eval_fn, eval_key, log
        self.sharding, self.metric, self.mode = sharding, select_metric, select_mode

    def __call__(self, state: TrainState) -> TrainState:
        if jax.process_count() == 1:
            raw = self.eval_fn(state.params, jax.random.fold_in(self.eval_key, state.step))
        else:  # every process evaluates on its own copies; process 0's metrics decide
            raw = self.eval_fn(distributed.local_copy(state.params),
                               jax.random.fold_in(distributed.local_copy(self.eval_key), state.step))
        metrics = {}
        for name, value in raw.items():
            if not isinstance(name, str) or name in ("step", "split", "wall_time"):
                raise ValueError(f"eval metric name {name!r} is reserved or not a string")
            metrics[name] = _to_float(value, f"eval metric {name!r}")
        metrics = distributed.broadcast_floats(metrics)
        self.log.append({"step": state.step, "split": "eval", **metrics, "wall_time": time.time()})
        if self.metric is None:
            return state._replace(best_step=state.step, best_metrics=metrics)
        if self.metric not in metrics:
            raise KeyError(f"select_metric {self.metric!r} is not among the eval metrics {sorted(metrics)}")
        if not self._better(metrics[self.metric], state.best_metrics.get(self.metric)):
            return state
        # A private copy: `state.params` is donated to the next step.
        return state._replace(best_step=state.step, best_metrics=metrics,
                              best_params=_replicate_copy(state.params, self.sharding))

    def _better(self, value: float, current: float | None) -> bool:
        if current is None or math.isnan(current):
            return not math.isnan(value)
        return value < current if self.mode == "min" else value > current


class Checkpoint(PeriodicAction):
    """Saves (every ``config.checkpoint_every`` steps and after the final step, if that is not 0)
    and restores the train state with orbax: item "state" (params, opt_state, key, best_params
    if select_metric) and item "meta" (JSON: step, running log sums, best/last eval, config).

    Use it as a context manager: leaving it waits for an asynchronous save, so the last good
    checkpoint is complete even when training stops with an error.
    """

    def __init__(self, directory: Path, config: TrainConfig, key: jax.Array, sharding: NamedSharding):
        self.every, self.config, self.key, self.sharding = config.checkpoint_every, config, key, sharding
        self.select = config.select_metric is not None
        self.ckpts = _Checkpoints(directory, config)

    def due(self, step: int, last: bool) -> bool:
        return bool(self.every) and super().due(step, last)

    def restore_latest(self, state: TrainState) -> tuple[TrainState, dict[str, Any] | None]:
        """The newest checkpoint that restores, as a TrainState (``acc`` None), and its meta;
        ``(state, None)`` if there is none.

        Newer checkpoints that do not restore are moved aside (:meth:`_Checkpoints.reject`),
        with one warning log line. Raises :class:`CheckpointError`, moving nothing, if a
        checkpoint was written for another model, optimizer or select_metric, or if none
        restores.
        """
        target = {"params": state.params, "opt_state": state.opt_state, "key": self.key}
        if self.select:
            target["best_params"] = state.params
        abstract = _abstract(target, self.sharding)
        failed: dict[int, CheckpointError] = {}
        for step in self.ckpts.all_steps():
            self.ckpts.check_structure(step, abstract)
            error = None
            try:
                saved, meta = self.ckpts.restore(step, abstract)
            except CheckpointError as e:
                error = e
            if distributed.all_ok(error is None):  # one decision: it restored in every process
                break
            failed[step] = error or CheckpointError(
                f"the checkpoint of step {step} in {self.ckpts.step_dir(step)} did not restore in another "
                f"process", directory=self.ckpts.step_dir(step))
        else:
            if not failed:
                return state, None
            raise CheckpointError(
                f"No checkpoint in {self.ckpts.directory} can be restored: they are corrupt or "
                f"unreadable, or were written for a different model, optimizer or select_metric. "
                f"{'; '.join(map(str, failed.values()))}. Nothing was deleted, moved or overwritten; "
                f"to start afresh, use a new workdir.", directory=self.ckpts.step_dir(max(failed)))
        if failed:
            moved = [self.ckpts.reject(bad) for bad in failed]
            _LOG.warning("resuming from step %d: moved the newer checkpoints that do not restore to %s "
                         "(%s)", step, ", ".join(map(str, moved)), "; ".join(map(str, failed.values())))
        if not np.array_equal(_key_data(saved["key"]), _key_data(self.key)):
            warnings.warn(f"resuming {self.ckpts.step_dir(step)} with a different key than the one it "
                          "was trained with: the run will not match an uninterrupted one", stacklevel=3)
        _LOG.info("resumed from %s", self.ckpts.step_dir(step))
        return TrainState(step=step, params=saved["params"], opt_state=saved["opt_state"],
                          best_params=saved.get("best_params"), best_step=meta["best"]["step"],
                          best_metrics=meta["best"]["metrics"]), meta

    def __call__(self, state: TrainState) -> TrainState:
        saved = {"params": state.params, "opt_state": state.opt_state, "key": self.key}
        if self.select:  # before the first evaluation, the current params stand in for the best
            saved["best_params"] = state.params if state.best_step is None else state.best_params
        count, sums = jax.device_get((state.acc["count"], state.acc["sums"]))
        meta = {
            "step": state.step,
            "acc": {"count": int(count), "sums": {k: float(v) for k, v in sums.items()}},
            "best": {"step": state.best_step, "metrics": state.best_metrics},
            "config": dataclasses.asdict(self.config),
        }
        # The meta is deep-copied as orbax may write it in the background. Arrays are copied to
        # host inside save() (orbax's default), before the next step donates them.
        self.ckpts.save(state.step, saved, copy.deepcopy(meta))
        return state

    def last_good(self) -> Path | None:
        """Directory of the latest complete checkpoint (after waiting for a pending save)."""
        self.ckpts.wait()
        latest = self.ckpts.latest_step()
        return None if latest is None else self.ckpts.step_dir(latest)

    def wait(self) -> None:
        self.ckpts.wait()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.ckpts.close()  # waits for an asynchronous save
        except Exception:
            if exc_type is None:
                raise
            _LOG.exception("closing the checkpoint manager failed (while handling another error)")


class DivergenceGuard:
    """Raises :class:`TrainingDiverged` on the first step whose fused finiteness flags are not
    all set, reading them one step late so that dispatch stays asynchronous.

    A step output may hold the stacked flags of K updates (``steps_per_call``); ``step`` is
    then the block's last step, and the error names the first non-finite update in it.

    ``push(step, out)`` right after dispatching a step checks the previous step (the device is
    busy with the new one) and keeps the new flags; ``flush()`` checks them at once: the loop
    calls it before anything is logged, evaluated or saved, so a non-finite state is never
    written. ``last_checkpoint()`` names the last good checkpoint for the error (None: none).

    ``agree=True`` (several processes): ``push`` still reads the flags one step late, but only
    notes the first non-finite step; ``flush`` broadcasts process 0's first non-finite step
    (one collective) and every process raises for it, or none does.
    """

    def __init__(self, last_checkpoint: Callable[[], Path | None] = lambda: None, agree: bool = False):
        self._last_checkpoint = last_checkpoint
        self._pending: tuple[int, _StepOutput] | None = None
        self._agree = agree
        self._window: dict[int, _StepOutput] = {}  # agree: the calls read since the last flush
        self._first_bad: tuple[int, int] | None = None  # agree: (step, quantity index) seen here

    def push(self, step: int, out: _StepOutput) -> None:
        if self._agree:
            self._read_pending()
        else:
            self.flush()
        self._pending = (step, out)

    def _read_pending(self) -> None:
        if self._pending is None:
            return
        (step, out), self._pending = self._pending, None
        self._window[step] = out
        if self._first_bad is None:
            self._first_bad = _first_nonfinite(step, out)

    def flush(self) -> None:
        if self._agree:
            self._read_pending()
            mine = np.asarray(self._first_bad or (0, 0), np.int32)
            step, index = (int(v) for v in distributed.broadcast(mine))  # process 0's decision
            window, self._window, self._first_bad = self._window, {}, None
            if step:
                self._raise(step, _QUANTITIES[index], window)
            return
        if self._pending is None:
            return
        (step, out), self._pending = self._pending, None
        bad = _first_nonfinite(step, out)
        if bad is not None:
            self._raise(bad[0], _QUANTITIES[bad[1]], {step: out})

    def _raise(self, step: int, quantity: str, calls: Mapping[int, _StepOutput]) -> None:
        loss, grad_norm = _values_at(step, calls)
        last = self._last_checkpoint()
        where = (f"The last good checkpoint, {last}, is kept. Training is deterministic: the same "
                 f"settings diverge again at this step. Resume from it with the same workdir and an "
                 f"optimizer of the same structure with other settings (e.g. a smaller learning "
                 f"rate), or train with other settings in a new workdir." if last is not None
                 else "No checkpoint was saved before it; train with other settings (e.g. a smaller "
                 "learning rate).")
        raise TrainingDiverged(
            f"Training diverged at step {step} (update {step - 1}, batch_fn({step - 1})): non-finite "
            f"{quantity} (loss={loss:.6g}, grad_norm={grad_norm:.6g}). Stopped without saving it. {where}",
            step=step, quantity=quantity, last_checkpoint=last)


# --------------------------------------------------------------------------------------
# The loop.


def train(
    config: TrainConfig,
    *,
    loss_fn: LossFn,
    params: PyTree,
    optimizer: optax.GradientTransformation,
    batch_fn: BatchFn,
    key: jax.Array | int,
    workdir: str | os.PathLike | None = None,
    eval_fn: EvalFn | None = None,
    devices: Sequence[jax.Device] | None = None,
    batch_spec: Any = None,
) -> TrainResult:
    """Trains ``params`` for ``config.num_steps`` updates, resuming from ``workdir`` if possible.

    Args:
        config: the run's schedule, see :class:`TrainConfig`.
        loss_fn: ``(params, batch, key) -> (loss (), metrics {name: ()})``.
        params: initial params (a pytree of float arrays); ignored when resuming. They are
            copied, so the caller's arrays stay valid (the step donates its own copies).
        optimizer: an optax gradient transformation (see :func:`make_optimizer`).
        batch_fn: ``i -> batch`` for update ``i`` (0-based), a pure function of ``i``.
        key: base PRNG key (or an int seed); keep it fixed across resumes.
        workdir: directory for checkpoints and ``metrics.jsonl``; None: in memory only.
        eval_fn: optional ``(params, key) -> {name: float}``.
        devices: devices of the data-parallel mesh; default ``jax.devices()`` (every process's).
        batch_spec: ``PartitionSpec`` (or pytree prefix of them) for the batch; default
            ``P("data")``, i.e. every leaf sharded along axis 0.

    Returns:
        A :class:`TrainResult`.

    Raises:
        TrainingDiverged: on the first step with a non-finite loss, gradient or parameter.
        CheckpointError: if no checkpoint in ``workdir`` restores, or they were written for
            another model, optimizer or select_metric.
        experiments._lib.rundir.RunDirLocked: if another process is training in ``workdir``.
        experiments._lib.rundir.RunDirError: if ``workdir`` holds foreign or damaged files.
        ValueError, TypeError: for inconsistent arguments (reported before any training).
    """
    started = time.time()
    key, workdir = _check_arguments(config, key, workdir, eval_fn, batch_fn)
    multi = jax.process_count() > 1
    mesh = data_mesh(devices)
    replicated = NamedSharding(mesh, P())
    if multi:
        distributed.assert_same((params, key), "initial params and key given to train()")
    key = _put(key, replicated)
    train_key, eval_key = jax.random.split(key)
    params = _replicate_copy(params, replicated)
    opt_state = jax.jit(optimizer.init, out_shardings=replicated)(params)
    state = TrainState(step=0, params=params, opt_state=opt_state)
    main = distributed.is_main()

    with contextlib.ExitStack() as stack:
        if workdir is not None:
            stack.enter_context(_lock_run_dir(workdir))
        ckpt, meta = None, None
        use_checkpoints = workdir is not None and (config.checkpoint_every or (workdir / CHECKPOINT_SUBDIR).is_dir())
        if multi:  # process 0's view of the directory decides
            use_checkpoints = bool(distributed.broadcast(np.int32(bool(use_checkpoints))))
        if use_checkpoints:
            ckpt = stack.enter_context(Checkpoint(workdir / CHECKPOINT_SUBDIR, config, key, replicated))
            state, meta = ckpt.restore_latest(state)
        resumed_from, start = (None if meta is None else state.step), state.step
        log = stack.enter_context(MetricsLog(None if workdir is None else workdir / METRICS_FILE, start, write=main))
        if start >= config.num_steps:
            if start > config.num_steps:
                warnings.warn(f"the checkpoint (step {start}) is beyond num_steps={config.num_steps}; "
                              "returning it without training", stacklevel=2)
            return _result(state, log.rows, 0.0, resumed_from, config, started)

        first_host = batch_fn(start)
        names = _metric_names(loss_fn, state.params, shard_batch(first_host, mesh, batch_spec), train_key)
        state = state._replace(acc=_initial_acc(names, None if meta is None else meta["acc"], replicated))
        runner = StepRunner(loss_fn, optimizer, batch_fn, mesh, steps_per_call=config.steps_per_call,
                            batch_spec=batch_spec)

        guard = DivergenceGuard(ckpt.last_good if ckpt is not None else lambda: None, agree=multi)
        progress = stack.enter_context(Progress(config if main else dataclasses.replace(config, progress=False),
                                                start))
        actions = [LogTrainMetrics(config.log_every, log, names, replicated, start, progress)]
        if eval_fn is not None:
            actions.append(EvaluateAndSelect(config.eval_every, eval_fn, eval_key, log, replicated,
                                             config.select_metric, config.select_mode))
        if ckpt is not None:
            actions.append(ckpt)
        for index, count in runner.calls(start, config.num_steps):
            params, opt_state, acc, out = runner(state.params, state.opt_state, state.acc, train_key, index, count,
                                                 first=first_host if index == start else None)
            state = state._replace(step=index + count, params=params, opt_state=opt_state, acc=acc)
            guard.push(state.step, out)  # checks the previous call, one call late
            progress.update(out, count)
            due = [action for action in actions if action.due(state.step, state.step == config.num_steps)]
            if due:
                guard.flush()  # never log, evaluate or save a non-finite state
                for action in due:
                    state = action(state)
        steps_per_second = progress.steps_per_second(state.step)
        if ckpt is not None:
            ckpt.wait()
        return _result(state, log.rows, steps_per_second, resumed_from, config, started)


@contextlib.contextmanager
def _lock_run_dir(workdir: Path):
    """Holds the run directory's lock and checks it (:mod:`experiments._lib.rundir`); with
    several processes, process 0 does both and every process raises if it failed."""
    if jax.process_count() == 1:
        with rundir.lock(workdir):
            rundir.check_run_dir(workdir)
            yield
        return
    with contextlib.ExitStack() as stack:
        error = None
        if distributed.is_main():
            try:
                stack.enter_context(rundir.lock(workdir))
                rundir.check_run_dir(workdir)
            except rundir.RunError as e:
                error = e
        if not distributed.all_ok(error is None):
            raise error or rundir.RunDirError(
                f"process 0 cannot use the run directory {workdir} (its error names the cause)", path=workdir)
        yield


def _check_arguments(config: TrainConfig, key: jax.Array | int, workdir: str | os.PathLike | None,
                     eval_fn: EvalFn | None, batch_fn: BatchFn) -> tuple[jax.Array, Path | None]:
    """Checks what ``train`` can check before doing anything; returns the key and workdir."""
    if jax.process_count() > 1 and not distributed.is_process_local(batch_fn):
        raise ValueError(
            f"this is process {jax.process_index()} of {jax.process_count()}: batch_fn must return only this "
            f"process's rows of the global batch; build it with experiments._lib.distributed.per_process("
            f"fn(step, process_index, process_count))")
    if jax.process_count() == 1 and distributed.detect() is not None and _launched_processes() > 1:
        raise RuntimeError(
            f"this process was started as one of {_launched_processes()} ({distributed.detect()} is set) but "
            f"jax.distributed is not initialized, so it would train alone: call "
            f"experiments._lib.distributed.initialize() first (the experiments' CLIs do)")
    if config.select_metric is not None and eval_fn is None:
        raise ValueError(f"select_metric={config.select_metric!r} needs an eval_fn")
    if config.checkpoint_every and workdir is None:
        raise ValueError(f"checkpoint_every={config.checkpoint_every} needs a workdir")
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key))
    return key, None if workdir is None else Path(workdir)


def _launched_processes() -> int:
    """The process count the environment announces (``JAX_NUM_PROCESSES``, SLURM's tasks), or 1."""
    env = os.environ
    for name in ("JAX_NUM_PROCESSES", "SLURM_STEP_NUM_TASKS"):
        if env.get(name, "").isdigit():
            return int(env[name])
    return 1


def _initial_acc(names: Sequence[str], saved: dict[str, Any] | None, sharding: NamedSharding):
    """The running log sums: zero, or those of the checkpoint if it logged the same names."""
    acc = _zero_acc(names)
    if saved is not None:
        if sorted(saved["sums"]) == sorted(names):
            acc = {"count": jnp.asarray(saved["count"], jnp.int32),
                   "sums": {k: jnp.asarray(saved["sums"][k], jnp.float32) for k in names}}
        else:
            warnings.warn(f"the checkpoint logs {sorted(saved['sums'])} but loss_fn returns "
                          f"{sorted(names)}: the first logged means after resuming are partial",
                          stacklevel=3)
    return _put(acc, sharding)


def _selection(config: TrainConfig, state: TrainState, rows: Sequence[dict[str, Any]]) -> str:
    """``TrainResult.selection``; logs a warning if no evaluation gave a finite select_metric."""
    if config.select_metric is None:
        return "last step"
    if state.best_step is not None:
        return f"best {config.select_metric} ({config.select_mode})"
    evaluations = sum(row.get("split") == "eval" for row in rows)
    text = f"no finite value of {config.select_metric} in {evaluations} evaluations; kept the last step"
    _LOG.warning("model selection: %s (step %d)", text, state.step)
    return text


def _result(state: TrainState, rows, steps_per_second: float, resumed_from: int | None,
            config: TrainConfig, started: float) -> TrainResult:
    best_params = state.params if state.best_params is None or state.best_step is None else state.best_params
    return TrainResult(
        params=state.params,
        opt_state=state.opt_state,
        best_params=best_params,
        best_metrics=dict(state.best_metrics),
        best_step=state.step if state.best_step is None else state.best_step,
        step=state.step,
        history=list(rows),
        steps_per_second=steps_per_second,
        resumed_from=resumed_from,
        selection=_selection(config, state, rows),
        wall_time_s=time.time() - started,
    )
