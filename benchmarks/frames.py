"""Throughput of the randomized frames of point clouds, beside the exact point-group computation.

Measured side by side in one run (run it on an idle machine), on batches of randomly moved point
clouds (scale in [0.5, 2], Haar-random element of O(3), Gaussian translation, random order of the
points), float32, ``atol = 1e-4``:

* :func:`sympe_jax.frames.point_frame` (SymPE's sorted-point frame) under ``jit(vmap(...))``,
  with :func:`~sympe_jax.frames.covariance_frame` and :func:`~sympe_jax.frames.haar_frame` beside
  it, against
  - the same sorted-point rule as a NumPy loop over the clouds (:func:`numpy_point_frame`),
  - the exact inversion kernel through the point group: the group enumerated by
    :func:`sympe_jax.groups.orthogonal.symmetry_group` (NumPy, float64), then a uniform element
    of it times one admissible frame (uniform on the coset ``G_x F``); timed on a subset of the
    batch and reported per batch.

Families: a cube (8 points, |G_x| = 48), the orbit of a generic point under the cube's group
(48 points, |G_x| = 48), and Gaussian clouds of 8, 48 and 256 points (|G_x| = 1). Prints medians,
the interquartile range and the ratios; writes ``results/benchmarks/frames.json``.

    python -m benchmarks.frames            # full run, a few minutes
    python -m benchmarks.frames --quick    # smaller, for a smoke test (writes under runs/)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.canonicalization import _time   # median and IQR of a blocking call, one definition
from sympe_jax import frames
from sympe_jax.groups import orthogonal

ROOT = pathlib.Path(__file__).resolve().parents[1]
ATOL = 1e-4


# ----------------------------------------------------------------------------- point clouds


def _cube() -> np.ndarray:
    return np.array(list(itertools.product([-1.0, 1.0], repeat=3)))


def _oh_orbit() -> np.ndarray:
    """The 48 images of a generic point under the cube's point group O_h (signed permutations)."""
    p = np.array([0.2, 0.5, 1.3])
    return np.array([s * p[list(perm)] for perm in itertools.permutations(range(3))
                     for s in itertools.product([-1.0, 1.0], repeat=3)])


FAMILIES = {
    "cube": {"label": "cube", "n": 8, "group_order": 48},
    "oh_orbit": {"label": "O_h orbit of a generic point", "n": 48, "group_order": 48},
    "gaussian8": {"label": "Gaussian", "n": 8, "group_order": 1},
    "gaussian48": {"label": "Gaussian", "n": 48, "group_order": 1},
    "gaussian256": {"label": "Gaussian", "n": 256, "group_order": 1},
}


def clouds(family: str, batch: int, rng: np.random.Generator) -> np.ndarray:
    """float32[batch, n, 3]: the family's template (or fresh Gaussian points), each randomly
    scaled, moved by a Haar-random element of O(3), translated and reordered."""
    n = FAMILIES[family]["n"]
    if family == "cube":
        base = np.broadcast_to(_cube(), (batch, n, 3))
    elif family == "oh_orbit":
        base = np.broadcast_to(_oh_orbit(), (batch, n, 3))
    else:
        base = rng.normal(size=(batch, n, 3))
    q, r = np.linalg.qr(rng.normal(size=(batch, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]          # Haar on O(3)
    scale = rng.uniform(0.5, 2.0, size=(batch, 1, 1))
    x = scale * base @ np.swapaxes(q, 1, 2) + rng.normal(size=(batch, 1, 3))
    order = np.argsort(rng.random((batch, n)), axis=1)
    return np.take_along_axis(x, order[:, :, None], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------- NumPy references


def _groups(values: np.ndarray, atol: float) -> np.ndarray:
    """Single-linkage tie groups, increasing with the value (as ``sympe_jax.canonicalize``)."""
    order = np.argsort(values, kind="stable")
    step = np.concatenate([[0], np.cumsum(np.diff(values[order]) > atol)])
    out = np.empty(len(values), np.int64)
    out[order] = step
    return out


def _pick(rng: np.random.Generator, eligible: np.ndarray, keys: list[np.ndarray], atol: float) -> int | None:
    """Uniform among the eligible points that are lexicographically largest in ``keys`` (each key's
    ties grouped among the eligible points), or None if none is eligible."""
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:
        return None
    cand = np.ones(len(idx), bool)
    for k in keys:
        g = _groups(k[idx], atol)
        cand &= g == g[cand].max()
    return int(idx[rng.choice(np.flatnonzero(cand))])


def numpy_point_frame(rng: np.random.Generator, points: np.ndarray, atol: float = ATOL) -> np.ndarray:
    """The rule of :func:`sympe_jax.frames.point_frame` (O(3), no scores) for one cloud, in NumPy:
    float[n, 3] -> float[3, 3] (columns e1, e2, e3)."""
    y = points - points.mean(0)
    dist = np.linalg.norm(y, axis=1)
    a = _pick(rng, dist > atol, [dist], atol)
    if a is None:
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        return q * np.sign(np.diag(r))
    e1 = y[a] / dist[a]
    p1 = y @ y[a] / dist[a]
    dperp = np.linalg.norm(np.cross(y, y[a]), axis=1) / dist[a]
    b = _pick(rng, dperp > atol, [dist, p1], atol)
    if b is None:
        g = rng.normal(size=3)
        e2 = g - (g @ e1) * e1
    else:
        e2 = y[b] - p1[b] * e1
    e2 = e2 / np.linalg.norm(e2)
    n3 = np.cross(e1, e2)
    p2 = y @ y[b] / dist[b] if b is not None else y @ e2
    normal = np.cross(y[a], y[b] if b is not None else e2)
    p3 = y @ normal / max(np.linalg.norm(normal), 1e-30)
    c = _pick(rng, np.abs(p3) > atol, [dist, p1, p2, np.abs(p3)], atol)
    sign = np.sign(p3[c]) if c is not None else rng.choice([-1.0, 1.0])
    return np.stack([e1, e2, sign * n3], axis=1)


def exact_kernel_frame(rng: np.random.Generator, points: np.ndarray, atol: float = ATOL) -> tuple[np.ndarray, int]:
    """A sample of the inversion kernel through the exact point group: ``(g F float[3, 3], |G_x|)``
    with G_x from :func:`~sympe_jax.groups.orthogonal.symmetry_group`, g uniform in it and F one
    admissible sorted-point frame (uniform on the coset ``G_x F``)."""
    mats, _ = orthogonal.symmetry_group(points.astype(np.float64), atol=atol)
    frame = numpy_point_frame(rng, points.astype(np.float64), atol)
    return mats[rng.integers(len(mats))] @ frame, len(mats)


# ----------------------------------------------------------------------------- timing


def bench_family(family: str, batch: int, reps: int, exact_clouds: int, seed: int = 0) -> dict:
    rng = np.random.default_rng([seed, list(FAMILIES).index(family)])
    x_np = clouds(family, batch, rng)
    x = jnp.asarray(x_np)
    keys = jax.random.split(jax.random.key(seed), batch)
    samplers = {
        "point_frame": jax.jit(jax.vmap(lambda k, p: frames.point_frame(k, p, atol=ATOL))),
        "covariance_frame": jax.jit(jax.vmap(lambda k, p: frames.covariance_frame(k, p, atol=ATOL))),
        "haar_frame": jax.jit(jax.vmap(lambda k, p: frames.haar_frame(k, p))),
    }
    row = {"family": family, **FAMILIES[family], "batch": batch}
    for name, fn in samplers.items():
        med, iqr = _time(lambda fn=fn: fn(keys, x).block_until_ready(), reps)
        row[f"{name}_ms"], row[f"{name}_iqr_ms"] = 1e3 * med, 1e3 * iqr
    row["clouds_per_s"] = batch / (row["point_frame_ms"] / 1e3)
    np_reps = max(3, reps // 3)
    med, iqr = _time(lambda: [numpy_point_frame(rng, c) for c in x_np], np_reps)
    row["numpy_loop_ms"], row["numpy_loop_iqr_ms"] = 1e3 * med, 1e3 * iqr
    t0 = time.perf_counter()
    orders = [exact_kernel_frame(rng, c)[1] for c in x_np[:exact_clouds]]
    row["exact_kernel_ms_per_batch"] = 1e3 * (time.perf_counter() - t0) / exact_clouds * batch
    row["exact_clouds_timed"] = exact_clouds
    row["group_orders_found"] = sorted(set(orders))
    row["numpy_loop_over_point_frame"] = row["numpy_loop_ms"] / row["point_frame_ms"]
    row["exact_over_point_frame"] = row["exact_kernel_ms_per_batch"] / row["point_frame_ms"]
    print(f"  {family:12s} n={row['n']:4d}: point_frame {row['point_frame_ms']:8.2f} ms | covariance "
          f"{row['covariance_frame_ms']:7.2f} ms | haar {row['haar_frame_ms']:6.2f} ms | numpy loop "
          f"{row['numpy_loop_ms']:8.1f} ms | exact {row['exact_kernel_ms_per_batch']:10.1f} ms "
          f"(from {exact_clouds} clouds, |G_x| {row['group_orders_found']})", flush=True)
    return row


def _environment() -> dict:
    return {"loadavg": list(os.getloadavg()), "cpu_count": os.cpu_count(),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.frames", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small batches, for a smoke test")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--out", default=None, help="result file (default results/benchmarks/frames.json; "
                                                    "with --quick runs/benchmarks/frames_quick.json)")
    args = parser.parse_args(argv)
    if args.quick:
        batch, reps, exact = 32, 3, {"cube": 4, "oh_orbit": 1, "gaussian8": 4, "gaussian48": 2, "gaussian256": 1}
    else:
        batch, reps, exact = 1024, args.reps, {"cube": 64, "oh_orbit": 2, "gaussian8": 64, "gaussian48": 32,
                                               "gaussian256": 8}
    out = pathlib.Path(args.out) if args.out else (
        ROOT / ("runs" if args.quick else "results") / "benchmarks" / ("frames_quick.json" if args.quick else "frames.json"))
    start = _environment()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores, load {start['loadavg']}")
    rows = [bench_family(f, batch, reps, exact[f]) for f in FAMILIES]
    result = {
        "command": "python -m benchmarks.frames" + (" --quick" if args.quick else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.devices()[0].platform})",
        "batch": batch, "reps": reps, "atol": ATOL, "rows": rows,
        "environment": {"start": start, "end": _environment()}, "date": time.strftime("%Y-%m-%d"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
