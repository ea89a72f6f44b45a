"""Randomized frames: uniform on the coset of the point group (chi-square), equivariant in law under
Haar-random E(3) motions and point permutations (statistically), degenerate and invalid inputs.

Named bugs these tests catch: ties broken by point index instead of the key (one frame on a
symmetric shape; the law does not follow a permutation of the points); a tie tolerance that splits
symmetric points (fewer frames than |G_x|); a sign or eigenspace basis taken from eigh as returned
(not equivariant in law); padding or NaN entering the frame; one key shared by a batch.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sympe_jax import checks, frames, testing
from sympe_jax.groups import orthogonal as O
from tests.groups.test_orthogonal import SHAPES

ALPHA = 1e-3


def _moved(pts, key):
    """The shape under a random E(3) motion and a random permutation of its points (float32)."""
    k_g, k_p = jax.random.split(key)
    x = O.act_on_points(O.random_euclidean(k_g, translation_scale=2.0), jnp.asarray(pts, jnp.float32))
    return x[jax.random.permutation(k_p, x.shape[0])]


N_MAX, N_DRAWS = 8, 1920      # every cloud padded to 8 points, every draw 1920 keys: one compile per sampler
_COMPILED = {}


def _sample(sampler, key, x, num, **kw):
    """``num`` <= 1920 frames of the cloud x (n <= 8 points), one key each, jit + vmap."""
    fn = _COMPILED.get((sampler, tuple(sorted(kw.items()))))
    if fn is None:
        fn = jax.jit(jax.vmap(lambda k, x, m: sampler(k, x, m, **kw), in_axes=(0, None, None)))
        _COMPILED[(sampler, tuple(sorted(kw.items())))] = fn
    x = jnp.asarray(x, jnp.float32)
    n = x.shape[0]
    padded = jnp.concatenate([x, jnp.zeros((N_MAX - n, 3), jnp.float32)])
    return np.asarray(fn(jax.random.split(key, N_DRAWS), padded, jnp.arange(N_MAX) < n), np.float64)[:num]


def _coset_labels(samples, x, mats):
    """Label every sampled frame F by the element g of G_x with F = g F_0 (F_0 the first sample);
    -1 if F is in no such coset element (to 1e-3)."""
    f0 = samples[0]
    coset = np.einsum("gij,jk->gik", mats, f0)                           # [|G|, 3, 3]
    dist = np.abs(samples[:, None] - coset[None]).max(axis=(-2, -1))    # [N, |G|]
    lab = dist.argmin(1)
    return np.where(dist.min(1) < 1e-3, lab, -1)


def _chi2_uniform_p(labels, k):
    counts = np.bincount(labels, minlength=k)
    expected = len(labels) / k
    stat = float(((counts - expected) ** 2 / expected).sum())
    return float(jax.scipy.special.gammaincc((k - 1) / 2.0, stat / 2.0))


@pytest.mark.parametrize("name,proper", [(n, False) for n in sorted(SHAPES)] + [("cube", True), ("tetrahedron", True)])
def test_point_frame_is_uniform_on_the_coset_of_the_point_group(name, proper, key):
    pts, order, rot_order = SHAPES[name]
    x = _moved(pts, key)
    mats, _ = O.symmetry_group(np.asarray(x, float), atol=1e-4)
    if proper:
        mats = mats[np.linalg.det(mats) > 0]
        assert len(mats) == rot_order
    k = len(mats)
    samples = _sample(frames.point_frame, jax.random.fold_in(key, 7), x, 40 * k, proper=proper)
    labels = _coset_labels(samples, x, mats)
    assert np.all(labels >= 0), "a sampled frame is not g F_0 for a symmetry g of the shape"
    assert len(np.unique(labels)) == k, f"{len(np.unique(labels))} distinct frames, |G_x| = {k}"
    assert _chi2_uniform_p(labels, k) > ALPHA
    # each frame is orthogonal (proper: a rotation), its canonical coordinates are the same cloud
    assert np.allclose(np.einsum("nji,njk->nik", samples, samples), np.eye(3), atol=1e-5)
    if proper:
        assert np.all(np.linalg.det(samples) > 0)


def test_square_pyramid_proper_frame_is_not_the_rotation_kernel(key):
    """Documented limit: base farther than apex, rotations only: 8 frames for a group of order 4."""
    x = _moved(SHAPES["square_pyramid"][0], key)
    samples = _sample(frames.point_frame, key, x, 400, proper=True)
    assert len(np.unique(samples.round(4).reshape(400, 9), axis=0)) == 8


def test_index_tie_break_fails_the_uniformity_and_the_law_checks(key):
    """The bound has power: a frame whose ties are broken by point index (a fixed key) gives one
    frame on the cube, and its law does not follow a permutation of the points."""
    pts, order, _ = SHAPES["cube"]
    x = _moved(pts, key)
    broken = lambda k, x, m=None: frames.point_frame(jax.random.key(0), x, m)
    samples = _sample(broken, key, x, 40 * order)
    assert len(np.unique(samples.round(4).reshape(len(samples), 9), axis=0)) == 1
    perm = jnp.roll(jnp.arange(8), 3)
    moved, direct = samples[:400], _sample(broken, jax.random.fold_in(key, 1), x[perm], 400)
    with pytest.raises(AssertionError, match="laws differ"):
        testing.assert_same_law(moved.reshape(-1, 9), direct.reshape(-1, 9))


def _motion(key):
    k_g, k_p = jax.random.split(key)
    return O.random_euclidean(k_g, translation_scale=2.0), k_p


@pytest.mark.parametrize("name", ["tetrahedron", "cube", "hexagon", "square_pyramid"])
def test_point_frame_is_equivariant_in_law(name, key):
    """F(g . x) ~ R F(x) for Haar-random g in E(3) composed with a permutation of the points:
    chi-square homogeneity on the coset labels of both sides."""
    pts, order, _ = SHAPES[name]
    x = jnp.asarray(pts, jnp.float32)
    mats, _ = O.symmetry_group(pts, atol=1e-4)
    for i in range(2):
        g, k_p = _motion(jax.random.fold_in(key, i))
        perm = jax.random.permutation(k_p, x.shape[0])
        gx = O.act_on_points(g, x)[perm]
        r = np.asarray(O.rotation_part(g), np.float64)
        n = 30 * order
        moved = np.einsum("ij,njk->nik", r, _sample(frames.point_frame, jax.random.fold_in(key, 10 + i), x, n))
        direct = _sample(frames.point_frame, jax.random.fold_in(key, 20 + i), gx, n)
        mats_g = np.einsum("ij,gjk,lk->gil", r, mats, r)                 # G_{gx} = R G_x R^T
        ref = np.concatenate([moved[:1], direct])
        labels = _coset_labels(ref, gx, mats_g)[1:]
        labels_moved = _coset_labels(np.concatenate([moved[:1], moved]), gx, mats_g)[1:]
        assert np.all(labels >= 0) and np.all(labels_moved >= 0)
        _, _, p = testing.chi2_homogeneity(labels_moved[:, None], labels[:, None])
        assert p > ALPHA


def test_covariance_frame_is_equivariant_in_law_and_haar_on_isotropic_shapes(key):
    """Square pyramid: one simple axis with its sign fixed by the third moment, a degenerate
    plane with a Haar basis: continuous law, KS on projections. Cube: isotropic, so Haar on O(3)."""
    x = jnp.asarray(SHAPES["square_pyramid"][0], jnp.float32)
    for i in range(2):
        g, k_p = _motion(jax.random.fold_in(key, i))
        perm = jax.random.permutation(k_p, 5)
        r = O.rotation_part(g)
        moved = np.einsum("ij,njk->nik", r, _sample(frames.covariance_frame, jax.random.fold_in(key, 30 + i), x, 1500))
        direct = _sample(frames.covariance_frame, jax.random.fold_in(key, 40 + i), O.act_on_points(g, x)[perm], 1500)
        testing.assert_same_law(moved.reshape(-1, 9), direct.reshape(-1, 9), alpha=ALPHA)
    f = _sample(frames.covariance_frame, key, x, 200)
    # the simple axis is the pyramid's axis, pointing to the apex side fixed by m3 (deterministic)
    axis = f[:, :, 2] if abs(f[0, 2, 2]) > 0.99 else f[:, :, 0]
    assert np.allclose(axis, axis[0], atol=1e-5) and abs(abs(axis[0, 2]) - 1) < 1e-5
    cube = _moved(SHAPES["cube"][0], key)
    testing.assert_same_law(_sample(frames.covariance_frame, key, cube, 1500).reshape(-1, 9),
                            np.asarray(O.random_orthogonal(jax.random.fold_in(key, 1), (1500,))).reshape(-1, 9),
                            alpha=ALPHA)


def test_covariance_frame_eigh_basis_is_not_equivariant(key):
    """A broken sampler, eigh's eigenvectors as returned (no random basis, no sign rule), fails the
    same equivariance-in-law check on the square pyramid."""
    x = jnp.asarray(SHAPES["square_pyramid"][0], jnp.float32)

    def broken(k, x):
        y = x - x.mean(0)
        return jnp.linalg.eigh(y.T @ y)[1][:, ::-1]

    g, _ = _motion(key)
    with pytest.raises(AssertionError, match="laws differ"):
        testing.assert_equivariant_in_law(broken, key, x, g, act_in=O.act_on_points,
                                          act_out=lambda g, f: O.rotation_part(g) @ f, num_samples=500)


def test_tolerances_degenerate_eigenspaces_and_atol_zero(key):
    cube = jnp.asarray(SHAPES["cube"][0], jnp.float32)
    noise = 1e-7 * jax.random.normal(key, cube.shape)
    # within atol the perturbed cube keeps its 48 frames and its isotropic covariance
    f = _sample(frames.point_frame, key, cube + noise, 960)
    assert len(np.unique(f.round(3).reshape(960, 9), axis=0)) == 48
    c = _sample(frames.covariance_frame, key, cube + noise, 50)
    assert len(np.unique(c.round(3).reshape(50, 9), axis=0)) == 50
    # atol = 0 on exactly representable coordinates: exact ties, still 48 frames
    f0 = _sample(frames.point_frame, key, cube, 960, atol=0.0)
    assert len(np.unique(f0.round(3).reshape(960, 9), axis=0)) == 48
    # atol = 0 on an anisotropic box: distinct eigenvalues, the axes fixed up to the random signs
    box = cube * jnp.array([1.0, 2.0, 3.0])
    cb = _sample(frames.covariance_frame, key, box, 200, atol=0.0)
    assert np.allclose(np.abs(cb), np.abs(cb[0]), atol=1e-5)
    assert len(np.unique(np.sign(cb.round(3)).reshape(200, 9), axis=0)) == 8     # 2^3 sign patterns


def test_same_key_same_frame_padding_ignored_and_keys_differ(key):
    x = _moved(SHAPES["hexagon"][0], key)
    padded = jnp.concatenate([x, jnp.full((2, 3), jnp.nan)])
    mask = jnp.arange(8) < 6
    for sampler in (frames.point_frame, frames.covariance_frame, frames.haar_frame):
        fn = _COMPILED[(sampler, ())] if (sampler, ()) in _COMPILED else jax.jit(jax.vmap(sampler, in_axes=(0, None, None)))
        keys = jax.random.split(key, N_DRAWS)
        a, b = fn(keys, padded, mask), fn(keys, padded, mask)
        np.testing.assert_array_equal(a, b)                                   # same key, same frame
        np.testing.assert_allclose(a, _sample(sampler, key, x, N_DRAWS), atol=1e-5)   # NaN padding ignored
        assert len(np.unique(np.asarray(a[:16]).round(4).reshape(16, 9), axis=0)) > 1
    can = jax.jit(frames.to_frame)(frames.point_frame(key, padded, mask), padded, mask)
    assert np.all(np.isfinite(can)) and np.all(can[6:] == 0)
    np.testing.assert_allclose(frames.centroid(padded, mask), x.mean(0), atol=1e-5)


def test_fewer_than_three_points(key):
    one = jnp.ones((1, 3))
    f1 = _sample(frames.point_frame, key, one, 300)
    assert len(np.unique(f1.round(4).reshape(300, 9), axis=0)) == 300           # Haar: all O(3) frames
    two = jnp.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    f2 = _sample(frames.point_frame, key, two, 300)
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    assert np.allclose(np.abs(f2[:, :, 0] @ axis), 1.0, atol=1e-5)              # e1 along the segment
    assert set(np.sign(f2[:, :, 0] @ axis).round().tolist()) == {-1.0, 1.0}      # both ends tie
    assert np.allclose(np.einsum("nji,njk->nik", f2, f2), np.eye(3), atol=1e-5)
    assert np.std(f2[:, :, 1] @ np.array([0, 1.0, -1.0]) / np.sqrt(2)) > 0.5       # e2 spread on the circle
    for sampler in (frames.covariance_frame, frames.haar_frame):
        f = _sample(sampler, key, two, 50)
        assert np.allclose(np.einsum("nji,njk->nik", f, f), np.eye(3), atol=1e-5)


@pytest.mark.parametrize("sampler", [frames.point_frame, frames.covariance_frame, frames.haar_frame])
def test_non_finite_points_raise_eagerly_and_poison_under_jit(sampler, key):
    x = jnp.asarray(SHAPES["cube"][0], jnp.float32)
    for bad in (jnp.nan, jnp.inf):
        xb = x.at[2, 1].set(bad)
        with pytest.raises(ValueError, match="finite"):
            sampler(key, xb)
        assert np.all(np.isnan(_sample(sampler, key, xb, 2)))
    if sampler is frames.point_frame:
        with pytest.raises(ValueError, match="finite"):
            checks.checked(jax.jit(sampler))(key, xb)
    with pytest.raises(ValueError, match="at least one point"):
        sampler(key, x, jnp.zeros(8, bool))
    with pytest.raises(ValueError, match="shape"):
        sampler(key, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="empty"):
        sampler(key, jnp.ones((0, 3)))
    with pytest.raises(TypeError):
        sampler(key, jnp.ones((4, 3), jnp.int32))


def test_scores_and_tensors_are_checked_and_used(key):
    x = _moved(SHAPES["cube"][0], key)
    scores = jnp.zeros(8).at[5].set(1.0)
    f = np.asarray(jax.jit(jax.vmap(lambda k: frames.point_frame(k, x, scores=scores)))(jax.random.split(key, 200)))
    e1 = x[5] - x.mean(0)
    assert np.allclose(f[:, :, 0], e1 / jnp.linalg.norm(e1), atol=1e-5)   # the top-scored point is a
    assert len(np.unique(f.round(4).reshape(200, 9), axis=0)) == 6          # |stabilizer of a vertex| = 6
    with pytest.raises(ValueError, match="finite"):
        frames.point_frame(key, x, scores=scores.at[0].set(jnp.nan))
    with pytest.raises(ValueError, match="scores must have shape"):
        frames.point_frame(key, x, scores=jnp.zeros(3))
    t = jnp.diag(jnp.array([3.0, 2.0, 1.0]))
    ft = frames.covariance_frame(key, x, tensor=t)
    np.testing.assert_allclose(np.abs(ft), np.eye(3), atol=1e-5)
    with pytest.raises(ValueError, match="finite"):
        frames.covariance_frame(key, x, tensor=t.at[0, 0].set(jnp.inf))
    assert float(jnp.linalg.det(frames.covariance_frame(key, x, tensor=t, proper=True))) > 0
