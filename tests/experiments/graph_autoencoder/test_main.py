"""experiments.graph_autoencoder: rows, encodings and analysis helpers (the model and its training
are covered by test_models.py)."""

import dataclasses

import networkx as nx
import pytest
import numpy as np

from experiments._lib import config as common
from experiments.graph_autoencoder import configs, encoding, entropy, models
from experiments.graph_autoencoder import main as ga


def test_free_embeddings_realize_small_graphs_and_count_errors():
    cfg = configs.Config(n_max=8, latent=2)
    adjs = [nx.to_numpy_array(g, dtype=np.uint8) for g in (nx.path_graph(5), nx.cycle_graph(6))]
    out = ga.free_embedding_error(adjs, cfg, steps=400, restarts=2)
    assert out["edge_error_pct"] == 0.0 and out["graphs_with_errors"] == 0   # both are unit-distance graphs in 2-D
    # K_{1,6}: a star with 6 leaves is no threshold-distance graph in 1-D (leaves would be within reach of each other)
    cfg1 = configs.Config(n_max=8, latent=1)
    out = ga.free_embedding_error([nx.to_numpy_array(nx.star_graph(6), dtype=np.uint8)], cfg1, steps=400, restarts=2)
    assert out["edge_error_pct"] > 0 and out["graphs_with_errors"] == 1


def test_rows_parse_into_encoding_entry_and_features():
    assert encoding.pe_kind("sympe") == ("sympe", "encoder", ())
    assert encoding.pe_kind("sympe_decoder") == ("sympe", "decoder", ())
    assert encoding.pe_kind("features") == ("none", "encoder", ("features",))
    assert encoding.pe_kind("exact_features") == ("exact", "encoder", ("features",))
    assert encoding.pe_kind("sympe_laplacian") == ("sympe", "encoder", ("laplacian",))
    assert encoding.pe_kind("randperm_features") == ("randperm", "encoder", ("features",))
    assert encoding.pe_kind("laplacian_features") == ("laplacian", "encoder", ("features",))
    assert encoding.pe_kind("sympe_learned") == ("sympe_learned", "encoder", ())
    assert set(configs.LABELS) == set(configs.ROWS + configs.EXTRA_ROWS)


def test_tie_statistics_and_ordering_entropies_on_known_graphs():
    adjs = [nx.to_numpy_array(g, dtype=np.uint8) for g in (nx.cycle_graph(6), nx.path_graph(4))]
    out = ga.tie_orbit_agreement(adjs, configs.Config(n_max=8))
    assert out["ties_equal_orbits"] == 2 and out["tied_node_pct"] == 100.0
    bits = out["ordering_entropy_bits"]
    # C_6: one tie group of 6 (log2 720), |Aut| = 12; P_4: two tie groups of 2, |Aut| = 2
    np.testing.assert_allclose(bits["sympe"], (np.log2(720) + 2.0) / 2)
    np.testing.assert_allclose(bits["exact"], (np.log2(12) + 1.0) / 2)
    np.testing.assert_allclose(bits["randperm"], (np.log2(720) + np.log2(24)) / 2)


def test_entropy_study_knows_the_ordering_of_every_row():
    assert set(entropy.ORDERING) == set(configs.ROWS + configs.EXTRA_ROWS)
    assert entropy.ORDERING["sympe_features"] == "sympe" and entropy.ORDERING["laplacian"] is None


def test_message_graph_config_and_old_records():
    old = {k: v for k, v in dataclasses.asdict(configs.Config()).items() if k != "message_graph"}
    assert common.same_run_config(old, configs.Config())          # records written before the field match
    assert not common.same_run_config(old, configs.Config(message_graph="complete"))
    try:
        ga.make_batcher([np.zeros((3, 3), np.uint8)], configs.Config(message_graph="dense"), None)
    except ValueError as e:
        assert "message_graph" in str(e)
    else:
        raise AssertionError("an unknown message graph must raise")


def test_showcase_predictions_keep_the_graph_order_across_batches():
    import jax

    cfg = configs.Config(n_max=8, batch_size=1, hidden=8, latent=2, num_layers=1, message_graph="complete")
    adjs = [nx.to_numpy_array(g, dtype=np.uint8) for g in (nx.path_graph(3), nx.cycle_graph(5), nx.star_graph(6))]
    forward, init = encoding.build(cfg, "none")
    params = init(jax.random.key(0), ga.make_batcher(adjs, cfg, None).make_batch([0]))
    preds = ga.predict_dense(forward, params, jax.random.key(1), adjs, cfg, None)
    assert [p.shape for p in preds] == [(3, 3), (5, 5), (7, 7)]


@pytest.mark.parametrize("row", ["sympe", "exact", "laplacian", "sympe_learned"])
def test_each_encoding_row_evaluates_to_the_direct_count_of_wrong_pairs(row):
    """evaluate() over padded batches (the last one short) agrees with counting the thresholded
    predictions of every real graph by hand: wrong off-diagonal entries / sum of n (n - 1)."""
    import jax

    cfg = configs.Config(n_max=8, batch_size=2, hidden=8, latent=2, num_layers=1, pe_features=4)
    adjs = [nx.to_numpy_array(g, dtype=np.uint8)
            for g in (nx.path_graph(5), nx.cycle_graph(6), nx.star_graph(4))]
    batches = list(ga.make_batcher(adjs, cfg, None).iterate_once())
    ranks = [encoding.ExactRanks(adjs, cfg.n_max).sample(b.indices, np.random.default_rng(0)) for b in batches]
    forward, init = encoding.build(cfg, row)
    params = init(jax.random.key(0), batches[0])
    params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(2), x.shape), params)  # away from init ties
    out = ga.evaluate(forward, params, jax.random.key(1), batches, ranks)

    fwd, wrong, pairs = jax.jit(forward), 0, 0
    for i, (batch, r) in enumerate(zip(batches, ranks)):
        logits, _ = fwd(params, jax.random.fold_in(jax.random.key(1), i), batch, r)
        for b, size in enumerate(batch.sizes):
            if not batch.graph_mask[b]:
                continue
            pred = np.asarray(logits[b, :size, :size]) > 0
            off = ~np.eye(size, dtype=bool)
            wrong += int(np.sum((pred != (adjs[batch.indices[b]] > 0)) & off))
            pairs += size * (size - 1)
    assert pairs == 20 + 30 + 20
    assert out["edge_error_pct"] == pytest.approx(100.0 * wrong / pairs)


def test_learned_scorer_gets_a_gradient_and_its_diagnostics_compare_with_the_fixed_score():
    import jax

    # a temperature near the score gaps of these small graphs (0.1-0.3), or the relaxation is one-hot
    cfg = configs.Config(n_max=8, batch_size=2, hidden=8, latent=2, num_layers=1, pe_features=4, scorer_temperature=0.3)
    adjs = [nx.to_numpy_array(g, dtype=np.uint8) for g in (nx.path_graph(5), nx.cycle_graph(6), nx.star_graph(4))]
    batch = ga.make_batcher(adjs, cfg, None).make_batch([0, 2])
    forward, init = encoding.build(cfg, "sympe_learned")
    params = init(jax.random.key(0), batch)

    def loss_fn(p, data_, key):
        b, r = data_
        logits, pairs = forward(p, key, b, r)
        return models.reconstruction_loss(logits, b.adjacency, pairs), {}

    ranks = np.zeros((2, cfg.n_max), np.int32)
    out = ga.scorer_diagnostics(loss_fn, params, params, (batch, ranks), adjs, cfg)
    assert out["grad_norm_init"] > 0 and out["grad_norm_init"] == out["grad_norm_trained"]
    assert out["test_nodes_rank_changed_pct"] == 0.0        # untrained: the fixed score's order
    assert out["tie_orbit_agreement"]["ties_equal_orbits"] == 3
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    moved = jax.tree.unflatten(tree, [x + 3.0 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    assert ga.scorer_diagnostics(loss_fn, params, moved, (batch, ranks), adjs, cfg)["test_nodes_rank_changed_pct"] > 0


def test_force_retrains_from_scratch_instead_of_resuming(tmp_path, monkeypatch):
    """--force deletes the run directory before training (it used to resume from the final checkpoint)."""
    cfg = configs.Config(preset="cpu-forcetest", encodings=("none",), seeds=(0,), n_max=8, batch_size=2, hidden=8,
                         latent=2, num_layers=1, num_steps=2, warmup_steps=0, eval_every=1, checkpoint_every=1)
    adjs = [nx.to_numpy_array(g, dtype=np.uint8) for g in (nx.path_graph(3), nx.cycle_graph(5), nx.star_graph(4))]
    stale = common.run_workdir(tmp_path, "graph_autoencoder", cfg, "none", 0) / "checkpoint_2"
    stale.mkdir(parents=True)
    seen = []

    class Stop(Exception):
        pass

    def fake_train(tcfg, *, workdir, **kwargs):
        seen.append((workdir, stale.exists()))
        raise Stop

    monkeypatch.setattr(ga.training, "train", fake_train)
    with pytest.raises(Stop):
        ga.run_one(cfg, "none", 0, (adjs, adjs, adjs), force=False, root=tmp_path)
    assert seen[-1] == (stale.parent, True)              # without --force: the checkpoints are there to resume
    with pytest.raises(Stop):
        ga.run_one(cfg, "none", 0, (adjs, adjs, adjs), force=True, root=tmp_path)
    assert seen[-1] == (stale.parent, False)             # --force: deleted, training starts from step 0


def test_demo_preset_is_small_and_writes_under_runs(tmp_path):
    cfg, _ = ga.parse_args(["--preset", "demo"])
    assert set(ga.PRESETS) == {"demo", "cpu", "paper"}
    assert cfg.num_steps <= 500 and cfg.num_train <= 1000 and len(cfg.encodings) * len(cfg.seeds) <= 2
    assert common.results_dir(tmp_path, "graph_autoencoder", cfg) == tmp_path / "runs" / "graph_autoencoder" / "results"
    cpu, _ = ga.parse_args(["--preset", "cpu", "--rows", "sympe"])                    # the old flag name still parses
    assert cpu.encodings == ("sympe",)
    assert common.results_dir(tmp_path, "graph_autoencoder", cpu) == tmp_path / "results" / "graph_autoencoder"


def test_old_records_with_rows_match_the_new_config():
    cfg = ga.PRESETS["cpu"]
    old = {("rows" if k == "encodings" else k): v for k, v in dataclasses.asdict(cfg).items()}
    assert "rows" in old and "encodings" not in old
    assert common.same_run_config(old, cfg)
    assert common.same_run_config(old, dataclasses.replace(cfg, encodings=("exact",), seeds=(7,)))
    assert not common.same_run_config(old, dataclasses.replace(cfg, latent=8))
