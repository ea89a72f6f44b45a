"""The denoiser interface of :class:`~.digress.DiGress`, and the DiGress one.

A denoiser maps a noisy graph to logits of the clean graph, p_theta(x_0 | G_t)::

    denoiser(params, key, X_t, E_t, y_t, node_mask, t_over_T, *, deterministic)
        -> (X_logits [B, n, dx], E_logits [B, n, n, de])

``key`` drives dropout (unused when ``deterministic``), ``y_t`` is the data's graph features
([B, 0] for QM9), ``t_over_T`` float[B]. Any callable with this signature plugs into
``DiGress``, which is how symmetry breaking is added: compute the features, then pass extra
channels to the network, e.g. SymPE::

    base = TransformerDenoiser(TransformerNet(config))

    def sympe_denoiser(params, key, X_t, E_t, y_t, node_mask, t_over_T, *, deterministic):
        k_pe, k_net = jax.random.split(key)
        feats = base.features_of(X_t, E_t, node_mask, t_over_T)
        scores = my_node_scores(X_t, E_t, feats, node_mask)                  # float[B, n]
        pe = enc.apply(k_pe, {"v": params["v"]}, None, node_mask, scores=scores)   # enc = sp.graph_encoding("sympe", ...)
        return base(params["net"], k_net, X_t, E_t, y_t, node_mask, t_over_T,
                    deterministic=deterministic, extra_node=pe, features=feats)

Note the ``key``: a denoiser may use randomness even when ``deterministic`` (SymPE
samples g~ at evaluation too); DiGress always passes a fresh key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from experiments.digress_qm9.diffusion.extra_features import (QM9_FEATURES, ExtraFeatures, ExtraFeaturesConfig,
                                                               extra_features)
from experiments.digress_qm9.graph_transformer import TransformerNet

__all__ = ["Denoiser", "TransformerDenoiser"]


class Denoiser(Protocol):
    """``(params, key, X_t, E_t, y_t, node_mask, t_over_T, *, deterministic) -> (X_logits, E_logits)``."""

    def __call__(self, params: Any, key: jax.Array, X_t: jax.Array, E_t: jax.Array, y_t: jax.Array,
                 node_mask: jax.Array, t_over_T: jax.Array, *, deterministic: bool
                 ) -> tuple[jax.Array, jax.Array]: ...


@dataclasses.dataclass(frozen=True)
class TransformerDenoiser:
    """DiGress's denoiser: extra features of G_t, concatenated to it, into the graph transformer.

    Network input: ``X = [X_t, x_extra]`` (4 + 8 = 12 channels for QM9), ``E = [E_t, e_extra]``
    (5), ``y = [y_t, y_extra]`` (0 + 13), plus optional ``extra_node`` / ``extra_edge`` channels
    appended by the network (SymPE).
    """

    net: TransformerNet
    features: ExtraFeaturesConfig = QM9_FEATURES

    def features_of(self, X_t, E_t, node_mask, t_over_T) -> ExtraFeatures:
        """The extra features of the noisy graph (see :mod:`.extra_features`)."""
        return extra_features(X_t, E_t, node_mask, t_over_T, self.features)

    def network_inputs(self, X_t, E_t, y_t, node_mask, t_over_T, features: ExtraFeatures | None = None):
        """``(X, E, y)`` as fed to the network."""
        f = self.features_of(X_t, E_t, node_mask, t_over_T) if features is None else features
        return (jnp.concatenate([X_t, f.x], -1), jnp.concatenate([E_t, f.e], -1),
                jnp.concatenate([jnp.asarray(y_t, X_t.dtype), f.y], -1))

    def init(self, key: jax.Array, X_t, E_t, node_mask, y_t=None, extra_node=None, extra_edge=None) -> Any:
        """Network parameters for batches shaped like these (values unused; eval_shape-able)."""
        if y_t is None:
            y_t = jnp.zeros((X_t.shape[0], 0), X_t.dtype)
        t = jnp.zeros((X_t.shape[0],), jnp.float32)
        X, E, y = jax.eval_shape(self.network_inputs, X_t, E_t, y_t, node_mask, t)   # shapes suffice
        return self.net.init(key, X, E, y, node_mask, extra_node, extra_edge)

    def __call__(self, params, key, X_t, E_t, y_t, node_mask, t_over_T, *, deterministic: bool = True,
                 extra_node=None, extra_edge=None, features: ExtraFeatures | None = None):
        """Logits ``(X [B, n, dx], E [B, n, n, de])`` of p(x_0 | G_t)."""
        X, E, y = self.network_inputs(X_t, E_t, y_t, node_mask, t_over_T, features)
        X_logits, E_logits, _ = self.net(params, key, X, E, y, node_mask, extra_node, extra_edge,
                                         deterministic=deterministic)
        return X_logits, E_logits
