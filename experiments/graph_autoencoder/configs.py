"""Graph autoencoder: the config, its presets, the rows and their labels.

The rows of the preset (``ROWS``), our own ablations run on demand (``EXTRA_ROWS``), their labels
and the paper's numbers; what each row's encoding is lives in
:mod:`experiments.graph_autoencoder.encoding`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from experiments._lib.config import option

ROWS = ("none", "noise", "randperm", "laplacian", "sympe_decoder", "sympe", "sympe_learned", "exact")
# Our own ablations and controls: run on demand (--encodings) at the preset's budget; the summary lists
# the ones with result files of the same config below the preset's rows.
EXTRA_ROWS = ("features", "sympe_features", "exact_features", "sympe_laplacian", "randperm_features",
              "laplacian_features")
MESSAGE_GRAPHS = ("edges", "complete")
LABELS = {
    "none": "no symmetry breaking", "noise": "Gaussian noise node features",
    "randperm": "random permutation of v (no sorting)", "laplacian": "Laplacian eigenvectors (random sign/basis)",
    "sympe_decoder": "SymPE at the decoder (fixed scorer)", "sympe": "SymPE at the encoder input, fixed scorer",
    "exact": "exact inversion kernel (nauty), encoder input",
    "features": "structural features, no symmetry breaking",
    "sympe_features": "SymPE + structural features",
    "exact_features": "exact inversion kernel + structural features",
    "sympe_laplacian": "SymPE + Laplacian eigenvectors",
    "randperm_features": "random permutation of v + structural features",
    "laplacian_features": "Laplacian eigenvectors + structural features",
    "sympe_learned": "SymPE at the encoder input, learned scorer",
}
# The paper's SymPE row sorts learned embeddings: its number stands beside both of our SymPE rows.
PAPER = {"none": 3.9, "noise": 2.3, "randperm": 1.3, "laplacian": 0.98, "sympe": 0.77, "sympe_learned": 0.77}


@dataclasses.dataclass(frozen=True)
class Config:
    LATE_DEFAULTS: ClassVar[dict] = {"weight_decay": 0.0, "message_graph": "edges",   # fields added after runs were recorded
                                     "scorer_temperature": 0.02, "steps_per_call": 1}

    preset: str = option("cpu", "preset name (with --tag: <preset>-<tag>), the prefix of result files")
    dataset: str = option("erdos_renyi", "graph dataset (only erdos_renyi is wired)")
    encodings: tuple[str, ...] = option(ROWS, "comma-separated rows to run, each a symmetry-breaking encoding",
                                        aliases=("--rows",))
    seeds: tuple[int, ...] = option((0, 1, 2), "comma-separated training seeds")
    num_train: int = option(5000, "training graphs")
    num_val: int = option(500, "validation graphs (parameter selection by validation BCE)")
    num_test: int = option(500, "test graphs")
    n_max: int = option(16, "largest graph (rows of the SymPE table, padding)")
    batch_size: int = option(16, "graphs per training step")
    num_steps: int = option(8000, "training steps")
    learning_rate: float = option(1e-3, "peak learning rate (warmup, then cosine decay)")
    warmup_steps: int = option(300, "linear learning-rate warmup steps")
    clip_norm: float = option(1.0, "global-norm gradient clipping; 0 = none")
    weight_decay: float = option(0.0, "AdamW decoupled weight decay (on every parameter)")
    message_graph: str = option("edges", "edges: pass messages along edges; complete: along all pairs, with the "
                                         "adjacency entry as edge feature (EGNN's benchmark)")
    hidden: int = option(64, "width of the message-passing encoder")
    latent: int = option(32, "per-node latent size (chosen from {8, 16, 32} by validation BCE, README)")
    num_layers: int = option(4, "message-passing layers")
    pe_features: int = option(8, "channels of the symmetry-breaking encoding")
    atol: float = option(1e-5, "tie tolerance of the SymPE sort")
    scorer_temperature: float = option(0.02, "sympe_learned: temperature of the soft ranks its scorer trains "
                                             "through")
    eval_every: int = option(500, "steps between validation evaluations")
    checkpoint_every: int = option(2000, "steps between checkpoints")
    steps_per_call: int = option(1, "training updates per compiled call (a scan over that many batches and keys; the "
                                    "same updates, without the per-step dispatch cost of a small model); must divide "
                                    "eval_every and checkpoint_every")


PRESETS = {
    "cpu": Config(),
    # A few hundred steps on small splits, two rows, one seed: a quick end-to-end check (results
    # under runs/, git-ignored).
    "demo": Config(preset="demo", encodings=("none", "sympe"), seeds=(0,), num_train=500, num_val=100, num_test=100,
                   num_steps=300, warmup_steps=50, eval_every=100, checkpoint_every=300),
    # The EGNN benchmark's own training (vgsatorras/egnn, main_ae.py): one graph per update, 100
    # epochs of the 5000 training graphs, Adam at lr 1e-4 with cosine decay and no gradient
    # clipping, messages along all pairs with the adjacency entry as edge feature. (EGNN
    # evaluates every 2 epochs; we evaluate every epoch.) Its per-node latent is 8.
    "paper": Config(preset="paper", batch_size=1, num_steps=100 * 5000, eval_every=5000, checkpoint_every=25000,
                    learning_rate=1e-4, warmup_steps=0, clip_norm=0.0, message_graph="complete", latent=8),
}
