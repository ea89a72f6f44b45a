"""Graph autoencoding of Erdos-Renyi graphs: SymPE against the paper's ablations.

A jraph message-passing encoder (4 layers, width 64; per-node latent 32 at the
`cpu` preset, 8 at the benchmark's `paper` preset) and the distance decoder
A_ij = sigmoid(w ||z_i - z_j||^2 + b) reconstruct the adjacency of graphs whose nodes carry no
features. Every row trains with the same configuration, budget and seeds; only the symmetry
breaking differs:

* ``none``: constant node input;
* ``noise``: i.i.d. Gaussian node channels;
* ``randperm``: a learned table v under a uniformly random permutation (no sorting);
* ``laplacian``: Laplacian eigenvectors passed directly, with a random sign and a random basis
  of every repeated eigenspace per sample (so the row is equivariant in law);
* ``sympe``: v[rank], rank from ``sort_permutation`` of a fixed, exactly equivariant spectral
  score (``features.invariant_node_scores``: random-walk return probabilities and degree),
  ties broken at random, at the encoder input;
* ``sympe_learned``: the same with a learned scorer, the fixed score plus
  ``sympe_jax.nn.scorers.NodeScoreHead`` (a per-node MLP of the structural features, zero at
  initialization), trained through ``encodings.straight_through_sympe``: the sample is the
  sort's, the scorer's gradient that of the soft ranks at temperature ``scorer_temperature``. Its record holds the scorer's gradient
  norm, how many test nodes it re-ranked, and its ties against the orbits (``scorer_diagnostics``);
* ``sympe_decoder``: the fixed-score encoding mixed into the latents at the decoder instead;
* ``exact``: v[rank] with rank an exact inversion-kernel sample (nauty canonical labelling
  composed with a uniform automorphism, ``sympe_jax.exact.automorphisms``), at the encoder input.

The preset runs those eight rows (the benchmark's and the issue's). Our own ablations and
controls run on demand with ``--encodings``, at the same budget; the summary lists those that have
result files of the same configuration below the preset's rows:

* ``features``, ``sympe_features``, ``exact_features``: the encoder input of ``none``,
  ``sympe`` and ``exact`` plus the structural node features the SymPE score is made of
  (``features.structural_node_features``: random-walk return probabilities and degree). They
  give the score's information a path that carries gradient, and ``features`` separates what
  the features add from what the symmetry breaking adds.
* ``randperm_features``, ``laplacian_features``: ``randperm`` and
  ``laplacian`` plus the structural features, the controls for ``sympe_features`` (does the
  sort add anything to random node identities, and do the features help the best fixed
  encoding as much?).
* ``sympe_laplacian``: SymPE plus the ``laplacian`` row's randomized eigenvectors at the encoder
  input (does SymPE add anything to the best fixed encoding?).

The fixed spectral score already ties exactly the automorphism orbits on almost every test
graph (measured and written to the summary); ``sympe_learned`` measures what training the
scorer adds (sorting alone passes it no gradient).
Test metrics (edge error %, F1) use the parameters with the best validation BCE; the exact
1-WL error floor of models without symmetry breaking is computed on the test set and reported
beside the ``none`` row.

    python -m experiments.graph_autoencoder --preset demo    # 2 rows, 300 steps, small splits: a few minutes
    python -m experiments.graph_autoencoder --preset cpu     # 8 rows x 3 seeds, ~55 min on 2 cores
    python -m experiments.graph_autoencoder --preset paper   # the benchmark's budget: 500,000 one-graph updates
    python -m experiments.graph_autoencoder --preset paper --steps-per-call 100   # the same updates, 100 per call
    python -m experiments.graph_autoencoder --preset cpu --encodings sympe,none --seeds 0 --num-steps 2000
    python -m experiments.launch --num-processes 2 -- python -m experiments.graph_autoencoder --preset demo --tag smoke

Several processes (hosts; docs/distributed.md): ``--distributed``, or automatically under
``python -m experiments.launch``, SLURM (``srun``) or a multi-host TPU slice, joins one run of
``jax.distributed``. With several devices in all whose number divides ``batch_size``, every
training batch is cut into one block of ``batch_size / devices`` graphs per device, each its
own padded jraph batch (``data.stack_blocks``), and each process builds only its own blocks;
otherwise (e.g. the ``paper`` preset's batch of one graph) every process builds the whole batch
and every device computes all of it. Every process evaluates on its own copy of the
parameters; process 0 alone prints and writes the result files, summary and figures.

``--steps-per-call K`` runs K training updates per compiled call (a scan over K batches and keys:
the same updates, bitwise on CPU, without the host's per-update dispatch cost that dominates the
``paper`` preset's one-graph step; docs/benchmarks.md). K must divide ``eval_every`` and
``checkpoint_every``; a run with K > 1 is a run of its own (its own run directory and result
files), and records without the field are runs with K = 1.

Runs checkpoint under runs/graph_autoencoder/<preset>-<config hash>/<row>_seed<k>/ and resume; finished runs
(result file with the same config) are skipped; ``--force`` deletes the run directory and retrains.
Writes results/graph_autoencoder/*.json and results/graph_autoencoder/summary.json,
reconstructions.png, learning_curves.png (other presets: with a ``<preset>_`` prefix); the ``demo``
preset and tags starting with ``demo``/``smoke`` write them under runs/graph_autoencoder/results/
instead (git-ignored).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import platform
import sys
import time
import weakref

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
from jax.sharding import PartitionSpec

from sympe_jax import canonicalize
from sympe_jax.exact import automorphisms

from experiments._lib import config as common
from experiments._lib import distributed, rundir
from experiments._lib import train as training
from experiments.graph_autoencoder import data as erdos_renyi
from experiments.graph_autoencoder import floors, models
from experiments.graph_autoencoder.configs import (EXTRA_ROWS, LABELS, MESSAGE_GRAPHS, PAPER, PRESETS, ROWS,
                                                   Config)
from experiments.graph_autoencoder.encoding import ExactRanks, build, node_scores, row_encoding

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _split_counts(forward):
    """``jit((params, key, batches, ranks) -> float32/int32 [7, num_batches])``: per batch (stacked
    along axis 0, batch i with the key ``fold_in(key, i)``) the summed BCE, pair count, errors,
    pairs, tp, fp, fn. One call per split (a ``lax.map`` over its batches), compiled once per
    ``forward``: evaluating batch by batch paid a dispatch per graph and a compile per call."""
    fn = _SPLIT_COUNTS.get(forward)
    if fn is None:
        def one(p, key, i, batch, ranks):
            logits, pairs = forward(p, jax.random.fold_in(key, i), batch, ranks)
            bce, count = models.edge_bce(logits, batch.adjacency, pairs)
            return (bce, count) + models.edge_error_and_f1(logits, batch.adjacency, pairs)

        def counts(p, key, batches, ranks):
            index = jnp.arange(jax.tree.leaves(ranks)[0].shape[0], dtype=jnp.int32)
            return jax.lax.map(lambda xs: one(p, key, *xs), (index, batches, ranks))

        fn = _SPLIT_COUNTS[forward] = jax.jit(counts)
    return fn


_SPLIT_COUNTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def evaluate(forward, params, key, batches, exact) -> dict[str, float]:
    """Mean BCE, edge error % and F1 over a split (one encoding sample per graph; batch i of the
    split uses the key ``fold_in(key, i)``)."""
    stack = functools.partial(jax.tree.map, lambda *xs: np.stack([np.asarray(x) for x in xs]))
    per_batch = _split_counts(forward)(params, key, stack(*batches), stack(*exact))
    totals = np.zeros(7)
    for row in np.stack([np.asarray(x, np.float64) for x in per_batch], axis=1):   # in batch order, as summed before
        totals += row
    bce, count, errors, pairs, tp, fp, fn = totals
    out = models.summarize_edge_counts(errors, pairs, tp, fp, fn)
    out["bce"] = bce / count
    return out


def predict_dense(forward, params, key, adjs, cfg: Config, n_edge: int | None) -> list[np.ndarray]:
    """Predicted 0/1 adjacency (logit > 0) for a few graphs, in their order (batch by batch)."""
    batcher = make_batcher(adjs, cfg, n_edge)
    exact = ExactRanks(adjs, cfg.n_max)
    fwd, rng, out = jax.jit(forward), np.random.default_rng(0), []
    for i, batch in enumerate(batcher.iterate_once()):
        # the first batch keeps `key` itself, so runs whose graphs fit one batch are unchanged
        logits, _ = fwd(params, jax.random.fold_in(key, i) if i else key, batch, exact.sample(batch.indices, rng))
        out += [(np.asarray(logits[b, :size, :size]) > 0).astype(int)
                for b, size in enumerate(batch.sizes) if batch.graph_mask[b]]
    return out


def showcase_graphs(test_adjs) -> dict[str, np.ndarray]:
    return {"cycle C_8": nx.to_numpy_array(nx.cycle_graph(8), dtype=np.uint8),
            "star S_7": nx.to_numpy_array(nx.star_graph(7), dtype=np.uint8),
            "ER test graph": np.asarray(test_adjs[0], np.uint8)}



# ----------------------------------------------------------------------------- one run


def check_message_graph(cfg: Config) -> None:
    if cfg.message_graph not in MESSAGE_GRAPHS:
        raise ValueError(f"message_graph must be one of {MESSAGE_GRAPHS}, got {cfg.message_graph!r}")


def make_batcher(adjs, cfg: Config, n_edge: int | None) -> erdos_renyi.GraphBatcher:
    """Padded batches of ``adjs`` on the config's message graph (edges or all pairs)."""
    check_message_graph(cfg)
    return erdos_renyi.GraphBatcher(adjs, cfg.batch_size, cfg.n_max, n_edge=n_edge,
                                    complete=cfg.message_graph == "complete")


def data_parallel_blocks(cfg: Config) -> int:
    """Blocks a training batch is cut into: one per device of the run (every process's) when
    there are several and they divide ``batch_size``, else 1 (the whole batch, replicated).

    A jraph batch is one graph of its graphs (node and edge arrays of the whole batch, indices
    into them), so it cannot be sharded by rows; a block is a padded batch of its own.
    """
    devices = jax.device_count()
    return devices if devices > 1 and cfg.batch_size % devices == 0 else 1


def _say(*args) -> None:
    """``print`` (flushed) in process 0 only."""
    if distributed.is_main():
        print(*args, flush=True)


def load_splits(cfg: Config):
    if cfg.dataset != "erdos_renyi":
        raise ValueError("only the erdos_renyi dataset is wired in this script")
    return erdos_renyi.splits(cfg.dataset, (cfg.num_train, cfg.num_val, cfg.num_test))


@dataclasses.dataclass(frozen=True)
class RunSetup:
    """What :func:`experiments._lib.train.train` gets for one (row, seed), and what the evaluation
    after it needs (built by :func:`setup_run`; ``benchmarks/graph_ae_step.py`` times its step)."""

    tcfg: training.TrainConfig
    loss_fn: object
    params: object
    optimizer: object
    batch_fn: object
    key: jax.Array
    eval_fn: object
    batch_spec: object
    blocks: int
    forward: object
    whole_batch: object
    eval_batches: object
    test_batches: list
    test_ranks: object
    k_test: jax.Array
    n_edge: int | None


def train_config(cfg: Config) -> training.TrainConfig:
    """The trainer's schedule of a run: a train row every 100 steps (or every ``steps_per_call``
    steps, if that is not a divisor of 100: the least common multiple)."""
    return training.TrainConfig(num_steps=cfg.num_steps, eval_every=cfg.eval_every,
                                checkpoint_every=cfg.checkpoint_every, log_every=math.lcm(100, cfg.steps_per_call),
                                select_metric="val_bce", select_mode="min", steps_per_call=cfg.steps_per_call)


def setup_run(cfg: Config, row: str, seed: int, data) -> RunSetup:
    """Model, data, loss, optimizer and evaluation of one (row, seed), as :func:`run_one` trains them."""
    train_adjs, val_adjs, test_adjs = data
    exact_kernel = row_encoding(row, cfg).needs_ranks   # the exact row: ranks sampled on the host
    # One edge budget for every split: the batch with the most message edges (along edges, smaller
    # than the default B n_max (n_max - 1), which makes a step about 1.4x faster).
    n_edge = erdos_renyi.max_edges_per_batch(list(train_adjs) + list(val_adjs) + list(test_adjs), cfg.batch_size,
                                             complete=cfg.message_graph == "complete")
    batcher = make_batcher(train_adjs, cfg, n_edge)
    exact_train = ExactRanks(train_adjs, cfg.n_max) if exact_kernel else None
    forward, init = build(cfg, row)
    dummy_ranks = np.tile(np.arange(cfg.n_max, dtype=np.int32), (cfg.batch_size, 1))

    def whole_batch(i):   # a pure function of i: exact resume
        batch = batcher.batch_at(i, seed)
        ranks = exact_train.sample(batch.indices, np.random.default_rng([seed, i])) if exact_train else dummy_ranks
        return batch, ranks

    blocks = data_parallel_blocks(cfg)
    if blocks > 1:   # one padded block of b graphs per device, with the edge budget of b graphs
        b = cfg.batch_size // blocks
        block_edges = erdos_renyi.max_edges_per_batch(list(train_adjs) + list(val_adjs) + list(test_adjs), b,
                                                      complete=cfg.message_graph == "complete")
        block_batcher = make_batcher(train_adjs, dataclasses.replace(cfg, batch_size=b), block_edges)

    def rows(i, index, count):
        """Process ``index`` of ``count``: its rows of batch ``i``, as its blocks (pure in (i, index, count))."""
        if blocks == 1:
            return whole_batch(i)   # every process builds the whole batch, which is replicated
        idx = batcher.indices_at(i, seed)
        mine = distributed.local_rows(cfg.batch_size, index, count)
        batch = erdos_renyi.stack_blocks([block_batcher.make_slots(part)
                                          for part in np.split(idx[mine], blocks // count)])
        # the exact row draws the ranks of the whole batch from one generator, as a single process does
        ranks = exact_train.sample(idx, np.random.default_rng([seed, i])) if exact_train else dummy_ranks
        return batch, ranks[mine]

    batch_fn = distributed.per_process(rows)

    def loss_fn(params, data_, key):
        batch, ranks = data_
        logits, pairs = forward(params, key, batch, ranks)
        return models.reconstruction_loss(logits, batch.adjacency, pairs), {}

    def eval_batches(adjs):
        """The split's batches, and ``key -> ranks`` of the exact row: a fresh inversion-kernel
        draw per evaluation, from the evaluation's own key (as the other rows' encodings)."""
        b = make_batcher(adjs, cfg, n_edge)
        ex = ExactRanks(adjs, cfg.n_max) if exact_kernel else None
        batches = list(b.iterate_once())

        def ranks(key):
            rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
            return [ex.sample(x.indices, rng) if ex else dummy_ranks for x in batches]
        return batches, ranks

    val_batches, val_ranks = eval_batches(val_adjs)
    test_batches, test_ranks = eval_batches(test_adjs)

    def eval_fn(params, key):
        r = evaluate(forward, params, key, val_batches, val_ranks(key))
        return {"val_bce": r["bce"], "val_edge_error_pct": r["edge_error_pct"]}

    key = jax.random.key(seed)
    k_init, k_train, k_test = jax.random.split(key, 3)
    params = jax.jit(init)(k_init, batcher.batch_at(0, seed))
    optimizer = training.make_optimizer(cfg.learning_rate, cfg.num_steps, warmup_steps=cfg.warmup_steps,
                                        clip_norm=cfg.clip_norm or None, weight_decay=cfg.weight_decay)
    return RunSetup(tcfg=train_config(cfg), loss_fn=loss_fn, params=params, optimizer=optimizer, batch_fn=batch_fn,
                    key=k_train, eval_fn=eval_fn, batch_spec=None if blocks > 1 else PartitionSpec(), blocks=blocks,
                    forward=forward, whole_batch=whole_batch, eval_batches=eval_batches, test_batches=test_batches,
                    test_ranks=test_ranks, k_test=k_test, n_edge=n_edge)


def run_one(cfg: Config, row: str, seed: int, data, force: bool = False, root: pathlib.Path = ROOT) -> dict:
    """Train and evaluate one (row, seed), or return its result file's record if it exists.
    ``force`` retrains from scratch: the run directory is deleted, nothing resumes."""
    out_path, old = common.finished_run(common.results_dir(root, "graph_autoencoder", cfg), cfg, row, seed, force)
    if old is not None:
        return old
    cfg_dict = json.loads(json.dumps(dataclasses.asdict(cfg)))
    train_adjs, _, test_adjs = data
    run = setup_run(cfg, row, seed, data)
    forward, blocks, k_test, n_edge, loss_fn, params = (run.forward, run.blocks, run.k_test, run.n_edge,
                                                        run.loss_fn, run.params)
    workdir = common.run_workdir(root, "graph_autoencoder", cfg, row, seed, force=force)
    _say(f"[{row} seed {seed}] training {cfg.num_steps} steps ({workdir.relative_to(root)})")
    result = training.train(run.tcfg, loss_fn=loss_fn, params=params, optimizer=run.optimizer,
                            batch_fn=run.batch_fn, key=run.key, workdir=workdir, eval_fn=run.eval_fn,
                            batch_spec=run.batch_spec)
    wall = result.wall_time_s
    best = distributed.local_copy(result.best_params)   # several processes: this process's replica
    test = evaluate(forward, best, k_test, run.test_batches, run.test_ranks(k_test))
    train_batches, train_ranks = run.eval_batches(train_adjs[:500])
    train_sub = evaluate(forward, best, k_test, train_batches, train_ranks(jax.random.fold_in(k_test, 3)))
    shows = showcase_graphs(test_adjs)
    preds = predict_dense(forward, best, jax.random.fold_in(k_test, 9), list(shows.values()), cfg, n_edge)
    record = {
        "row": row, "label": LABELS[row], "seed": seed, "config": cfg_dict,
        "test": test, "train_subset": train_sub, "best_step": result.best_step,
        "best_val": result.best_metrics, "selection": result.selection,
        "curve": [{"step": r["step"], "val_bce": r["val_bce"], "val_edge_error_pct": r["val_edge_error_pct"]}
                  for r in result.history if r.get("split") == "eval"],
        "showcase": {name: {"true": a.tolist(), "pred": p.tolist()} for (name, a), p in zip(shows.items(), preds)},
        "train_wall_time_s": round(wall, 1), "steps_per_second": result.steps_per_second,
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
    }
    if jax.process_count() > 1 or jax.device_count() > 1:
        record["parallel"] = {"process_count": jax.process_count(), "device_count": jax.device_count(),
                              "batch_blocks": blocks}
    if row_encoding(row, cfg).learns_scores:
        record["scorer"] = scorer_diagnostics(loss_fn, params, best, run.whole_batch(0), test_adjs, cfg)
    if distributed.is_main():
        training.save_json(out_path, record)
    _say(f"[{row} seed {seed}] test edge error {test['edge_error_pct']:.3f}% F1 {test['f1']:.4f} "
         f"(best step {result.best_step}, {wall:.0f}s)")
    return record


# ----------------------------------------------------------------------------- analysis and report


def scorer_diagnostics(loss_fn, init_params, trained_params, data_, test_adjs, cfg: Config) -> dict:
    """Does the ``sympe_learned`` scorer train, and what did training change?

    The norm of the loss gradient in the scorer's parameters on the first training batch, at
    initialization and at the selected parameters (exactly 0 if the sort were its only path);
    the share of test nodes whose rank (same tie-break key) differs from the fixed score's; and
    the learned scores' ties against the automorphism orbits (``tie_orbit_agreement``).
    """
    key = jax.random.key(0)

    @jax.jit
    def scorer_grad_norm(params):
        grads = jax.grad(lambda p: loss_fn(p, data_, key)[0])(params)
        return training.global_norm(grads["scorer"])

    dense, mask = erdos_renyi.pad_dense(test_adjs, cfg.n_max)
    dense, mask = jnp.asarray(dense), jnp.asarray(mask)
    keys = jax.random.split(key, len(test_adjs))

    @jax.jit
    def ranks(scorer_params):
        scores = node_scores(scorer_params, dense, mask, cfg)
        return jax.vmap(lambda k, s_, m: canonicalize.sort_permutation(k, s_, m, atol=cfg.atol))(keys, scores, mask)

    moved = np.asarray((ranks(trained_params["scorer"]) != ranks(None)) & mask)
    ties = tie_orbit_agreement(test_adjs, cfg, trained_params["scorer"])
    return {"grad_norm_init": float(scorer_grad_norm(init_params)),
            "grad_norm_trained": float(scorer_grad_norm(trained_params)),
            "test_nodes_rank_changed_pct": float(100 * moved.sum() / np.asarray(mask).sum()),
            "test_graphs_order_changed": int(moved.any(axis=1).sum()),
            "tie_orbit_agreement": ties}


def tie_orbit_agreement(adjs, cfg: Config, scorer_params=None) -> dict:
    """How often the score ties of the SymPE canonicalizer are exactly the automorphism orbits
    (the fixed scores, or the ``sympe_learned`` row's trained scorer)."""
    dense, mask = erdos_renyi.pad_dense(adjs, cfg.n_max)
    scores = np.asarray(jax.jit(node_scores, static_argnums=3)(scorer_params, jnp.asarray(dense), jnp.asarray(mask), cfg))
    equal, extra, missing, pairs, nodes, tied_nodes, orbit_nodes = 0, 0, 0, 0, 0, 0, 0
    bits = {"sympe": 0.0, "exact": 0.0, "randperm": 0.0}
    for i, a in enumerate(adjs):
        n = len(a)
        ties = np.asarray(canonicalize.tie_groups(jnp.asarray(scores[i, :n]), atol=cfg.atol))
        orb = automorphisms.orbits(a)
        # randomness of each encoding of this graph: uniform tie-breaks within the tie groups,
        # uniform on the automorphism coset, uniform on S_n
        bits["sympe"] += sum(math.lgamma(c + 1) for c in np.unique(ties, return_counts=True)[1]) / math.log(2)
        bits["exact"] += math.log2(automorphisms.group_order(a))
        bits["randperm"] += math.lgamma(n + 1) / math.log(2)
        tied, same = ties[:, None] == ties[None], orb[:, None] == orb[None]
        off = ~np.eye(n, dtype=bool)
        equal += int(np.array_equal(tied, same))
        extra += int((tied & ~same & off).sum())
        missing += int((~tied & same & off).sum())
        pairs += n * (n - 1)
        nodes += n
        tied_nodes += int((tied & off).any(axis=1).sum())
        orbit_nodes += int((same & off).any(axis=1).sum())
    return {"graphs": len(adjs), "atol": cfg.atol, "ties_equal_orbits": equal,
            "ties_equal_orbits_fraction": equal / len(adjs),
            "tied_non_automorphic_pair_pct": 100 * extra / pairs, "untied_automorphic_pair_pct": 100 * missing / pairs,
            # nodes left to the random tie-break, and nodes with an automorphic twin (the ideal)
            "tied_node_pct": 100 * tied_nodes / nodes, "automorphic_node_pct": 100 * orbit_nodes / nodes,
            # mean bits of randomness of the node ordering per test graph, by encoding
            "ordering_entropy_bits": {k: v / len(adjs) for k, v in bits.items()}}


def free_embedding_error(adjs, cfg: Config, steps: int = 3000, restarts: int = 3, seed: int = 0) -> dict:
    """Edge error % of the distance decoder on *free* per-graph latents (no encoder).

    For every graph, Adam fits ``z`` (n x latent) and the decoder's (w, b) to its own adjacency
    (BCE, best of ``restarts`` initializations). It tells whether the decoder with this latent
    size can represent the graphs at all: if it reaches ~0%, the errors of the trained models
    come from the encoder (what it can compute and how it generalizes), not from the decoder.
    """
    import optax

    n_max, d = cfg.n_max, cfg.latent
    dense, real = erdos_renyi.pad_dense(adjs, n_max)
    pairs = jnp.asarray(real[:, :, None] & real[:, None, :] & ~np.eye(n_max, dtype=bool))
    dense = jnp.asarray(dense)
    opt = optax.adam(3e-2)

    def logits(params):
        z, log_w, b = params
        return -jnp.exp(log_w) * jnp.sum((z[:, None] - z[None]) ** 2, -1) + b

    def fit(key, adj, pm):
        def loss(params):
            bce = optax.sigmoid_binary_cross_entropy(logits(params), adj)
            return jnp.sum(jnp.where(pm, bce, 0.0)) / jnp.sum(pm)

        def step(carry, _):
            params, state = carry
            updates, state = opt.update(jax.grad(loss)(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        params = (jax.random.normal(key, (n_max, d)), jnp.float32(0.0), jnp.float32(1.0))
        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
        return jnp.sum(pm & ((logits(params) > 0) != (adj > 0.5)))

    fit_all = jax.jit(jax.vmap(fit))
    errors = np.min([np.asarray(fit_all(jax.random.split(jax.random.key(seed + r), len(adjs)), dense, pairs))
                     for r in range(restarts)], axis=0)
    return {"latent": d, "steps": steps, "restarts": restarts, "graphs": len(adjs),
            "edge_error_pct": float(100 * errors.sum() / float(pairs.sum())),
            "graphs_with_errors": int((errors > 0).sum())}


def aggregate(cfg: Config, records: list[dict], test_adjs, command: str, on_demand: tuple[str, ...] = ()) -> dict:
    """The summary: per-row mean and std over seeds of ``cfg.encodings`` and of the ``on_demand`` rows
    (records of the same config, listed after the preset's), and the test-set analyses."""
    rows = {}
    for row in cfg.encodings + on_demand:
        rs = [r for r in records if r["row"] == row]
        err = np.array([r["test"]["edge_error_pct"] for r in rs])
        f1 = np.array([r["test"]["f1"] for r in rs])
        tr = np.array([r["train_subset"]["edge_error_pct"] for r in rs])
        rows[row] = {"label": LABELS[row], "paper": PAPER.get(row), "seeds": [r["seed"] for r in rs],
                     "edge_error_pct": [float(err.mean()), float(err.std())], "f1": [float(f1.mean()), float(f1.std())],
                     "train_edge_error_pct": [float(tr.mean()), float(tr.std())],
                     "per_seed_edge_error_pct": err.tolist(),
                     "train_wall_time_s": float(np.mean([r["train_wall_time_s"] for r in rs]))}
        scorers = [r["scorer"] for r in rs if "scorer" in r]
        if scorers:   # sympe_learned: per-seed scorer diagnostics
            rows[row]["scorer"] = {k: [sc[k] for sc in scorers] for k in
                                   ("grad_norm_init", "grad_norm_trained", "test_nodes_rank_changed_pct")}
            rows[row]["scorer"]["ties_equal_orbits"] = [sc["tie_orbit_agreement"]["ties_equal_orbits"] for sc in scorers]
            rows[row]["scorer"]["tied_node_pct"] = [sc["tie_orbit_agreement"]["tied_node_pct"] for sc in scorers]
    floor = floors.wl_pair_floor(test_adjs)
    return {"preset": cfg.preset, "command": command, "config": dataclasses.asdict(cfg), "seeds": list(cfg.seeds),
            "rows": rows, "order": list(cfg.encodings), "on_demand": list(on_demand),
            "wl_floor": {k: v for k, v in floor.items() if not isinstance(v, (list, np.ndarray))},
            "tie_orbit_agreement": tie_orbit_agreement(test_adjs, cfg),
            "free_embedding": free_embedding_error(test_adjs, cfg)}


def plot(records: list[dict], cfg: Config, out_dir: pathlib.Path, prefix: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = common.lowest_seed_records(records, "row")
    rows = [r for r in cfg.encodings if r in first]
    names = list(next(iter(first.values()))["showcase"])
    fig, axes = plt.subplots(len(names), len(rows) + 1, figsize=(2.2 * (len(rows) + 1), 2.3 * len(names)))
    for gi, name in enumerate(names):
        true = np.asarray(first[rows[0]]["showcase"][name]["true"])
        g = nx.from_numpy_array(true)
        pos = nx.circular_layout(g) if name != "ER test graph" else nx.spring_layout(g, seed=0)
        panels = [("input", true)] + [(r, np.asarray(first[r]["showcase"][name]["pred"])) for r in rows]
        for ci, (title, pred) in enumerate(panels):
            ax = axes[gi, ci]
            ax.set_axis_off()
            iu = np.triu_indices(len(true), 1)
            ok = [(i, j) for i, j in zip(*iu) if true[i, j] and pred[i, j]]
            missed = [(i, j) for i, j in zip(*iu) if true[i, j] and not pred[i, j]]
            extra = [(i, j) for i, j in zip(*iu) if pred[i, j] and not true[i, j]]
            nx.draw_networkx_nodes(g, pos, ax=ax, node_size=25, node_color="k")
            nx.draw_networkx_edges(g, pos, edgelist=ok, ax=ax, width=1.0)
            nx.draw_networkx_edges(g, pos, edgelist=missed, ax=ax, width=1.0, edge_color="tab:red", style="dashed")
            nx.draw_networkx_edges(g, pos, edgelist=extra, ax=ax, width=0.8, edge_color="tab:orange")
            errs = len(missed) + len(extra)
            ax.set_title(("input" if ci == 0 else f"{title}\n{errs} wrong pairs") if gi == 0 or ci == 0 else
                         f"{errs} wrong pairs", fontsize=7)
    fig.suptitle("Reconstructions (seed %d): black correct, red dashed missed, orange spurious" % min(cfg.seeds),
                 fontsize=9)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / f"{prefix}reconstructions.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in rows:
        curve = first[r]["curve"]
        steps = [c["step"] for c in curve]
        ax[0].plot(steps, [c["val_bce"] for c in curve], label=LABELS[r])
        ax[1].plot(steps, [c["val_edge_error_pct"] for c in curve], label=LABELS[r])
    ax[0].set_ylabel("validation BCE")
    ax[1].set_ylabel("validation edge error %")
    ax[1].set_yscale("log")
    for a in ax:
        a.set_xlabel("step")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / f"{prefix}learning_curves.png", dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    cfg, args = common.parse_config(Config, PRESETS, argv, doc=__doc__, choices={"encodings": ROWS + EXTRA_ROWS},
                                    prog="python -m experiments.graph_autoencoder")
    try:
        check_message_graph(cfg)
    except ValueError as e:
        raise SystemExit(f"--message-graph: {e}") from None
    try:
        train_config(cfg)
    except ValueError as e:
        raise SystemExit(f"--steps-per-call: {e}") from None
    return cfg, args


@distributed.fail_fast
@rundir.exit_on_run_error
def main(argv=None) -> int:
    cfg, args = parse_args(argv)
    distributed.initialize(args.distributed)
    command = common.command_line("graph_autoencoder", argv)
    _say(f"graph autoencoder, preset {cfg.preset}: rows {cfg.encodings}, seeds {cfg.seeds}, {cfg.num_steps} steps")
    t0 = time.time()
    data = load_splits(cfg)
    out_dir = common.results_dir(ROOT, "graph_autoencoder", cfg)
    cfg, records, complete = common.collect_records(
        cfg, args, out_dir, lambda row, seed: run_one(cfg, row, seed, data, args.force))
    if not distributed.is_main():   # process 0 writes the summary and the figures
        return 0
    others = tuple(r for r in EXTRA_ROWS if r not in cfg.encodings)
    extra = common.existing_records(out_dir, dataclasses.replace(cfg, encodings=others), others, "row")
    on_demand = tuple(r for r in others if any(x["row"] == r for x in extra))
    summary = aggregate(cfg, records + extra, data[2], command, on_demand)
    summary["complete"] = complete
    summary["wall_time_s"] = round(time.time() - t0, 1)       # this process (summarize-only: no training)
    summary["runs_train_wall_time_s"] = round(sum(r["train_wall_time_s"] for r in records), 1)   # the preset's rows
    prefix = common.summary_prefix(cfg.preset)
    training.save_json(out_dir / f"{prefix}summary.json", summary)
    plot(records, cfg, out_dir, prefix)
    print("\nrow | edge error % | F1 | paper")
    for row in cfg.encodings + on_demand:
        r = summary["rows"][row]
        print(f"{row:14s} | {r['edge_error_pct'][0]:.3f} ± {r['edge_error_pct'][1]:.3f} | {r['f1'][0]:.4f} | {r['paper']}")
    print(f"1-WL floor (test): {summary['wl_floor']}")
    print(f"ties vs orbits: {summary['tie_orbit_agreement']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
