"""Point-cloud encodings (O(3)/E(3)) behind the one contract, and their Flax adapter.

Named bugs: one key shared by a batch (two identical clouds get the same frame); padding given
vectors; a frame that is not moved with the input (the law of F v must follow R); NaN clouds
returning finite vectors; a wrong scores shape silently accepted.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sympe_jax as sp
from sympe_jax import testing
from sympe_jax.groups import orthogonal as O
from tests.groups.test_orthogonal import SHAPES

FRAMES = ("haar", "covariance", "sympe")


def _batch():
    cube = jnp.asarray(SHAPES["cube"][0], jnp.float32)
    pyr = jnp.concatenate([jnp.asarray(SHAPES["square_pyramid"][0], jnp.float32), jnp.zeros((3, 3))])
    points = jnp.stack([cube, cube, pyr])                   # two identical clouds, one padded
    mask = jnp.stack([jnp.ones(8, bool), jnp.ones(8, bool), jnp.arange(8) < 5])
    return points, mask


@pytest.mark.parametrize("name", sp.POINT_CLOUD_ENCODINGS)
def test_shapes_padding_and_per_item_randomness(name, key):
    enc = sp.point_cloud_encoding(name, features=3)
    params = enc.init(key)
    points, mask = _batch()
    out = jax.jit(enc.apply)(jax.random.fold_in(key, 1), params, points, mask)
    width = 0 if name == "none" else 3
    assert out.shape == (3, 8, width, 3) and enc.features == width
    assert np.all(np.asarray(out)[2, 5:] == 0)              # padding gets zeros
    if name == "none":
        return
    assert not np.allclose(out[0], out[1])                   # identical items, independent draws
    same = jax.jit(enc.apply)(jax.random.fold_in(key, 1), params, points, mask)
    np.testing.assert_allclose(out, same, atol=1e-6)         # same key, same encoding
    if name in FRAMES:
        assert params["v"].shape == (3, 3)
        np.testing.assert_allclose(out[0, 0], out[0, 7], atol=1e-6)    # one frame per cloud
        f = (jnp.linalg.inv(params["v"]) @ out[0, 0]).T                 # recover F from v F^T (v invertible)
        np.testing.assert_allclose(f.T @ f, np.eye(3), atol=1e-3)


@pytest.mark.parametrize("name", ["sympe", "covariance", "noise"])
def test_law_follows_a_random_motion(name, key):
    """apply(k, R x + t) ~ R apply(k', x) for a Haar-random E(3) motion and a permutation, on the
    cube (sympe, noise) and the square pyramid (covariance), KS tests on projections."""
    shape = "square_pyramid" if name == "covariance" else "cube"
    x = jnp.asarray(SHAPES[shape][0], jnp.float32)
    enc = sp.point_cloud_encoding(name, features=2)
    params = enc.init(key)
    g = O.random_euclidean(jax.random.fold_in(key, 1), translation_scale=2.0)
    perm = jax.random.permutation(jax.random.fold_in(key, 2), x.shape[0])
    n = 1500
    apply = jax.jit(enc.apply)
    direct = apply(jax.random.fold_in(key, 3), params, jnp.broadcast_to(O.act_on_points(g, x)[perm], (n,) + x.shape))
    base = apply(jax.random.fold_in(key, 4), params, jnp.broadcast_to(x, (n,) + x.shape))
    moved = O.act_on_vectors(g, base)[:, perm]
    testing.assert_same_law(np.asarray(moved).reshape(n, -1), np.asarray(direct).reshape(n, -1))


def test_poison_rule_and_input_checks(key):
    enc = sp.point_cloud_encoding("sympe", features=2)
    params = enc.init(key)
    points, mask = _batch()
    bad = points.at[1, 3, 0].set(jnp.nan)
    with pytest.raises(ValueError, match=r"batch item \(1,\)"):
        enc.apply(key, params, bad, mask)
    out = jax.jit(enc.apply)(key, params, bad, mask)
    assert np.all(np.isnan(out[1])) and np.all(np.isfinite(out[0]))
    assert np.all(np.isfinite(jax.jit(enc.apply)(key, params, points.at[2, 6, 0].set(jnp.nan), mask)))  # padding
    with pytest.raises(ValueError, match="scores"):
        enc.apply(key, params, points, mask, scores=jnp.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="takes no scores"):
        sp.point_cloud_encoding("haar", features=2).apply(key, params, points, mask, scores=jnp.zeros((3, 8)))
    with pytest.raises(ValueError, match=r"\[\.\.\., n, 3\]"):
        enc.apply(key, params, jnp.zeros((3, 8, 2)), mask)
    with pytest.raises(ValueError, match="unknown point-cloud encoding"):
        sp.point_cloud_encoding("exact", features=2)
    with pytest.raises(ValueError, match="features"):
        sp.point_cloud_encoding("sympe", features=0)
    cov = sp.point_cloud_encoding("covariance", features=2)
    t = jnp.broadcast_to(jnp.diag(jnp.array([3.0, 2.0, 1.0])), (3, 3, 3))
    assert cov.apply(key, cov.init(key), points, mask, scores=t).shape == (3, 8, 2, 3)


def test_flax_adapter(key):
    import flax.linen as nn

    class Model(nn.Module):
        @nn.compact
        def __call__(self, points, mask):
            return sp.flax.PointCloudEncoding("sympe", features=4)(points, mask)

    points, mask = _batch()
    k1, k2, k3 = jax.random.split(key, 3)
    variables = Model().init({"params": k1, "sympe": k2}, points, mask)
    assert variables["params"]["PointCloudEncoding_0"]["v"].shape == (4, 3)
    a = Model().apply(variables, points, mask, rngs={"sympe": k3})
    b = Model().apply(variables, points, mask, rngs={"sympe": k3})
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 8, 4, 3) and not np.allclose(a[0], a[1])
