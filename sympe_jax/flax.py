"""Flax Linen adapters over :mod:`sympe_jax.encodings`: one module per domain, any encoding by name.

Randomness comes from the ``"sympe"`` rng stream (``self.make_rng("sympe")``), batches need no
``nn.vmap``, and the table ``v`` is the encoding's own ``init`` declared as a parameter::

    class Model(nn.Module):
        @nn.compact
        def __call__(self, graph):                                   # a padded GraphsTuple
            pe = sp.flax.GraphEncoding("sympe", n_max=32, features=8)(graph)      # float[N, 8]
            graph = graph._replace(nodes=jnp.concatenate([graph.nodes, pe], -1))
            return MyGNN()(graph)

    params = Model().init({"params": k1, "sympe": k2}, graph)
    out = Model().apply(params, graph, rngs={"sympe": k3})

:class:`GraphEncoding` also takes dense batches ``(adjacency float[..., n, n], mask bool[..., n])``
(e.g. node tokens of a transformer); :class:`LatticeEncoding` takes site fields
``x float[..., L, L, c]``; :class:`PointCloudEncoding` takes point clouds
``(points float[..., n, 3], mask bool[..., n])`` under O(3)/E(3).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sympe_jax import canonicalize, encodings, features, graphs
from sympe_jax import jraph as sp_jraph
from sympe_jax.nn.scorers import NodeScoreHead

__all__ = ["GraphEncoding", "LatticeEncoding", "PointCloudEncoding", "declare_params"]


def declare_params(module: nn.Module, encoding: encodings.Encoding) -> encodings.Params:
    """Declare ``encoding``'s parameters (e.g. the table ``"v"``) as parameters of ``module``.

    Each leaf of ``encoding.init`` becomes a parameter of the same name, initialized by
    ``encoding.init`` with the module's ``"params"`` rng. Call it inside ``@nn.compact``.
    """
    shapes = jax.eval_shape(encoding.init, jax.random.key(0))
    return {name: module.param(name, lambda rng, name=name: encoding.init(rng)[name]) for name in shapes}


def _flatten_nodes(fn, x: jax.Array, base: jax.Array) -> jax.Array:
    """Apply a per-node scorer ``fn(x [M, c], base [M]) -> [M]`` to ``x [..., n, c]``."""
    return fn(x.reshape(-1, x.shape[-1]), base.reshape(-1)).reshape(base.shape)


class GraphEncoding(nn.Module):
    """A graph symmetry breaker of :data:`sympe_jax.encodings.GRAPH_ENCODINGS` as a module.

    Call it on a padded ``jraph.GraphsTuple`` (returns float[N, features], aligned with
    ``graph.nodes``) or on a dense batch ``(adjacency float[..., n, n], mask bool[..., n])``
    (returns float[..., n, features]). Keyword arguments: ``scores`` (float[N] or
    float[..., n], replacing the default sort score) and ``ranks`` (for ``"exact"``).

    With ``"sympe_learned"`` and no ``scores``, the sort score is learned: ``scorer`` (default
    :class:`sympe_jax.nn.scorers.NodeScoreHead`, which starts at the fixed score) maps every
    node's structural features and fixed score to its score, and trains through the
    straight-through gradient of :func:`sympe_jax.encodings.straight_through_sympe`.

    Attributes:
      encoding: the name in the registry.
      n_max: rows of the table (largest graph served) and, for GraphsTuples, slots per graph.
      features: output channels.
      atol, init_scale, noise_scale, temperature: as in
        :func:`sympe_jax.encodings.graph_encoding`.
      scorer: the learned scorer of ``"sympe_learned"``: a module ``(x [M, 9], base [M]) -> [M]``.
      rng_collection: the rng stream the key is drawn from.
    """

    encoding: str = "sympe"
    n_max: int = 0
    features: int = 0
    atol: float = canonicalize.DEFAULT_ATOL
    init_scale: float = 1.0
    noise_scale: float = 1.0
    temperature: float = 0.02
    scorer: nn.Module | None = None
    rng_collection: str = "sympe"

    @nn.compact
    def __call__(self, inputs, mask: jax.Array | None = None, *, scores: jax.Array | None = None,
                 ranks: jax.Array | None = None) -> jax.Array:
        enc = encodings.graph_encoding(self.encoding, n_max=self.n_max, features=self.features, atol=self.atol,
                                       init_scale=self.init_scale, noise_scale=self.noise_scale,
                                       temperature=self.temperature)
        params = declare_params(self, enc)
        key = self.make_rng(self.rng_collection) if enc.random else None
        is_graph = isinstance(inputs, graphs.GraphsTuple)
        if not is_graph and mask is None:
            raise ValueError("GraphEncoding takes a padded jraph.GraphsTuple, or (adjacency, mask) of a dense batch")
        if enc.learns_scores and scores is None:
            scorer = self.scorer if self.scorer is not None else NodeScoreHead(name="scorer")
            if is_graph:
                base = sp_jraph.node_scores(inputs, self.n_max)
                scores = scorer(sp_jraph.structural_node_features(inputs, self.n_max), base)
            else:
                base = encodings._per_item(features.invariant_node_scores, None, mask.shape[:-1], inputs, mask)
                x = encodings._per_item(features.structural_node_features, None, mask.shape[:-1], inputs, mask)
                scores = jnp.where(mask, _flatten_nodes(scorer, x, base), 0.0)
        if is_graph:
            return sp_jraph.encode(enc, key, params, inputs, n_max=self.n_max, scores=scores, ranks=ranks)
        return enc.apply(jax.random.key(0) if key is None else key, params, inputs, mask, scores=scores, ranks=ranks)


class LatticeEncoding(nn.Module):
    """A p4m lattice symmetry breaker of :data:`sympe_jax.encodings.LATTICE_ENCODINGS` as a module.

    ``module(x, scores=None)``: site fields ``x`` float[..., L, L, c] (L read from the shape) and,
    for ``"sympe"``, optional lifted scores float[..., 8, L, L] from a p4m-equivariant scorer
    (default: all tied, ``g~`` uniform on p4m) -> float[..., L, L, features].

    Attributes:
      encoding: the name in the registry.
      features: output channels.
      atol, init_scale, noise_scale: as in :func:`sympe_jax.encodings.lattice_encoding`.
      rng_collection: the rng stream the key is drawn from.
    """

    encoding: str = "sympe"
    features: int = 0
    atol: float = canonicalize.DEFAULT_ATOL
    init_scale: float = 1.0
    noise_scale: float = 1.0
    rng_collection: str = "sympe"

    @nn.compact
    def __call__(self, x: jax.Array, scores: jax.Array | None = None) -> jax.Array:
        if jnp.ndim(x) < 3:
            raise ValueError(f"lattice input must have shape [..., L, L, c], got {jnp.shape(x)}")
        enc = encodings.lattice_encoding(self.encoding, L=int(jnp.shape(x)[-2]), features=self.features,
                                         atol=self.atol, init_scale=self.init_scale, noise_scale=self.noise_scale)
        params = declare_params(self, enc)
        key = self.make_rng(self.rng_collection) if enc.random else jax.random.key(0)
        return enc.apply(key, params, x, scores=scores)


class PointCloudEncoding(nn.Module):
    """A point-cloud symmetry breaker of :data:`sympe_jax.encodings.POINT_CLOUD_ENCODINGS` as a module.

    ``module(points, mask=None, scores=None)``: points float[..., n, 3], mask bool[..., n] ->
    vectors float[..., n, features, 3] (for the frame encodings, the learned vectors ``v``, a
    parameter of this module, moved by one sampled frame per cloud). ``scores``: per-point
    invariants float[..., n] (``"sympe"``) or a symmetric tensor float[..., 3, 3] (``"covariance"``).

    Attributes:
      encoding: the name in the registry.
      features: vectors per point.
      atol, init_scale, noise_scale, proper: as in :func:`sympe_jax.encodings.point_cloud_encoding`.
      rng_collection: the rng stream the key is drawn from.
    """

    encoding: str = "sympe"
    features: int = 0
    atol: float = canonicalize.DEFAULT_ATOL
    init_scale: float = 1.0
    noise_scale: float = 1.0
    proper: bool = False
    rng_collection: str = "sympe"

    @nn.compact
    def __call__(self, points: jax.Array, mask: jax.Array | None = None, scores: jax.Array | None = None
                 ) -> jax.Array:
        enc = encodings.point_cloud_encoding(self.encoding, features=self.features, atol=self.atol,
                                             init_scale=self.init_scale, noise_scale=self.noise_scale,
                                             proper=self.proper)
        params = declare_params(self, enc)
        key = self.make_rng(self.rng_collection) if enc.random else jax.random.key(0)
        return enc.apply(key, params, points, mask, scores=scores)
