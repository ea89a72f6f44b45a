"""Graph <-> RDKit conversion and DiGress's molecule metrics (validity, relaxed validity,
uniqueness, novelty)."""

import json

import numpy as np
import pytest

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402

from experiments.digress_qm9 import molecules as M  # noqa: E402

C, N, O, F = range(4)


def _canonical(smiles):
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def _graph(atoms, bonds):
    """A graph from atom classes and ``{(i, j): class}`` bonds."""
    n = len(atoms)
    e = np.zeros((n, n), np.int64)
    for (i, j), b in bonds.items():
        e[i, j] = e[j, i] = b
    return np.array(atoms), e


def test_smiles_to_graph_is_kekulized_and_drops_charges():
    atoms, bonds = M.smiles_to_graph("c1ccccc1O")
    assert atoms.dtype == np.int8 and bonds.dtype == np.int8
    np.testing.assert_array_equal(atoms, [C] * 6 + [O])
    assert np.array_equal(bonds, bonds.T) and not bonds.diagonal().any()
    upper = bonds[np.triu_indices(7, 1)]
    assert sorted(upper[upper > 0].tolist()) == [1, 1, 1, 1, 2, 2, 2]  # 3 double, no aromatic
    atoms, bonds = M.smiles_to_graph("C[N+](=O)[O-]")  # charges dropped, element kept
    np.testing.assert_array_equal(atoms, [C, N, O, O])
    assert bonds[1].tolist() == [1, 0, 2, 1]


@pytest.mark.parametrize("smiles, reason", [
    ("C1CC", "invalid_smiles"),
    ("not a smiles", "invalid_smiles"),
    ("C(C)(C)(C)(C)C", "invalid_smiles"),  # pentavalent carbon fails sanitization
    ("", "empty"),
    ("CCl", "atom_type"),
    ("c1ccsc1", "atom_type"),
    ("[H][H]", "atom_type"),
    ("CCCCCCCCCC", "too_many_atoms"),
])
def test_smiles_outside_the_domain_raise_with_a_reason(smiles, reason):
    with pytest.raises(M.MoleculeError) as info:
        M.smiles_to_graph(smiles)
    assert info.value.reason == reason and isinstance(info.value, ValueError)
    assert M.smiles_to_graph("CCCCCCCCCC", max_atoms=10)[0].shape == (10,)


@pytest.mark.parametrize("smiles", ["C", "CC#N", "c1ccccc1O", "O=C1C=CC(=O)N1", "FC(F)(F)C#C", "C1CC2CC12"])
def test_build_molecule_round_trips_neutral_smiles(smiles):
    atoms, bonds = M.smiles_to_graph(smiles)
    assert M.mol_to_smiles(M.build_molecule(atoms, bonds)) == _canonical(smiles)
    assert M.graph_smiles(atoms, bonds) == _canonical(smiles)


def test_input_forms_padding_and_upper_triangle():
    atoms, bonds = M.smiles_to_graph("CC=O")
    x = np.full(5, -1)
    x[:3] = atoms
    e = np.zeros((5, 5), np.int64)
    e[:3, :3] = bonds
    onehot_x = (x[:, None] == np.arange(4)).astype(np.float32)  # padded rows all-zero
    onehot_e = (e[..., None] == np.arange(5)).astype(np.float32)
    mask = np.array([True, True, True, False, False])
    expected = "CC=O"
    for args in [(x, e), (onehot_x, onehot_e), (onehot_x, e, mask), (np.maximum(x, 0), onehot_e, mask)]:
        assert M.mol_to_smiles(M.build_molecule(*args)) == expected
    lower_garbage = np.tril(np.full((3, 3), 3), -1) + np.triu(bonds, 1)
    assert M.mol_to_smiles(M.build_molecule(atoms, lower_garbage)) == expected  # only i < j read
    with pytest.raises(ValueError, match="atom classes"):
        M.build_molecule(np.array([0, 4]), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="bond classes"):
        M.build_molecule(np.array([0, 0]), np.array([[0, 5], [5, 0]]))
    with pytest.raises(ValueError, match="to match"):
        M.build_molecule(np.array([0, 0]), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="integer dtype"):
        M.build_molecule(np.array([0.0, 1.0]), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="mask"):
        M.build_molecule(x, e, mask.astype(int))


def test_partial_charges_follow_the_reference_rule():
    co = _graph([C, O], {(0, 1): 3})  # C#O: O has valence 3
    assert M.mol_to_smiles(M.build_molecule(*co)) is None
    assert M.graph_smiles(*co) == "C#[O+]"
    quaternary = _graph([N, C, C, C, C], {(0, 1): 1, (0, 2): 1, (0, 3): 1, (0, 4): 1})
    assert M.graph_smiles(*quaternary) == "C[N+](C)(C)C"
    nitro = M.smiles_to_graph("C[N+](=O)[O-]")  # the reference's train SMILES of a nitro group
    assert M.graph_smiles(*nitro) == "C[N+](=O)O"
    n5 = _graph([N, O, O], {(0, 1): 2, (0, 2): 3})  # N valence 5: exceeds by 2, no charge
    assert M.graph_smiles(*n5) is None
    c5 = _graph([C] * 6, {(0, k): 1 for k in range(1, 6)})  # carbon is never charged
    assert M.graph_smiles(*c5) is None
    fluorine = _graph([F, C, C], {(0, 1): 1, (0, 2): 1})
    assert M.graph_smiles(*fluorine) is None


def test_validity_keeps_largest_fragment_and_counts_components():
    graphs = [_graph([C, C, O], {(0, 1): 1}), _graph([C, O], {(0, 1): 3})]
    smiles, fraction, components = M.validity(graphs)
    assert smiles == ["CC", None] and fraction == 0.5
    np.testing.assert_array_equal(components, [2])  # only graphs whose fragments sanitize
    relaxed, relaxed_fraction = M.relaxed_validity(graphs)
    assert relaxed == ["CC", "C#[O+]"] and relaxed_fraction == 1.0


def test_evaluate_matches_hand_counts():
    ethane = _graph([C, C], {(0, 1): 1})
    graphs = [
        ethane,
        ethane,
        _graph([C, O], {(0, 1): 3}),          # relaxed-valid only
        _graph([C, C, O], {(0, 1): 1, (1, 2): 1}),
        _graph([C] * 6, {(0, k): 1 for k in range(1, 6)}),  # invalid either way
    ]
    result = M.evaluate(graphs, train_smiles=["CC", "CCC"])
    assert result.validity == 3 / 5 and result.relaxed_validity == 4 / 5
    assert result.relaxed_smiles == ["CC", "CC", "C#[O+]", "CCO"]
    assert result.uniqueness == 3 / 4 and result.unique_smiles == sorted({"CC", "C#[O+]", "CCO"})
    assert result.novelty == 2 / 3  # C#[O+] and CCO are not in train
    assert result.valid_connected == 3 / 5
    assert result.smiles == ["CC", "CC", None, "CCO", None]
    scalars = result.scalars()
    json.dumps(scalars)
    assert scalars["num_graphs"] == 5 and scalars["num_components_max"] == 1
    assert M.evaluate(graphs).novelty is None
    nothing = M.evaluate([graphs[-1]], train_smiles=["CC"])
    assert nothing.relaxed_validity == 0 and nothing.uniqueness == 0 and nothing.novelty is None
    with pytest.raises(ValueError, match="no graphs"):
        M.evaluate([])


def test_graphs_from_dense_batch():
    X = np.array([[C, C, -1], [C, O, -1]])
    E = np.zeros((2, 3, 3), np.int64)
    E[0, 0, 1] = E[0, 1, 0] = 1
    E[1, 0, 1] = E[1, 1, 0] = 2
    graphs = M.graphs_from_dense(X, E)
    assert [g[0].tolist() for g in graphs] == [[C, C], [C, O]]
    assert M.evaluate(graphs).relaxed_smiles == ["CC", "C=O"]
    with pytest.raises(ValueError, match="mask"):
        M.graphs_from_dense(X, E, np.ones((2, 2), bool))


def _empty():
    return np.zeros(0, np.int64), np.zeros((0, 0), np.int64)


def test_empty_graphs_are_invalid_and_never_unique():
    """Bug: an empty or all-padding graph sanitized to SMILES '' and counted as valid and unique."""
    ethane = _graph([C, C], {(0, 1): 1})
    padded = M.graphs_from_dense(np.full((1, 3), -1), np.zeros((1, 3, 3), np.int64))[0]
    masked = M.as_graph(np.array([C, C]), np.zeros((2, 2), np.int64), np.zeros(2, bool))
    assert padded[0].size == 0 and masked[0].size == 0
    result = M.evaluate([ethane, _empty(), padded, masked], train_smiles=["CCC"])
    assert result.smiles == ["CC", None, None, None]
    assert result.validity == 1 / 4 and result.relaxed_validity == 1 / 4 and result.valid_connected == 1 / 4
    assert result.relaxed_smiles == ["CC"] and result.uniqueness == 1.0 and result.novelty == 1.0
    np.testing.assert_array_equal(result.num_components, [1])
    assert M.validity([_empty()])[:2] == ([None], 0.0)
    assert M.relaxed_validity([_empty()]) == ([], 0.0)
    assert M.graph_smiles(*_empty()) is None and M.mol_to_smiles(Chem.RWMol()) is None


def test_nan_inputs_raise_and_name_how_many_graphs():
    """Bug: NaN one-hot rows (a diverged sampler) were argmax-decoded to carbon, a valid molecule."""
    x = np.zeros((3, 2, 4), np.float32)
    x[:, :, C] = 1
    e = np.zeros((3, 2, 2, 4), np.float32)
    e[..., 0] = 1
    x[1, 0] = np.nan
    e[2, 0, 1] = np.nan
    with pytest.raises(ValueError, match=r"2 of 3 graphs cannot be decoded \(graphs \[1, 2\]\).*NaN"):
        M.graphs_from_dense(x, e)
    with pytest.raises(ValueError, match="2 of 3 graphs.*NaN"):
        M.evaluate([(x[k], e[k]) for k in range(3)])
    with pytest.raises(ValueError, match="atom_types has 4 NaN or inf"):
        M.build_molecule(x[1], e[1])
    x[1, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        M.as_graph(x[1], e[1])
    x[1, 0] = [-1, 0, 0, 0]   # argmax would read N
    with pytest.raises(ValueError, match="negative entries"):
        M.as_graph(x[1], e[1])
    assert M.evaluate([(x[0], e[0])]).smiles == ["C"]  # the clean graph: two carbons, largest fragment C


def test_negative_atom_classes_other_than_padding_raise():
    """Bug: any negative atom class (e.g. -2) was silently taken as padding, not just -1."""
    bonds = np.zeros((3, 3), np.int64)
    with pytest.raises(ValueError, match=r"padding value -1, got \[-2\]"):
        M.as_graph(np.array([C, -2, C]), bonds)
    with pytest.raises(ValueError, match="1 of 2 graphs.*padding value -1"):
        M.graphs_from_dense(np.array([[C, -1, -1], [C, -7, C]]), np.zeros((2, 3, 3), np.int64))
    with pytest.raises(ValueError, match="padding value"):  # also under an explicit mask
        M.as_graph(np.array([C, -2, C]), bonds, np.array([True, False, True]))
    with pytest.raises(ValueError, match="1 of 1 graphs.*on real nodes"):  # a poisoned (-1) sample
        M.graphs_from_dense(np.array([[C, -1]]), np.zeros((1, 2, 2), np.int64), np.ones((1, 2), bool))
    assert M.as_graph(np.array([C, -1, O]), bonds)[0].tolist() == [C, O]
