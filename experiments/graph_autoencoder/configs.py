"""Graph autoencoder: the config, its presets, the rows and their labels.

The rows of the preset (``ROWS``), our own ablations run on demand (``EXTRA_ROWS``), their labels
and the paper's numbers; what each row's encoding is lives in
:mod:`experiments.graph_autoencoder.encoding`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

ROWS = ("none", "noise", "randperm", "laplacian", "sympe_decoder", "sympe", "sympe_learned", "exact")
# Our own ablations and controls: run on demand (--rows) at the preset's budget; the summary lists
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
                                     "scorer_temperature": 0.02}

    preset: str = "cpu"
    dataset: str = "erdos_renyi"
    rows: tuple[str, ...] = ROWS
    seeds: tuple[int, ...] = (0, 1, 2)
    num_train: int = 5000
    num_val: int = 500
    num_test: int = 500
    n_max: int = 16
    batch_size: int = 16
    num_steps: int = 8000
    learning_rate: float = 1e-3
    warmup_steps: int = 300
    clip_norm: float = 1.0          # global-norm gradient clipping; 0 = none
    weight_decay: float = 0.0       # AdamW decoupled weight decay (on every parameter)
    message_graph: str = "edges"    # "edges": pass messages along edges; "complete": along all
                                    # pairs, with the adjacency entry as edge feature (EGNN's benchmark)
    hidden: int = 64
    latent: int = 32                # per-node latent: chosen from {8, 16, 32} by validation BCE (README)
    num_layers: int = 4
    pe_features: int = 8
    atol: float = 1e-5
    scorer_temperature: float = 0.02  # sympe_learned: temperature of the soft ranks its scorer trains through
    eval_every: int = 500
    checkpoint_every: int = 2000


PRESETS = {
    "cpu": Config(),
    # The EGNN benchmark's own training (vgsatorras/egnn, main_ae.py): one graph per update, 100
    # epochs of the 5000 training graphs, Adam at lr 1e-4 with cosine decay and no gradient
    # clipping, messages along all pairs with the adjacency entry as edge feature. (EGNN
    # evaluates every 2 epochs; we evaluate every epoch.) Its per-node latent is 8.
    "paper": Config(preset="paper", batch_size=1, num_steps=100 * 5000, eval_every=5000, checkpoint_every=25000,
                    learning_rate=1e-4, warmup_steps=0, clip_norm=0.0, message_graph="complete", latent=8),
}
