"""QM9 without hydrogens, offline, as DiGress uses it (experiment 2).

Source: the ``qm9pack`` wheel (MIT; by R. Ramakrishnan, QM9's author) ships all 130,831
characterized QM9 molecules as CSV files inside the package (QM9's 133,885 minus the 3,054
"uncharacterized" ones DiGress skips). Only the ``Index`` (1-based QM9 number) and ``SMILES``
columns are read, straight from the CSVs: importing ``qm9pack`` itself runs setuptools
machinery, so it is located with ``importlib.util.find_spec`` and never imported.

Each SMILES becomes a kekulized heavy-atom graph (:func:`experiments.digress_qm9.molecules.smiles_to_graph`):
atom classes C=0, N=1, O=2, F=3 and bond classes 0 none, 1 single, 2 double, 3 triple, padded
to ``MAX_NODES = 9`` nodes. There are 4 edge classes, not DiGress's 5: its 5th class (aromatic)
never occurs in kekulized QM9 (its marginal is 0.0 in the reference too); :func:`edge_one_hot`
can append the always-zero aromatic channel for bug-for-bug parity. Formal charges are dropped
(the atom class is the element), as the reference does when it reads the SDF; 443 molecules
carry charges. Atom order within a molecule is RDKit's SMILES parse order (the reference uses
the SDF order; the model is permutation-equivariant, so this does not matter).

Split (reference ``QM9Dataset.download``): ``pandas.DataFrame.sample(frac=1, random_state=42)``
of the 133,885 rows, i.e. ``numpy.random.RandomState(42).permutation(133885)`` (checked equal),
of 0-based row numbers ``Index - 1``; the first 100,000 are train, the last
``int(0.1 * 133885) = 13,388`` test, the 20,497 between val. Molecules absent from the source
(the uncharacterized ones) drop out, leaving **train 97,734 / val 20,042 / test 13,055**
(measured here). Within a split molecules are in increasing ``Index`` order, as in the reference
(which walks the SDF in order).

Statistics of the training split (:func:`dataset_info`; measured with RDKit 2026.09.1 on
qm9pack 1.0.3), next to DiGress's hard-coded ``QM9infos`` constants:

=================  =============================================  =====================================
quantity           this module, train split (97,734 molecules)    DiGress constants
=================  =============================================  =====================================
atoms C, N, O, F   0.72310, 0.11513, 0.15913, 0.00264              0.7230, 0.1151, 0.1593, 0.0026
edges none,1,2,3   0.72640, 0.23477, 0.03063, 0.00820              0.7261, 0.2384, 0.0274, 0.0081 (, 0.0)
valency 0..5       2.3e-06, 0.15640, 0.34946, 0.32265, 0.17149, 0   2.6e-06, 0.163, 0.352, 0.320, 0.16313,
                                                                    0.00073
=================  =============================================  =====================================

Atom marginals agree to 3-4 decimals. Edge marginals: no-bond and triple agree, but DiGress
has about 10% fewer double bonds (0.0274 vs 0.0306) and more single bonds, and some atoms of
bond-order sum 5 (which kekulized SMILES never give); all 130,831 molecules give the same
numbers as the train split (edges 0.72639, 0.23483, 0.03065, 0.00814), so the gap comes from
the bond assignment of the reference's SDF versus the SMILES, not from the split. We use the
recomputed numbers; the reference constants are in :data:`DIGRESS_NODE_MARGINALS`,
:data:`DIGRESS_EDGE_MARGINALS`, :data:`DIGRESS_N_NODES` and :data:`DIGRESS_VALENCIES` for runs
that want DiGress's exact values.

Node-count histogram p(n), n = 0..9. Train split: ``[0, 2.046e-05, 4.093e-05, 6.139e-05,
2.149e-04, 9.413e-04, 4.778e-03, 0.023748, 0.135818, 0.834377]``. DiGress's ``n_nodes`` is
the histogram of *all* 130,831 characterized molecules (train + val + test), which the full
data reproduces to within 3e-6 (the rounding of the constants); the train histogram differs
from it by at most 1.0e-3 (at n = 9).

Cache: processing all 130,831 SMILES took 31 s here (2 shared cores); the arrays of every split
are then saved in one ``.npz`` (28 MB) under the cache directory (``cache_dir``, else
``$SYMPE_JAX_CACHE/qm9``, else ``$XDG_CACHE_HOME/sympe_jax/qm9``, else
``~/.cache/sympe_jax/qm9``), keyed by :data:`CACHE_VERSION`, the RDKit version and the source
files (path, size, modification time); a later load of a split takes 0.05-0.1 s. A cache file
that cannot be read (truncated, not an ``.npz``, missing arrays) is moved aside to
``<name>.corrupt`` (``.corrupt1``, ... if taken; never deleted) with a warning naming both
paths, and rebuilt. The training
SMILES for novelty (:func:`train_smiles`: 97,734 SMILES, 97,681 distinct; 31 s to make) are
cached next to it.

Rows outside the domain (unparsable SMILES, elements other than CNOF, more than 9 heavy atoms,
bad or repeated ``Index``) are skipped, never fatal: their counts per reason are in
``QM9Split.skipped`` and a warning says so. The full qm9pack data has none.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from experiments._lib import rundir

__all__ = [
    "MAX_NODES",
    "NUM_ATOM_CLASSES",
    "NUM_EDGE_CLASSES",
    "NUM_QM9",
    "SPLITS",
    "CACHE_VERSION",
    "DIGRESS_NODE_MARGINALS",
    "DIGRESS_EDGE_MARGINALS",
    "DIGRESS_N_NODES",
    "DIGRESS_VALENCIES",
    "QM9Split",
    "DatasetInfo",
    "load_qm9",
    "dataset_info",
    "train_smiles",
    "reference_split",
    "qm9pack_dir",
    "read_source",
    "default_cache_dir",
    "node_one_hot",
    "edge_one_hot",
]

MAX_NODES = 9
NUM_ATOM_CLASSES = 4
NUM_EDGE_CLASSES = 4
NUM_QM9 = 133_885
"""Molecules in QM9, characterized or not (the length of the reference's permutation)."""
SPLITS = ("train", "val", "test")
CACHE_VERSION = 1
"""Bump when the processing changes, to invalidate cached arrays."""

_N_TRAIN = 100_000
_N_TEST = int(0.1 * NUM_QM9)
_SPLIT_SEED = 42

DIGRESS_NODE_MARGINALS = np.array([0.7230, 0.1151, 0.1593, 0.0026])
"""DiGress ``QM9infos.node_types`` (no H): C, N, O, F."""
DIGRESS_EDGE_MARGINALS = np.array([0.7261, 0.2384, 0.0274, 0.0081])
"""DiGress ``QM9infos.edge_types`` (no H) without its aromatic entry (0.0): none, 1, 2, 3."""
DIGRESS_N_NODES = np.array([0, 2.2930e-05, 3.8217e-05, 6.8791e-05, 2.3695e-04, 9.7072e-04,
                            0.0046472, 0.023985, 0.13666, 0.83337])
"""DiGress ``QM9infos.n_nodes``: p(n) for n = 0..9 (of all characterized molecules)."""
DIGRESS_VALENCIES = np.zeros(3 * MAX_NODES - 2)
DIGRESS_VALENCIES[:6] = [2.6071e-06, 0.163, 0.352, 0.320, 0.16313, 0.00073]
"""DiGress ``QM9infos.valency_distribution``: p(bond-order sum of an atom = v), v = 0..24."""

for _constant in (DIGRESS_NODE_MARGINALS, DIGRESS_EDGE_MARGINALS, DIGRESS_N_NODES, DIGRESS_VALENCIES):
    _constant.setflags(write=False)

_QM9PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_SKIP_REASONS = ("bad_index", "duplicate_index", "invalid_smiles", "empty", "atom_type",
                 "too_many_atoms", "bond_type")
_ARRAY_KEYS = ("X", "E", "n_nodes", "index", "split", "smiles", "meta")


# ----------------------------------------------------------------------------- containers


@dataclasses.dataclass(frozen=True, eq=False)
class QM9Split:
    """One split of QM9 without H, as dense padded arrays (``m`` molecules).

    Attributes:
      name: ``"train"``, ``"val"`` or ``"test"``.
      X: ``int8[m, 9]`` atom classes C=0, N=1, O=2, F=3; ``-1`` on padded nodes.
      E: ``int8[m, 9, 9]`` bond classes 0 none, 1 single, 2 double, 3 triple; symmetric,
        zero diagonal, zero on padded pairs.
      mask: ``bool[m, 9]`` real nodes (always the first ``n_nodes``).
      n_nodes: ``int32[m]`` heavy atoms per molecule, 1..9.
      index: ``int32[m]`` QM9 molecule number (1-based, the ``Index`` column), increasing.
      smiles: the source SMILES of each molecule (``m`` strings).
      skipped: rows of the whole source skipped while processing, per reason (over all
        splits, since a row with a bad index has none).
    """

    name: str
    X: np.ndarray
    E: np.ndarray
    mask: np.ndarray
    n_nodes: np.ndarray
    index: np.ndarray
    smiles: list
    skipped: dict

    def __len__(self) -> int:
        return int(self.X.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetInfo:
    """Marginals of a split, as DiGress's ``QM9infos`` (computed, not hard-coded).

    Attributes:
      node_marginals: ``float64[4]`` fraction of atoms per class C, N, O, F.
      edge_marginals: ``float64[4]`` fraction of ordered pairs ``(i, j)``, ``i != j``, of real
        nodes per bond class (0 = no bond), as the reference's ``edge_counts``.
      n_nodes: ``float64[10]`` p(n) for n = 0..9 heavy atoms.
      valencies: ``float64[25]`` p(bond-order sum of an atom = v) for v = 0..24, as the
        reference's ``valency_count``.
      num_molecules: molecules counted.
    """

    node_marginals: np.ndarray
    edge_marginals: np.ndarray
    n_nodes: np.ndarray
    valencies: np.ndarray
    num_molecules: int

    def to_json(self) -> dict:
        """Plain lists and ints, for ``experiments._lib.train.save_json``."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out


# ----------------------------------------------------------------------------- source


def qm9pack_dir() -> Path:
    """The ``data`` folder of the installed ``qm9pack`` wheel, found without importing it.

    Raises:
      ImportError: if ``qm9pack`` is not installed (``pip install qm9pack``).
      FileNotFoundError: if it is installed but lacks its CSV files.
    """
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("QM9 needs the qm9pack package, a 104 MB wheel that contains the data: "
                          "pip install qm9pack (or pass source= a CSV with Index and SMILES columns)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [f for f in _QM9PACK_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"qm9pack at {folder.parent} lacks {missing}; reinstall it "
                                f"(pip install --force-reinstall qm9pack)")
    return folder


def _source_files(source: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    """The CSV files of a source: qm9pack's by default, a folder's ``qm9_part*.csv``, or files."""
    if source is None:
        folder = qm9pack_dir()
        return [folder / f for f in _QM9PACK_FILES]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(path.glob("qm9_part*.csv"))
            if not files:
                raise FileNotFoundError(f"no qm9_part*.csv files in {path}")
            return files
        paths = [path]
    else:
        paths = [Path(p) for p in source]
        if not paths:
            raise ValueError("source is an empty list of files")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"QM9 source file {p} does not exist")
    return paths


def read_source(source: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[tuple[str, str]]:
    """``(Index, SMILES)`` string pairs of every row of the source CSV files, in file order.

    Args:
      source: None for the installed ``qm9pack`` data; a folder (its ``qm9_part*.csv``); a CSV
        file or a list of them. Each CSV needs a header with ``Index`` and ``SMILES`` columns
        (other columns are ignored).
    Raises:
      ValueError: naming the file, if one is not UTF-8 CSV text (e.g. binary) or lacks one of
        the two columns.
    """
    csv.field_size_limit(2**31 - 1)  # qm9pack's XYZ and frequency fields are long
    rows: list[tuple[str, str]] = []
    for path in _source_files(source):
        try:
            rows.extend(_read_csv(path))
        except (UnicodeDecodeError, csv.Error) as err:
            raise ValueError(f"QM9 source file {path} is not a UTF-8 CSV text file ({err}); expected a CSV "
                             f"with 'Index' and 'SMILES' columns") from err
    return rows


def _read_csv(path: Path) -> list[tuple[str, str]]:
    """``(Index, SMILES)`` of every non-blank row of one CSV (see :func:`read_source`)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or "Index" not in header or "SMILES" not in header:
            raise ValueError(f"{path} must be a CSV with 'Index' and 'SMILES' columns, got header {header}")
        i, s = header.index("Index"), header.index("SMILES")
        width = max(i, s) + 1
        return [(r[i], r[s]) if len(r) >= width else ("", "") for r in reader if r]


def reference_split(index) -> np.ndarray:
    """DiGress's split of QM9 molecules by their 1-based index.

    ``RandomState(42).permutation(133885)`` of the 0-based rows ``index - 1``: positions
    ``< 100,000`` are train, the last 13,388 test, the rest val.

    Args:
      index: ``int[m]`` QM9 molecule numbers in 1..133,885.
    Returns:
      ``int8[m]`` split ids: 0 train, 1 val, 2 test.
    """
    index = np.asarray(index)
    if not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"index must be integers, got dtype {index.dtype}")
    if index.size and (index.min() < 1 or index.max() > NUM_QM9):
        raise ValueError(f"QM9 indices must be in 1..{NUM_QM9}, got {index.min()}..{index.max()}")
    position = np.empty(NUM_QM9, np.int64)
    position[np.random.RandomState(_SPLIT_SEED).permutation(NUM_QM9)] = np.arange(NUM_QM9)
    pos = position[index - 1]
    return np.where(pos < _N_TRAIN, 0, np.where(pos < NUM_QM9 - _N_TEST, 1, 2)).astype(np.int8)


# ----------------------------------------------------------------------------- processing


def _process(rows: Iterable[tuple[str, str]]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """SMILES rows -> padded arrays of every molecule (sorted by index) and skip counts."""
    from experiments.digress_qm9 import molecules  # needs RDKit, only when processing

    skipped = dict.fromkeys(_SKIP_REASONS, 0)
    seen: set[int] = set()
    kept: list[tuple[int, str, np.ndarray, np.ndarray]] = []
    for index_text, smiles in rows:
        try:
            index = int(index_text)
        except ValueError:
            skipped["bad_index"] += 1
            continue
        if not 1 <= index <= NUM_QM9:
            skipped["bad_index"] += 1
            continue
        if index in seen:
            skipped["duplicate_index"] += 1
            continue
        seen.add(index)
        try:
            atoms, bonds = molecules.smiles_to_graph(smiles, max_atoms=MAX_NODES)
        except molecules.MoleculeError as err:
            skipped[err.reason] += 1
            continue
        kept.append((index, smiles, atoms, bonds))
    kept.sort(key=lambda row: row[0])
    m = len(kept)
    X = np.full((m, MAX_NODES), -1, np.int8)
    E = np.zeros((m, MAX_NODES, MAX_NODES), np.int8)
    n_nodes = np.zeros(m, np.int32)
    for k, (_, _, atoms, bonds) in enumerate(kept):
        n = atoms.shape[0]
        X[k, :n] = atoms
        E[k, :n, :n] = bonds
        n_nodes[k] = n
    index = np.array([row[0] for row in kept], np.int32)
    arrays = {
        "X": X,
        "E": E,
        "n_nodes": n_nodes,
        "index": index,
        "split": reference_split(index),
        "smiles": np.array([row[1] for row in kept], dtype=np.str_),
    }
    return arrays, skipped


# ----------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$SYMPE_JAX_CACHE/qm9``, else ``$XDG_CACHE_HOME/sympe_jax/qm9``, else ``~/.cache/...``."""
    if os.environ.get("SYMPE_JAX_CACHE"):
        return Path(os.environ["SYMPE_JAX_CACHE"]).expanduser() / "qm9"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "sympe_jax" / "qm9"


def _rdkit_version() -> str:
    for dist in ("rdkit", "rdkit-pypi"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return "none"


def _cache_key(files: Sequence[Path]) -> str:
    """Hash of the processing version, the RDKit version and the source files' identity."""
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    payload = json.dumps({"version": CACHE_VERSION, "rdkit": _rdkit_version(), "files": stats})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` atomically: a temporary file in the same folder, then a rename."""

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file; None if there is none.

    A file that cannot be read or lacks one of ``keys`` is moved aside (``experiments._lib.rundir.move_aside``)
    with a warning, and None returned so that the caller rebuilds it.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        missing = sorted(set(keys) - set(arrays))
        if missing:
            raise ValueError(f"arrays {missing} are missing")
        return arrays
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        aside = rundir.move_aside(path, path.with_name(path.name + ".corrupt"))
        warnings.warn(f"unreadable QM9 cache file {path} ({type(err).__name__}: {err}): moved it aside to "
                      f"{aside}; rebuilding", stacklevel=3)
        return None


def _processed(source, cache_dir) -> tuple[dict[str, np.ndarray], dict[str, int], Path]:
    """Every molecule's arrays and the skip counts, from the cache or processed (and cached)."""
    files = _source_files(source)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"qm9_v{CACHE_VERSION}_{_cache_key(files)}.npz"
    arrays = _load_npz(path, _ARRAY_KEYS)
    if arrays is None:
        arrays, skipped = _process(read_source(files))
        meta = {"cache_version": CACHE_VERSION, "rdkit": _rdkit_version(),
                "files": [str(p) for p in files], "skipped": skipped}
        arrays["meta"] = np.array(json.dumps(meta))
        _save_npz(path, arrays)
    meta = json.loads(str(arrays.pop("meta")))
    return arrays, meta["skipped"], path


def _warn_skipped(skipped: dict[str, int]) -> None:
    total = sum(skipped.values())
    if total:
        counts = ", ".join(f"{k} {v}" for k, v in skipped.items() if v)
        warnings.warn(f"QM9: skipped {total} source rows ({counts})", stacklevel=3)


# ----------------------------------------------------------------------------- public API


def load_qm9(split: str, *, source=None, cache_dir: str | os.PathLike | None = None) -> QM9Split:
    """One split of QM9 without H, processed once and then read from the cache.

    Args:
      split: ``"train"``, ``"val"`` or ``"test"``.
      source: None for the installed ``qm9pack`` data (``pip install qm9pack``); else a folder
        of ``qm9_part*.csv``, a CSV file or a list of them, with ``Index`` and ``SMILES``
        columns (e.g. the test fixture).
      cache_dir: where processed arrays are kept (default :func:`default_cache_dir`).
    Returns:
      :class:`QM9Split`. Skipped source rows are counted in ``skipped`` and warned about.
    Raises:
      ValueError: unknown ``split``. ImportError: no ``source`` and no ``qm9pack``, or RDKit
      missing when the arrays must be (re)built.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    arrays, skipped, _ = _processed(source, cache_dir)
    _warn_skipped(skipped)
    rows = arrays["split"] == SPLITS.index(split)
    X = arrays["X"][rows]
    return QM9Split(
        name=split,
        X=X,
        E=arrays["E"][rows],
        mask=X >= 0,
        n_nodes=arrays["n_nodes"][rows],
        index=arrays["index"][rows],
        smiles=arrays["smiles"][rows].tolist(),
        skipped=dict(skipped),
    )


def train_smiles(*, source=None, cache_dir: str | os.PathLike | None = None) -> list[str]:
    """The training SMILES for novelty, made as the reference's ``get_train_smiles``.

    Each training graph through :func:`experiments.digress_qm9.molecules.graph_smiles` (partial charges,
    whole molecule, canonical SMILES of the installed RDKit); graphs that do not sanitize are
    left out, duplicates kept, in split order. Cached next to the arrays (the cache key holds
    the RDKit version, since canonical SMILES change between versions).

    Args:
      source, cache_dir: as :func:`load_qm9`.
    Returns:
      a list of SMILES strings.
    """
    from experiments.digress_qm9 import molecules

    arrays, _, path = _processed(source, cache_dir)
    smiles_path = path.with_name(path.stem + "_train_smiles.npz")
    cached = _load_npz(smiles_path, ("smiles",))
    if cached is not None:
        return cached["smiles"].tolist()
    rows = arrays["split"] == SPLITS.index("train")
    out = []
    for x, e in zip(arrays["X"][rows], arrays["E"][rows]):
        s = molecules.graph_smiles(x, e)
        if s is not None:
            out.append(s)
    _save_npz(smiles_path, {"smiles": np.array(out, dtype=np.str_)})
    return out


def dataset_info(data: QM9Split) -> DatasetInfo:
    """Node, edge, size and valency distributions of a split (DiGress's dataset statistics).

    Args:
      data: a :class:`QM9Split` (the reference uses the training split).
    Returns:
      :class:`DatasetInfo`.
    """
    m = len(data)
    if m == 0:
        raise ValueError(f"split {data.name!r} has no molecules")
    mask = data.mask
    X = data.X.astype(np.int64)
    E = data.E.astype(np.int64)
    pairs = mask[:, :, None] & mask[:, None, :] & ~np.eye(MAX_NODES, dtype=bool)
    nodes = np.bincount(X[mask], minlength=NUM_ATOM_CLASSES).astype(np.float64)
    edges = np.bincount(E[pairs], minlength=NUM_EDGE_CLASSES).astype(np.float64)
    sizes = np.bincount(data.n_nodes, minlength=MAX_NODES + 1).astype(np.float64)
    valency = np.bincount(E.sum(-1)[mask], minlength=3 * MAX_NODES - 2).astype(np.float64)
    return DatasetInfo(
        node_marginals=nodes / nodes.sum(),
        edge_marginals=edges / edges.sum(),
        n_nodes=sizes / m,
        valencies=valency / valency.sum(),
        num_molecules=m,
    )


def node_one_hot(X, num_classes: int = NUM_ATOM_CLASSES, dtype=np.float32) -> np.ndarray:
    """Atom classes as one-hot rows; padded nodes (class ``-1``) are all-zero rows.

    Args:
      X: ``int[..., n]`` atom classes, ``-1`` on padded nodes.
      num_classes: number of atom classes.
    Returns:
      ``dtype[..., n, num_classes]``.
    """
    X = np.asarray(X)
    if X.size and (X.min() < -1 or X.max() >= num_classes):
        raise ValueError(f"atom classes must be in -1..{num_classes - 1}, got {X.min()}..{X.max()}")
    return (X[..., None] == np.arange(num_classes)).astype(dtype)


def edge_one_hot(E, mask, num_classes: int = NUM_EDGE_CLASSES, dtype=np.float32) -> np.ndarray:
    """Bond classes as one-hot rows with DiGress's convention for the rest.

    Every pair ``(i, j)`` of real nodes with ``i != j`` is a one-hot row (class 0 = no bond,
    DiGress's ``encode_no_edge``); the diagonal and every pair touching a padded node are
    all-zero rows (DiGress zeroes the diagonal, then masks), so they drop out of cross-entropy
    and KL terms. ``num_classes=5`` adds DiGress's aromatic channel, always zero here.

    Args:
      E: ``int[..., n, n]`` bond classes.
      mask: ``bool[..., n]`` real nodes.
      num_classes: 4, or 5 for DiGress's input/output width.
    Returns:
      ``dtype[..., n, n, num_classes]``.
    """
    E = np.asarray(E)
    mask = np.asarray(mask)
    n = E.shape[-1]
    if E.shape[-2:] != (n, n) or mask.shape != E.shape[:-1]:
        raise ValueError(f"E must be [..., n, n] and mask [..., n], got {E.shape} and {mask.shape}")
    if mask.dtype != np.bool_:
        raise ValueError(f"mask must be boolean, got dtype {mask.dtype}")
    if E.size and (E.min() < 0 or E.max() >= num_classes):
        raise ValueError(f"bond classes must be in 0..{num_classes - 1}, got {E.min()}..{E.max()}")
    pairs = mask[..., :, None] & mask[..., None, :] & ~np.eye(n, dtype=bool)
    return ((E[..., None] == np.arange(num_classes)) & pairs[..., None]).astype(dtype)
