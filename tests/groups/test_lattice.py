"""p4m on the torus: axioms of every action, enumeration, geometric meaning of bond channels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

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
