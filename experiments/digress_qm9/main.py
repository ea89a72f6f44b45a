"""DiGress on QM9 without hydrogens: with and without SymPE, at the same budget.

Every row trains the same DiGress (graph transformer, marginal transitions, cosine schedule,
loss CE_X + 5 CE_E, the reference's AMSGrad) with the same data, steps, batch size, width and
seeds; only the symmetry breaking of the denoiser differs (``experiments.digress_qm9.diffusion.sympe``):

* ``digress``: no symmetry breaking (the reference model);
* ``noise``: ``pe_features`` i.i.d. Gaussian node channels, fresh at every denoiser call;
* ``sympe`` ("nodes only"): node i gets ``v[rank(i)]``, ``v`` a learned (9, pe_features)
  table, ``rank`` from sorting an exactly equivariant score of the *noisy* graph (spectral +
  cycles + typed neighbourhood hash, ``sympe.node_scores``) with random tie-breaking;
* ``sympe_edges``: the same node channels plus pair channels ``[u_i u_j, u_i + u_j]``,
  ``u = v[rank]``, appended to the edge input.
* ``sympe_learned`` (nodes only): ``sympe`` whose score adds a learned, zero-initialised
  per-node head (``sympe_jax.nn.scorers.NodeScoreHead`` of exactly equivariant node features of
  the noisy graph) trained through the library's straight-through SymPE at temperature
  ``scorer_temperature``; its record holds the scorer's diagnostics (``scorer_diagnostics``:
  gradient norm at initialisation and after training, test nodes it re-ranked, its ties
  against the typed automorphism orbits beside the fixed score's).

Leak controls (invalid or non-equivariant on purpose, never methods; each labelled so): they
measure how much NLL a denoiser gains from information a valid equivariant one does not have.

* ``sympe_clean``: ``sympe`` sorted on the **clean** graph x0 instead of the noisy z_t. Its
  NLL is not a bound (the denoiser sees its target). No clean graph exists when sampling, so
  its samples sort z_t as ``sympe`` does: they show what the leak-trained model generates
  without the leak.
* ``sympe_index_ties``: ``sympe`` with ties broken by node index (deterministic): the
  dataset's atom order leaks within every tie group.
* ``index_pe``: ``v[i]`` for node i, no sorting: a positional encoding in dataset order.

Order diagnostic (every row evaluated by this version): the test NLL twice, in the dataset's
atom order and with every test molecule's real nodes permuted at random (a fixed key per
molecule, ``order_permutations``). Both evaluations use the same key, hence the same t, z_t and
z_0 per molecule (drawn in dataset order, then permuted with the molecule,
``DiGress.nll(..., perm)``), so their per-molecule difference holds only the denoiser's own
randomness and what it reads from the node order. A denoiser that is equivariant in law has a
difference of 0 in expectation; the result file records both NLLs and the difference (mean,
standard error over molecules) under ``order_diagnostic``.

g~ is part of the model's randomness: one sample per graph per denoiser call, drawn from the
denoiser's key. Training uses one g~ per graph and step; the test NLL (the reference's four
terms, nats per molecule, ``nll_repeats`` independent draws of t per molecule) uses one
independent g~ at t and one at t = 0, which in expectation upper-bounds the bound of the model
that averages over g~ (see the docstring of ``experiments.digress_qm9.diffusion.sympe``); sampling draws a
fresh g~ at every reverse step. Rows of one seed share the evaluation key, hence every t and
z_t per molecule: the summary gives each row's NLL minus the first row's, paired by molecule.

Presets:

* ``cpu`` (3 rows: digress, noise, sympe; ``--encodings ...,sympe_edges`` adds the fourth): a
  20,000-molecule subset of the training split, the reduced transformer
  (``GraphTransformerConfig.cpu()``: 4 layers, dx 128, de 32, dy 32; 1.4 M parameters),
  T = 100, batch 128, 2,000 steps (13 epochs of the subset), AMSGrad lr 5e-4 with gradient
  clipping at 1; test NLL on the whole test split (13,055 molecules, 4 draws each), 1,024 samples.
  Measured on 2 cores: 1.3-1.9
  training steps/s (1,219-1,528 s of training per row, the slower ones with other jobs on the
  cores) plus about 3 min of compilation, evaluation and sampling; each result file records its
  wall times.
  ``--seeds 0,1,2`` triples it.
* ``paper``: the reference scale for an accelerator: 9 layers (8.2 M parameters), T = 500,
  batch 1024, 1000 epochs of the full training split (95,000 steps), AMSGrad lr 2e-4, no
  clipping; test NLL on the whole test split (13,055), 10,000 samples; all four rows.
* ``demo``: a few steps of a tiny model on the test fixture
  (``tests/experiments/digress_qm9/fixtures``): an end-to-end check in seconds (results under
  runs/, git-ignored).

    python -m experiments.digress_qm9 --preset cpu                  # 3 rows x 1 seed, ~75 min, 2 cores
    python -m experiments.digress_qm9 --preset cpu --seeds 0,1,2    # 3 seeds, ~4 h
    python -m experiments.digress_qm9 --preset paper                # accelerator
    python -m experiments.digress_qm9 --preset cpu --encodings sympe --num-steps 500   # override any field
    python -m experiments.launch --num-processes 2 -- python -m experiments.digress_qm9 --preset demo   # 2 processes

Several processes (hosts; docs/distributed.md): ``--distributed``, or automatically under
``python -m experiments.launch``, SLURM (``srun``) or a multi-host TPU slice, joins one run of
``jax.distributed``; each process builds only its own rows of every training batch (the same
global batch of ``batch_size`` molecules), every process evaluates, process 0 alone prints and
writes the result files and figures.

Runs checkpoint (orbax) under runs/digress_qm9/<preset>-<config hash>/<row>_seed<k>/ and resume
where they stopped (also after training: evaluation restarts from the final checkpoint);
finished runs (a result file with the same config) are skipped, ``--force`` deletes the run
directory and retrains from scratch. Writes
results/digress_qm9/<preset>_<row>_seed<k>.json (config, seed, versions, environment, wall
times, test NLL and its four terms, validity / relaxed validity / uniqueness / novelty, sampled
SMILES), results/digress_qm9/summary.json and results/digress_qm9/samples.png (RDKit drawings
of sampled molecules, one block per row; presets other than ``cpu`` write them with a
``<preset>_`` prefix, so the README's cpu table is never replaced; the ``demo`` preset and tags
starting with ``demo``/``smoke`` write them under runs/digress_qm9/results/, git-ignored).
Validity follows the reference: strict validity on
the molecule without charges; uniqueness on the relaxed-valid SMILES; novelty against the
SMILES of the whole training split (not only the subset trained on).

Targets (paper, test NLL; its budget is unknown): DiGress 129.7, DiGress + noise 126.5,
DiGress + SymPE 30.3 (which we take to be nodes + edges, since the paper also lists a
"nodes only" row whose numbers are not available); the reference DiGress after its likelihood
bug-fix reports 69.6 (T = 500; cpu-preset numbers use T = 100 and are not comparable to it).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import sys
import time
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from sympe_jax import canonicalize
from sympe_jax.groups import permutation

from experiments._lib import config as common
from experiments._lib import distributed, rundir
from experiments._lib import train as training
from experiments._lib.config import option
from experiments.digress_qm9 import molecules, qm9
from experiments.digress_qm9.diffusion import DiffusionConfig, DiGress, dense
from experiments.digress_qm9.diffusion import sympe as sympe_lib
from experiments.digress_qm9.graph_transformer import GraphTransformerConfig, count_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = "tests/experiments/digress_qm9/fixtures/qm9_tiny.csv"
ROWS = ("digress", "noise", "sympe", "sympe_edges", "sympe_learned", "sympe_clean", "sympe_index_ties", "index_pe")
MODE = {"digress": "none", "noise": "noise", "sympe": "sympe", "sympe_edges": "sympe_edges",
        "sympe_learned": "sympe_learned", "sympe_clean": "sympe_clean", "sympe_index_ties": "sympe_index_ties",
        "index_pe": "index_pe"}
LABELS = {"digress": "DiGress", "noise": "DiGress + noise", "sympe": "DiGress + SymPE (nodes only)",
          "sympe_edges": "DiGress + SymPE (nodes + edges)",
          "sympe_learned": "DiGress + SymPE (nodes only, learned scorer)",
          "sympe_clean": "leak control, not a valid bound: SymPE sorted on the clean graph",
          "sympe_index_ties": "leak control, not equivariant: SymPE with ties broken by node index",
          "index_pe": "leak control, not equivariant: v[i] by node index, no sorting"}
CONTROLS = sympe_lib.LEAK_MODES   # rows that are invalid / non-equivariant controls, not methods
ORDER_KEY = 0x0de5                 # folded into data_seed: the test molecules' permutations
PAPER_NLL = {"digress": 129.7, "noise": 126.5, "sympe_edges": 30.3}
NLL_TERMS = ("nll", "node_count", "prior_kl", "diffusion", "reconstruction")
# Fields read only after training: changing them evaluates the trained checkpoint again.
EVAL_FIELDS = ("num_test", "nll_repeats", "num_samples", "sample_batch", "num_draw")
METRICS = ("validity", "relaxed_validity", "uniqueness", "novelty", "valid_connected")


@dataclasses.dataclass(frozen=True)
class Config:
    # Fields added after runs were recorded, with the value those runs had (experiments._lib.config).
    LATE_DEFAULTS: ClassVar[dict] = {"dropout_rng": "uniform", "scorer_temperature": 0.02}

    preset: str = option("cpu", "preset name (with --tag: <preset>-<tag>), the prefix of result files")
    encodings: tuple[str, ...] = option(("digress", "noise", "sympe"), "comma-separated rows to run, each a "
                                        "denoiser's symmetry breaking", aliases=("--rows",))
    seeds: tuple[int, ...] = option((0,), "comma-separated training seeds")
    source: str = option("", "\"\" = the installed qm9pack data; else a CSV (relative to the repo)")
    num_train: int = option(20_000, "training subset (0 = the whole split, 97,734)")
    num_val: int = option(256, "validation molecules for the NLL logged during training")
    num_test: int = option(0, "test molecules for the final NLL (0 = the whole split, 13,055)")
    # Graph transformer (reference names; GraphTransformerConfig.cpu()).
    n_layers: int = option(4, "graph transformer layers")
    dx: int = option(128, "graph transformer node width")
    de: int = option(32, "graph transformer edge width")
    dy: int = option(32, "graph transformer global-feature width")
    n_head: int = option(8, "attention heads")
    mlp_X: int = option(256, "hidden width of the node input MLP")
    mlp_E: int = option(128, "hidden width of the edge input MLP")
    mlp_y: int = option(128, "hidden width of the global input MLP")
    dim_ffX: int = option(256, "node feed-forward width")
    dim_ffE: int = option(128, "edge feed-forward width")
    dim_ffy: int = option(2048, "global feed-forward width")
    dropout: float = option(0.1, "dropout rate of the transformer layers")
    dropout_rng: str = option("uniform", "dropout masks: 'uniform' (nn.Dropout's law; recorded runs) or 'bits16' "
                              "(16-bit thresholds, per-molecule draws: P(drop) = round(rate 2^16) / 2^16, faster)")
    # Diffusion and training.
    T: int = option(100, "diffusion steps")
    t_min_train: int = option(1, "smallest diffusion step drawn in training")
    batch_size: int = option(128, "molecules per training step")
    num_steps: int = option(2000, "training steps")
    learning_rate: float = option(5e-4, "AMSGrad learning rate (constant)")
    weight_decay: float = option(1e-12, "decoupled weight decay (the reference's 1e-12)")
    clip_norm: float = option(1.0, "global-norm gradient clipping; 0 = none (the reference)")
    pe_features: int = option(8, "SymPE table width / noise channels (pair channels: twice that)")
    atol: float = option(1e-5, "tie tolerance of the SymPE sort")
    scorer_temperature: float = option(0.02, "sympe_learned: temperature of the soft ranks its scorer trains "
                                             "through (units of the score)")
    eval_every: int = option(500, "steps between validation NLL evaluations")
    checkpoint_every: int = option(500, "steps between checkpoints")
    # Evaluation.
    eval_batch: int = option(256, "molecules per evaluation batch")
    nll_repeats: int = option(4, "independent (t, noise, g~) draws per test molecule")
    num_samples: int = option(1024, "molecules sampled per row for the metrics")
    sample_batch: int = option(256, "molecules per sampling batch")
    num_draw: int = option(12, "molecules drawn per row in samples.png")
    data_seed: int = option(1234, "seed of the data subsets (same for every row and seed)")


PRESETS = {
    "cpu": Config(),
    "paper": Config(preset="paper", encodings=ROWS, seeds=(0, 1, 2), num_train=0, num_val=1024, num_test=0,
                    n_layers=9, dx=256, de=64, dy=64, T=500, batch_size=1024, num_steps=1000 * 95,
                    learning_rate=2e-4, clip_norm=0.0, eval_every=5 * 95, checkpoint_every=10 * 95,
                    eval_batch=1024, num_samples=10_000, sample_batch=2048),
    "demo": Config(preset="demo", encodings=("digress", "sympe_edges"), source=FIXTURE, num_train=0, num_val=8,
                    num_test=16, n_layers=1, dx=16, de=8, dy=8, n_head=2, mlp_X=16, mlp_E=8, mlp_y=8,
                    dim_ffX=16, dim_ffE=8, dim_ffy=16, T=8, batch_size=8, num_steps=4, eval_every=2,
                    checkpoint_every=2, pe_features=3, eval_batch=8, num_samples=8, sample_batch=8, num_draw=4),
}


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True, eq=False)
class Data:
    train: qm9.QM9Split           # the whole training split (novelty, marginals)
    val: qm9.QM9Split
    test: qm9.QM9Split
    train_idx: np.ndarray         # the subset trained on
    val_idx: np.ndarray
    test_idx: np.ndarray
    info: qm9.DatasetInfo         # marginals of the whole training split
    source: str | None


def _subset(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if k <= 0 or k >= n else np.sort(rng.choice(n, k, replace=False))


def load_data(cfg: Config) -> Data:
    source = str(ROOT / cfg.source) if cfg.source else None
    train, val, test = (qm9.load_qm9(s, source=source) for s in qm9.SPLITS)
    rng = np.random.default_rng(cfg.data_seed)
    return Data(train, val, test, _subset(len(train), cfg.num_train, rng), _subset(len(val), cfg.num_val, rng),
                _subset(len(test), cfg.num_test, rng), qm9.dataset_info(train), source)


def make_batch(split: qm9.QM9Split, idx: np.ndarray) -> dense.DenseGraphs:
    """Dense one-hot batch (4 atom, 4 bond classes; padded to 9 nodes) of molecules ``idx``."""
    X, E, mask = split.X[idx], split.E[idx], split.mask[idx]
    return dense.DenseGraphs(qm9.node_one_hot(X), qm9.edge_one_hot(E, mask), mask)


# ----------------------------------------------------------------------------- model


def net_config(cfg: Config) -> GraphTransformerConfig:
    return GraphTransformerConfig(n_layers=cfg.n_layers, mlp_X=cfg.mlp_X, mlp_E=cfg.mlp_E, mlp_y=cfg.mlp_y,
                                  dx=cfg.dx, de=cfg.de, dy=cfg.dy, n_head=cfg.n_head, dim_ffX=cfg.dim_ffX,
                                  dim_ffE=cfg.dim_ffE, dim_ffy=cfg.dim_ffy, dropout=cfg.dropout,
                                  dropout_rng=cfg.dropout_rng,
                                  out_dim_X=qm9.NUM_ATOM_CLASSES, out_dim_E=qm9.NUM_EDGE_CLASSES)


def build(cfg: Config, row: str, info: qm9.DatasetInfo | None = None) -> DiGress:
    """DiGress with the row's denoiser; marginals and node counts of ``info`` (else the reference's,
    with the aromatic class dropped)."""
    den = sympe_lib.make_denoiser(MODE[row], net_config(cfg), cfg.pe_features, atol=cfg.atol,
                                  temperature=cfg.scorer_temperature)
    if info is None:
        x_m, e_m, hist = qm9.DIGRESS_NODE_MARGINALS, qm9.DIGRESS_EDGE_MARGINALS, qm9.DIGRESS_N_NODES
    else:
        x_m, e_m, hist = info.node_marginals, info.edge_marginals, info.n_nodes
    return DiGress(den, x_marginals=x_m, e_marginals=e_m, n_nodes_histogram=hist,
                   config=DiffusionConfig(T=cfg.T, t_min_train=cfg.t_min_train))


def make_optimizer(cfg: Config) -> optax.GradientTransformation:
    """The reference's ``AdamW(amsgrad=True, weight_decay=1e-12)``, constant lr, optional clipping."""
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
    parts += [optax.scale_by_amsgrad(), optax.add_decayed_weights(cfg.weight_decay), optax.scale(-cfg.learning_rate)]
    return optax.chain(*parts)


def init_params(dg: DiGress, key: jax.Array, batch: dense.DenseGraphs):
    return dg.denoiser.init(key, jnp.asarray(batch.X), jnp.asarray(batch.E), jnp.asarray(batch.node_mask))


# ----------------------------------------------------------------------------- evaluation


def _padded_chunks(idx: np.ndarray, size: int):
    """Chunks of ``size`` indices; the last is padded with its first index (the padding is dropped)."""
    for start in range(0, len(idx), size):
        chunk = idx[start:start + size]
        yield np.concatenate([chunk, np.full(size - len(chunk), chunk[0])]), len(chunk)


def order_key(cfg: Config) -> jax.Array:
    """The fixed key of the order diagnostic's permutations (the same for every row and seed)."""
    return jax.random.fold_in(jax.random.key(cfg.data_seed), ORDER_KEY)


@jax.jit
def order_permutations(key: jax.Array, molecule_idx: jax.Array, node_mask: jax.Array) -> jax.Array:
    """int32[B, n]: a uniformly random permutation of each molecule's real nodes (padding fixed),
    drawn from ``fold_in(key, molecule index)``: a molecule's permutation does not depend on the
    batch it is evaluated in."""
    n = node_mask.shape[-1]
    return jax.vmap(lambda i, m: permutation.random_element(jax.random.fold_in(key, i), n, m))(molecule_idx, node_mask)


def test_nll(dg: DiGress, params, key, split: qm9.QM9Split, idx: np.ndarray, batch: int, repeats: int = 1,
             desc: str | None = None, permute_key: jax.Array | None = None) -> dict:
    """Mean (and standard error over molecules) of the NLL and of its four terms, nats per molecule.

    ``permute_key``: evaluate with every molecule's nodes permuted (:func:`order_permutations`)
    after the same draws of t, z_t and z_0 as without it (the order diagnostic)."""
    # Plain single-device arrays: the train loop's mesh-sharded params/keys would compile a second copy.
    params, key = jax.device_put(distributed.local_copy((params, key)), jax.local_devices()[0])
    per_mol = {k: np.zeros(len(idx)) for k in NLL_TERMS}
    chunks = list(_padded_chunks(idx, batch))
    bar = tqdm.tqdm(total=repeats * len(chunks), desc=desc, leave=False, disable=desc is None, file=sys.stderr)
    for r in range(repeats):
        offset = 0
        for b, (chunk, real) in enumerate(chunks):
            graphs = make_batch(split, chunk)
            k = jax.random.fold_in(jax.random.fold_in(key, r), b)
            if permute_key is None:
                terms = dg.nll(params, k, graphs)
            else:
                perm = order_permutations(permute_key, jnp.asarray(chunk, jnp.int32), jnp.asarray(graphs.node_mask))
                terms = dg.nll(params, k, graphs, perm)
            for k in NLL_TERMS:
                per_mol[k][offset:offset + real] += np.asarray(terms[k])[:real] / repeats
            offset += real
            bar.update(1)
    bar.close()
    out = {k: float(v.mean()) for k, v in per_mol.items()}
    out["nll_sem"] = float(per_mol["nll"].std(ddof=1) / math.sqrt(len(idx))) if len(idx) > 1 else 0.0
    out["num_molecules"], out["repeats"] = int(len(idx)), int(repeats)
    # Per molecule, for paired comparisons: rows evaluated with the same key share every t and z_t.
    out["per_molecule"] = np.round(per_mol["nll"], 4).tolist()
    return out


def sample_molecules(dg: DiGress, params, key, num: int, batch: int, desc: str | None = None,
                     model_key: str = "step"):
    """``num`` samples as int arrays ``(X [num, 9], E [num, 9, 9], mask [num, 9])``; ``model_key``
    as in ``DiGress.sample``. The first ``k`` samples of a key do not depend on ``num``."""
    params, key = jax.device_put(distributed.local_copy((params, key)), jax.local_devices()[0])
    Xs, Es, Ms = [], [], []
    for i in tqdm.trange(math.ceil(num / batch), desc=desc, leave=False, disable=desc is None, file=sys.stderr):
        X, E, M = dg.sample(params, jax.random.fold_in(key, i), num_samples=batch, model_key=model_key)
        Xs.append(np.asarray(X)), Es.append(np.asarray(E)), Ms.append(np.asarray(M))
    return np.concatenate(Xs)[:num], np.concatenate(Es)[:num], np.concatenate(Ms)[:num]


def _tied_nodes(groups: np.ndarray) -> int:
    """Number of nodes sharing their tie group with another node."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return int((counts[inverse] > 1).sum())


def tie_statistics(data: Data, cfg: Config, key, max_molecules: int = 2048) -> dict:
    """How much symmetry the SymPE sort has to break: ties of ``node_scores`` on test molecules,
    clean and noised to t = T/2 (ties there are exactly the typed automorphism orbits on the
    400 clean test molecules checked when this was written)."""
    idx = data.test_idx[:max_molecules]
    g = make_batch(data.test, idx)
    X, E, mask = jnp.asarray(g.X), jnp.asarray(g.E), jnp.asarray(g.node_mask)
    dg = build(cfg, "sympe", data.info)
    X_half, E_half = dg.noise(key, X, E, mask, jnp.full((len(idx),), cfg.T // 2, jnp.int32))
    out = {}
    for name, (x, e) in {"clean": (X, E), "t_half": (X_half, E_half)}.items():
        scores = sympe_lib.node_scores(x, e, mask)
        groups = np.asarray(jax.vmap(lambda s, m: canonicalize.tie_groups(s, m, atol=cfg.atol))(scores, mask))
        m = np.asarray(mask)
        tied = np.array([_tied_nodes(gr[mk]) for gr, mk in zip(groups, m)])
        out[name] = {"molecules": int(len(idx)), "with_ties_fraction": float((tied > 0).mean()),
                     "tied_nodes_per_molecule": float(tied.mean()), "nodes_per_molecule": float(m.sum(1).mean())}
    return out


def order_diagnostic(dataset: dict, permuted: dict) -> dict:
    """The order diagnostic of one run from its two :func:`test_nll` results: both NLLs and the
    per-molecule paired difference permuted minus dataset order (mean, standard error)."""
    d = np.asarray(permuted["per_molecule"], float) - np.asarray(dataset["per_molecule"], float)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0
    return {"nll_dataset": dataset["nll"], "nll_permuted": permuted["nll"], "difference": [float(d.mean()), se],
            "num_molecules": int(len(d)), "repeats": dataset["repeats"]}


def typed_orbits(X: np.ndarray, E: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Orbits of the automorphisms of one typed graph that keep atom and bond classes: int[n_real]
    orbit labels (nauty on the graph with every bond subdivided by a vertex of its class).
    X int[n] classes, E int[n, n] classes (0 = no bond), mask bool[n] (real nodes first)."""
    import pynauty
    n = int(mask.sum())
    adj = {v: [] for v in range(n)}
    cells: dict[tuple, set] = {}
    for i in range(n):
        cells.setdefault(("atom", int(X[i])), set()).add(i)
    v = n
    for i in range(n):
        for j in range(i + 1, n):
            if E[i, j] > 0:
                adj[v] = [i, j]
                cells.setdefault(("bond", int(E[i, j])), set()).add(v)
                v += 1
    g = pynauty.Graph(v, directed=False, adjacency_dict=adj, vertex_coloring=[cells[k] for k in sorted(cells)])
    return np.asarray(pynauty.autgrp(g)[3][:n])


def ties_against_orbits(scores: np.ndarray, X: np.ndarray, E: np.ndarray, mask: np.ndarray, atol: float) -> dict:
    """How the score's ties compare with the typed automorphism orbits, over a batch of graphs
    (scores float[B, n], X int[B, n], E int[B, n, n], mask bool[B, n]): graphs whose ties are
    exactly the orbits, tied and automorphic nodes (%), tied non-automorphic and untied
    automorphic ordered pairs (% of pairs)."""
    equal = extra = missing = pairs = nodes = tied_nodes = orbit_nodes = 0
    for b in range(len(mask)):
        n = int(mask[b].sum())
        ties = np.asarray(canonicalize.tie_groups(jnp.asarray(scores[b, :n]), atol=atol))
        orb = typed_orbits(X[b], E[b], mask[b])
        tied, same, off = ties[:, None] == ties[None], orb[:, None] == orb[None], ~np.eye(n, dtype=bool)
        equal += int(np.array_equal(tied, same))
        extra += int((tied & ~same & off).sum())
        missing += int((~tied & same & off).sum())
        pairs, nodes = pairs + n * (n - 1), nodes + n
        tied_nodes += int((tied & off).any(axis=1).sum())
        orbit_nodes += int((same & off).any(axis=1).sum())
    return {"graphs": int(len(mask)), "ties_equal_orbits_fraction": equal / len(mask),
            "tied_node_pct": 100 * tied_nodes / nodes, "automorphic_node_pct": 100 * orbit_nodes / nodes,
            "tied_non_automorphic_pair_pct": 100 * extra / max(pairs, 1),
            "untied_automorphic_pair_pct": 100 * missing / max(pairs, 1)}


def scorer_diagnostics(dg: DiGress, init, trained, train_batch: dense.DenseGraphs, data: Data, cfg: Config,
                       max_molecules: int = 512) -> dict:
    """Does the ``sympe_learned`` scorer train, and what did training change? (as the graph
    autoencoder's ``scorer_diagnostics``).

    The norm of the training loss's gradient in the scorer's parameters on the first training
    batch (fixed key), at initialisation and after training (exactly 0 if the sort were its only
    path); on ``max_molecules`` test molecules, clean and noised to t = T/2: the share of nodes
    whose rank (same tie-break key) differs from the fixed score's, and the ties of the learned
    and of the fixed score against the typed automorphism orbits of those graphs.
    """
    key = jax.random.key(0)
    params = [jax.device_put(distributed.local_copy(p), jax.local_devices()[0]) for p in (init, trained)]

    @jax.jit
    def grad_norm(p):
        grads = jax.grad(lambda q: dg.training_loss(q, key, train_batch)[0])(p)
        return training.global_norm(grads["scorer"])

    out = {"grad_norm_init": float(grad_norm(params[0])), "grad_norm_trained": float(grad_norm(params[1]))}
    idx = data.test_idx[:max_molecules]
    g = make_batch(data.test, idx)
    X, E, mask = jnp.asarray(g.X), jnp.asarray(g.E), jnp.asarray(g.node_mask)
    X_half, E_half = dg.noise(jax.random.fold_in(key, 1), X, E, mask, jnp.full((len(idx),), cfg.T // 2, jnp.int32))
    den = dg.denoiser
    for name, (x, e) in {"clean": (X, E), "t_half": (X_half, E_half)}.items():
        k = jax.random.fold_in(key, 2)
        fixed = jax.jit(lambda x, e: den.scores(x, e, mask))(x, e)
        learned = jax.jit(lambda x, e, sc: den.scores(x, e, mask, scorer=sc))(x, e, params[1]["scorer"])
        ranks = jax.jit(lambda kk, x, e, sc: den.ranks(kk, x, e, mask, scorer=sc))
        moved = np.asarray((ranks(k, x, e, params[1]["scorer"]) != ranks(k, x, e, None)) & mask)
        xi, ei = (np.asarray(a) for a in dense.decode(x, e, mask))
        m = np.asarray(mask)
        out[name] = {"test_nodes_rank_changed_pct": float(100 * moved.sum() / m.sum()),
                     "test_graphs_order_changed": int(moved.any(axis=1).sum()),
                     "ties_learned": ties_against_orbits(np.asarray(learned), xi, ei, m, cfg.atol),
                     "ties_fixed": ties_against_orbits(np.asarray(fixed), xi, ei, m, cfg.atol)}
    return out


# ----------------------------------------------------------------------------- one run


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "rdkit"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _environment() -> dict:
    out = {"MALLOC_MMAP_MAX_": os.environ.get("MALLOC_MMAP_MAX_"),
           "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
           "XLA_FLAGS": os.environ.get("XLA_FLAGS"), "cpu_count": os.cpu_count(),
           "loadavg": list(os.getloadavg()), "device": jax.devices()[0].platform,
           "device_count": jax.device_count(), "host": platform.node()}
    if jax.process_count() > 1:
        out["process_count"] = jax.process_count()
    return out


def _say(*args) -> None:
    """``print`` (flushed) in process 0 only."""
    if distributed.is_main():
        print(*args, flush=True)


def training_seconds(history: list[dict]) -> float:
    """Time spent training, from the log's train rows (each: step, steps/s over its interval).

    Robust to resumption: a step logged twice (after resuming from an earlier checkpoint) counts once.
    """
    rows = {r["step"]: r for r in history if r.get("split") == "train" and r.get("steps_per_sec")}
    steps = sorted(rows)
    return float(sum((s1 - s0) / rows[s1]["steps_per_sec"] for s0, s1 in zip([0] + steps, steps)))


def train_row(cfg: Config, row: str, seed: int, data: Data, root: pathlib.Path, *, force: bool = False,
              trained_only: bool = False):
    """Train one (row, seed), or resume it from its checkpoints (a finished run only restores).

    Returns ``(dg, result, train_info, k_test, k_sample)``. ``trained_only=True`` refuses to train:
    a run without its final checkpoint raises ``FileNotFoundError`` (for evaluation-only scripts).
    """
    dg = build(cfg, row, data.info)
    key = jax.random.key(seed)
    k_init, k_train, k_test, k_sample = jax.random.split(key, 4)
    B, m = cfg.batch_size, len(data.train_idx)
    if m < B:
        raise ValueError(f"training subset ({m} molecules) is smaller than the batch ({B})")
    steps_per_epoch = m // B
    workdir = common.run_workdir(root, "digress_qm9", cfg, row, seed, eval_fields=EVAL_FIELDS,
                                 force=force and not trained_only)
    if trained_only and not training.has_checkpoint(workdir, cfg.num_steps):
        raise FileNotFoundError(f"{row} seed {seed} has no final checkpoint in {workdir}: train it first with "
                                f"python -m experiments.digress_qm9 --preset {cfg.preset} --encodings {row} --seeds {seed}")

    @functools.lru_cache(maxsize=2)
    def epoch_order(epoch: int) -> np.ndarray:
        return data.train_idx[np.random.default_rng([cfg.data_seed, seed, epoch]).permutation(m)]

    def rows(i: int, index: int, count: int) -> dense.DenseGraphs:   # pure in (i, index, count): exact resume
        epoch, j = divmod(i, steps_per_epoch)   # process `index` of `count` builds only its block of rows
        return make_batch(data.train, epoch_order(epoch)[j * B:(j + 1) * B][distributed.local_rows(B, index, count)])

    batch_fn = distributed.per_process(rows)

    def loss_fn(p, batch, k):
        return dg.training_loss(p, k, batch)

    def eval_fn(p, k):
        return {"val_nll": test_nll(dg, p, k, data.val, data.val_idx, cfg.eval_batch)["nll"]}

    params = init_params(dg, k_init, batch_fn(0))
    tcfg = training.TrainConfig(num_steps=cfg.num_steps, eval_every=cfg.eval_every,
                                checkpoint_every=cfg.checkpoint_every, log_every=max(1, min(50, cfg.num_steps)))
    action = "restoring" if training.has_checkpoint(workdir, cfg.num_steps) else "training"
    _say(f"[{row} seed {seed}] {action} {cfg.num_steps} steps of batch {B} on {m} molecules "
         f"({count_params(params):,} parameters; workdir {workdir})")
    result = training.train(tcfg, loss_fn=loss_fn, params=params, optimizer=make_optimizer(cfg), batch_fn=batch_fn,
                            key=k_train, workdir=workdir, eval_fn=eval_fn)
    train_time = result.wall_time_s
    train_info = {"wall_time_s": round(train_time, 1), "steps_per_second": result.steps_per_second,
                  "resumed_from": result.resumed_from, "final_step": result.step}
    if result.resumed_from is not None:
        # Resumed (or only evaluated again): this process's time is not the training time; the log's is.
        seconds = training_seconds(result.history)
        train_info.update(wall_time_s=round(seconds, 1), wall_time_source="metrics log",
                          steps_per_second=result.step / max(seconds, 1e-9))
    return dg, result, train_info, k_test, k_sample


def run_one(cfg: Config, row: str, seed: int, data: Data, train_smiles: list[str], root: pathlib.Path,
            force: bool = False) -> dict:
    out_path, old = common.finished_run(common.results_dir(root, "digress_qm9", cfg), cfg, row, seed, force)
    if old is not None:
        return old
    cfg_dict = json.loads(json.dumps(dataclasses.asdict(cfg)))
    env_start = _environment()
    dg, result, train_info, k_test, k_sample = train_row(cfg, row, seed, data, root, force=force)
    m = len(data.train_idx)

    t0 = time.time()
    main = distributed.is_main()
    nll = test_nll(dg, result.params, k_test, data.test, data.test_idx, cfg.eval_batch, cfg.nll_repeats,
                   desc=f"{row}: test NLL" if main else None)
    nll_time = time.time() - t0
    t0 = time.time()
    nll_perm = test_nll(dg, result.params, k_test, data.test, data.test_idx, cfg.eval_batch, cfg.nll_repeats,
                        desc=f"{row}: test NLL, nodes permuted" if main else None, permute_key=order_key(cfg))
    order = order_diagnostic(nll, nll_perm)
    order_time = time.time() - t0
    scorer = None
    if dg.denoiser.encoding.learns_scores:
        k_init = jax.random.split(jax.random.key(seed), 4)[0]
        first = make_batch(data.train, data.train_idx[np.random.default_rng([cfg.data_seed, seed, 0]).permutation(m)]
                           [:cfg.batch_size])
        scorer = scorer_diagnostics(dg, init_params(dg, k_init, first), result.params, first, data, cfg)
    t0 = time.time()
    X, E, mask = sample_molecules(dg, result.params, k_sample, cfg.num_samples, cfg.sample_batch,
                                  desc=f"{row}: sampling" if main else None)
    sample_time = time.time() - t0
    metrics = molecules.evaluate(molecules.graphs_from_dense(X, E, mask), train_smiles)
    history = result.history
    record = {
        "row": row, "label": LABELS[row], "mode": MODE[row], "seed": seed, "config": cfg_dict,
        "test_nll": nll, "test_nll_permuted": nll_perm, "order_diagnostic": order, "control": row in CONTROLS,
        "paper_nll": PAPER_NLL.get(row), "metrics": metrics.scalars(),
        "samples_smiles": metrics.smiles, "sample_num_nodes": mask.sum(1).tolist(),
        "train": {**train_info,
                  "loss_curve": [{"step": r["step"], "loss": r["loss"], "ce_X": r.get("ce_X"), "ce_E": r.get("ce_E")}
                                 for r in history if r.get("split") == "train"],
                  "val_nll_curve": [{"step": r["step"], "val_nll": r["val_nll"]}
                                    for r in history if r.get("split") == "eval"]},
        "nll_wall_time_s": round(nll_time, 1), "order_wall_time_s": round(order_time, 1),
        "sampling_wall_time_s": round(sample_time, 1),
        "sampling_molecules_per_s": cfg.num_samples / max(sample_time, 1e-9),
        "num_params": count_params(result.params), "num_train_molecules": int(m),
        "versions": _versions(), "environment": {"start": env_start, "end": _environment()},
    }
    if scorer is not None:
        record["scorer"] = scorer
    if main:
        training.save_json(out_path, record)
    s = record["metrics"]
    _say(f"[{row} seed {seed}] test NLL {nll['nll']:.2f} ± {nll['nll_sem']:.2f} | validity {s['validity']:.3f} "
         f"relaxed {s['relaxed_validity']:.3f} unique {s['uniqueness']:.3f} | train {train_info['wall_time_s']:.0f}s, "
         f"sampling {sample_time:.0f}s")
    _say(f"[{row} seed {seed}] order diagnostic: NLL dataset order {order['nll_dataset']:.2f}, nodes permuted "
         f"{order['nll_permuted']:.2f}, permuted - dataset {order['difference'][0]:+.3f} ± {order['difference'][1]:.3f}")
    if scorer is not None:
        _say(f"[{row} seed {seed}] scorer: grad norm {scorer['grad_norm_init']:.3g} -> {scorer['grad_norm_trained']:.3g}, "
             f"re-ranked {scorer['t_half']['test_nodes_rank_changed_pct']:.1f}% of test nodes at t = T/2")
    return record


# ----------------------------------------------------------------------------- summary and figure


def _paired_differences(cfg: Config, records: list[dict]) -> tuple[dict[str, list[float]], dict[str, dict]]:
    """Test NLL of row b minus that of an earlier row a, for every pair, paired by molecule within
    a seed (rows of one seed share every t and z_t): ``({"b - a": [mean, standard error]}`` pooled
    over the seeds both rows have, ``{"b - a": {seed: [mean, standard error]}})``."""
    by_key = {(r["row"], r["seed"]): np.asarray(r["test_nll"].get("per_molecule", []), float) for r in records}

    def mean_se(d: np.ndarray) -> list[float]:
        return [float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))]

    pooled, per_seed = {}, {}
    for i, a in enumerate(cfg.encodings):
        for b in cfg.encodings[i + 1:]:
            diffs = {s: by_key[(b, s)] - by_key[(a, s)] for s in cfg.seeds
                     if (a, s) in by_key and (b, s) in by_key and len(by_key[(a, s)])
                     and len(by_key[(a, s)]) == len(by_key[(b, s)])}
            if diffs:
                pooled[f"{b} - {a}"] = mean_se(np.concatenate(list(diffs.values())))
                per_seed[f"{b} - {a}"] = {str(s): mean_se(d) for s, d in diffs.items()}
    return pooled, per_seed


def order_entry(records: list[dict]) -> dict | None:
    """A row's order diagnostic over its records that have one: per-seed NLLs in both orders
    (mean, std over seeds), the paired difference permuted minus dataset order pooled over the
    molecules of every seed (mean, standard error) and per seed; ``presets`` says which runs
    it comes from (the row's own, or a retrained ``<preset>-<tag>`` run of the same config)."""
    rs = [r for r in records if "order_diagnostic" in r]
    if not rs:
        return None
    diffs = {r["seed"]: np.asarray(r["test_nll_permuted"]["per_molecule"], float)
             - np.asarray(r["test_nll"]["per_molecule"], float) for r in rs}
    pooled = np.concatenate(list(diffs.values()))
    se = lambda d: float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0  # noqa: E731
    dataset = np.array([r["order_diagnostic"]["nll_dataset"] for r in rs])
    permuted = np.array([r["order_diagnostic"]["nll_permuted"] for r in rs])
    return {"seeds": [r["seed"] for r in rs], "presets": sorted({r["config"]["preset"] for r in rs}),
            "nll_dataset": [float(dataset.mean()), float(dataset.std())],
            "nll_permuted": [float(permuted.mean()), float(permuted.std())],
            "difference": [float(pooled.mean()), se(pooled)],
            "per_seed_difference": {str(s): [float(d.mean()), se(d)] for s, d in diffs.items()}}


def order_records(out_dir: pathlib.Path, cfg: Config) -> list[dict]:
    """Result files of retrained runs of this config under a tag (``<preset>-<tag>_<row>_seed<k>.json``,
    same run config but the preset's name) that hold an order diagnostic: the diagnostic of rows
    whose own result files predate it."""
    def same(recorded) -> bool:
        late = Config.LATE_DEFAULTS
        return (isinstance(recorded, dict)
                and common.run_config(recorded, ("preset",), late) == common.run_config(cfg, ("preset",), late))
    out = []
    for path in sorted(out_dir.glob(f"{cfg.preset}-*_seed*.json")):
        rec = json.loads(path.read_text())
        if ("order_diagnostic" in rec and rec.get("row") in cfg.encodings and rec.get("seed") in cfg.seeds
                and same(rec.get("config"))):
            out.append(rec)
    return out


def aggregate(cfg: Config, records: list[dict], command: str, tagged: list[dict] = ()) -> dict:
    """The summary: per row, mean ± std over seeds of the NLL, its terms and the sample metrics,
    paired differences between rows, the order diagnostic (from the row's own records, else from
    ``tagged`` records, :func:`order_records`) and the learned scorer's diagnostics."""
    rows = {}
    for row in cfg.encodings:
        rs = [r for r in records if r["row"] == row]
        entry = {"label": LABELS[row], "paper_nll": PAPER_NLL.get(row), "seeds": [r["seed"] for r in rs],
                 "control": row in CONTROLS,
                 "train_wall_time_s": float(np.mean([r["train"]["wall_time_s"] for r in rs])),
                 "per_seed_nll": [r["test_nll"]["nll"] for r in rs],
                 "per_seed_validity": [r["metrics"]["validity"] for r in rs]}
        for k in NLL_TERMS:
            v = np.array([r["test_nll"][k] for r in rs])
            entry[k] = [float(v.mean()), float(v.std())]
        entry["nll_sem_within_seed"] = float(np.mean([r["test_nll"]["nll_sem"] for r in rs]))
        for k in METRICS:
            v = np.array([np.nan if r["metrics"][k] is None else r["metrics"][k] for r in rs], float)
            entry[k] = [float(np.nanmean(v)), float(np.nanstd(v))] if np.isfinite(v).any() else None
        order = order_entry(rs) or order_entry([r for r in tagged if r["row"] == row])
        if order is not None:
            entry["order"] = order
        scorers = [(r["seed"], r["scorer"]) for r in rs if "scorer" in r]
        if scorers:   # sympe_learned: per-seed scorer diagnostics
            entry["scorer"] = {"seeds": [s for s, _ in scorers],
                               "grad_norm_init": [sc["grad_norm_init"] for _, sc in scorers],
                               "grad_norm_trained": [sc["grad_norm_trained"] for _, sc in scorers]}
            for when in ("clean", "t_half"):
                entry["scorer"][when] = {
                    "test_nodes_rank_changed_pct": [sc[when]["test_nodes_rank_changed_pct"] for _, sc in scorers],
                    "ties_equal_orbits_fraction_learned": [sc[when]["ties_learned"]["ties_equal_orbits_fraction"]
                                                           for _, sc in scorers],
                    "ties_equal_orbits_fraction_fixed": [sc[when]["ties_fixed"]["ties_equal_orbits_fraction"]
                                                         for _, sc in scorers],
                    "tied_node_pct_learned": [sc[when]["ties_learned"]["tied_node_pct"] for _, sc in scorers],
                    "tied_node_pct_fixed": [sc[when]["ties_fixed"]["tied_node_pct"] for _, sc in scorers],
                    "automorphic_node_pct": [sc[when]["ties_fixed"]["automorphic_node_pct"] for _, sc in scorers]}
        rows[row] = entry
    paired, paired_per_seed = _paired_differences(cfg, records)
    for row in cfg.encodings[1:]:
        if f"{row} - {cfg.encodings[0]}" in paired:
            rows[row]["nll_minus_baseline"], rows[row]["baseline"] = (paired[f"{row} - {cfg.encodings[0]}"],
                                                                      cfg.encodings[0])
    return {"paired_nll_differences": paired, "paired_nll_differences_per_seed": paired_per_seed, "preset": cfg.preset, "command": command, "config": dataclasses.asdict(cfg), "seeds": list(cfg.seeds),
            "order": list(cfg.encodings), "rows": rows,
            "notes": "test NLL: nats per molecule (heavy-atom graph), one (t, z_t, g~) draw per molecule and "
                     "repeat; mean ± std over seeds. Validity etc. are fractions in [0, 1]."}


def plot_samples(records: list[dict], cfg: Config, path: pathlib.Path) -> None:
    """One block of RDKit drawings (valid samples, first seed) per row, with the row's numbers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rdkit import Chem
    from rdkit.Chem import Draw

    first = common.lowest_seed_records(records, "row")
    rows = [row for row in cfg.encodings if row in first]
    per_row = 6
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 4.4 * len(rows) * math.ceil(cfg.num_draw / per_row) / 2),
                             squeeze=False)
    for ax, row in zip(axes[:, 0], rows):
        rec = first[row]
        smiles = [s for s in rec["samples_smiles"] if s is not None][:cfg.num_draw]
        mols = [Chem.MolFromSmiles(s) for s in smiles]
        ax.set_axis_off()
        s, nll = rec["metrics"], rec["test_nll"]
        ax.set_title(f"{rec['label']} (seed {rec['seed']}): test NLL {nll['nll']:.1f} ± {nll['nll_sem']:.1f}, "
                     f"validity {100 * s['validity']:.1f}%, uniqueness {100 * s['uniqueness']:.1f}% "
                     f"({len(smiles)} of the first valid samples)", fontsize=9)
        if mols:
            img = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(200, 160),
                                       legends=[x if len(x) < 28 else x[:25] + "..." for x in smiles])
            ax.imshow(np.asarray(img))
        else:
            ax.text(0.5, 0.5, "no valid samples", ha="center", va="center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv=None, *, doc: str | None = None, parents=(), prog: str = "python -m experiments.digress_qm9"):
    """The config and flags of ``argv``; ``doc`` (default: this module's docstring), ``parents`` and
    ``prog`` are the ``--help`` description, extra argparse parents and command of a script reusing
    these flags."""
    return common.parse_config(Config, PRESETS, argv, doc=__doc__ if doc is None else doc,
                               choices={"encodings": ROWS}, parents=parents, prog=prog)


@distributed.fail_fast
@rundir.exit_on_run_error
def main(argv=None, root: pathlib.Path = ROOT) -> int:
    cfg, args = parse_args(argv)
    distributed.initialize(args.distributed)
    command = common.command_line("digress_qm9", argv)
    _say(f"DiGress on QM9, preset {cfg.preset}: rows {cfg.encodings}, seeds {cfg.seeds}, {cfg.num_steps} steps of "
         f"batch {cfg.batch_size}, T = {cfg.T}, {cfg.n_layers} layers")
    t0 = time.time()
    data = load_data(cfg)
    train_smiles = qm9.train_smiles(source=data.source)
    out_dir = common.results_dir(root, "digress_qm9", cfg)
    cfg, records, complete = common.collect_records(
        cfg, args, out_dir,
        lambda row, seed: run_one(cfg, row, seed, data, train_smiles, root, args.force))
    if not distributed.is_main():   # process 0 writes the summary and the figure
        return 0
    summary = aggregate(cfg, records, command, order_records(out_dir, cfg))
    summary["complete"] = complete
    summary["ties"] = tie_statistics(data, cfg, jax.random.key(cfg.data_seed))
    summary["wall_time_s"] = round(time.time() - t0, 1)       # this process (summarize-only: no training)
    summary["runs_train_wall_time_s"] = round(sum(r["train"]["wall_time_s"] for r in records), 1)
    prefix = common.summary_prefix(cfg.preset)
    training.save_json(out_dir / f"{prefix}summary.json", summary)
    plot_samples(records, cfg, out_dir / f"{prefix}samples.png")
    print("\nrow | test NLL | validity | relaxed validity | uniqueness | novelty | paper NLL")
    for row in cfg.encodings:
        r = summary["rows"][row]
        fmt = lambda v: "-" if v is None else f"{v[0]:.3f}"  # noqa: E731
        print(f"{row:12s} | {r['nll'][0]:.2f} ± {r['nll'][1]:.2f} | {fmt(r['validity'])} | "
              f"{fmt(r['relaxed_validity'])} | {fmt(r['uniqueness'])} | {fmt(r['novelty'])} | {r['paper_nll']}")
    print("\nrow | order diagnostic: NLL dataset order | NLL nodes permuted | permuted - dataset (paired, ± SE) | runs")
    for row in cfg.encodings:
        o = summary["rows"][row].get("order")
        if o is not None:
            print(f"{row:16s} | {o['nll_dataset'][0]:.2f} | {o['nll_permuted'][0]:.2f} | "
                  f"{o['difference'][0]:+.3f} ± {o['difference'][1]:.3f} | {', '.join(o['presets'])} seeds {o['seeds']}")
    print(f"ties of the SymPE score: {summary['ties']}")
    print(f"wrote {out_dir / (prefix + 'summary.json')} and {out_dir / (prefix + 'samples.png')} "
          f"({summary['wall_time_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
