"""Runs a command as N local JAX processes of one multi-process run (for testing on one machine).

    python -m experiments.launch --num-processes 2 -- python -m experiments.digress_qm9 --preset demo

starts the command N times, process i with the variables :func:`experiments._lib.distributed.initialize`
(and ``jax.distributed.initialize``) read::

    JAX_COORDINATOR_ADDRESS=127.0.0.1:<free port>   JAX_NUM_PROCESSES=N   JAX_PROCESS_ID=i
    JAX_PLATFORMS=cpu   XLA_FLAGS=... --xla_force_host_platform_device_count=<--devices-per-process>

so the run has N x D CPU devices; JAX's CPU collectives (gloo) connect the processes. The
processes' output goes to this terminal unchanged (the experiments print from process 0 only).

Exit status: 0 if every process exits with 0. As soon as one process exits with another status
(or is killed), the others are stopped (SIGTERM to each one's process group, SIGKILL after
``--grace`` seconds) and the launcher exits with that status (128 + signal number for a signal).
``--timeout`` bounds the whole run (exit status 124). SIGINT / SIGTERM to the launcher stop
every process.

Only for processes on this machine: on a cluster, SLURM (``srun``) or the TPU VM runtime starts
the processes and JAX reads its variables (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

DEVICE_FLAG = "--xla_force_host_platform_device_count"
HEARTBEAT_ENV = "EXPERIMENTS_HEARTBEAT_TIMEOUT_S"   # read by experiments._lib.distributed.initialize


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(index: int, count: int, port: int, devices: int = 1, heartbeat: int | None = None,
                base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of local process ``index`` of ``count`` (coordinator on ``port``), with
    ``devices`` forced host CPU devices; ``base`` defaults to this process's environment."""
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_FLAG)]
    env["XLA_FLAGS"] = " ".join(flags + [f"{DEVICE_FLAG}={devices}"])
    env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(count),
               JAX_PROCESS_ID=str(index), JAX_PLATFORMS="cpu")
    if heartbeat:
        env[HEARTBEAT_ENV] = str(heartbeat)
    return env


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _stop(procs: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM to the process group of every running process, SIGKILL after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        running = [p for p in procs if p.poll() is None]
        for p in running:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            time.sleep(0.05)
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


class _Stopped(Exception):
    def __init__(self, signum: int):
        self.signum = signum


def run(command: list[str], num_processes: int, devices: int = 1, port: int | None = None,
        timeout: float | None = None, grace: float = 10.0, heartbeat: int | None = None) -> int:
    """Runs ``command`` as ``num_processes`` local processes; returns the exit status (see the
    module docstring)."""
    port = free_port() if port is None else port
    procs: list[subprocess.Popen] = []

    def on_signal(signum, _frame):
        raise _Stopped(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i in range(num_processes):
            procs.append(subprocess.Popen(command, env=process_env(i, num_processes, port, devices, heartbeat),
                                          start_new_session=True))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, code = failed[0]
                print(f"launch: process {i} of {num_processes} exited with status {_status(code)}; stopping the "
                      f"others", file=sys.stderr, flush=True)
                _stop(procs, grace)
                return _status(code)
            if all(c == 0 for c in codes):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                print(f"launch: timeout after {timeout:g} s; stopping the {num_processes} processes", file=sys.stderr,
                      flush=True)
                _stop(procs, grace)
                return 124
            time.sleep(0.1)
    except _Stopped as e:
        print(f"launch: got signal {e.signum}; stopping the {num_processes} processes", file=sys.stderr, flush=True)
        _stop(procs, grace)
        return 128 + e.signum
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if any(p.poll() is None for p in procs):
            _stop(procs, grace)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" not in argv:
        argv_own, command = argv, []
    else:
        split = argv.index("--")
        argv_own, command = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(prog="python -m experiments.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     usage="%(prog)s --num-processes N [options] -- COMMAND ...")
    parser.add_argument("--num-processes", type=int, required=True, help="number of local processes")
    parser.add_argument("--devices-per-process", type=int, default=1,
                        help="forced host CPU devices per process (default: %(default)s)")
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop every process after this many seconds (exit status 124; default: none)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds between SIGTERM and SIGKILL when stopping processes (default: %(default)s)")
    parser.add_argument("--heartbeat-timeout", type=int, default=None,
                        help="seconds without heartbeats after which JAX declares a process dead (default: JAX's)")
    args = parser.parse_args(argv_own)
    if not command:
        parser.error("give the command after --, e.g. -- python -m experiments.digress_qm9 --preset demo")
    if args.num_processes < 1 or args.devices_per_process < 1:
        parser.error("--num-processes and --devices-per-process must be >= 1")
    return run(command, args.num_processes, args.devices_per_process, args.port, args.timeout, args.grace,
               args.heartbeat_timeout)


if __name__ == "__main__":
    sys.exit(main())
