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

The score (:func:`node_scores`) is a fixed, exactly permutation-equivariant scalar per node of
the **noisy** graph G_t (never of the clean graph, which the denoiser does not see): the
library's spectral score (:func:`sympe_jax.features.invariant_node_scores`, random-walk return
probabilities and degree of the bond-agnostic adjacency), the k-cycle counts (the first three
channels of DiGress's extra features), and three rounds of a typed neighbourhood hash (atom
classes of X_t, bond classes of E_t), combined with fixed generic weights. Automorphic nodes of
the typed noisy graph tie (up to float rounding, absorbed by ``atol``); non-automorphic ones
almost never do, so ``sort_permutation``'s random tie-breaking only acts where the graph's own
symmetry leaves a choice. The scorer has no parameters: sorted ranks carry no gradient
(``sympe.md``), and a fixed informative invariant needs none. The Laplacian eigenvectors of
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

from experiments.digress_qm9.diffusion import dense
from experiments.digress_qm9.diffusion.denoiser import TransformerDenoiser
from experiments.digress_qm9.diffusion.extra_features import ExtraFeatures, adjacency, cycle_features
from experiments.digress_qm9.graph_transformer import GraphTransformerConfig, TransformerNet

__all__ = ["MODES", "node_scores", "pair_channels", "SymmetryBreakingDenoiser", "make_denoiser"]

MODES = {"none": "none", "noise": "noise", "sympe": "sympe", "sympe_edges": "sympe"}
"""Symmetry breaking of :class:`SymmetryBreakingDenoiser` (see the module docstring): each mode's
encoding in ``sympe_jax.encodings.GRAPH_ENCODINGS`` (``"sympe_edges"`` adds pair channels)."""

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

    Params: ``{"net": transformer params}`` plus ``"v": float[n_max, features]`` for the SymPE
    modes. Same call signature as every denoiser::

        den(params, key, X_t, E_t, y_t, node_mask, t_over_T, *, deterministic) -> (X_logits, E_logits)
    """

    base: TransformerDenoiser
    mode: str = "sympe"
    features: int = 8
    n_max: int = 9
    atol: float = canonicalize.DEFAULT_ATOL
    init_scale: float = 1.0
    noise_scale: float = 1.0

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
                                        init_scale=self.init_scale, noise_scale=self.noise_scale)

    # ------------------------------------------------------------------ pieces

    def scores(self, X_t, E_t, node_mask, feats: ExtraFeatures | None = None) -> jax.Array:
        """:func:`node_scores` of the noisy graph, reusing the cycle channels of ``feats``."""
        cycles = None if feats is None else feats.x[..., :3]
        return node_scores(X_t, E_t, node_mask, cycles)

    def ranks(self, key: jax.Array, X_t, E_t, node_mask, feats: ExtraFeatures | None = None) -> jax.Array:
        """g~ for every graph: int32[B, n] ranks (``ranks[b, i]`` = position of node i), the ones
        :meth:`encodings` uses with the same key."""
        s = self.scores(X_t, E_t, node_mask, feats)
        keys = jax.random.split(key, node_mask.shape[0])
        return jax.vmap(lambda k, x, m: canonicalize.sort_permutation(k, x, m, atol=self.atol))(keys, s, node_mask)

    def encodings(self, params, key: jax.Array, X_t, E_t, node_mask, feats: ExtraFeatures | None = None
                  ) -> tuple[jax.Array | None, jax.Array | None]:
        """``(extra_node float[B, n, k] | None, extra_edge float[B, n, n, 2k] | None)``."""
        enc = self.encoding
        if enc.features == 0:
            return None, None
        scores = None
        if enc.uses_scores:
            if node_mask.shape[-1] > self.n_max:
                raise ValueError(f"graphs padded to {node_mask.shape[-1]} nodes but the SymPE table has "
                                 f"n_max = {self.n_max} rows")
            scores = self.scores(X_t, E_t, node_mask, feats)
        table = {k: v for k, v in params.items() if k != "net"}   # the encoding's own parameters
        u = enc.apply(key, table, None, node_mask, scores=scores)
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
        return params

    def features_of(self, X_t, E_t, node_mask, t_over_T) -> ExtraFeatures:
        return self.base.features_of(X_t, E_t, node_mask, t_over_T)

    def __call__(self, params, key: jax.Array, X_t, E_t, y_t, node_mask, t_over_T, *,
                 deterministic: bool = True) -> tuple[jax.Array, jax.Array]:
        """Logits ``(X [B, n, dx], E [B, n, n, de])`` of p(x_0 | G_t, g~), one g~ per graph."""
        k_pe, k_net = jax.random.split(key)
        feats = self.features_of(X_t, E_t, node_mask, t_over_T)
        extra_node, extra_edge = self.encodings(params, k_pe, X_t, E_t, node_mask, feats)
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
