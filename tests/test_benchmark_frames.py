"""benchmarks/frames.py times the same rule as sympe_jax.frames.point_frame in its NumPy loop, and its
exact inversion kernel finds the point group: a ratio against another rule would compare nothing."""

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import frames as bench
from sympe_jax import frames


def test_the_numpy_loop_computes_the_point_frame_rule():
    rng = np.random.default_rng(0)
    # Gaussian clouds: no ties, so the rule gives one frame; both implementations must agree on it.
    for x in bench.clouds("gaussian8", 4, rng):
        ours = np.asarray(frames.point_frame(jax.random.key(0), jnp.asarray(x), atol=bench.ATOL))
        np.testing.assert_allclose(bench.numpy_point_frame(rng, x.astype(np.float64)), ours, atol=1e-4)
    # A moved cube: both draw frames of the same coset G_x F (|G_x| = 48), so F_numpy F_jax^T is in G_x.
    x = bench.clouds("cube", 1, rng)[0]
    g, order = bench.exact_kernel_frame(rng, x)
    assert order == 48
    mats, _ = bench.orthogonal.symmetry_group(x.astype(np.float64), atol=bench.ATOL)
    ours = np.asarray(frames.point_frame(jax.random.key(1), jnp.asarray(x), atol=bench.ATOL), np.float64)
    for frame in (bench.numpy_point_frame(rng, x.astype(np.float64)), g):
        assert min(np.abs(m - frame @ ours.T).max() for m in mats) < 1e-3
