"""Graph autoencoder: the symmetry breaking of every row, and the model built from it.

Which library encoding a row uses and where it enters (:data:`ROW_ENCODINGS`, chosen by name
from ``sympe_jax.encodings``), the learned scorer of ``sympe_learned`` (:func:`node_scores`),
the exact kernel's host-side samples (:class:`ExactRanks`), and :func:`build`, the row's
forward and init functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sympe_jax import encodings, features, graphs
from sympe_jax.exact import automorphisms
from sympe_jax.nn.scorers import NodeScoreHead

from experiments.graph_autoencoder import models
from experiments.graph_autoencoder.configs import Config


# ----------------------------------------------------------------------------- encodings


ROW_ENCODINGS = {
    # row: (encoding in sympe_jax.encodings.GRAPH_ENCODINGS, where it enters, extra encoder channels)
    **{name: (name, "encoder", ()) for name in ("none", "noise", "randperm", "laplacian", "sympe", "sympe_learned",
                                                "exact")},
    "sympe_decoder": ("sympe", "decoder", ()),
    "features": ("none", "encoder", ("features",)),
    "sympe_features": ("sympe", "encoder", ("features",)),
    "exact_features": ("exact", "encoder", ("features",)),
    "randperm_features": ("randperm", "encoder", ("features",)),
    "laplacian_features": ("laplacian", "encoder", ("features",)),
    "sympe_laplacian": ("sympe", "encoder", ("laplacian",)),
}
"""What every row is made of. The extra channels are ``"features"`` (:func:`structural_channels`)
or ``"laplacian"`` (the ``laplacian`` row's encoding, drawn with another key), concatenated after
the row's own encoding at the encoder input."""


def pe_kind(row: str) -> tuple[str, str, tuple[str, ...]]:
    """(encoding, entry point, extra encoder channels) of a row (:data:`ROW_ENCODINGS`)."""
    if row not in ROW_ENCODINGS:
        raise ValueError(f"unknown row {row!r}; choose from {tuple(ROW_ENCODINGS)}")
    return ROW_ENCODINGS[row]


def row_encoding(row: str, cfg: Config, name: str | None = None) -> encodings.Encoding:
    """The library encoding of a row (or the encoding ``name``) at this config's sizes."""
    return encodings.graph_encoding(pe_kind(row)[0] if name is None else name, n_max=cfg.n_max,
                                    features=cfg.pe_features, atol=cfg.atol, temperature=cfg.scorer_temperature)


def structural_channels(adjacency, mask, cfg: Config):
    """[B, n_max, 9] exactly equivariant node channels: the inputs of the SymPE score
    (``features.structural_node_features``: random-walk return probabilities, degree / (n_max - 1))."""
    feats = jax.vmap(features.structural_node_features)(adjacency, mask)
    return feats.at[..., -1].divide(cfg.n_max - 1)


SCORER = NodeScoreHead()


def node_scores(scorer_params, adjacency, mask, cfg: Config):
    """[B, n_max] SymPE sort scores: the fixed ``features.invariant_node_scores``, or, given the
    ``sympe_learned`` row's scorer parameters, those plus the learned ``NodeScoreHead`` of the
    structural node features (exactly equivariant per-node inputs)."""
    base = jax.vmap(features.invariant_node_scores)(adjacency, mask)
    if scorer_params is None:
        return base
    return jax.vmap(SCORER.apply, (None, 0, 0))(scorer_params, structural_channels(adjacency, mask, cfg), base)


class ExactRanks:
    """Host-side exact inversion-kernel samples for the graphs of one split (groups cached)."""

    def __init__(self, adjs, n_max: int):
        self.adjs = adjs
        self.groups = automorphisms.automorphism_groups(adjs)
        self.n_max = n_max

    def sample(self, indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int32[B, n_max] ranks (identity on padding and empty slots)."""
        out = np.tile(np.arange(self.n_max, dtype=np.int32), (len(indices), 1))
        for b, i in enumerate(indices):
            if i >= 0:
                ranks = automorphisms.inversion_kernel_sample(self.adjs[i], rng, group=self.groups[i])
                out[b, : len(ranks)] = ranks
        return out


# ----------------------------------------------------------------------------- model and steps


def build(cfg: Config, row: str):
    """``(forward, init)`` of a row: ``forward(params, key, batch, exact_ranks) -> (logits, pair mask)``,
    each ``[B, n_max, n_max]`` with ``B = cfg.batch_size``.

    ``batch`` is a :class:`~experiments.graph_autoencoder.data.Batch`: one padded graph of
    ``B`` slots, or (data parallelism) ``D`` blocks of ``B / D`` slots from
    :func:`~experiments.graph_autoencoder.data.stack_blocks`, whose ``graph`` leaves have a
    leading block axis: the encoding is drawn on the dense ``[B, ...]`` leaves as for one batch,
    and every block goes through the model on its own (``jax.vmap``), so the logits of a graph
    do not depend on the blocking (real graphs' outputs do not depend on the padding).
    ``init`` takes an unblocked batch."""
    model = models.graph_autoencoder(cfg.n_max, cfg.hidden, cfg.latent, cfg.num_layers)
    _, where, extras = pe_kind(row)
    enc = row_encoding(row, cfg)
    laplacian = row_encoding(row, cfg, "laplacian") if "laplacian" in extras else None
    table_keys = tuple(jax.eval_shape(enc.init, jax.random.key(0)))   # the encoding's own parameters

    def encoding(params, key, batch, exact_ranks):
        scores = node_scores(params["scorer"], batch.adjacency, batch.mask, cfg) if enc.learns_scores else None
        pe = [enc.apply(key, {k: params[k] for k in table_keys}, batch.adjacency, batch.mask, scores=scores,
                        ranks=exact_ranks if enc.needs_ranks else None)]
        if "features" in extras:
            pe.append(structural_channels(batch.adjacency, batch.mask, cfg))
        if laplacian is not None:
            pe.append(laplacian.apply(jax.random.fold_in(key, 1), {}, batch.adjacency, batch.mask))
        return jnp.concatenate(pe, axis=-1)

    def apply_model(model_params, graph, pe, num_graphs):
        enc_pe = graphs.dense_to_nodes(graph, pe) if where == "encoder" else None
        dec_pe = pe if where == "decoder" else None
        return model.apply(model_params, graph, encoder_pe=enc_pe, decoder_pe=dec_pe, num_graphs=num_graphs)

    def forward(params, key, batch, exact_ranks):
        pe = encoding(params, key, batch, exact_ranks)
        if np.ndim(batch.graph.n_node) == 1:
            return apply_model(params["model"], batch.graph, pe, cfg.batch_size)
        # Data-parallel blocks (data.stack_blocks): graph leaves [D, ...], per-graph leaves [B, ...];
        # block j is the padded batch of rows j b .. (j + 1) b - 1, decoded on its own (vmap).
        blocks, rows = np.shape(batch.graph.n_node)[0], pe.shape[0]
        if rows % blocks:
            raise ValueError(f"{rows} graph rows cannot be cut into {blocks} blocks of the batch's graph")
        pe = pe.reshape((blocks, rows // blocks) + pe.shape[1:])
        per_block = jax.vmap(lambda graph, x: apply_model(params["model"], graph, x, rows // blocks))
        logits, pairs = per_block(batch.graph, pe)
        return logits.reshape((rows,) + logits.shape[2:]), pairs.reshape((rows,) + pairs.shape[2:])

    def init(key, batch):
        k_model, k_v = jax.random.split(key)
        params = dict(enc.init(k_v))
        if enc.learns_scores:
            feats = structural_channels(batch.adjacency[:1], batch.mask[:1], cfg)[0]
            params["scorer"] = SCORER.init(k_v, feats, jnp.zeros(feats.shape[:1]))
        pe = jnp.zeros(jax.eval_shape(encoding, params, key, batch, jnp.zeros(batch.mask.shape, jnp.int32)).shape)
        enc_pe = graphs.dense_to_nodes(batch.graph, pe) if where == "encoder" else None
        dec_pe = pe if where == "decoder" else None
        params["model"] = model.init(k_model, batch.graph, encoder_pe=enc_pe, decoder_pe=dec_pe,
                                     num_graphs=cfg.batch_size)
        return params

    return forward, init
