"""Randomized canonicalization: exact tie uniformity, equivariance in law, tolerances, masks."""

import collections

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import sympe_jax as sp
from sympe_jax.groups import lattice, permutation
from sympe_jax.testing import assert_equivariant_in_law, chi2_homogeneity

N_SAMPLES = 12000


def _sample_ranks(scores, mask=None, n=N_SAMPLES, seed=0, atol=sp.DEFAULT_ATOL):
    keys = jax.random.split(jax.random.key(seed), n)
    fn = jax.jit(jax.vmap(lambda k: sp.sort_permutation(k, scores, mask, atol=atol)))
    return np.asarray(fn(keys))


def _chi2_uniform(counts):
    counts = np.asarray(counts, float)
    expected = counts.sum() / len(counts)
    stat = ((counts - expected) ** 2 / expected).sum()
    return float(jax.scipy.special.gammaincc((len(counts) - 1) / 2, stat / 2))


def test_ties_uniform_over_all_tie_consistent_orderings():
    scores = jnp.array([0.0, 0.0, 1.0, 1.0, 1.0, 2.0])
    ranks = _sample_ranks(scores)
    counts = collections.Counter(map(tuple, ranks))
    assert len(counts) == 12  # 2! * 3!
    for r in counts:  # every outcome is tie-consistent
        assert sorted(r[:2]) == [0, 1] and sorted(r[2:5]) == [2, 3, 4] and r[5] == 5
    assert _chi2_uniform(list(counts.values())) > 1e-3


def test_uniformity_test_detects_a_biased_tie_break():
    # negative control: a sort that breaks ties by index with prob 0.6 is rejected
    scores = jnp.array([0.0, 0.0, 1.0, 1.0, 1.0, 2.0])
    ranks = _sample_ranks(scores)
    biased = ranks.copy()
    use_index = np.random.default_rng(0).random(len(ranks)) < 0.6
    biased[use_index] = np.arange(6)
    counts = collections.Counter(map(tuple, biased))
    assert _chi2_uniform(list(counts.values())) < 1e-3


def test_distinct_scores_are_deterministic_and_sorted():
    scores = jnp.array([0.3, -1.0, 2.0, 0.1])
    ranks = _sample_ranks(scores, n=50)
    assert len(np.unique(ranks, axis=0)) == 1
    np.testing.assert_array_equal(ranks[0], [2, 0, 3, 1])


def test_near_ties_within_atol_are_ties_and_gaps_are_not():
    scores = jnp.array([1.0, 1.0 + 3e-6, 1.0 - 4e-6, 5.0])
    ranks = _sample_ranks(scores, n=6000, atol=1e-5)
    assert len(np.unique(ranks[:, :3], axis=0)) == 6 and np.all(ranks[:, 3] == 3)
    strict = _sample_ranks(scores, n=200, atol=1e-7)
    assert len(np.unique(strict, axis=0)) == 1
    # chaining: consecutive sorted gaps within atol join one group
    groups = sp.tie_groups(jnp.array([0.0, 0.8e-5, 1.6e-5, 1.0]), atol=1e-5)
    np.testing.assert_array_equal(groups, [0, 0, 0, 1])


def test_masked_nodes_go_last_in_index_order():
    scores = jnp.array([5.0, -3.0, 1.0, 1.0, -7.0])
    mask = jnp.array([True, False, True, True, False])
    ranks = _sample_ranks(scores, mask, n=2000)
    np.testing.assert_array_equal(ranks[:, 1], 3)
    np.testing.assert_array_equal(ranks[:, 4], 4)
    np.testing.assert_array_equal(ranks[:, 0], 2)
    assert set(map(tuple, ranks[:, 2:4])) == {(0, 1), (1, 0)}
    # an all-padding graph (a padded batch slot) is valid and gives the identity
    np.testing.assert_array_equal(sp.sort_permutation(jax.random.key(0), scores, jnp.zeros(5, bool)), np.arange(5))


def test_same_key_same_ranks_different_keys_differ():
    scores = jnp.zeros(8)
    k = jax.random.key(3)
    np.testing.assert_array_equal(sp.sort_permutation(k, scores), sp.sort_permutation(k, scores))
    assert len(np.unique(_sample_ranks(scores, n=20), axis=0)) > 15


@pytest.mark.parametrize("seed", [0, 1])
def test_sort_is_equivariant_in_law(seed):
    rng = np.random.default_rng(seed)
    scores = jnp.asarray(rng.integers(0, 3, size=5), jnp.float32)  # ties in every group
    mask = jnp.array([True, True, True, True, False])
    g = permutation.random_element(jax.random.key(seed + 10), 5, mask)
    sampler = lambda k, x: sp.sort_permutation(k, x[0], x[1])
    act_in = lambda g, x: (permutation.act_on_nodes(g, x[0]), permutation.act_on_nodes(g, x[1]))
    act_out = permutation.act_on_nodes
    assert_equivariant_in_law(sampler, jax.random.key(seed), (scores, mask), g,
                              act_in=act_in, act_out=act_out, num_samples=6000)


def test_deterministic_tie_break_fails_the_law_test():
    # negative control: sorting ties by index is not equivariant, and the checker says so
    scores = jnp.array([0.0, 0.0, 1.0, 1.0])
    g = jnp.array([1, 0, 3, 2])
    sampler = lambda k, x: jnp.argsort(jnp.argsort(x, stable=True)).astype(jnp.int32)
    with pytest.raises(AssertionError, match="laws differ"):
        assert_equivariant_in_law(sampler, jax.random.key(0), scores, g,
                                  act_in=permutation.act_on_nodes, act_out=permutation.act_on_nodes,
                                  num_samples=500)


def test_argmax_uniform_over_translations_on_constant_lattice_scores():
    L = 4
    scores = jnp.zeros((8, L, L)) + 0.5
    keys = jax.random.split(jax.random.key(0), 16000)
    idx = np.asarray(jax.jit(jax.vmap(lambda k: sp.argmax_element(k, scores)))(keys))
    els = np.asarray(lattice.element_from_index(idx, L))
    trans = els[:, 1] * L + els[:, 2]
    assert _chi2_uniform(np.bincount(trans, minlength=L * L)) > 1e-3
    assert _chi2_uniform(np.bincount(els[:, 0], minlength=8)) > 1e-3
    # negative control: a sampler that favours translation 0 a little is caught
    skewed = trans.copy()
    skewed[:600] = 0
    assert _chi2_uniform(np.bincount(skewed, minlength=L * L)) < 1e-3


def test_argmax_tolerance_and_mask():
    scores = jnp.array([1.0, 3.0, 3.0 - 5e-6, 2.999, 3.0])
    mask = jnp.array([True, True, True, True, False])
    keys = jax.random.split(jax.random.key(1), 3000)
    idx = np.asarray(jax.vmap(lambda k: sp.argmax_element(k, scores, mask, atol=1e-5))(keys))
    counts = np.bincount(idx, minlength=5)
    assert counts[0] == counts[3] == counts[4] == 0
    assert _chi2_uniform(counts[1:3]) > 1e-3
    assert int(sp.argmax_element(jax.random.key(0), scores)) in (1, 2, 4)


def test_argmax_is_equivariant_in_law_on_lifted_scores():
    # lifted scores S'(h) = S(g^-1 h) for a moved input; the sampled element moves to g h.
    L = 3
    rng = np.random.default_rng(0)
    base = jnp.asarray(rng.integers(0, 2, size=(8, L, L)), jnp.float32)  # many ties
    g = lattice.element_from_index(29, L)
    sampler = lambda k, s: sp.argmax_element(k, s)
    act_out = lambda g, i: lattice.index_of_element(lattice.compose(g, lattice.element_from_index(i, L), L), L)
    assert_equivariant_in_law(sampler, jax.random.key(2), base, g,
                              act_in=lattice.act_on_lifted, act_out=act_out, num_samples=6000)


def test_bad_inputs_raise_clear_errors():
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="finite"):
        sp.sort_permutation(k, jnp.array([0.0, jnp.nan]))
    with pytest.raises(ValueError, match="finite"):
        sp.argmax_element(k, jnp.array([0.0, jnp.inf]))
    with pytest.raises(TypeError, match="floating"):
        sp.sort_permutation(k, jnp.array([1, 2]))
    with pytest.raises(ValueError, match="1-d"):
        sp.sort_permutation(k, jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="empty"):
        sp.sort_permutation(k, jnp.zeros((0,)))
    with pytest.raises(ValueError, match="empty"):
        sp.argmax_element(k, jnp.zeros((0,)))
    with pytest.raises(TypeError, match="boolean"):
        sp.sort_permutation(k, jnp.zeros(3), jnp.ones(3))
    with pytest.raises(ValueError, match="shape"):
        sp.sort_permutation(k, jnp.zeros(3), jnp.ones(4, bool))
    with pytest.raises(ValueError, match="atol"):
        sp.sort_permutation(k, jnp.zeros(3), atol=-1.0)
    with pytest.raises(ValueError, match="masked out"):
        sp.argmax_element(k, jnp.zeros(3), jnp.zeros(3, bool))
    # NaN under jit: reported through checkify
    with pytest.raises(ValueError, match="finite"):
        sp.checked(jax.jit(sp.sort_permutation))(k, jnp.array([0.0, jnp.nan]))
    with pytest.raises(ValueError, match="finite"):
        sp.checked(jax.jit(jax.vmap(sp.sort_permutation)))(jax.random.split(k, 2), jnp.array([[0.0, 1.0], [jnp.nan, 0.0]]))


def test_soft_ranks_are_distributions_over_real_positions_and_permute_with_the_nodes():
    scores = jnp.array([0.3, 0.1, 0.7, 0.3, 0.0, 0.0])
    mask = jnp.array([True, True, True, True, False, False])
    p = sp.canonicalize.soft_ranks(scores, mask, temperature=0.02)
    np.testing.assert_allclose(p.sum(-1), [1, 1, 1, 1, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(p[:, 4:], 0)       # no mass on padding positions
    # distinct scores: the mass sits on the hard rank; tied nodes 0 and 3 split positions 1, 2
    np.testing.assert_allclose(p[1], [1, 0, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(p[2], [0, 0, 0, 1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(p[0], [0, 0.5, 0.5, 0, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(p[0], p[3])
    g = jnp.array([2, 0, 3, 1, 4, 5])                # node i moves to g[i]
    moved = sp.canonicalize.soft_ranks(permutation.act_on_nodes(g, scores), permutation.act_on_nodes(g, mask),
                                       temperature=0.02)
    np.testing.assert_allclose(moved, permutation.act_on_nodes(g, p), atol=1e-6)
    # a hotter relaxation spreads the mass; its gradient in the scores is not zero
    assert float(sp.canonicalize.soft_ranks(scores, mask, temperature=1.0)[1, 0]) < 0.5
    grad = jax.grad(lambda s: sp.canonicalize.soft_ranks(s, mask, temperature=0.2)[1] @ jnp.arange(6.0))(scores)
    assert float(jnp.abs(grad).sum()) > 0
    with pytest.raises(ValueError, match="temperature"):
        sp.canonicalize.soft_ranks(scores, mask, temperature=0.0)
    with pytest.raises(ValueError, match="finite"):
        sp.canonicalize.soft_ranks(jnp.array([0.0, jnp.nan]), temperature=0.1)


class JitVmapTest(chex.TestCase):
    """The same ranks and indices with and without jit, and per example under vmap."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(4, 17)
    def test_sort_variants(self, n):
        scores = jnp.round(jax.random.normal(jax.random.key(n), (n,)), 1)
        mask = jnp.arange(n) < n - 2
        ranks = self.variant(lambda k, s, m: sp.sort_permutation(k, s, m))(jax.random.key(7), scores, mask)
        ref = sp.sort_permutation(jax.random.key(7), scores, mask)
        chex.assert_trees_all_equal(ranks, ref)
        assert bool(permutation.is_permutation(ranks))

    @chex.variants(with_jit=True, without_jit=True)
    def test_vmap_over_graphs_of_different_sizes(self):
        n_max, sizes = 9, [3, 9, 5]
        scores = jnp.round(jax.random.normal(jax.random.key(0), (3, n_max)), 1)
        masks = jnp.arange(n_max)[None, :] < jnp.array(sizes)[:, None]
        keys = jax.random.split(jax.random.key(1), 3)
        batched = self.variant(jax.vmap(lambda k, s, m: sp.sort_permutation(k, s, m)))(keys, scores, masks)
        for b, n in enumerate(sizes):
            one = sp.sort_permutation(keys[b], scores[b], masks[b])
            chex.assert_trees_all_equal(batched[b], one)
            assert sorted(np.asarray(one[:n]).tolist()) == list(range(n))

    @chex.variants(with_jit=True, without_jit=True)
    def test_argmax_variants(self):
        scores = jnp.round(jax.random.normal(jax.random.key(0), (8, 4, 4)), 0)
        keys = jax.random.split(jax.random.key(1), 5)
        batched = self.variant(jax.vmap(lambda k: sp.argmax_element(k, scores)))(keys)
        for b in range(5):
            assert int(batched[b]) == int(sp.argmax_element(keys[b], scores))


def test_argmax_uniform_across_blocks_of_a_long_score_vector():
    # 1000 entries span 8 blocks of the two-level search; candidates sit in several blocks
    rng = np.random.default_rng(3)
    scores = jnp.asarray(rng.integers(0, 60, size=1000), jnp.float32)
    cand = np.flatnonzero(np.asarray(scores) == float(scores.max()))
    assert len(np.unique(cand // 128)) > 3
    keys = jax.random.split(jax.random.key(4), 400 * len(cand))
    idx = np.asarray(jax.jit(jax.vmap(lambda k: sp.argmax_element(k, scores)))(keys))
    assert set(idx) == set(cand)
    assert _chi2_uniform([np.sum(idx == c) for c in cand]) > 1e-3


# ----------------------------------------------------------------------------- invalid values poison outputs


def _traced(kind, fn, batch, *shared):
    """``fn(*shared, x)`` for every row x of ``batch``: one ``jax.jit`` call per row, or one eager ``jax.vmap``."""
    if kind == "jit":
        jitted = jax.jit(fn)
        return jax.tree.map(lambda *rows: np.stack(rows), *[jitted(*shared, x) for x in batch])
    return jax.tree.map(np.asarray, jax.vmap(lambda x: fn(*shared, x))(batch))


@pytest.mark.parametrize("kind", ["jit", "eager_vmap"])
def test_non_finite_scores_poison_ranks_groups_soft_ranks_and_argmax(kind):
    """Bug: NaN/Inf scores under jit or eager vmap gave a valid-looking permutation (and NaN joined a tie group)."""
    mask = jnp.array([True, True, True, True, False])
    bad = [[0.5, 0.0, x, 0.0, 2.0] for x in (np.nan, np.inf, -np.inf)]
    good = [[0.5, 0.0, 0.25, 0.0, x] for x in (np.nan, np.inf, -np.inf)]    # masked out: ignored

    def all_four(k, s):
        return (sp.sort_permutation(k, s, mask), sp.tie_groups(s, mask), sp.soft_ranks(s, mask, temperature=0.1),
                sp.argmax_element(k, s, mask))

    ranks, groups, soft, index = _traced(kind, all_four, jnp.array(bad + good), jax.random.key(0))
    np.testing.assert_array_equal(ranks[:3], -1)
    np.testing.assert_array_equal(groups[:3], -1)
    assert np.all(np.isnan(soft[:3]))
    np.testing.assert_array_equal(index[:3], -1)
    assert all(bool(permutation.is_permutation(r)) and r[0] == 3 and r[2] == 2 for r in ranks[3:])
    np.testing.assert_array_equal(groups[3:], np.tile([2, 0, 1, 0, 5], (3, 1)))
    assert np.all(np.isfinite(soft[3:]))
    np.testing.assert_array_equal(index[3:], 0)


def test_non_finite_scores_raise_eagerly_and_under_checked():
    """Bug: tie_groups accepted NaN/Inf scores eagerly and under sp.checked."""
    k = jax.random.key(0)
    scores = jnp.array([0.0, jnp.inf, 1.0])
    for fn in (lambda s: sp.tie_groups(s), lambda s: sp.sort_permutation(k, s), lambda s: sp.argmax_element(k, s),
               lambda s: sp.soft_ranks(s, temperature=0.1)):
        with pytest.raises(ValueError, match="finite.*entry 1 is inf"):
            fn(scores)
    with pytest.raises(ValueError, match="tie_groups: scores must be finite"):
        sp.checked(jax.jit(lambda s: sp.tie_groups(s)))(scores)


def test_argmax_with_every_entry_masked_poisons_the_lattice_element_and_encoding():
    """Bug: an all-masked (or NaN) argmax became element [-1, L-1, L-1], a valid reflection, and a finite encoding."""
    L = 3

    def sample(m):
        index = sp.argmax_element(jax.random.key(0), jnp.zeros((8, L, L)), m)
        g = lattice.element_from_index(index, L)
        return index, g, sp.encodings.lattice_sympe(g, jnp.ones((L, L, 2)))

    index, g, out = _traced("jit", sample, jnp.zeros((1, 8, L, L), bool))
    np.testing.assert_array_equal(index, -1)
    np.testing.assert_array_equal(g, -1)
    assert np.all(np.isnan(out))
    with pytest.raises(ValueError, match="masked out"):
        sp.checked(jax.jit(sample))(jnp.zeros((8, L, L), bool))


# ----------------------------------------------------------------------------- tolerances


@pytest.mark.parametrize("atol", [np.float32(1e-5), np.float64(1e-5), jnp.asarray(1e-5), np.asarray(1e-5), 0, 1e-5])
def test_atol_accepts_any_real_scalar(atol):
    """Bug: np.float32 and 0-d arrays were rejected ("must be a finite number")."""
    k = jax.random.key(0)
    scores = jnp.array([0.0, 3e-6, 1.0])
    expected = [0, 0, 1] if float(atol) > 0 else [0, 1, 2]
    np.testing.assert_array_equal(sp.tie_groups(scores, atol=atol), expected)
    assert bool(permutation.is_permutation(sp.sort_permutation(k, scores, atol=atol)))
    assert int(sp.argmax_element(k, scores, atol=atol)) == 2


@pytest.mark.parametrize("fn", ["tie_groups", "sort_permutation", "argmax_element"])
def test_atol_rejects_bools_non_numbers_and_bad_values(fn):
    """Bug: atol=True was taken as 1.0 (every score within 1 tied)."""
    call = {"tie_groups": lambda a: sp.tie_groups(jnp.zeros(3), atol=a),
            "sort_permutation": lambda a: sp.sort_permutation(jax.random.key(0), jnp.zeros(3), atol=a),
            "argmax_element": lambda a: sp.argmax_element(jax.random.key(0), jnp.zeros(3), atol=a)}[fn]
    for bad, error in [(True, TypeError), (np.bool_(False), TypeError), ("1e-5", TypeError), (jnp.ones(2), TypeError),
                       (-1e-5, ValueError), (np.inf, ValueError), (np.nan, ValueError)]:
        with pytest.raises(error, match="atol"):
            call(bad)


def test_temperature_accepts_numpy_scalars_and_rejects_bools_and_zero():
    scores = jnp.array([0.0, 1.0])
    np.testing.assert_allclose(sp.soft_ranks(scores, temperature=np.float32(0.1)), sp.soft_ranks(scores, temperature=0.1))
    for bad, error in [(True, TypeError), (0.0, ValueError), (-1.0, ValueError), (np.inf, ValueError)]:
        with pytest.raises(error, match="temperature"):
            sp.soft_ranks(scores, temperature=bad)


# ----------------------------------------------------------------------------- exact ties at atol = 0

_N_KEYS = 2000
_BINOMIAL_BOUND = 5 * np.sqrt(_N_KEYS / 4)  # 5 standard deviations of Binomial(2000, 1/2)


def test_exact_ties_with_atol_zero_are_broken_uniformly():
    """Bug: a group boundary `diff >= atol` splits exact ties at atol = 0 (index order: not equivariant)."""
    ranks = _sample_ranks(jnp.array([0.0, 0.0, 1.0]), n=_N_KEYS, atol=0)
    np.testing.assert_array_equal(ranks[:, 2], 2)
    first = np.sum(ranks[:, 0] < ranks[:, 1])                    # node 0 before node 1
    assert abs(first - _N_KEYS / 2) < _BINOMIAL_BOUND, first
    np.testing.assert_array_equal(sp.tie_groups(jnp.array([0.0, 0.0, 1.0]), atol=0), [0, 0, 1])
    np.testing.assert_array_equal(sp.tie_groups(jnp.array([1.0, 0.0, 1.0, 1.0 + 1e-7]), atol=0.0), [1, 0, 1, 2])


def test_exact_ties_at_the_maximum_with_atol_zero_are_both_chosen_uniformly():
    """Bug: a candidate test `score > max - atol` chooses nothing at atol = 0 (and index order if written as a boundary)."""
    keys = jax.random.split(jax.random.key(1), _N_KEYS)
    idx = np.asarray(jax.jit(jax.vmap(lambda k: sp.argmax_element(k, jnp.array([1.0, 1.0, 0.0]), atol=0)))(keys))
    assert set(idx.tolist()) == {0, 1}
    assert abs(np.sum(idx == 0) - _N_KEYS / 2) < _BINOMIAL_BOUND


# ----------------------------------------------------------------------------- the random sort keys


def test_all_tied_ranks_do_not_correlate_with_node_index():
    """Bug: short random sort keys (e.g. 8 bits) leave colliding nodes in index order: a rank-index correlation.

    With b random bits, consecutive nodes i, i + 1 of one tie group collide with probability
    2^-b and are then ranked in index order, so they are in index order with probability
    1/2 + 2^-(b+1). For uniform permutations of n the number of such ascents is exactly
    Eulerian: mean (n - 1) / 2, variance (n + 1) / 12. Over 6000 x 255 pairs an 8-bit key
    shifts it by about 8 standard deviations; 64 bits by 1e-17.
    """
    n, num = 256, 6000
    ranks = _sample_ranks(jnp.zeros(n), n=num, seed=5)
    ascents = np.sum(np.diff(ranks, axis=1) > 0)
    z = (ascents - num * (n - 1) / 2) / np.sqrt(num * (n + 1) / 12)
    assert abs(z) < 4, f"rank-index correlation: ascent z-score {z:.1f}"


def test_both_words_of_the_random_sort_key_decide_ties(monkeypatch):
    """Bug: tie-breaking that reads fewer than both 32-bit words (e.g. 8 random bits, the rest index order)."""
    real_keys = permutation.random_sort_keys
    hi, lo = real_keys(jax.random.key(0), 4096)
    for word in (hi, lo):                                        # 32 random bits in each word
        assert word.dtype == jnp.uint32
        ones = (np.asarray(word)[:, None] >> np.arange(32, dtype=np.uint32)) & 1
        assert np.all(np.abs(ones.mean(0) - 0.5) < 0.05)
    zeros = jnp.zeros(3)

    def law(make_keys):
        monkeypatch.setattr(permutation, "random_sort_keys", make_keys)
        return collections.Counter(map(tuple, _sample_ranks(zeros, n=1200, seed=2)))

    const = lambda n: jnp.zeros((n,), jnp.uint32)
    for keys in (lambda k, n: (const(n), real_keys(k, n)[1]),    # only the low word is random
                 lambda k, n: (real_keys(k, n)[0], const(n))):   # only the high word is random
        counts = law(keys)
        assert len(counts) == 6 and _chi2_uniform(list(counts.values())) > 1e-3
    # (hi, lo) sorted lexicographically, hi first; equal keys fall back to index order
    assert law(lambda k, n: (jnp.array([1, 0, 0], jnp.uint32), jnp.array([0, 2, 1], jnp.uint32))) == {(2, 1, 0): 1200}
    assert law(lambda k, n: (const(n), const(n))) == {(0, 1, 2): 1200}
