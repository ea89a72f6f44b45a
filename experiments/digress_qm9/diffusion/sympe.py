"""Symmetry breaking in DiGress's denoiser: SymPE node (and pair) channels, and Gaussian noise.

DiGress's transformer is permutation-equivariant, so a noisy graph with automorphisms (two
methyl groups on one carbon, a symmetric ring) can only be denoised into a graph at least as
symmetric. SymPE (Lawrence et al., ICLR 2025, arXiv 2503.21985, Algorithm 1) gives the network
extra input channels that break the symmetry at random while keeping the model's *law*
equivariant. :class:`SymmetryBreakingDenoiser` wraps a
:class:`~experiments.digress_qm9.diffusion.denoiser.TransformerDenoiser` and is itself a
:class:`~experiments.digress_qm9.diffusion.denoiser.Denoiser`, so it plugs into
:class:`~experiments.digress_qm9.diffusion.digress.DiGress` unchanged::

    den = make_denoiser("sympe", GraphTransformerConfig.cpu(out_dim_E=4), features=8)
    params = den.init(key, X, E, node_mask)      # {"net": transformer params, "v": float[9, 8]}
    dg = DiGress(den, x_marginals, e_marginals, n_nodes_hist, DiffusionConfig(T=500))
    loss, _ = dg.training_loss(params, key, batch)          # g~ sampled inside, one per graph

Modes (one per row of ``python -m experiments.digress_qm9``):

* ``"none"``: DiGress as is (``extra_node = extra_edge = None``).
* ``"noise"``: ``features`` i.i.d. N(0, 1) node channels, fresh at every call (the paper's
  "DiGress + noise" baseline; node channels only).
* ``"sympe"`` ("nodes only"): node i gets ``v[rank(i)]``, ``v`` a learned table
  float[n_max, features] (a parameter, ``params["v"]``), ``rank = sort_permutation(key,
  score, node_mask)``.
* ``"sympe_edges"``: the same node channels plus ``2 * features`` pair channels built from
  ``u = v[rank]``: ``[u_i * u_j, u_i + u_j]`` on real off-diagonal pairs (zero on the diagonal
  and on padding, as the one-hot E_t), symmetric in (i, j) like E itself.
* ``"sympe_learned"`` (nodes only): ``"sympe"`` with a learned score, :func:`node_scores` plus
  a zero-initialised ``sympe_jax.nn.scorers.NodeScoreHead`` of exactly equivariant node
  features of the noisy graph (:func:`scorer_features`), trained through the library's
  straight-through SymPE (``encodings.straight_through_sympe``, soft ranks at
  ``temperature``): the sample is the sort's, the scorer's gradient that of the soft ranks.
  Params gain ``"scorer"``.

Leak controls (:data:`LEAK_MODES`): invalid or non-equivariant on purpose, to measure what a
model gains from information a valid equivariant denoiser does not have. Never methods.

* ``"sympe_clean"``: ``"sympe"`` with the ranks sorted from the score of the **clean** graph
  x0 instead of the noisy z_t (DiGress passes the clean graph to a denoiser that declares
  ``uses_clean_graph``). The denoiser sees information about its own target, so its "NLL" is
  not a bound on anything. At sampling time no clean graph exists: the sampler gives the
  denoiser none and the ranks are sorted from z_t, as ``"sympe"`` does; samples therefore
  show what the model trained with the leak generates without it.
* ``"sympe_index_ties"``: ``"sympe"`` with ties broken by node index instead of by the key
  (deterministic; within every tie group the dataset's atom order leaks).
* ``"index_pe"``: node i gets ``v[i]``, no sorting: a positional encoding in the order the
  nodes come in (the dataset's atom order), not equivariant.

Both index modes use the library's ``"exact"`` encoding (``v[ranks]`` for given ranks).

The score (:func:`node_scores`) is a fixed, exactly permutation-equivariant scalar per node of
the **noisy** graph G_t (never of the clean graph, which the denoiser does not see): the
library's spectral score (:func:`sympe_jax.features.invariant_node_scores`, random-walk return
probabilities and degree of the bond-agnostic adjacency), the k-cycle counts (the first three
channels of DiGress's extra features), and three rounds of a typed neighbourhood hash (atom
classes of X_t, bond classes of E_t), combined with fixed generic weights. Automorphic nodes of
the typed noisy graph tie (up to float rounding, absorbed by ``atol``); non-automorphic ones
almost never do, so ``sort_permutation``'s random tie-breaking only acts where the graph's own
symmetry leaves a choice. This scorer has no parameters: sorted ranks carry no gradient, and
a fixed informative invariant needs none; ``"sympe_learned"`` adds a learned head trained
through a straight-through gradient instead. The Laplacian eigenvectors of
the extra features are not used: their sign and basis are arbitrary, hence not equivariant.

Randomness and the key (how SymPE enters training, the NLL and sampling):

* g~ (and the noise channels) are part of the **model's** randomness, drawn from the key that
  :class:`DiGress` passes to the denoiser: ``key -> (k_pe, k_net)``, ``k_pe`` split over the
  batch (one independent g~ per graph), ``k_net`` drives dropout. Every denoiser call draws
  one fresh sample; the same key gives the same sample. ``deterministic=True`` turns dropout
  off, never the sampling of g~.
* **Training:** one g~ per graph per step (the loss is a single-sample estimate of the
  expected cross-entropy over g~).
* **NLL:** ``DiGress.nll`` calls the denoiser twice per graph (at t and at t = 0) with
  independent keys, so each term uses one independent g~ sample. The reported number is a
  single-sample Monte-Carlo estimate of ``E_g~[bound]``. By convexity of the KL in its second
  argument (and of -log), ``E_g~ KL(q || p_theta(. | z_t, g~)) >= KL(q || E_g~ p_theta(. |
  z_t, g~))`` and ``E_g~[-log p_theta(x | z_0, g~)] >= -log E_g~ p_theta(x | z_0, g~)``: in
  expectation it is an upper bound on the variational bound of the model that marginalises
  g~ at every step (which is what the sampler draws from, with ``vlb_posterior="sampler"``),
  itself an upper bound on that model's NLL. It is therefore conservative for SymPE and for
  noise alike; with no ties (and for ``"none"``) it equals the usual estimate.
* **Sampling:** ``DiGress.sample`` gives the denoiser a fresh key at every reverse step, so
  g~ is re-drawn from the current noisy graph at every step (``model_key="step"``). With
  ``model_key="trajectory"`` the key is fixed for the whole trajectory: g~ still sorts the
  current noisy graph, but tied nodes are ordered by the same per-node tie-break draw at every
  step. Each step's g~ has the same law either way, so the reported NLL (per-term single
  samples) is an unbiased estimate of ``E_key[bound(key)]`` for both samplers, hence, in
  expectation, an upper bound on the NLL of either.

Equivariance (tested in ``tests/experiments/digress_qm9/diffusion/test_sympe.py``): with an
exactly equivariant backbone (DiGress's extra features without eigenvectors), permuting the
noisy graph permutes the law of the logits (nodes as node arrays, edges as pair tensors); a
deterministic tie-break fails that test. With the default features the only non-equivariance
left is the eigenvector sign/basis of DiGress itself.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from sympe_jax import canonicalize, encodings, features
from sympe_jax.nn.scorers import NodeScoreHead

from experiments.digress_qm9.diffusion import dense
from experiments.digress_qm9.diffusion.denoiser import TransformerDenoiser
from experiments.digress_qm9.diffusion.extra_features import ExtraFeatures, adjacency, cycle_features
from experiments.digress_qm9.graph_transformer import GraphTransformerConfig, TransformerNet

__all__ = ["MODES", "LEAK_MODES", "node_scores", "scorer_features", "index_tie_ranks", "pair_channels",
           "SymmetryBreakingDenoiser", "make_denoiser"]

MODES = {"none": "none", "noise": "noise", "sympe": "sympe", "sympe_edges": "sympe",
         "sympe_learned": "sympe_learned", "sympe_clean": "sympe", "sympe_index_ties": "exact", "index_pe": "exact"}
"""Symmetry breaking of :class:`SymmetryBreakingDenoiser` (see the module docstring): each mode's
encoding in ``sympe_jax.encodings.GRAPH_ENCODINGS`` (``"sympe_edges"`` adds pair channels; the
index modes give the ``"exact"`` encoding their own ranks)."""

LEAK_MODES = ("sympe_clean", "sympe_index_ties", "index_pe")
"""The invalid / non-equivariant controls (module docstring)."""

SCORER = NodeScoreHead()
"""The learned part of ``"sympe_learned"``'s score (zero at initialisation)."""

# Fixed generic constants of the score: distinct, not rationally related in small integers, so
# sums of different multisets of them do not collide (well above the tie tolerance).
_ATOM_CODES = (0.0, 0.7071, 1.3247, 1.9319, 2.4495, 3.1416, 3.6056, 4.1231)   # classes 0..7
_BOND_CODES = (0.0, 0.5403, 0.8660, 1.2247, 0.6931, 1.4142, 1.5708, 1.7321)   # 0 = no bond
_CYCLE_WEIGHTS = (0.2718, 0.3162, 0.3679)                                       # 3-, 4-, 5-cycles
_ROUND_WEIGHTS = (0.6180, 0.4142, 0.2361)                                       # hash rounds


def node_scores(X_t: jax.Array, E_t: jax.Array, node_mask: jax.Array, cycles: jax.Array | None = None,
                *, rounds: int = 3, steps: int = 8) -> jax.Array:
    """One exactly permutation-equivariant scalar per node of a noisy graph. float[B, n].

    ``score = invariant_node_scores(A) + atom code + cycles . w + sum_r c_r h_r`` with ``A``
    the bond-agnostic adjacency of ``E_t``, ``h_0`` the atom codes of ``X_t`` and
    ``h_{r+1,i} = sum_j bondcode(E_t,ij) sin(1.7 h_{r,j} + 0.3)``: a typed 1-WL-style hash. Every
    step is elementwise or a sum over neighbours, so permuting the nodes permutes the scores
    exactly in exact arithmetic (float sums in another order differ by ~1e-6 at most for
    QM9-sized graphs, below the default tie tolerance 1e-5). Padded nodes get 0.

    Args:
      X_t: float[B, n, dx] one-hot (or soft) node classes, dx <= 8.
      E_t: float[B, n, n, de] one-hot edge classes (class 0 = no bond), de <= 8.
      node_mask: bool[B, n].
      cycles: optional float[B, n, 3] k-cycle features (k = 3, 4, 5), e.g. the first three
        channels of DiGress's extra features (``features.x[..., :3]``); computed if None.
      rounds, steps: hash rounds (<= 3) and random-walk lengths.
    """
    dx, de = X_t.shape[-1], E_t.shape[-1]
    if dx > len(_ATOM_CODES) or de > len(_BOND_CODES):
        raise ValueError(f"node_scores supports up to {len(_ATOM_CODES)} node and {len(_BOND_CODES)} edge classes, "
                         f"got {dx} and {de}")
    if not 0 <= rounds <= len(_ROUND_WEIGHTS):
        raise ValueError(f"rounds must be in 0..{len(_ROUND_WEIGHTS)}, got {rounds}")
    real = node_mask.astype(jnp.float32)
    A = adjacency(E_t).astype(jnp.float32) * real[:, :, None] * real[:, None, :]
    score = jax.vmap(lambda a, m: features.invariant_node_scores(a, m, steps))(A, node_mask)
    if cycles is None:
        cycles, _ = cycle_features(A, node_mask)
    score = score + cycles.astype(jnp.float32) @ jnp.asarray(_CYCLE_WEIGHTS, jnp.float32)
    h = X_t.astype(jnp.float32) @ jnp.asarray(_ATOM_CODES[:dx], jnp.float32)
    score = score + h
    W = E_t.astype(jnp.float32) @ jnp.asarray(_BOND_CODES[:de], jnp.float32)   # 0 where no bond
    for r in range(rounds):
        h = jnp.einsum("bij,bj->bi", W, jnp.sin(1.7 * h + 0.3))
        score = score + _ROUND_WEIGHTS[r] * h
    return jnp.where(node_mask, score, 0.0)


def scorer_features(X_t: jax.Array, E_t: jax.Array, node_mask: jax.Array, cycles: jax.Array | None = None,
                    *, steps: int = 8) -> jax.Array:
    """Exactly equivariant node features of a noisy graph, the input of the learned scorer.

    ``[X_t, sum_j E_t[:, :, j], cycles, structural_node_features(A)]``: the node's class, its
    count of neighbours per bond class (class 0: real non-neighbours), its 3-, 4-, 5-cycle
    counts and the random-walk return probabilities and degree of the bond-agnostic adjacency.
    float[B, n, dx + de + 3 + steps + 1]; zero on padded nodes.
    """
    real = node_mask.astype(jnp.float32)
    A = adjacency(E_t).astype(jnp.float32) * real[:, :, None] * real[:, None, :]
    if cycles is None:
        cycles, _ = cycle_features(A, node_mask)
    struct = jax.vmap(lambda a, m: features.structural_node_features(a, m, steps))(A, node_mask)
    feats = jnp.concatenate([X_t.astype(jnp.float32), E_t.astype(jnp.float32).sum(2),
                             cycles.astype(jnp.float32), struct], -1)
    return jnp.where(node_mask[..., None], feats, 0.0)


def index_tie_ranks(scores: jax.Array, node_mask: jax.Array, atol: float = canonicalize.DEFAULT_ATOL) -> jax.Array:
    """Ranks sorting ``scores`` with ties broken by node index (the ``"sympe_index_ties"``
    control): int32[B, n], padding last in index order; -1 everywhere for a NaN score."""
    groups = jax.vmap(lambda s, m: canonicalize.tie_groups(s, m, atol=atol))(scores, node_mask)
    order = jnp.argsort(groups, axis=-1, stable=True)        # by (tie group, node index)
    ranks = jnp.argsort(order, axis=-1).astype(jnp.int32)
    return jnp.where(jnp.any(groups < 0, -1, keepdims=True), -1, ranks)


def pair_channels(u: jax.Array, node_mask: jax.Array) -> jax.Array:
    """``[u_i * u_j, u_i + u_j]`` on real off-diagonal pairs, 0 elsewhere. u float[B, n, k] -> [B, n, n, 2k]."""
    pe = jnp.concatenate([u[:, :, None] * u[:, None, :], u[:, :, None] + u[:, None, :]], -1)
    return jnp.where(dense.pair_mask(node_mask)[..., None], pe, 0.0)


@dataclasses.dataclass(frozen=True)
class SymmetryBreakingDenoiser:
    """A :class:`TransformerDenoiser` with symmetry-breaking input channels (module docstring).

    Attributes:
      base: the DiGress denoiser (extra features + graph transformer).
      mode: one of :data:`MODES`.
      features: width k of the node channels (SymPE table columns, or noise channels); the
        ``"sympe_edges"`` pair channels have 2k.
      n_max: rows of the SymPE table: the largest graph served (9 for QM9 without H).
      atol: tie tolerance of the sort (:func:`sympe_jax.canonicalize.tie_groups`).
      init_scale: standard deviation of the initial table ``v``.
      noise_scale: standard deviation of the ``"noise"`` channels.
      temperature: soft-rank temperature of ``"sympe_learned"`` (units of the scores).

    Params: ``{"net": transformer params}`` plus ``"v": float[n_max, features]`` for the table
    modes, plus ``"scorer"`` for ``"sympe_learned"``. Same call signature as every denoiser::

        den(params, key, X_t, E_t, y_t, node_mask, t_over_T, *, deterministic) -> (X_logits, E_logits)

    (``"sympe_clean"`` also takes ``clean=(X, E)``, see :attr:`uses_clean_graph`.)
    """

    base: TransformerDenoiser
    mode: str = "sympe"
    features: int = 8
    n_max: int = 9
    atol: float = canonicalize.DEFAULT_ATOL
    init_scale: float = 1.0
    noise_scale: float = 1.0
    temperature: float = 0.02

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {tuple(MODES)}, got {self.mode!r}")
        if self.mode != "none" and self.features < 1:
            raise ValueError(f"mode {self.mode!r} needs features >= 1, got {self.features}")
        if self.n_max < 1:
            raise ValueError(f"n_max must be >= 1, got {self.n_max}")

    @property
    def encoding(self) -> encodings.Encoding:
        """The mode's symmetry breaker from the library's registry."""
        return encodings.graph_encoding(MODES[self.mode], n_max=self.n_max, features=self.features, atol=self.atol,
                                        init_scale=self.init_scale, noise_scale=self.noise_scale,
                                        temperature=self.temperature)

    @property
    def uses_clean_graph(self) -> bool:
        """Whether the denoiser reads the clean graph (``"sympe_clean"``, a leak control):
        :class:`~experiments.digress_qm9.diffusion.digress.DiGress` then passes ``clean=(X, E)``
        in training and in the NLL, and ``clean=None`` in sampling."""
        return self.mode == "sympe_clean"

    # ------------------------------------------------------------------ pieces

    def scores(self, X_t, E_t, node_mask, feats: ExtraFeatures | None = None, *, scorer=None,
               clean=None) -> jax.Array:
        """The sort's score float[B, n]: :func:`node_scores` of the noisy graph (reusing the cycle
        channels of ``feats``); plus the learned head given ``scorer`` params (``"sympe_learned"``);
        of the clean graph ``clean=(X, E)`` instead for ``"sympe_clean"`` when one is given."""
        if self.mode == "sympe_clean" and clean is not None:
            return node_scores(clean[0], clean[1], node_mask)
        cycles = None if feats is None else feats.x[..., :3]
        base = node_scores(X_t, E_t, node_mask, cycles)
        if scorer is None:
            return base
        head = jax.vmap(SCORER.apply, (None, 0, 0))(scorer, scorer_features(X_t, E_t, node_mask, cycles), base)
        return jnp.where(node_mask, head, 0.0)

    def ranks(self, key: jax.Array, X_t, E_t, node_mask, feats: ExtraFeatures | None = None, *, scorer=None,
              clean=None) -> jax.Array:
        """g~ for every graph: int32[B, n] ranks (``ranks[b, i]`` = position of node i), the ones
        :meth:`encodings` uses with the same key (``scorer``: the learned head's params)."""
        s = self.scores(X_t, E_t, node_mask, feats, scorer=scorer, clean=clean)
        if self.mode == "index_pe":
            return jnp.broadcast_to(jnp.arange(node_mask.shape[-1], dtype=jnp.int32), node_mask.shape)
        if self.mode == "sympe_index_ties":
            return index_tie_ranks(s, node_mask, self.atol)
        keys = jax.random.split(key, node_mask.shape[0])
        return jax.vmap(lambda k, x, m: canonicalize.sort_permutation(k, x, m, atol=self.atol))(keys, s, node_mask)

    def encodings(self, params, key: jax.Array, X_t, E_t, node_mask, feats: ExtraFeatures | None = None,
                  clean=None) -> tuple[jax.Array | None, jax.Array | None]:
        """``(extra_node float[B, n, k] | None, extra_edge float[B, n, n, 2k] | None)``;
        ``clean`` ``(X, E)`` is read by ``"sympe_clean"`` only."""
        enc = self.encoding
        if enc.features == 0:
            return None, None
        scores = ranks = None
        if enc.uses_scores or enc.needs_ranks:
            if node_mask.shape[-1] > self.n_max:
                raise ValueError(f"graphs padded to {node_mask.shape[-1]} nodes but the SymPE table has "
                                 f"n_max = {self.n_max} rows")
        if enc.needs_ranks:             # the index controls: ranks without the key
            ranks = self.ranks(key, X_t, E_t, node_mask, feats)
        elif enc.uses_scores:
            scores = self.scores(X_t, E_t, node_mask, feats, scorer=params.get("scorer"), clean=clean)
        table = {k: v for k, v in params.items() if k not in ("net", "scorer")}   # the encoding's own parameters
        u = enc.apply(key, table, None, node_mask, scores=scores, ranks=ranks)
        return u, (pair_channels(u, node_mask) if self.mode == "sympe_edges" else None)

    def _zero_channels(self, B: int, n: int):
        if self.encoding.features == 0:
            return None, None
        node = jnp.zeros((B, n, self.features), jnp.float32)
        edge = jnp.zeros((B, n, n, 2 * self.features), jnp.float32) if self.mode == "sympe_edges" else None
        return node, edge

    # ------------------------------------------------------------------ the denoiser

    def init(self, key: jax.Array, X_t, E_t, node_mask, y_t=None) -> dict[str, Any]:
        """``{"net": ..., ["v": float[n_max, features]]}`` for batches shaped like these."""
        k_net, k_v = jax.random.split(key)
        B, n = jnp.shape(node_mask)
        extra_node, extra_edge = self._zero_channels(B, n)
        params = {"net": self.base.init(k_net, X_t, E_t, node_mask, y_t, extra_node, extra_edge)}
        params.update(self.encoding.init(k_v))
        if self.encoding.learns_scores:
            feats = scorer_features(X_t[:1], E_t[:1], node_mask[:1])[0]
            params["scorer"] = SCORER.init(jax.random.fold_in(k_v, 1), feats, jnp.zeros(feats.shape[:1]))
        return params

    def features_of(self, X_t, E_t, node_mask, t_over_T) -> ExtraFeatures:
        return self.base.features_of(X_t, E_t, node_mask, t_over_T)

    def __call__(self, params, key: jax.Array, X_t, E_t, y_t, node_mask, t_over_T, *,
                 deterministic: bool = True, clean=None) -> tuple[jax.Array, jax.Array]:
        """Logits ``(X [B, n, dx], E [B, n, n, de])`` of p(x_0 | G_t, g~), one g~ per graph
        (``clean``: the clean graph ``(X, E)``, read by ``"sympe_clean"`` only)."""
        k_pe, k_net = jax.random.split(key)
        feats = self.features_of(X_t, E_t, node_mask, t_over_T)
        leak = {"clean": clean} if self.uses_clean_graph else {}   # (subclasses may predate the argument)
        extra_node, extra_edge = self.encodings(params, k_pe, X_t, E_t, node_mask, feats, **leak)
        return self.base(params["net"], k_net, X_t, E_t, y_t, node_mask, t_over_T, deterministic=deterministic,
                         extra_node=extra_node, extra_edge=extra_edge, features=feats)


def make_denoiser(mode: str, net_config: GraphTransformerConfig, features: int = 8, **kwargs: Any
                  ) -> SymmetryBreakingDenoiser:
    """``SymmetryBreakingDenoiser(TransformerDenoiser(TransformerNet(net_config)), mode, features, ...)``.

    ``kwargs``: ``extra_features`` (an :class:`ExtraFeaturesConfig`, default QM9's) and the
    other :class:`SymmetryBreakingDenoiser` attributes.
    """
    fconf = kwargs.pop("extra_features", None)
    base = TransformerDenoiser(TransformerNet(net_config)) if fconf is None else \
        TransformerDenoiser(TransformerNet(net_config), fconf)
    return SymmetryBreakingDenoiser(base, mode, features, **kwargs)
