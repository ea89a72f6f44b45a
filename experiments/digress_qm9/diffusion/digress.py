"""DiGress: discrete denoising diffusion for graphs (Vignac et al., ICLR 2023, arXiv 2209.14734).

:class:`DiGress` ties a denoiser (:mod:`.denoiser`) to the marginal-transition process and
offers three pure, jit-compiled functions of ``(params, key, ...)``::

    dg = DiGress(TransformerDenoiser(TransformerNet(GraphTransformerConfig.cpu())))
    params = dg.denoiser.init(key, batch.X, batch.E, batch.node_mask)
    loss, metrics = dg.training_loss(params, key, batch)     # CE_X + 5 CE_E, t ~ U{1..T}
    terms = dg.nll(params, key, batch)                       # dict of float[B], nats per graph
    terms = dg.nll(params, key, batch, perm)                 # the same draws, nodes permuted by perm
    X, E, node_mask = dg.sample(params, key, num_samples=64) # int32 [B, n], [B, n, n], bool [B, n]

``batch`` is a :class:`~.dense.DenseGraphs` (or any object with ``X``, ``E`` and ``node_mask``
attributes, or a mapping with those keys) in the dense convention of :mod:`.dense`. For
:func:`experiments._lib.train.train`, whose loss takes ``(params, batch, key)``, pass
``lambda p, b, k: dg.training_loss(p, k, b)``.

The marginals (limit distributions) and the node-count histogram are arrays given at
construction; the defaults are the reference's QM9-without-H constants
(:mod:`.qm9_reference`). ``len(n_nodes_histogram) - 1`` is the padded size of samples.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from experiments.digress_qm9.diffusion import dense, likelihood, noise, posterior, qm9_reference, sampling, transitions
from experiments.digress_qm9.diffusion.denoiser import Denoiser
from experiments.digress_qm9.diffusion.loss import cross_entropy_loss
from experiments.digress_qm9.diffusion.schedule import NoiseSchedule, cosine_schedule

__all__ = ["DiffusionConfig", "DiGress"]


@dataclasses.dataclass(frozen=True)
class DiffusionConfig:
    """The process and its losses (``configs/model/discrete.yaml`` of the reference).

    T: diffusion steps (``diffusion_steps``; 500 for QM9).
    schedule_s: offset s of the cosine schedule.
    lambda_E: weight of the edge cross-entropy (``lambda_train[0]``; 5).
    t_min_train: smallest training time: 1 as the ``fixed_bug`` branch (and the VLB); 0 as
      ``main``.
    vlb_posterior: p_theta(z_s | z_t) inside the NLL's diffusion term. ``"reference"``: the
      reference's ``compute_Lt``, the posterior with x replaced by the predicted distribution
      (needed to compare with its 69.6); ``"sampler"``: ``sum_x0 p(x0) q(z_s | z_t, x0)``, the
      distribution the sampler draws from (a bound on the sampler's own likelihood). Both are
      exact for a perfect prediction.
    """

    T: int = 500
    schedule_s: float = 0.008
    lambda_E: float = 5.0
    t_min_train: int = 1
    vlb_posterior: str = "reference"

    def __post_init__(self):
        if self.T < 1:
            raise ValueError(f"T must be >= 1, got {self.T}")
        if self.t_min_train not in (0, 1):
            raise ValueError(f"t_min_train must be 0 (main) or 1 (fixed_bug), got {self.t_min_train}")
        if self.vlb_posterior not in ("reference", "sampler"):
            raise ValueError(f"vlb_posterior must be 'reference' or 'sampler', got {self.vlb_posterior!r}")

    @classmethod
    def paper(cls, **overrides: Any) -> "DiffusionConfig":
        """The reference's QM9 settings: T = 500, lambda_E = 5 (the defaults)."""
        return cls(**overrides)


def _unpack(batch) -> tuple[jax.Array, jax.Array, jax.Array]:
    if isinstance(batch, Mapping):
        X, E, node_mask = batch["X"], batch["E"], batch["node_mask"]
    else:
        X, E, node_mask = batch.X, batch.E, batch.node_mask
    X, E, node_mask = jnp.asarray(X), jnp.asarray(E), jnp.asarray(node_mask)
    dense.check_dense(X, E, node_mask)
    return X, E, node_mask


@dataclasses.dataclass(frozen=True, eq=False)
class DiGress:
    """A denoiser plus the marginal-transition diffusion process (see the module docstring).

    ``training_loss``, ``nll`` and ``sample`` are jitted functions bound to the instance (their
    documentation is on ``_training_loss``, ``_nll``, ``_sample``); they compile once per
    instance and shape, and compose with ``jax.grad`` and an outer ``jax.jit``.
    """

    denoiser: Denoiser
    x_marginals: Any = qm9_reference.ATOM_MARGINALS
    e_marginals: Any = qm9_reference.EDGE_MARGINALS
    n_nodes_histogram: Any = qm9_reference.N_NODES_HISTOGRAM
    config: DiffusionConfig = dataclasses.field(default_factory=DiffusionConfig)
    schedule: NoiseSchedule = dataclasses.field(init=False)
    training_loss: Any = dataclasses.field(init=False, repr=False)
    nll: Any = dataclasses.field(init=False, repr=False)
    nll_given: Any = dataclasses.field(init=False, repr=False)
    sample: Any = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)
        set_("x_marginals", transitions.normalize_marginals(self.x_marginals, "x_marginals"))
        set_("e_marginals", transitions.normalize_marginals(self.e_marginals, "e_marginals"))
        set_("n_nodes_histogram", transitions.normalize_marginals(self.n_nodes_histogram, "n_nodes_histogram"))
        set_("schedule", cosine_schedule(self.config.T, self.config.schedule_s))
        # The public functions: jitted closures over this instance (``.lower`` etc. work).
        set_("training_loss", jax.jit(self._training_loss))
        set_("nll", jax.jit(self._nll))
        set_("nll_given", jax.jit(self._nll_given))
        set_("sample", jax.jit(self._sample, static_argnames=("num_samples", "model_key")))

    @property
    def T(self) -> int:
        return self.config.T

    @property
    def n_max(self) -> int:
        """Padded size of samples: the histogram's largest node count."""
        return self.n_nodes_histogram.shape[0] - 1

    # ------------------------------------------------------------------ building blocks

    def _check_classes(self, X, E):
        dx, de = self.x_marginals.shape[0], self.e_marginals.shape[0]
        if X.shape[-1] != dx or E.shape[-1] != de:
            raise ValueError(f"batch has {X.shape[-1]} node and {E.shape[-1]} edge classes; the marginals have "
                             f"{dx} and {de}")

    def noise(self, key: jax.Array, X, E, node_mask, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One-hot ``(X_t, E_t) ~ q(G_t | G_0)`` for integer times t int[B] in 0..T."""
        return noise.apply_noise(key, X, E, node_mask, t, self.schedule, self.x_marginals, self.e_marginals)

    def _matrices(self, t: jax.Array, marginals: jax.Array):
        """(Q_t, Qbar_{t-1}, Qbar_t), each [B, K, K], for t int[B] >= 1."""
        s = self.schedule
        return (transitions.step_matrix(s.betas[t], marginals),
                transitions.cumulative_matrix(s.alpha_bars[t - 1], marginals),
                transitions.cumulative_matrix(s.alpha_bars[t], marginals))

    def _denoise(self, params, key, X_t, E_t, node_mask, t, deterministic, clean=None):
        """The denoiser's logits; ``clean`` ``(X, E)`` (the clean graph, or None when there is none,
        as in sampling) is passed only to a denoiser that declares ``uses_clean_graph`` (the
        ``sympe_clean`` leak control of :mod:`.sympe`); every other denoiser never sees it."""
        y_t = jnp.zeros((X_t.shape[0], 0), X_t.dtype)
        t_over_T = t.astype(jnp.float32) / self.T
        if getattr(self.denoiser, "uses_clean_graph", False):
            return self.denoiser(params, key, X_t, E_t, y_t, node_mask, t_over_T, deterministic=deterministic,
                                 clean=clean)
        return self.denoiser(params, key, X_t, E_t, y_t, node_mask, t_over_T, deterministic=deterministic)

    # ------------------------------------------------------------------ training

    def _training_loss(self, params, key: jax.Array, batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``(CE_X + lambda_E CE_E, {"ce_X", "ce_E"})`` at one random t per graph, with dropout.

        t ~ U{t_min_train..T}; noise, extra features and the forward pass as the reference's
        ``training_step``. Differentiable in ``params``.
        """
        X, E, node_mask = _unpack(batch)
        self._check_classes(X, E)
        k_t, k_noise, k_net = jax.random.split(key, 3)
        t = jax.random.randint(k_t, (X.shape[0],), self.config.t_min_train, self.T + 1)
        X_t, E_t = self.noise(k_noise, X, E, node_mask, t)
        X_logits, E_logits = self._denoise(params, k_net, X_t, E_t, node_mask, t, deterministic=False, clean=(X, E))
        return cross_entropy_loss(X_logits, E_logits, X, E, node_mask, self.config.lambda_E)

    # ------------------------------------------------------------------ likelihood

    def _nll(self, params, key: jax.Array, batch, perm: jax.Array | None = None) -> dict[str, jax.Array]:
        """Single-sample estimate of the NLL bound per graph, in nats, and its four terms.

        Returns a dict of float[B]: ``"nll"`` = ``"node_count"`` (-log p(N)) + ``"prior_kl"``
        + ``"diffusion"`` (T x the KL at one t ~ U{1..T} per graph) + ``"reconstruction"``
        (-log p_theta(x | z_0), z_0 ~ q(z_0 | x) with beta_0); also ``"t"`` (int32[B]).
        The network runs without dropout.

        ``perm`` (optional int32[B, n], each row a permutation in the project's convention,
        ``perm[b, i]`` = new position of node i, fixing padded nodes): the order diagnostic.
        t, z_t and z_0 are drawn exactly as without ``perm`` (same key, same draws, in the
        batch's node order), then the clean graph, z_t and z_0 are all permuted by ``perm``
        before the denoiser sees them. A denoiser that is equivariant in law gives the same
        NLL in law (every term is a sum over nodes and pairs); one that reads the node order
        does not. The draws are shared, so the per-graph difference to ``perm=None`` has
        only the denoiser's own randomness (g~ tie-breaks, noise channels) left in it.
        """
        X, E, node_mask = _unpack(batch)
        self._check_classes(X, E)
        B = X.shape[0]
        k_t, k_noise, k_net, k_zero, k_net0 = jax.random.split(key, 5)
        t = jax.random.randint(k_t, (B,), 1, self.T + 1)
        X_t, E_t = self.noise(k_noise, X, E, node_mask, t)
        zeros = jnp.zeros((B,), jnp.int32)
        Q0X = transitions.step_matrix(self.schedule.betas[zeros], self.x_marginals)
        Q0E = transitions.step_matrix(self.schedule.betas[zeros], self.e_marginals)
        X_0, E_0 = noise.sample_graph(k_zero, transitions.apply_transition(X, Q0X),
                                      transitions.apply_transition(E, Q0E), node_mask)
        if perm is not None:
            perm = jnp.asarray(perm, jnp.int32)
            if perm.shape != node_mask.shape:
                raise ValueError(f"perm must have the node mask's shape {node_mask.shape}, got {perm.shape}")
            X, E, X_t, E_t, X_0, E_0, node_mask = dense.permute(perm, X, E, X_t, E_t, X_0, E_0, node_mask)
        return self._nll_given(params, k_net, k_net0, X, E, node_mask, t, X_t, E_t, X_0, E_0)

    def _nll_given(self, params, k_net: jax.Array, k_net0: jax.Array, X, E, node_mask, t, X_t, E_t, X_0, E_0
                   ) -> dict[str, jax.Array]:
        """The four NLL terms (dict of float[B], as :meth:`_nll`) for given draws: t int[B] in
        1..T, ``(X_t, E_t) ~ q(z_t | x)`` and ``(X_0, E_0) ~ q(z_0 | x)`` one-hot like ``(X, E)``;
        ``k_net`` / ``k_net0`` are the denoiser's keys at t and at 0. Deterministic given its
        arguments (what the convention tests compute by hand)."""
        node_count = likelihood.node_count_nll(self.n_nodes_histogram, node_mask)
        prior = likelihood.prior_kl(X, E, node_mask, self.schedule.alpha_bars[self.T],
                                    self.x_marginals, self.e_marginals)

        X_logits, E_logits = self._denoise(params, k_net, X_t, E_t, node_mask, t, deterministic=True, clean=(X, E))
        kl = 0.0
        for x, z_t, logits, m in ((X, X_t, X_logits, self.x_marginals), (E, E_t, E_logits, self.e_marginals)):
            Qt, Qsb, Qtb = self._matrices(t, m)
            true = posterior.posterior(x, z_t, Qt, Qsb, Qtb)
            probs = jax.nn.softmax(logits, -1)
            if self.config.vlb_posterior == "reference":
                pred = posterior.posterior(probs, z_t, Qt, Qsb, Qtb)
            else:
                pred = posterior.denoising_distribution(probs, z_t, Qt, Qsb, Qtb)
            kl = kl + likelihood.categorical_kl(true, pred, node_mask)
        diffusion = self.T * kl

        zeros = jnp.zeros_like(t)
        X0_logits, E0_logits = self._denoise(params, k_net0, X_0, E_0, node_mask, zeros, deterministic=True,
                                             clean=(X, E))
        reconstruction = likelihood.reconstruction_nll(X, E, X0_logits, E0_logits, node_mask)

        total = node_count + prior + diffusion + reconstruction
        return {"nll": total, "node_count": node_count, "prior_kl": prior, "diffusion": diffusion,
                "reconstruction": reconstruction, "t": t}

    # ------------------------------------------------------------------ sampling

    def _sample(self, params, key: jax.Array, num_samples: int, n_nodes: jax.Array | None = None,
                model_key: str = "step") -> tuple[jax.Array, jax.Array, jax.Array]:
        """Ancestral sampling: N ~ histogram (or ``n_nodes`` int[num_samples]), G_T ~ limit, then
        T denoising steps in one ``lax.scan``.

        ``model_key`` (static) says how the denoiser's own randomness (SymPE's tie-breaking,
        noise channels) is drawn: ``"step"``, a fresh key at every reverse step; ``"trajectory"``,
        one key per sample for the whole trajectory (tied nodes keep their relative order
        from step to step while they stay tied; the noise channels stay fixed). Either way the
        sampler's law is permutation-equivariant; the transition noise is fresh at every step.

        Returns ``(X int32[B, n_max], E int32[B, n_max, n_max], node_mask bool[B, n_max])`` with
        -1 on padding and 0 on the diagonal (:func:`.dense.decode`). The network runs without
        dropout; ``num_samples`` is static.
        """
        if model_key not in ("step", "trajectory"):
            raise ValueError(f"model_key must be 'step' or 'trajectory', got {model_key!r}")
        k_n, k_prior, k_loop = jax.random.split(key, 3)
        k_model = jax.random.fold_in(key, 1)    # (not a fourth split: keeps the "step" samples of a key)
        if n_nodes is None:
            counts = sampling.sample_node_counts(k_n, self.n_nodes_histogram, num_samples)
        else:
            counts = jnp.broadcast_to(jnp.asarray(n_nodes, jnp.int32), (num_samples,))
        node_mask = sampling.counts_to_mask(counts, self.n_max)
        X_T, E_T = noise.sample_prior(k_prior, node_mask, self.x_marginals, self.e_marginals)
        sched = self.schedule

        def step(carry, s):
            X_t, E_t = carry
            t = jnp.full((num_samples,), s + 1, jnp.int32)
            k_net, k_step = jax.random.split(jax.random.fold_in(k_loop, s))
            if model_key == "trajectory":
                k_net = k_model
            X_logits, E_logits = self._denoise(params, k_net, X_t, E_t, node_mask, t, deterministic=True)
            X_s, E_s = sampling.reverse_step(k_step, jax.nn.softmax(X_logits, -1), jax.nn.softmax(E_logits, -1),
                                             X_t, E_t, node_mask, sched.betas[t], sched.alpha_bars[t - 1],
                                             sched.alpha_bars[t], self.x_marginals, self.e_marginals)
            return (X_s, E_s), None

        (X_0, E_0), _ = jax.lax.scan(step, (X_T, E_T), jnp.arange(self.T - 1, -1, -1))
        X_idx, E_idx = dense.decode(X_0, E_0, node_mask)
        return X_idx, E_idx, node_mask
