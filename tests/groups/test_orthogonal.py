"""O(3), SO(3), E(3): axioms of every action, Haar laws, validation, exact point groups of known shapes."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sympe_jax import checks, testing
from sympe_jax.groups import orthogonal as O

# Shapes with known point groups (orders of the full O(3) stabilizer, and of its rotations).
SHAPES = {
    "tetrahedron": (np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float), 24, 12),
    "cube": (np.array(list(itertools.product([-1, 1], repeat=3)), float), 48, 24),
    "octahedron": (np.concatenate([np.eye(3), -np.eye(3)]), 48, 24),
    "hexagon": (np.array([[np.cos(k * np.pi / 3), np.sin(k * np.pi / 3), 0] for k in range(6)]), 24, 12),
    "square_pyramid": (np.array([[1, 1, 0], [1, -1, 0], [-1, -1, 0], [-1, 1, 0], [0, 0, 1.5]]), 8, 4),
}


def _elements(key, kind):
    k1, k2 = jax.random.split(key)
    if kind == "O3":
        return O.random_orthogonal(k1), O.random_orthogonal(k2)
    return O.random_euclidean(k1), O.random_euclidean(k2, translation_scale=3.0)


@pytest.mark.parametrize("kind", ["O3", "E3"])
def test_axioms_points_vectors_tensors(key, kind):
    g, h = _elements(key, kind)
    dim = g.shape[-1]
    x = jax.random.normal(jax.random.fold_in(key, 1), (5, 3))
    t2 = jax.random.normal(jax.random.fold_in(key, 2), (4, 3, 3))
    gh = O.compose(g, h)
    close = lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5)
    for act in (O.act_on_points, O.act_on_vectors):
        close(act(O.identity(dim), x), x)
        close(act(gh, x), act(g, act(h, x)))
        close(act(O.inverse(g), act(g, x)), x)
    close(O.act_on_tensors(gh, t2, 2), O.act_on_tensors(g, O.act_on_tensors(h, t2, 2), 2))
    r = O.rotation_part(g)
    close(O.act_on_tensors(g, t2, 2), r @ t2 @ r.T)                     # covariance: R C R^T
    close(O.act_on_tensors(g, x, 1), O.act_on_vectors(g, x))
    close(O.compose(g, O.inverse(g)), O.identity(dim))
    close(O.compose(O.compose(g, h), g), O.compose(g, O.compose(h, g)))
    # vectors ignore translations; points do not
    close(O.act_on_vectors(g, x), x @ r.T)
    close(O.act_on_points(g, x), x @ r.T + O.translation_part(g))
    assert bool(jnp.all(O.is_element(gh)))


def test_pseudovectors_and_euclidean_parts(key):
    r = O.random_orthogonal(key, (64,))
    det = np.linalg.det(np.asarray(r))
    u = jax.random.normal(jax.random.fold_in(key, 1), (64, 3))
    # the cross product of two vectors is a pseudovector
    a, b = u, jnp.roll(u, 1, axis=0)
    np.testing.assert_allclose(O.act_on_vectors(r, jnp.cross(a, b), pseudo=True),
                               jnp.cross(O.act_on_vectors(r, a), O.act_on_vectors(r, b)), atol=3e-5)
    assert {1.0, -1.0} == set(np.sign(det).tolist())
    g = O.euclidean(r, u)
    np.testing.assert_allclose(O.rotation_part(g), r)
    np.testing.assert_allclose(O.translation_part(g), u)
    np.testing.assert_allclose(O.translation_part(r), 0.0)


def test_irreps_action_matches_vectors_and_composes(key):
    e3nn = pytest.importorskip("e3nn_jax")
    g, h = O.random_orthogonal(key), O.random_orthogonal(jax.random.fold_in(key, 1))
    g = g * jnp.sign(jnp.linalg.det(g)) * -1.0  # make sure the test sees a reflection
    assert float(jnp.linalg.det(g)) < 0
    u = jax.random.normal(jax.random.fold_in(key, 2), (4, 3))
    x = e3nn.IrrepsArray("1o", u)
    np.testing.assert_allclose(O.act_on_irreps(g, x).array, O.act_on_vectors(g, u), atol=2e-5)
    np.testing.assert_allclose(O.act_on_irreps(g, e3nn.IrrepsArray("1e", u)).array,
                               O.act_on_vectors(g, u, pseudo=True), atol=2e-5)
    y = e3nn.normal("2x0e + 1o + 1e + 2e + 2o + 3o", jax.random.fold_in(key, 3), (3,))
    lhs = O.act_on_irreps(O.compose(g, h), y).array
    rhs = O.act_on_irreps(g, O.act_on_irreps(h, y)).array
    np.testing.assert_allclose(lhs, rhs, atol=5e-5)
    np.testing.assert_allclose(O.act_on_irreps(O.identity(4), y).array, y.array, atol=1e-6)


def test_haar_laws_are_left_invariant_and_a_biased_law_fails(key):
    """Haar: the law of R equals the law of g R for a fixed g; KS on projections of the 9 entries.
    Uniform Euler angles (a classic mistake, not Haar) fail the same check."""
    k_g, k_a, k_b = jax.random.split(key, 3)
    g = O.random_rotation(k_g)
    for sampler in (O.random_rotation, O.random_orthogonal):
        a = sampler(k_a, (3000,))
        b = sampler(k_b, (3000,))
        testing.assert_same_law(np.asarray(O.compose(g, a)).reshape(3000, 9), np.asarray(b).reshape(3000, 9))
    assert np.all(np.linalg.det(np.asarray(O.random_rotation(k_a, (100,)))) > 0)
    dets = np.linalg.det(np.asarray(O.random_orthogonal(k_a, (2000,))))
    assert abs(np.mean(dets > 0) - 0.5) < 0.05

    def euler(key, shape):
        ang = jax.random.uniform(key, shape + (3,), minval=0, maxval=2 * np.pi)
        def rz(t):
            c, s = jnp.cos(t), jnp.sin(t)
            z, o = jnp.zeros_like(t), jnp.ones_like(t)
            return jnp.stack([jnp.stack([c, -s, z], -1), jnp.stack([s, c, z], -1), jnp.stack([z, z, o], -1)], -2)
        def rx(t):
            c, s = jnp.cos(t), jnp.sin(t)
            z, o = jnp.zeros_like(t), jnp.ones_like(t)
            return jnp.stack([jnp.stack([o, z, z], -1), jnp.stack([z, c, -s], -1), jnp.stack([z, s, c], -1)], -2)
        return rz(ang[..., 0]) @ rx(ang[..., 1]) @ rz(ang[..., 2])

    a, b = euler(k_a, (3000,)), euler(k_b, (3000,))
    with pytest.raises(AssertionError, match="laws differ"):
        testing.assert_same_law(np.asarray(O.compose(g, a)).reshape(3000, 9), np.asarray(b).reshape(3000, 9))


def test_validation_raises_eagerly_and_poisons_under_jit():
    bad = jnp.eye(3).at[0, 0].set(2.0)
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="not an orthogonal matrix"):
        O.act_on_points(bad, x)
    with pytest.raises(ValueError, match="not an orthogonal matrix"):
        O.compose(jnp.eye(3), jnp.full((3, 3), jnp.nan))
    hom = jnp.eye(4).at[3, 0].set(1.0)
    with pytest.raises(ValueError, match="homogeneous"):
        O.inverse(hom)
    with pytest.raises(TypeError):
        O.act_on_points(jnp.eye(3, dtype=jnp.int32), x)
    with pytest.raises(ValueError, match="shape"):
        O.act_on_points(jnp.eye(2), x)
    with pytest.raises(ValueError, match="cannot compose"):
        O.compose(jnp.eye(3), jnp.eye(4))
    assert np.all(np.isnan(jax.jit(O.act_on_points)(bad, x)))
    assert np.all(np.isnan(jax.jit(O.inverse)(bad)))
    poisoned = jax.jit(O.compose)(bad, jnp.eye(3))
    assert np.all(np.isnan(jax.jit(O.act_on_vectors)(poisoned, x)))  # NaN propagates
    with pytest.raises(ValueError):
        checks.checked(jax.jit(O.act_on_points))(bad, x)
    # a batch: only the invalid element is poisoned
    both = jnp.stack([jnp.eye(3), bad])
    out = jax.jit(O.act_on_points)(both, jnp.ones((2, 4, 3)))
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_symmetry_group_of_known_shapes(name, key):
    pts, order, _ = SHAPES[name]
    g = O.random_euclidean(key)
    moved = np.asarray(O.act_on_points(g, jnp.asarray(pts, jnp.float32)), float)
    mats, perms = O.symmetry_group(moved, atol=1e-4)
    assert len(mats) == order and np.allclose(mats[0], np.eye(3))
    y = moved - moved.mean(0)
    for m, p in zip(mats, perms):
        np.testing.assert_allclose(y @ m.T, y[p], atol=1e-4)
    assert len(np.unique(mats.round(6).reshape(order, 9), axis=0)) == order


def test_symmetry_group_rejects_infinite_groups_and_respects_the_mask():
    with pytest.raises(ValueError, match="collinear"):
        O.symmetry_group(np.array([[0, 0, 0], [1.0, 0, 0]]))
    with pytest.raises(ValueError, match="centroid"):
        O.symmetry_group(np.ones((1, 3)))
    pts = np.concatenate([SHAPES["cube"][0], np.full((2, 3), np.nan)])
    mats, _ = O.symmetry_group(pts, mask=np.arange(10) < 8)
    assert len(mats) == 48
