"""Run directories: their layout, a lock that one run at a time holds, up-front checks of what
:func:`experiments._lib.train.train` keeps there, and the errors a user fixes by acting on a run.

Layout of a run directory (``workdir``)::

    workdir/run.lock                 held (fcntl.flock) by the run using the directory; records
                                     its pid, host, start time and command
    workdir/checkpoints/<step>/      orbax checkpoints (see experiments._lib.train)
    workdir/checkpoints_rejected/    checkpoints that could not be restored, moved aside as
                                     <step>-<time> (never deleted)
    workdir/metrics.jsonl            the metrics log, one JSON object per line

Standard library only: the experiment CLIs import it before (or without) the training stack.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "LOCK_FILE",
    "CHECKPOINT_SUBDIR",
    "REJECTED_SUBDIR",
    "METRICS_FILE",
    "RunError",
    "RunDirError",
    "RunDirLocked",
    "lock",
    "check_run_dir",
    "read_log_text",
    "exit_on_run_error",
    "move_aside",
]

LOCK_FILE = "run.lock"
CHECKPOINT_SUBDIR = "checkpoints"
REJECTED_SUBDIR = "checkpoints_rejected"
METRICS_FILE = "metrics.jsonl"


def move_aside(src: Path, dest: Path, sep: str = "") -> Path:
    """Rename ``src`` (a file or directory) to ``dest``, or to the first free ``dest<sep>1``,
    ``dest<sep>2``, ...: never over an earlier one, never deleting anything. Returns the new path."""
    target, n = Path(dest), 1
    while target.exists():
        target, n = Path(dest).with_name(f"{Path(dest).name}{sep}{n}"), n + 1
    os.replace(src, target)
    return target


class RunError(RuntimeError):
    """A run cannot go on until its user acts (the message says how): a locked or damaged run
    directory, an unreadable checkpoint, a diverged training. The experiment CLIs print it as
    one line and exit with status 1 (:func:`exit_on_run_error`).

    Attributes:
        cli_advice: what to do when the run was started by an experiment's command line, where
            the run directory is named by the config (appended to the CLI's line; may be "").
    """

    cli_advice: str = ""


class RunDirError(RunError):
    """A run directory cannot be used as it is.

    Attributes:
        path: the file or directory concerned.
    """

    def __init__(self, message: str, *, path: Path):
        super().__init__(message)
        self.path = path


class RunDirLocked(RunDirError):
    """Another live process holds the run directory's lock.

    Attributes:
        holder: what the holder recorded: ``{"pid", "host", "started", "command"}`` (empty if it
            has not written it yet).
    """

    def __init__(self, message: str, *, path: Path, holder: dict[str, Any]):
        super().__init__(message, path=path)
        self.holder = holder


def _check_directory(path: Path, what: str) -> None:
    """Raises :class:`RunDirError` if ``path`` exists and is not a directory."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} should be {what} but is a file: move it away or use another run "
                          f"directory", path=path)


def check_run_dir(workdir: str | os.PathLike) -> None:
    """Checks what :func:`~experiments._lib.train.train` will read in ``workdir`` before it
    reads or changes anything, so that foreign or damaged files give one clear error.

    Raises:
        RunDirError: ``workdir``, ``checkpoints`` or ``checkpoints_rejected`` is a file;
            ``metrics.jsonl`` is not a regular file, or not UTF-8 text.
    """
    workdir = Path(workdir)
    _check_directory(workdir, "a run directory")
    _check_directory(workdir / CHECKPOINT_SUBDIR, "the directory of the run's checkpoints")
    _check_directory(workdir / REJECTED_SUBDIR, "the directory of the run's rejected checkpoints")
    read_log_text(workdir / METRICS_FILE)


def read_log_text(path: str | os.PathLike) -> str:
    """The text of a metrics log (``""`` if there is none).

    Raises:
        RunDirError: ``path`` is not a regular file, or not UTF-8 text (not a log train() wrote).
    """
    path = Path(path)
    if not path.exists():
        return ""
    if not path.is_file():
        raise RunDirError(f"{path} should be the run's metrics log (a text file) but is not a regular "
                          f"file: move it away or use another run directory", path=path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise RunDirError(
            f"{path} is not a metrics log written by train(): line {line} (byte {e.start}) is not "
            f"UTF-8 text. Move it away (the run then keeps no log of its earlier steps) or use "
            f"another run directory", path=path) from None


def _holder_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": " ".join(sys.argv)}


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        record = json.loads(os.pread(fd, 1 << 16, 0).decode("utf-8"))
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a process that has not recorded itself yet"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}, "
            f"command: {holder.get('command')}")


@contextlib.contextmanager
def lock(workdir: str | os.PathLike) -> Iterator[Path]:
    """Holds the exclusive lock of a run directory (created if absent) while the block runs.

    The lock is an ``fcntl.flock`` on ``workdir/run.lock``: the kernel releases it when its
    holder exits, killed or not, so a lock is never stale. The holder writes its pid, host,
    start time and command into the file for the message of the next run that tries.

    Yields:
        The lock file's path.

    Raises:
        RunDirLocked: another process holds the lock (its pid, host and start time named).
        RunDirError: ``workdir`` is a file.
    """
    workdir = Path(workdir)
    _check_directory(workdir, "a run directory")
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirLocked(
                f"{workdir} is in use by another run ({_describe(holder)}); a second run would "
                f"write every log row twice. Wait for it to finish or stop it (a killed run "
                f"releases the lock at once)", path=workdir, holder=holder) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was deleted or replaced since it was opened (--force): lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(_holder_record()) + "\n").encode("utf-8"))
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a finished run leaves no holder record behind
        os.close(fd)  # releases the lock


def exit_on_run_error(main: Callable[..., int]) -> Callable[..., int]:
    """Decorates an experiment's ``main``: a :class:`RunError` ends it with one line on stderr,
    ``error: <message> <cli_advice>``, and exit status 1 (``SystemExit``), not a traceback."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except RunError as e:
            text = " ".join(part for part in (str(e), e.cli_advice) if part)
            raise SystemExit("error: " + " ".join(text.split())) from None

    return wrapped
