"""experiments._lib.host: the glibc malloc settings for XLA on CPU.

Bugs these tests catch: a wrong ``mallopt`` parameter code (glibc rejects it and nothing is set),
settings that do not stop a large allocation of a worker thread from being unmapped and
faulted in again on every use (the cost they exist to remove), an environment variable that
the function overrides instead of leaving to the user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments._lib import host

ROOT = Path(__file__).resolve().parents[3]

# A worker thread allocates, writes and frees 64 MiB three times, twice; the minor page faults of
# the second round are counted (the first round maps the memory).
_PROBE = """
import ctypes, json, resource, sys, threading
from experiments._lib import host
applied = host.tune_malloc() if sys.argv[1] == "tuned" else {}
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size, out = 64 * 2 ** 20, {}
def rounds():
    for _ in range(3):
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)
        libc.free(p)
def run():
    rounds()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    rounds()
    out["faults"] = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
t = threading.Thread(target=run); t.start(); t.join()
print(json.dumps({"applied": applied, "faults": out["faults"]}))
"""


def _probe(mode: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    res = subprocess.run([sys.executable, "-c", _PROBE, mode], env={**clean, **env}, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


needs_glibc = pytest.mark.skipif(host._libc() is None, reason="glibc only")


@needs_glibc
def test_tuned_malloc_keeps_a_threads_large_buffer_mapped():
    pages = 3 * 64 * 2 ** 20 // os.sysconf("SC_PAGE_SIZE")
    default, tuned = _probe("default"), _probe("tuned")
    assert tuned["applied"] == {"MALLOC_ARENA_MAX": 1, "MALLOC_MMAP_MAX_": 0, "MALLOC_TRIM_THRESHOLD_": -1}
    assert default["faults"] > pages // 2          # glibc's default: mapped and faulted in every time
    assert tuned["faults"] < pages // 20           # tuned: reused from the heap


@needs_glibc
def test_environment_variables_win():
    out = _probe("tuned", MALLOC_ARENA_MAX="4")
    assert "MALLOC_ARENA_MAX" not in out["applied"] and "MALLOC_MMAP_MAX_" in out["applied"]


def test_release_free_memory_reports_glibc():
    assert host.release_free_memory() is (host._libc() is not None)
