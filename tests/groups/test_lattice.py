"""p4m on the torus: axioms of every action, enumeration, geometric meaning of bond channels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sympe_jax import checks
from sympe_jax.groups import lattice as P

SETTINGS = settings(deadline=None, max_examples=12)


@SETTINGS
@given(L=st.integers(1, 7), seed=st.integers(0, 2**31 - 1), c=st.integers(1, 3))
def test_axioms_every_action(L, seed, c):
    rng = np.random.default_rng(seed)
    g, h = (P.element_from_index(int(rng.integers(P.order(L))), L) for _ in range(2))
    fields = {
        P.act_on_field: jnp.asarray(rng.normal(size=(L, L, c)), jnp.float32),
        P.act_on_lifted: jnp.asarray(rng.normal(size=(8, L, L, c)), jnp.float32),
        P.act_on_bonds: jnp.asarray(rng.normal(size=(L, L, 4)), jnp.float32),
    }
    gh = P.compose(g, h, L)
    for act, x in fields.items():
        np.testing.assert_array_equal(act(P.identity(), x), x)
        np.testing.assert_array_equal(act(gh, x), act(g, act(h, x)))
        np.testing.assert_array_equal(act(P.inverse(g, L), act(g, x)), x)
    np.testing.assert_array_equal(P.compose(g, P.inverse(g, L), L), P.identity())


def test_d4_is_a_group_and_enumeration_is_complete():
    table = P.D4_TABLE
    assert all(sorted(row) == list(range(8)) for row in table)  # Latin square
    assert np.all(table[np.arange(8), P.D4_INVERSE] == 0)
    for L in (1, 3, 4):
        els = np.asarray(P.elements(L))
        assert els.shape == (8 * L * L, 3) and len(np.unique(els, axis=0)) == 8 * L * L
        np.testing.assert_array_equal(P.index_of_element(els, L), np.arange(8 * L * L))
        # closure: products stay in the set
        prods = np.asarray(P.compose(els[:, None], els[None, :7], L)).reshape(-1, 3)
        assert set(map(tuple, prods)) <= set(map(tuple, els))


def test_site_field_moves_points_as_stated():
    L = 5
    f = jnp.arange(L * L, dtype=jnp.float32).reshape(L, L, 1)
    for g in P.elements(L)[::7]:
        moved = P.act_on_field(g, f)
        for s in [(0, 0), (1, 2), (4, 3)]:
            gs = tuple(np.asarray(P.act_on_sites(g, jnp.array(s), L)))
            assert moved[gs] == f[s]  # value at s travels to g s


def test_bond_channels_rotate_with_directions():
    L = 4
    bonds = jnp.zeros((L, L, 4)).at[1, 2, 0].set(1.0)  # one bond from (1,2) to the right
    rot = jnp.array([1, 0, 0])  # +90 degrees about the origin: right -> up
    moved = P.act_on_bonds(rot, bonds)
    site = tuple(np.asarray(P.act_on_sites(rot, jnp.array([1, 2]), L)))
    assert moved[site + (1,)] == 1.0 and float(moved.sum()) == 1.0
    flip = jnp.array([4, 0, 0])  # y -> -y: up <-> down, right stays
    bonds_up = jnp.zeros((L, L, 4)).at[0, 0, 1].set(1.0)
    assert P.act_on_bonds(flip, bonds_up)[0, 0, 3] == 1.0
    np.testing.assert_array_equal(P.act_on_bonds(flip, bonds)[1, L - 2, 0], 1.0)


def test_jit_and_vmap_match_eager():
    L = 4
    f = jax.random.normal(jax.random.key(0), (L, L, 2))
    els = P.elements(L)
    batched = jax.jit(jax.vmap(P.act_on_field, in_axes=(0, None)))(els, f)
    for i in (0, 17, 100):
        np.testing.assert_array_equal(batched[i], P.act_on_field(els[i], f))


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        P.act_on_field(jnp.array([0, 0]), jnp.ones((3, 3, 1)))
    with pytest.raises(ValueError, match="square"):
        P.act_on_field(P.identity(), jnp.ones((3, 4, 1)))
    with pytest.raises(ValueError, match="lifted"):
        P.act_on_lifted(P.identity(), jnp.ones((4, 3, 3, 1)))
    with pytest.raises(ValueError, match="bond"):
        P.act_on_bonds(P.identity(), jnp.ones((3, 3, 5)))


# ----------------------------------------------------------------------------- the documented D4 convention


def test_d4_matrices_are_the_documented_r_k_f_f():
    """Bug: reflections built as F R^k instead of R^k F (elements 5 and 7 swapped) keep the group axioms."""
    expected = np.array([
        [[1, 0], [0, 1]],     # d = 0: identity
        [[0, -1], [1, 0]],    # d = 1: R, +90 degrees
        [[-1, 0], [0, -1]],   # d = 2: R^2
        [[0, 1], [-1, 0]],    # d = 3: R^3
        [[1, 0], [0, -1]],    # d = 4: F, y -> -y
        [[0, 1], [1, 0]],     # d = 5: R F, x <-> y
        [[-1, 0], [0, 1]],    # d = 6: R^2 F, x -> -x
        [[0, -1], [-1, 0]],   # d = 7: R^3 F, (x, y) -> (-y, -x)
    ])
    np.testing.assert_array_equal(P.D4_MATRICES, expected)
    # D4_DIRECTION_PERM[d, k]: the direction M_d e_k, directions 0: +x, 1: +y, 2: -x, 3: -y
    np.testing.assert_array_equal(P.D4_DIRECTION_PERM[[0, 1, 4, 5, 7]],
                                  [[0, 1, 2, 3], [1, 2, 3, 0], [0, 3, 2, 1], [1, 0, 3, 2], [3, 2, 1, 0]])
    # and the element moves a site by that matrix: d = 5 swaps the coordinates
    np.testing.assert_array_equal(P.act_on_sites(jnp.array([5, 0, 0]), jnp.array([1, 2]), 5), [2, 1])


# ----------------------------------------------------------------------------- validation

L_BAD = 3
BAD_D = [8, 100, -1]


def _actions(g):
    """Every public function of one element g, on small fixed inputs (L = 3)."""
    rng = np.random.default_rng(0)
    return {
        "act_on_sites": lambda: P.act_on_sites(g, jnp.array([[0, 1], [2, 2]]), L_BAD),
        "act_on_field": lambda: P.act_on_field(g, jnp.asarray(rng.normal(size=(L_BAD, L_BAD, 2)), jnp.float32)),
        "act_on_field_int": lambda: P.act_on_field(g, jnp.arange(L_BAD * L_BAD).reshape(L_BAD, L_BAD)),
        "act_on_lifted": lambda: P.act_on_lifted(g, jnp.ones((8, L_BAD, L_BAD, 1))),
        "act_on_bonds": lambda: P.act_on_bonds(g, jnp.ones((L_BAD, L_BAD, 4))),
        "compose_g": lambda: P.compose(g, P.identity(), L_BAD),
        "compose_h": lambda: P.compose(jnp.array([5, 1, 2]), g, L_BAD),
        "inverse": lambda: P.inverse(g, L_BAD),
        "index_of_element": lambda: P.index_of_element(g, L_BAD),
    }


@pytest.mark.parametrize("d", BAD_D)
def test_d_out_of_range_raises_eagerly(d):
    """Bug: d = 8, 100 or -1 acted as d = 7 (clamped or wrapped table lookups)."""
    for name, fn in _actions(jnp.array([d, 1, 0])).items():
        with pytest.raises(ValueError, match=rf"d must be in 0\.\.7.*got d = {d}"):
            fn()


def test_invalid_elements_poison_every_output_under_jit():
    """Bug: under jit an invalid element (or the poison [-1, -1, -1]) gave a finite, valid-looking answer."""
    jitted = {name: jax.jit(lambda g, name=name: _actions(g)[name]()) for name in _actions(P.identity())}
    for g in [[d, 1, 0] for d in BAD_D] + [[-1, -1, -1]]:
        for name, fn in jitted.items():
            out = np.asarray(fn(jnp.array(g)))
            if jnp.issubdtype(out.dtype, jnp.floating):
                assert np.isnan(out).all(), (g, name)
            else:
                assert (out == -1).all(), (g, name, out)
    # valid elements are untouched, and only the invalid rows of a batch are poisoned
    np.testing.assert_array_equal(jitted["act_on_field_int"](jnp.array([1, 1, 0])),
                                  _actions(jnp.array([1, 1, 0]))["act_on_field_int"]())
    batch = jnp.array([[1, 2, 0], [9, 0, 0], [4, 0, 1]])
    out = jax.jit(P.compose, static_argnums=2)(batch, batch, L_BAD)
    np.testing.assert_array_equal(out[1], [-1, -1, -1])
    good = jnp.array([0, 2])
    np.testing.assert_array_equal(out[good], P.compose(batch[good], batch[good], L_BAD))
    f = jnp.ones((L_BAD, L_BAD, 1))
    rows = jax.vmap(P.act_on_field, in_axes=(0, None))(jnp.array([[1, 0, 0], [8, 0, 0]]), f)  # eager vmap traces too
    assert np.isfinite(rows[0]).all() and np.isnan(rows[1]).all()
    with pytest.raises(ValueError, match="d must be in 0..7"):
        checks.checked(jitted["act_on_field"])(jnp.array([8, 0, 0]))


def test_element_from_index_out_of_range():
    """Bug: index 8 L^2 gave [8, 0, 0] and index -1 (argmax over invalid scores) the valid reflection [-1 -> 7, L-1, L-1]."""
    L = L_BAD
    for index in (8 * L * L, -1, 10**6):
        with pytest.raises(ValueError, match=rf"index out of range 0\.\.{8 * L * L - 1}.*got {index}"):
            P.element_from_index(index, L)
    from_index = jax.jit(P.element_from_index, static_argnums=1)
    for index in (8 * L * L, -1):
        np.testing.assert_array_equal(from_index(index, L), [-1, -1, -1])
    np.testing.assert_array_equal(from_index(jnp.array([5, -1, 71]), L), [[0, 1, 2], [-1, -1, -1], [7, 2, 2]])
    # the poisoned element poisons the encoding it is applied to: NaN reaches the loss
    v = jax.random.normal(jax.random.key(0), (L, L, 2))
    encode = jax.jit(lambda i: P.act_on_field(P.element_from_index(i, L), v))
    assert np.isnan(encode(-1)).all()
    assert np.isnan(jax.jit(lambda i: P.act_on_lifted(P.element_from_index(i, L), jnp.ones((8, L, L))))(-1)).all()
    assert np.isfinite(encode(37)).all()


def test_float_elements_indices_and_sizes_are_type_errors():
    """Bug: float elements and indices were truncated to int ([1.7, 0, 0] acted as [1, 0, 0]); L = 0 was accepted."""
    f = jnp.ones((L_BAD, L_BAD, 1))
    for fn in (lambda: P.act_on_field(jnp.array([1.7, 0.0, 0.0]), f),
               lambda: P.compose(jnp.array([1.0, 0.0, 0.0]), P.identity(), L_BAD),
               lambda: P.index_of_element([1.0, 0.0, 0.0], L_BAD),
               lambda: P.act_on_sites(P.identity(), jnp.array([0.5, 1.0]), L_BAD)):
        with pytest.raises(TypeError, match="integer dtype"):
            fn()
    with pytest.raises(TypeError, match="index must have an integer dtype"):
        P.element_from_index(3.0, L_BAD)
    for L in (0, -2):
        with pytest.raises(ValueError, match="L .* must be >= 1"):
            P.element_from_index(0, L)
    for L in (2.0, True, jnp.array(2)):
        with pytest.raises(TypeError, match="L .* must be a Python int"):
            P.order(L)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):  # a batch where one element is expected
        P.act_on_field(jnp.zeros((3, 3), jnp.int32), f)


def test_translations_are_taken_mod_L():
    """Bug: index_of_element did not reduce translations, so [0, L + 1, -1] (= [0, 1, L - 1]) got a foreign index."""
    L = 4
    g, canonical = jnp.array([2, L + 1, -1]), jnp.array([2, 1, L - 1])
    assert int(P.index_of_element(g, L)) == int(P.index_of_element(canonical, L)) == 2 * L * L + L + L - 1
    f = jax.random.normal(jax.random.key(1), (L, L, 4))
    for act in (P.act_on_field, P.act_on_bonds):
        np.testing.assert_array_equal(act(g, f), act(canonical, f))
    np.testing.assert_array_equal(P.compose(g, P.identity(), L), canonical)


def test_actions_accept_array_likes():
    """Bug: act_on_bonds called .ndim on its input, so a nested list raised AttributeError."""
    L = 3
    bonds = np.random.default_rng(0).normal(size=(L, L, 4)).astype(np.float32)
    g = [5, 1, 2]
    np.testing.assert_array_equal(P.act_on_bonds(g, bonds.tolist()), P.act_on_bonds(jnp.array(g), jnp.asarray(bonds)))
    np.testing.assert_array_equal(P.act_on_field(g, bonds.tolist()), P.act_on_field(jnp.array(g), bonds))
    np.testing.assert_array_equal(P.act_on_lifted(g, np.ones((8, L, L)).tolist()), np.ones((8, L, L)))
    np.testing.assert_array_equal(P.act_on_sites(g, [[0, 0]], L), [[1, 2]])
