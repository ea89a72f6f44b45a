"""Heavy-atom molecular graphs <-> RDKit molecules, and DiGress's molecule metrics.

A molecule is a graph of heavy atoms (hydrogens implicit), in the representation of DiGress
(Vignac et al., ICLR 2023, arXiv 2209.14734; github cvignac/DiGress) for QM9 without H:

* atom classes ``C=0, N=1, O=2, F=3`` (:data:`ATOM_DECODER`);
* bond classes ``0`` no bond, ``1`` single, ``2`` double, ``3`` triple (:data:`BOND_DECODER`).
  Class ``4`` (aromatic) is *accepted* by the builders, as in the reference, for models that
  keep DiGress's 5th edge class; QM9 graphs made by :func:`smiles_to_graph` never contain it
  (they are kekulized).

A graph is given either as integer classes (``atom_types int[n]``, ``bond_types int[n, n]``)
or as one-hot / probability rows (``float[n, 4]``, ``float[n, n, K]``; the argmax is taken),
optionally padded: padded nodes are those where ``mask`` is False, or, without a mask, atoms of
class ``-1`` (integer form) or all-zero rows (one-hot form). Only the strict upper triangle of
the bond matrix is read (``i < j``), as in the reference. Anything else raises ``ValueError``
instead of decoding to some molecule: an integer atom class below ``-1``, a class out of range
on a real node, a NaN, inf or negative one-hot entry. NaN is an error, not an invalid molecule:
it means the jitted sampler diverged, and counting such graphs as invalid would report a poor
validity for a broken run instead of stopping it. The metrics decode every graph before
counting anything and name how many cannot be decoded.

Metrics (reference: ``src/analysis/rdkit_functions.py``), for a list of generated graphs:

* **validity** (:func:`validity`): fraction of graphs whose :func:`build_molecule` (no formal
  charges) passes ``Chem.SanitizeMol``. Disconnected molecules count as valid; the SMILES kept
  for a valid molecule is its largest fragment's. An empty graph (no real node) is not a
  molecule: it is invalid under every metric (RDKit would sanitize it to the SMILES ``''``).
* **relaxed validity** (:func:`relaxed_validity`): the same with
  :func:`build_molecule_with_partial_charges` (an N, O or S atom whose valence exceeds the
  allowed one by exactly 1 right after a bond is added gets a +1 formal charge).
* **uniqueness** (:func:`uniqueness`): ``len(set(s)) / len(s)`` over the *relaxed*-valid
  SMILES list.
* **novelty** (:func:`novelty`): fraction of the unique relaxed-valid SMILES that are not in
  the training SMILES (exact string match). The training SMILES must be made the reference's
  way, :func:`graph_smiles` of each training graph (partial charges, whole molecule), with the
  same RDKit build as the generated ones: canonical SMILES change between RDKit versions.

:func:`evaluate` computes all of them at once (:class:`MoleculeMetrics`). RDKit's own error
log lines are silenced during all of this (the reference calls ``RDLogger.DisableLog``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Sequence

import numpy as np

try:
    from rdkit import Chem, rdBase
except ModuleNotFoundError as e:  # pragma: no cover - exercised only without rdkit
    raise ImportError("experiments.digress_qm9.molecules needs RDKit: pip install rdkit") from e

__all__ = [
    "ATOM_DECODER",
    "ATOM_ENCODER",
    "ATOM_VALENCIES",
    "ATOM_WEIGHTS",
    "BOND_DECODER",
    "MAX_HEAVY_ATOMS",
    "MoleculeError",
    "smiles_to_graph",
    "mol_to_graph",
    "as_graph",
    "graphs_from_dense",
    "build_molecule",
    "build_molecule_with_partial_charges",
    "mol_to_smiles",
    "graph_smiles",
    "validity",
    "relaxed_validity",
    "uniqueness",
    "novelty",
    "MoleculeMetrics",
    "evaluate",
]

ATOM_DECODER: tuple[str, ...] = ("C", "N", "O", "F")
"""Atom class -> element symbol (DiGress ``atom_decoder`` for QM9 without H)."""
ATOM_ENCODER: dict[str, int] = {s: i for i, s in enumerate(ATOM_DECODER)}
ATOM_VALENCIES: tuple[int, ...] = (4, 3, 2, 1)
"""Usual valence per atom class (DiGress ``valencies``)."""
ATOM_WEIGHTS: tuple[int, ...] = (12, 14, 16, 19)
"""Integer atomic weight per atom class (DiGress ``atom_weights``)."""
MAX_HEAVY_ATOMS = 9
"""Largest QM9 molecule, in heavy atoms."""

BOND_DECODER = (
    None,
    Chem.BondType.SINGLE,
    Chem.BondType.DOUBLE,
    Chem.BondType.TRIPLE,
    Chem.BondType.AROMATIC,
)
"""Bond class -> RDKit bond type (class 0 is no bond; 4, aromatic, never occurs in QM9)."""
_BOND_ENCODER = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
_PAD = -1  # the atom class of a padded node (integer form)

# Reference ``ATOM_VALENCY`` for the partial-charge rule, restricted to the elements it charges.
_CHARGEABLE_VALENCY = {7: 3, 8: 2, 16: 2}


class MoleculeError(ValueError):
    """A SMILES or molecule outside the supported domain; ``reason`` says why.

    Reasons: ``"invalid_smiles"`` (RDKit cannot parse or sanitize it), ``"empty"`` (no atoms),
    ``"atom_type"`` (an element other than C, N, O, F, or any H left as an explicit atom),
    ``"too_many_atoms"`` (more than ``max_atoms`` heavy atoms), ``"bond_type"`` (a bond
    other than single/double/triple after kekulization).
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# ----------------------------------------------------------------------------- SMILES -> graph


def smiles_to_graph(smiles: str, max_atoms: int = MAX_HEAVY_ATOMS) -> tuple[np.ndarray, np.ndarray]:
    """A SMILES string as a kekulized heavy-atom graph.

    ``Chem.MolFromSmiles`` (sanitize, hydrogens made implicit), then ``Chem.Kekulize`` with
    aromatic flags cleared. Formal charges are dropped (the atom class is the element only),
    as the reference does when it reads the QM9 SDF. Atom order is RDKit's parse order.

    Args:
      smiles: a SMILES string.
      max_atoms: the largest number of heavy atoms accepted.
    Returns:
      ``(atom_types int8[n], bond_types int8[n, n])``: classes of :data:`ATOM_DECODER` and
      0..3, ``bond_types`` symmetric with zero diagonal.
    Raises:
      MoleculeError: (a ``ValueError``) with a ``reason`` when the SMILES is outside the domain.
    """
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) else None
        if mol is None:
            raise MoleculeError("invalid_smiles", f"RDKit cannot parse SMILES {smiles!r}")
        try:
            Chem.Kekulize(mol, clearAromaticFlags=True)
        except ValueError as e:  # cannot happen after a successful sanitization; be safe
            raise MoleculeError("invalid_smiles", f"cannot kekulize {smiles!r}: {e}") from e
    return mol_to_graph(mol, max_atoms=max_atoms, name=smiles)


def mol_to_graph(mol, max_atoms: int = MAX_HEAVY_ATOMS, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A kekulized RDKit molecule (hydrogens implicit) as ``(atom_types, bond_types)``.

    See :func:`smiles_to_graph`; ``name`` only labels error messages.
    """
    label = name if name is not None else "molecule"
    n = mol.GetNumAtoms()
    if n == 0:
        raise MoleculeError("empty", f"{label!r} has no atoms")
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    unknown = sorted(set(symbols) - set(ATOM_ENCODER))
    if unknown:
        raise MoleculeError("atom_type", f"{label!r} has atoms {unknown} outside {list(ATOM_DECODER)}")
    if n > max_atoms:
        raise MoleculeError("too_many_atoms", f"{label!r} has {n} heavy atoms > {max_atoms}")
    atom_types = np.array([ATOM_ENCODER[s] for s in symbols], np.int8)
    bond_types = np.zeros((n, n), np.int8)
    for bond in mol.GetBonds():
        cls = _BOND_ENCODER.get(bond.GetBondType())
        if cls is None:
            raise MoleculeError("bond_type", f"{label!r} has a bond of type {bond.GetBondType()}")
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        bond_types[i, j] = bond_types[j, i] = cls
    return atom_types, bond_types


# ----------------------------------------------------------------------------- input forms


def as_graph(atom_types, bond_types, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """One graph in any accepted form as unpadded integer classes.

    Args:
      atom_types: ``int[n]`` classes (``-1`` = padding) or ``float[n, A]`` one-hot/probabilities
        (argmax; all-zero rows = padding).
      bond_types: ``int[n, n]`` classes 0..4 or ``float[n, n, K]`` one-hot/probabilities (argmax).
      mask: optional ``bool[n]``, True on real nodes; overrides the padding rule above.
    Returns:
      ``(atom_types int64[k], bond_types int64[k, k])`` over the ``k`` real nodes, in order
      (``k = 0`` for an all-padding graph).
    Raises:
      ValueError: on inconsistent shapes, NaN, inf or negative one-hot entries, integer atom
        classes below ``-1`` (anywhere), or classes out of range on real nodes.
    """
    x = np.asarray(atom_types)
    e = np.asarray(bond_types)
    _check_probabilities(x, "atom_types")
    _check_probabilities(e, "bond_types")
    if x.ndim == 2:
        inferred = np.any(x != 0, axis=-1)
        x = np.argmax(x, axis=-1)
    elif x.ndim == 1:
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"integer atom_types must have an integer dtype, got {x.dtype}")
        if x.size and x.min() < _PAD:
            raise ValueError(f"atom classes must be 0..{len(ATOM_DECODER) - 1} or the padding value {_PAD}, "
                             f"got {np.unique(x[x < _PAD])}")
        inferred = x != _PAD
    else:
        raise ValueError(f"atom_types must be [n] classes or [n, A] one-hot, got shape {x.shape}")
    n = x.shape[0]
    if e.ndim == 3:
        e = np.argmax(e, axis=-1)
    elif e.ndim == 2:
        if not np.issubdtype(e.dtype, np.integer):
            raise ValueError(f"integer bond_types must have an integer dtype, got {e.dtype}")
    else:
        raise ValueError(f"bond_types must be [n, n] classes or [n, n, K] one-hot, got shape {e.shape}")
    if e.shape[:2] != (n, n):
        raise ValueError(f"bond_types must be [{n}, {n}] to match atom_types, got shape {e.shape}")
    if mask is None:
        mask = inferred
    else:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise ValueError(f"mask must be bool[{n}], got {mask.dtype}{list(mask.shape)}")
    x = x[mask].astype(np.int64)
    e = e[np.ix_(mask, mask)].astype(np.int64)
    if x.size and (x.min() < 0 or x.max() >= len(ATOM_DECODER)):
        raise ValueError(f"atom classes must be in 0..{len(ATOM_DECODER) - 1} on real nodes, got {np.unique(x)}")
    if e.size and (e.min() < 0 or e.max() >= len(BOND_DECODER)):
        raise ValueError(f"bond classes must be in 0..{len(BOND_DECODER) - 1}, got {np.unique(e)}")
    return x, e


def _check_probabilities(a: np.ndarray, name: str) -> None:
    """ValueError unless a floating (one-hot/probability) array is finite and non-negative."""
    if not np.issubdtype(a.dtype, np.inexact):
        return
    bad = np.count_nonzero(~np.isfinite(a))
    if bad:
        raise ValueError(f"{name} has {bad} NaN or inf entries of {a.size}: not a one-hot/probability "
                         f"graph (did the sampler diverge?)")
    if a.size and a.min() < 0:
        raise ValueError(f"{name} has negative entries (min {a.min()}): not a one-hot/probability graph")


def _as_graphs(graphs: Sequence[tuple]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each ``(atom_types, bond_types[, mask])`` through :func:`as_graph`.

    Raises:
      ValueError: naming how many graphs cannot be decoded, which, and the first one's reason.
    """
    out, failed = [], {}
    for k, graph in enumerate(graphs):
        try:
            out.append(as_graph(*graph))
        except ValueError as err:
            failed[k] = err
    if failed:
        first, err = next(iter(failed.items()))
        shown = list(failed)[:10]
        raise ValueError(f"{len(failed)} of {len(graphs)} graphs cannot be decoded (graphs {shown}"
                         f"{' ...' if len(failed) > len(shown) else ''}); graph {first}: {err}")
    return out


def graphs_from_dense(X, E, mask=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """A padded batch as a list of unpadded ``(atom_types, bond_types)`` graphs.

    Args:
      X: ``int[m, n]`` atom classes (``-1`` padding) or ``float[m, n, A]`` one-hot.
      E: ``int[m, n, n]`` bond classes or ``float[m, n, n, K]`` one-hot.
      mask: optional ``bool[m, n]`` node mask.
    Returns:
      ``m`` pairs as returned by :func:`as_graph`.
    Raises:
      ValueError: as :func:`as_graph`, naming how many graphs fail (e.g. how many have NaN).
    """
    X, E = np.asarray(X), np.asarray(E)
    if X.ndim not in (2, 3) or E.shape[:1] != X.shape[:1]:
        raise ValueError(f"X must be [m, n] or [m, n, A] and E [m, n, n(, K)] with the same m, "
                         f"got {X.shape} and {E.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != X.shape[:2]:
            raise ValueError(f"mask must have shape {X.shape[:2]}, got {mask.shape}")
    return _as_graphs([(X[k], E[k], None if mask is None else mask[k]) for k in range(X.shape[0])])


# ----------------------------------------------------------------------------- graph -> molecule


def _bonds_in_order(e: np.ndarray) -> Iterable[tuple[int, int, int]]:
    """Non-zero strict-upper-triangle entries in row-major order (the reference's bond order)."""
    i, j = np.nonzero(np.triu(e, k=1))
    return zip(i.tolist(), j.tolist(), e[i, j].tolist())


def build_molecule(atom_types, bond_types, mask=None):
    """The reference ``build_molecule``: one atom per node, one bond per upper-triangle entry.

    No formal charges, hydrogens implicit, not sanitized. Inputs as in :func:`as_graph`.

    Returns:
      an unsanitized ``Chem.RWMol``.
    """
    x, e = as_graph(atom_types, bond_types, mask)
    mol = Chem.RWMol()
    for a in x.tolist():
        mol.AddAtom(Chem.Atom(ATOM_DECODER[a]))
    for i, j, b in _bonds_in_order(e):
        mol.AddBond(i, j, BOND_DECODER[b])
    return mol


def _valence_error(mol) -> tuple[int, int] | None:
    """The reference ``check_valency``: None if valences are fine, else (atom index, valence).

    Parses RDKit's message ("Explicit valence for atom # 1 O, 3, is greater than permitted").
    Where the reference would fail its ``assert len(...) == 2`` on an unexpected message, this
    returns ``(-1, -1)``: no charge is added and the molecule is left as it is.
    """
    try:
        Chem.SanitizeMol(mol, sanitizeOps=Chem.SanitizeFlags.SANITIZE_PROPERTIES)
        return None
    except ValueError as err:
        text = str(err)
        numbers = [int(s) for s in re.findall(r"\d+", text[text.find("#"):])]
        return (numbers[0], numbers[1]) if len(numbers) == 2 else (-1, -1)


def build_molecule_with_partial_charges(atom_types, bond_types, mask=None):
    """The reference ``build_molecule_with_partial_charges``.

    As :func:`build_molecule`, but after each bond is added (row-major upper-triangle order)
    the valences are checked (``SanitizeMol`` with ``SANITIZE_PROPERTIES``); if RDKit reports
    an N, O or S atom whose explicit valence exceeds 3, 2, 2 by exactly one, that atom gets a
    +1 formal charge. Only the first atom RDKit reports is examined at each step.

    Returns:
      an unsanitized ``Chem.RWMol`` (its property cache may have been updated).
    """
    x, e = as_graph(atom_types, bond_types, mask)
    mol = Chem.RWMol()
    for a in x.tolist():
        mol.AddAtom(Chem.Atom(ATOM_DECODER[a]))
    with rdBase.BlockLogs():
        for i, j, b in _bonds_in_order(e):
            mol.AddBond(i, j, BOND_DECODER[b])
            bad = _valence_error(mol)
            if bad is None or bad[0] < 0:
                continue
            idx, valence = bad
            atom = mol.GetAtomWithIdx(idx)
            allowed = _CHARGEABLE_VALENCY.get(atom.GetAtomicNum())
            if allowed is not None and valence - allowed == 1:
                atom.SetFormalCharge(1)
    return mol


def mol_to_smiles(mol) -> str | None:
    """The reference ``mol2smiles``: sanitize ``mol`` in place, None if that fails, else SMILES.

    None as well for a molecule without atoms (RDKit sanitizes it to ``''``): it is not a molecule.
    """
    if mol.GetNumAtoms() == 0:
        return None
    with rdBase.BlockLogs():
        try:
            Chem.SanitizeMol(mol)
        except ValueError:
            return None
        return Chem.MolToSmiles(mol)


def graph_smiles(atom_types, bond_types, mask=None) -> str | None:
    """A graph's SMILES the way the reference makes its training SMILES (for novelty).

    :func:`build_molecule_with_partial_charges`, then :func:`mol_to_smiles` of the whole
    molecule (not the largest fragment); None if it does not sanitize.
    """
    return mol_to_smiles(build_molecule_with_partial_charges(atom_types, bond_types, mask))


def _largest_fragment_smiles(mol) -> str | None:
    """SMILES of the fragment with most atoms (the first such), as the reference; None on error."""
    with rdBase.BlockLogs():
        try:
            frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True)
        except ValueError:
            return None
    largest = max(frags, default=mol, key=lambda m: m.GetNumAtoms())
    return mol_to_smiles(largest)


# ----------------------------------------------------------------------------- metrics


Graph = tuple[np.ndarray, np.ndarray]


def validity(graphs: Sequence[Graph]) -> tuple[list[str | None], float, np.ndarray]:
    """The reference ``compute_validity``.

    A graph is valid when ``Chem.SanitizeMol`` succeeds on :func:`build_molecule` (no charges)
    and on its fragments; disconnected molecules count as valid, empty graphs do not.

    Args:
      graphs: ``(atom_types, bond_types)`` pairs in any form :func:`as_graph` accepts (no mask).
    Returns:
      ``(smiles, fraction_valid, num_components)``: per graph, the largest fragment's SMILES or
      None if invalid; the fraction valid; ``int[k]`` fragment counts of the ``k`` graphs whose
      fragments sanitize (as the reference logs them); empty graphs have none.
    Raises:
      ValueError: if ``graphs`` is empty, or naming how many graphs cannot be decoded
        (:func:`as_graph`), e.g. have NaN entries.
    """
    smiles, components = _strict_validity(graphs)
    num_valid = sum(s is not None for s in smiles)
    counts = np.asarray([c for c in components if c is not None], np.int64)
    return smiles, num_valid / len(graphs), counts


def _strict_validity(graphs: Sequence[Graph]) -> tuple[list[str | None], list[int | None]]:
    """Per graph: largest-fragment SMILES or None, and fragment count or None (see validity)."""
    smiles: list[str | None] = []
    components: list[int | None] = []
    for atoms, bonds in _metric_inputs(graphs):
        mol = build_molecule(atoms, bonds)
        whole = mol_to_smiles(mol)
        components.append(_fragment_count(mol))
        smiles.append(None if whole is None else _largest_fragment_smiles(mol))
    return smiles, components


def _fragment_count(mol) -> int | None:
    """Number of fragments of ``mol`` if they all sanitize, else None; None without atoms."""
    if mol.GetNumAtoms() == 0:
        return None
    with rdBase.BlockLogs():
        try:
            return len(Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True))
        except ValueError:
            return None


def relaxed_validity(graphs: Sequence[Graph]) -> tuple[list[str], float]:
    """The reference ``compute_relaxed_validity``.

    As :func:`validity` with :func:`build_molecule_with_partial_charges`.

    Returns:
      ``(relaxed_valid_smiles, fraction)``: the largest-fragment SMILES of the relaxed-valid
      graphs only (the list uniqueness and novelty are computed on), and their fraction.
    """
    valid = []
    for atoms, bonds in _metric_inputs(graphs):
        mol = build_molecule_with_partial_charges(atoms, bonds)
        if mol_to_smiles(mol) is not None:
            s = _largest_fragment_smiles(mol)
            if s is not None:
                valid.append(s)
    return valid, len(valid) / len(graphs)


def uniqueness(smiles: Sequence[str]) -> tuple[list[str], float]:
    """``(sorted unique SMILES, len(set(smiles)) / len(smiles))``; 0.0 for an empty list."""
    unique = sorted(set(smiles))
    return unique, (len(unique) / len(smiles) if len(smiles) else 0.0)


def novelty(unique_smiles: Sequence[str], train_smiles: Iterable[str]) -> tuple[list[str], float]:
    """``(novel, fraction)``: unique SMILES not in ``train_smiles`` (exact string match)."""
    train = set(train_smiles)
    novel = [s for s in unique_smiles if s not in train]
    return novel, (len(novel) / len(unique_smiles) if len(unique_smiles) else 0.0)


@dataclasses.dataclass(frozen=True, eq=False)
class MoleculeMetrics:
    """Everything :func:`evaluate` measures (fractions in [0, 1]).

    Attributes:
      validity: fraction of graphs valid without charges (:func:`validity`).
      relaxed_validity: fraction valid with partial charges (:func:`relaxed_validity`).
      uniqueness: unique fraction of the relaxed-valid SMILES; 0.0 if there are none.
      novelty: fraction of the unique relaxed-valid SMILES not in the training SMILES; None
        when no training SMILES were given or nothing is relaxed-valid (the reference logs -1).
      valid_connected: fraction of graphs valid (no charges) and made of one fragment.
      num_components: ``int[k]`` fragment counts (see :func:`validity`).
      smiles: per graph, its valid largest-fragment SMILES or None (the reference's
        ``final_smiles.txt``).
      relaxed_smiles: the relaxed-valid largest-fragment SMILES.
      unique_smiles: sorted set of ``relaxed_smiles``.
    """

    validity: float
    relaxed_validity: float
    uniqueness: float
    novelty: float | None
    valid_connected: float
    num_components: np.ndarray
    smiles: list
    relaxed_smiles: list
    unique_smiles: list

    def scalars(self) -> dict:
        """The numbers only, JSON-ready (``novelty`` may be None)."""
        nc = self.num_components
        return {
            "validity": self.validity,
            "relaxed_validity": self.relaxed_validity,
            "uniqueness": self.uniqueness,
            "novelty": self.novelty,
            "valid_connected": self.valid_connected,
            "num_components_mean": float(nc.mean()) if nc.size else 0.0,
            "num_components_max": int(nc.max()) if nc.size else 0,
            "num_graphs": len(self.smiles),
        }


def evaluate(graphs: Sequence[Graph], train_smiles: Iterable[str] | None = None) -> MoleculeMetrics:
    """Validity, relaxed validity, uniqueness and novelty as the reference's ``evaluate``.

    Args:
      graphs: ``(atom_types, bond_types)`` pairs (see :func:`graphs_from_dense` for a padded
        batch).
      train_smiles: training SMILES made with :func:`graph_smiles` (e.g.
        :func:`experiments.digress_qm9.qm9.train_smiles`); None skips novelty.
    Returns:
      :class:`MoleculeMetrics`.
    Raises:
      ValueError: as :func:`validity`; nothing is counted if any graph cannot be decoded.
    """
    graphs = _metric_inputs(graphs)
    smiles, per_graph_components = _strict_validity(graphs)
    components = np.asarray([c for c in per_graph_components if c is not None], np.int64)
    relaxed, relaxed_fraction = relaxed_validity(graphs)
    unique, unique_fraction = uniqueness(relaxed)
    novel_fraction = None
    if train_smiles is not None and relaxed:
        _, novel_fraction = novelty(unique, train_smiles)
    connected = sum(s is not None and c == 1 for s, c in zip(smiles, per_graph_components))
    return MoleculeMetrics(
        validity=sum(s is not None for s in smiles) / len(graphs),
        relaxed_validity=relaxed_fraction,
        uniqueness=unique_fraction,
        novelty=novel_fraction,
        valid_connected=connected / len(graphs),
        num_components=components,
        smiles=smiles,
        relaxed_smiles=relaxed,
        unique_smiles=unique,
    )


def _metric_inputs(graphs: Sequence[Graph]) -> list[Graph]:
    """The graphs of a metric as integer classes; ValueError if none, or if any cannot be decoded."""
    if len(graphs) == 0:
        raise ValueError("no graphs to evaluate")
    return _as_graphs(graphs)
