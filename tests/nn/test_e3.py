"""E3PointNet (e3nn-jax): exact E(3) x S_n equivariance with parity, scale equivariance, padding.

Named bugs: edge vectors taken i - j instead of j - i with a sign error in the output under
reflections (a 1o output must flip, a 1e output must not); padding points sending messages;
absolute positions leaking in (translation); the radius normalization not undone.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("e3nn_jax")

from sympe_jax import testing  # noqa: E402
from sympe_jax.groups import orthogonal as O  # noqa: E402
from sympe_jax.nn.e3 import E3PointNet  # noqa: E402


@pytest.fixture(scope="module")
def model_and_params():
    model = E3PointNet(hidden="8x0e + 4x1o + 4x1e", num_layers=2, irreps_out="1x1o + 1x1e + 1x0e", radial_hidden=8)
    x = jnp.zeros((7, 3))
    params = jax.jit(model.init)(jax.random.key(0), x, jnp.ones(7, bool), jnp.zeros((7, 2, 3)), jnp.zeros((7, 1)))
    return model, params, jax.jit(model.apply)


def test_equivariant_under_e3_and_permutations_with_parity(model_and_params, key):
    model, params, apply = model_and_params
    k1, k2, k3 = jax.random.split(key, 3)
    x = jax.random.normal(k1, (7, 3))
    mask = jnp.arange(7) < 6
    v = jax.random.normal(k2, (7, 2, 3))
    s = jax.random.normal(k3, (7, 1))
    fn = lambda inp: apply(params, inp[0], mask, inp[1], s)

    def sample(k):
        g = O.random_euclidean(k, translation_scale=3.0)
        return g.at[:3, :3].multiply(-1.0)  # always include the inversion: parity matters

    def act_in(g, inp):
        return O.act_on_points(g, inp[0]), O.act_on_vectors(g, inp[1])

    def act_out(g, out):
        r = O.rotation_part(g)
        det = jnp.linalg.det(r)
        return jnp.concatenate([out[..., :3] @ r.T, det * (out[..., 3:6] @ r.T), out[..., 6:]], axis=-1)

    testing.assert_equivariant(fn, key, (x, v), sample_element=sample, act_in=act_in, act_out=act_out,
                               num_elements=3, atol=2e-4, rtol=1e-3)
    out = fn((x, v))
    perm = jnp.array([3, 0, 5, 1, 4, 2, 6])  # permutes the 6 real points, padding stays last
    np.testing.assert_allclose(apply(params, x[perm], mask, v[perm], s[perm]), out[perm], atol=2e-5)
    np.testing.assert_allclose(apply(params, 2.5 * x, mask, v, s)[:, :6], 2.5 * out[:, :6], rtol=1e-3, atol=1e-4)
    assert np.all(np.asarray(out)[6] == 0)
    moved_padding = apply(params, x.at[6].set(100.0), mask, v.at[6].set(5.0), s.at[6].set(9.0))
    np.testing.assert_allclose(moved_padding, out, atol=1e-6)
    assert abs(float(jnp.mean(out[:6, 3:6] ** 2))) > 0  # the pseudovector channel is not trivially zero


def test_symmetric_input_gives_symmetric_output(model_and_params):
    """Without symmetry breaking an equivariant net maps a regular hexagon to a D6h-symmetric field:
    the 1o outputs are radial and of equal length at every vertex (what SymPE exists to escape)."""
    model, params, apply = model_and_params
    hexagon = jnp.array([[np.cos(k * np.pi / 3), np.sin(k * np.pi / 3), 0.0] for k in range(6)] + [[0.0, 0, 0]])
    mask = jnp.arange(7) < 6
    out = apply(params, hexagon, mask, jnp.zeros((7, 2, 3)), jnp.zeros((7, 1)))[:6, :3]
    lengths = jnp.linalg.norm(out, axis=-1)
    np.testing.assert_allclose(lengths, lengths[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(jnp.cross(out, hexagon[:6]), 0.0, atol=1e-5)


def test_shape_errors(model_and_params):
    model, params, apply = model_and_params
    with pytest.raises(ValueError, match="points"):
        apply(params, jnp.zeros((7, 2)), jnp.ones(7, bool))
    with pytest.raises(ValueError, match="vectors"):
        apply(params, jnp.zeros((7, 3)), jnp.ones(7, bool), jnp.zeros((6, 2, 3)))
