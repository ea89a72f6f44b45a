"""QM9 offline loader: reference split, skip-and-count of bad rows, cache, statistics, one-hot.

Runs on the committed fixture (300 real QM9 molecules, ``fixtures/qm9_tiny.csv``), without
qm9pack. ``SYMPE_JAX_QM9_FULL=1`` also checks the full data (needs qm9pack; ~1 min cold).
"""

import importlib.util
import io
import os
import pathlib
import warnings

import numpy as np
import pytest

pytest.importorskip("rdkit")

from experiments.digress_qm9 import molecules  # noqa: E402
from experiments.digress_qm9 import qm9  # noqa: E402

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "qm9_tiny.csv"
FIXTURE_SPLIT_SIZES = {"train": 226, "val": 46, "test": 28}


@pytest.fixture(scope="module")
def fixture_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("qm9_cache")


@pytest.fixture(scope="module")
def fixture_splits(fixture_cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fixture has no bad rows: no warning
        return {s: qm9.load_qm9(s, source=FIXTURE, cache_dir=fixture_cache) for s in qm9.SPLITS}


def _write_csv(path, rows):
    path.write_text("Index,SMILES,Other\n" + "".join(f'{i},"{s}",x\n' for i, s in rows))
    return path


def test_reference_split_sizes_and_permutation():
    split = qm9.reference_split(np.arange(1, qm9.NUM_QM9 + 1))
    np.testing.assert_array_equal(np.bincount(split), [100_000, 20_497, 13_388])
    perm = np.random.RandomState(42).permutation(qm9.NUM_QM9)
    np.testing.assert_array_equal(perm[:3] + 1, [3116, 117880, 23434])  # pinned: legacy stream
    assert qm9.reference_split([3116, 110088, 121959]).tolist() == [0, 1, 2]
    pd = pytest.importorskip("pandas")  # the reference's df.sample(frac=1, random_state=42)
    sampled = pd.DataFrame({"a": np.zeros(qm9.NUM_QM9)}).sample(frac=1, random_state=42).index
    np.testing.assert_array_equal(sampled.to_numpy(), perm)
    with pytest.raises(ValueError, match="1..133885"):
        qm9.reference_split([0])


def test_fixture_splits_are_consistent(fixture_splits):
    assert {s: len(d) for s, d in fixture_splits.items()} == FIXTURE_SPLIT_SIZES
    for name, d in fixture_splits.items():
        m = len(d)
        assert d.name == name and d.skipped == dict.fromkeys(d.skipped, 0)
        assert d.X.shape == (m, 9) and d.X.dtype == np.int8 and d.E.shape == (m, 9, 9)
        assert d.E.dtype == np.int8 and d.mask.dtype == bool and len(d.smiles) == m
        assert d.X.min() >= -1 and d.X.max() <= 3 and d.E.min() >= 0 and d.E.max() <= 3
        np.testing.assert_array_equal(d.mask, np.arange(9) < d.n_nodes[:, None])  # prefix masks
        np.testing.assert_array_equal(d.mask, d.X >= 0)
        assert np.array_equal(d.E, d.E.transpose(0, 2, 1))
        assert not d.E[:, np.arange(9), np.arange(9)].any()
        assert not d.E[~(d.mask[:, :, None] & d.mask[:, None, :])].any()
        assert np.all(np.diff(d.index) > 0)
        assert np.all(qm9.reference_split(d.index) == qm9.SPLITS.index(name))
    train = fixture_splits["train"]
    assert set(train.n_nodes.tolist()) == set(range(1, 10))


def test_fixture_graphs_round_trip_to_their_smiles(fixture_splits):
    for d in fixture_splits.values():
        for x, e, mask, smiles in zip(d.X, d.E, d.mask, d.smiles):
            built = molecules.graph_smiles(x, e, mask)
            assert built is not None
            if "+" not in smiles and "-" not in smiles:  # charged ones lose their charges
                assert built == molecules.Chem.CanonSmiles(smiles)


def test_bad_rows_are_skipped_and_counted(tmp_path):
    rows = [
        (1, "C"), (4, "C#C"), (5, "C#N"),
        (7, "C1CC"), (8, "definitely not smiles"),  # invalid SMILES
        (9, "CCl"), (10, "c1ccsc1"),                # outside CNOF
        (11, "CCCCCCCCCC"),                          # 10 heavy atoms
        (12, ""),                                    # empty
        ("x", "CC"), (0, "CC"), (200_000, "CC"),     # bad index
        (4, "CCO"),                                  # repeated index
    ]
    source = _write_csv(tmp_path / "bad.csv", rows)
    with pytest.warns(UserWarning, match="skipped 10 source rows"):
        train = qm9.load_qm9("train", source=source, cache_dir=tmp_path / "cache")
    assert train.skipped == {"bad_index": 3, "duplicate_index": 1, "invalid_smiles": 2, "empty": 1,
                             "atom_type": 2, "too_many_atoms": 1, "bond_type": 0}
    assert train.index.tolist() == [1, 4, 5] and train.smiles == ["C", "C#C", "C#N"]
    with pytest.warns(UserWarning, match="skipped 10"):  # still reported when read from cache
        assert len(qm9.load_qm9("val", source=source, cache_dir=tmp_path / "cache")) == 0


def test_source_and_argument_errors(tmp_path, monkeypatch):
    (tmp_path / "no_smiles.csv").write_text("Index,InChI\n1,x\n")
    with pytest.raises(ValueError, match="'Index' and 'SMILES'"):
        qm9.load_qm9("train", source=tmp_path / "no_smiles.csv", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        qm9.load_qm9("train", source=tmp_path / "missing.csv", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        qm9.load_qm9("training", source=FIXTURE, cache_dir=tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "qm9pack" else real_find_spec(name, *a))
    with pytest.raises(ImportError, match="pip install qm9pack"):
        qm9.load_qm9("train", cache_dir=tmp_path)


def test_cache_is_reused_and_versioned(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = qm9.load_qm9("test", source=FIXTURE, cache_dir=cache)
    files = list(cache.glob("qm9_v*.npz"))
    assert len(files) == 1

    def fail(rows):
        raise AssertionError("processed again instead of reading the cache")

    monkeypatch.setattr(qm9, "_process", fail)
    again = qm9.load_qm9("test", source=FIXTURE, cache_dir=cache)
    for field in ("X", "E", "mask", "n_nodes", "index"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    assert again.smiles == first.smiles
    monkeypatch.undo()
    monkeypatch.setattr(qm9, "CACHE_VERSION", qm9.CACHE_VERSION + 1)
    qm9.load_qm9("test", source=FIXTURE, cache_dir=cache)  # new version key: a second file
    assert len(list(cache.glob("qm9_v*.npz"))) == 2
    files[0].write_bytes(b"not an npz")
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="unreadable"):
        assert len(qm9.load_qm9("test", source=FIXTURE, cache_dir=cache)) == len(first)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMPE_JAX_CACHE", str(tmp_path))
    assert qm9.default_cache_dir() == tmp_path / "qm9"
    monkeypatch.delenv("SYMPE_JAX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert qm9.default_cache_dir() == tmp_path / "xdg" / "sympe_jax" / "qm9"


def test_dataset_info_by_hand(fixture_splits):
    graphs = [molecules.smiles_to_graph(s) for s in ["C", "C=O"]]
    X = np.full((2, 9), -1, np.int8)
    E = np.zeros((2, 9, 9), np.int8)
    for k, (x, e) in enumerate(graphs):
        X[k, :len(x)] = x
        E[k, :len(x), :len(x)] = e
    split = qm9.QM9Split("train", X, E, X >= 0, np.array([1, 2], np.int32), np.array([1, 6]),
                         ["C", "C=O"], {})
    info = qm9.dataset_info(split)
    np.testing.assert_allclose(info.node_marginals, [2 / 3, 0, 1 / 3, 0])
    np.testing.assert_allclose(info.edge_marginals, [0, 0, 1, 0])  # the only pairs: C=O twice
    np.testing.assert_allclose(info.n_nodes, [0, 0.5, 0.5] + [0] * 7)
    np.testing.assert_allclose(info.valencies[:3], [1 / 3, 0, 2 / 3])
    assert info.valencies.shape == (25,) and info.num_molecules == 2
    full = qm9.dataset_info(fixture_splits["train"])
    for p in (full.node_marginals, full.edge_marginals, full.n_nodes, full.valencies):
        assert np.isclose(p.sum(), 1) and p.min() >= 0
    assert np.abs(full.node_marginals - qm9.DIGRESS_NODE_MARGINALS).max() < 0.05
    assert isinstance(full.to_json()["n_nodes"], list)


def test_one_hot_conventions(fixture_splits):
    d = fixture_splits["val"]
    x1 = qm9.node_one_hot(d.X)
    assert x1.shape == (len(d), 9, 4) and x1.dtype == np.float32
    np.testing.assert_array_equal(x1.sum(-1), d.mask)
    np.testing.assert_array_equal(x1.argmax(-1)[d.mask], d.X[d.mask])
    for k in (4, 5):
        e1 = qm9.edge_one_hot(d.E, d.mask, num_classes=k)
        pairs = d.mask[:, :, None] & d.mask[:, None, :] & ~np.eye(9, dtype=bool)
        np.testing.assert_array_equal(e1.sum(-1), pairs)  # diagonal and padding all-zero
        np.testing.assert_array_equal(e1.argmax(-1)[pairs], d.E[pairs])
        assert e1.shape[-1] == k and not e1[..., 4:].any()
    with pytest.raises(ValueError, match="bond classes"):
        qm9.edge_one_hot(d.E + 4, d.mask)
    with pytest.raises(ValueError, match="atom classes"):
        qm9.node_one_hot(d.X, num_classes=2)
    with pytest.raises(ValueError, match="boolean"):
        qm9.edge_one_hot(d.E, d.mask.astype(int))


def test_train_smiles_cached(fixture_splits, fixture_cache, monkeypatch):
    smiles = qm9.train_smiles(source=FIXTURE, cache_dir=fixture_cache)
    assert len(smiles) == len(fixture_splits["train"])
    monkeypatch.setattr(molecules, "graph_smiles", lambda *a: pytest.fail("not read from cache"))
    assert qm9.train_smiles(source=FIXTURE, cache_dir=fixture_cache) == smiles
    metrics = molecules.evaluate(molecules.graphs_from_dense(fixture_splits["train"].X[:20],
                                                            fixture_splits["train"].E[:20]),
                                 train_smiles=smiles)
    assert metrics.validity == 1.0 and metrics.novelty == 0.0


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_qm9pack_files_found():
    folder = qm9.qm9pack_dir()
    with open(folder / "qm9_part1.csv") as f:
        header = f.readline().strip().split(",")
    assert "Index" in header and "SMILES" in header


@pytest.mark.skipif(os.environ.get("SYMPE_JAX_QM9_FULL") != "1" or importlib.util.find_spec("qm9pack") is None,
                    reason="full QM9 check: set SYMPE_JAX_QM9_FULL=1 (needs qm9pack; ~1 min without a cache)")
def test_full_qm9_matches_the_reference():
    splits = {s: qm9.load_qm9(s) for s in qm9.SPLITS}
    assert {s: len(d) for s, d in splits.items()} == {"train": 97_734, "val": 20_042, "test": 13_055}
    assert sum(splits["train"].skipped.values()) == 0
    info = qm9.dataset_info(splits["train"])
    np.testing.assert_allclose(info.node_marginals, [0.72310, 0.11513, 0.15913, 0.00264], atol=1e-5)
    np.testing.assert_allclose(info.edge_marginals, [0.72640, 0.23477, 0.03063, 0.00820], atol=1e-5)
    np.testing.assert_allclose(info.node_marginals, qm9.DIGRESS_NODE_MARGINALS, atol=2e-4)
    counts = np.bincount(np.concatenate([d.n_nodes for d in splits.values()]), minlength=10)
    np.testing.assert_array_equal(counts[1:], [3, 5, 9, 31, 127, 608, 3138, 17879, 109031])
    np.testing.assert_allclose(counts / counts.sum(), qm9.DIGRESS_N_NODES, atol=5e-6)
    smiles = qm9.train_smiles()
    assert len(smiles) == 97_734 and len(set(smiles)) == 97_681


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_corrupt_cache_is_moved_aside_and_rebuilt(tmp_path, damage):
    """Bug: a truncated cache raised zipfile.BadZipFile instead of being rebuilt."""
    cache = tmp_path / "cache"
    first = qm9.load_qm9("test", source=FIXTURE, cache_dir=cache)
    smiles = qm9.train_smiles(source=FIXTURE, cache_dir=cache)
    for path in sorted(cache.glob("qm9_v*.npz")):          # the arrays, then the training SMILES
        good = path.read_bytes()
        if damage == "truncated":
            path.write_bytes(good[: len(good) // 2])
        else:
            np.savez(path, other=np.zeros(2))            # an npz without the expected arrays
        bad = path.read_bytes()
        with pytest.warns(UserWarning, match="unreadable QM9 cache file .* moved it aside to .*corrupt; rebuilding"):
            again = qm9.load_qm9("test", source=FIXTURE, cache_dir=cache)
            assert qm9.train_smiles(source=FIXTURE, cache_dir=cache) == smiles
        np.testing.assert_array_equal(again.X, first.X)
        assert path.with_name(path.name + ".corrupt").read_bytes() == bad   # kept, not deleted
        with np.load(path) as rebuilt:                                      # rebuilt in place
            assert set(rebuilt.files) == set(np.load(io.BytesIO(good)).files)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # the rebuilt caches read cleanly
        qm9.load_qm9("test", source=FIXTURE, cache_dir=cache)
    assert len(list(cache.glob("*.corrupt"))) == 2


def test_second_corrupt_cache_does_not_overwrite_the_first(tmp_path):
    cache = tmp_path / "cache"
    qm9.load_qm9("test", source=FIXTURE, cache_dir=cache)
    (path,) = cache.glob("qm9_v*.npz")
    for k, suffix in enumerate([".corrupt", ".corrupt1"]):
        path.write_bytes(b"garbage %d" % k)
        with pytest.warns(UserWarning, match=f"aside to .*{suffix}; rebuilding"):
            qm9.load_qm9("test", source=FIXTURE, cache_dir=cache)
        assert path.with_name(path.name + suffix).read_bytes() == b"garbage %d" % k


def test_binary_source_file_is_a_clear_error(tmp_path):
    """Bug: a binary (non-UTF-8) CSV raised a raw UnicodeDecodeError."""
    binary = tmp_path / "qm9_part1.csv"
    binary.write_bytes(b"Index,SMILES\n1,C\n" + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"qm9_part1\.csv is not a UTF-8 CSV text file"):
        qm9.load_qm9("train", source=binary, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="not a UTF-8 CSV"):
        qm9.read_source(tmp_path)                          # the folder form names the file too
    assert not (tmp_path / "cache").exists()               # nothing cached
