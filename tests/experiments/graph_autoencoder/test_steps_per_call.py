"""The graph autoencoder with several training updates per compiled call (``--steps-per-call``).

Bitwise equality with one update per call (see tests/experiments/_lib/test_steps_per_call.py
for why no tolerance is needed), on the experiment's own model, batches and loss at the
``paper`` preset's shape (one graph per update, messages along all pairs).
"""

import dataclasses
import pathlib

import jax
import networkx as nx
import numpy as np
import pytest

from experiments._lib import config as common
from experiments._lib import train as training
from experiments.graph_autoencoder import configs
from experiments.graph_autoencoder import main as ga

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_k_updates_per_call_train_the_same_params():
    """SymPE's tie-breaking keys and the batches of the K updates of a call are those of K single updates."""
    cfg = configs.Config(n_max=8, batch_size=1, hidden=8, latent=2, num_layers=1, pe_features=4,
                         message_graph="complete", num_steps=12, warmup_steps=0, eval_every=0, checkpoint_every=0,
                         learning_rate=1e-2)
    graphs = [nx.path_graph(5), nx.cycle_graph(6), nx.star_graph(4), nx.complete_graph(3), nx.cycle_graph(8)]
    adjs = [nx.to_numpy_array(g, dtype=np.uint8) for g in graphs]
    results = []
    for k in (1, 4):
        run = ga.setup_run(dataclasses.replace(cfg, steps_per_call=k), "sympe", 0, (adjs, adjs[:2], adjs[:2]))
        assert run.tcfg.steps_per_call == k and run.tcfg.log_every == 100
        tcfg = dataclasses.replace(run.tcfg, progress=False, select_metric=None, log_every=4)
        results.append(training.train(tcfg, loss_fn=run.loss_fn, params=run.params, optimizer=run.optimizer,
                                      batch_fn=run.batch_fn, key=run.key, batch_spec=run.batch_spec))
    one, four = results
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [r["loss"] for r in one.history] == [r["loss"] for r in four.history]


def test_steps_per_call_keeps_old_records_and_checks_the_cadences():
    cfg, _ = ga.parse_args(["--preset", "paper", "--steps-per-call", "100"])
    assert cfg.steps_per_call == 100 and ga.train_config(cfg).log_every == 100
    assert ga.train_config(dataclasses.replace(cfg, steps_per_call=40)).log_every == 200
    with pytest.raises(SystemExit, match="--steps-per-call: .*must divide eval_every=500"):
        ga.parse_args(["--preset", "cpu", "--steps-per-call", "300"])
    # Records written before the field (implicitly one update per call) still match, and are the
    # committed paper-preset results; a run with several updates per call is a run of its own.
    paper = ga.PRESETS["paper"]
    old = {k: v for k, v in dataclasses.asdict(paper).items() if k != "steps_per_call"}
    assert common.same_run_config(old, paper) and not common.same_run_config(old, cfg)
    for path in sorted((ROOT / "results" / "graph_autoencoder").glob("paper_*_seed*.json")):
        assert common.matching_record(path, paper) is not None, path


def test_evaluation_compiles_once_per_model():
    """Bug: evaluate() jitted a new function per call, so every evaluation of a run compiled the
    model again (3-4 s each at the paper preset, 100 evaluations a run) and dispatched one call per graph."""
    cfg = configs.Config(n_max=8, batch_size=1, hidden=8, latent=2, num_layers=1, message_graph="complete")
    adjs = [nx.to_numpy_array(g, dtype=np.uint8) for g in (nx.path_graph(5), nx.cycle_graph(6), nx.star_graph(4))]
    forward, init = ga.build(cfg, "sympe")
    traces = []

    def counted(*args):
        traces.append(1)
        return forward(*args)

    batches = list(ga.make_batcher(adjs, cfg, None).iterate_once())
    ranks = [np.zeros((1, cfg.n_max), np.int32)] * len(batches)
    params = init(jax.random.key(0), batches[0])
    first = ga.evaluate(counted, params, jax.random.key(1), batches, ranks)
    assert ga.evaluate(counted, params, jax.random.key(1), batches, ranks) == first and len(traces) == 1
