"""The DiGress graph transformer: dense, masked, S_n-equivariant, in Flax Linen.

Vignac et al., *DiGress: Discrete Denoising diffusion for graph generation*, ICLR 2023, arXiv
2209.14734; architecture of the reference implementation (``src/models/transformer_model.py``
and ``src/models/layers.py`` of github cvignac/DiGress), re-implemented from its description
in ``reference/digress-qm9.md`` section 1.2.

Shapes (``B`` graphs padded to ``n`` nodes)::

    X  float[B, n, dX_in]     node features; the first ``out_dim_X`` channels are the noisy
                              one-hot node classes (they feed the output skip connection)
    E  float[B, n, n, dE_in]  edge features, symmetric in (i, j); first ``out_dim_E`` channels
                              are the noisy one-hot edge classes
    y  float[B, dy_in]        graph features (may have 0 channels)
    node_mask bool[B, n]      True for real nodes (anywhere: a prefix is not required)
    extra_node float[B, n, k] optional extra node channels, appended to X (SymPE's v[rank])
    extra_edge float[B, n, n, k'] optional extra pair channels, appended to E

Outputs ``(X_logits [B, n, out_dim_X], E_logits [B, n, n, out_dim_E], y_out [B, out_dim_y])``:
logits of p(x_0 | G_t) (softmax is applied by the caller). ``E_logits`` is symmetric with a
zero diagonal; rows of padded nodes and pairs touching them are zero.

Architecture (one :class:`XEyTransformerLayer` per layer, post-norm residuals)::

    X, E, y <- input MLPs (Linear-ReLU-Linear-ReLU); E <- (E + E^T) / 2; mask X and E
    repeat n_layers:
        dX, dE, dy = NodeEdgeBlock(X, E, y)
        X <- LN(X + Drop(dX));  X <- LN(X + Drop(Lin(Drop(ReLU(Lin(X))))))   (same for E, y)
    X <- MLP_out(X) + X_in[..., :out_dim_X]
    E <- ((MLP_out(E) + E_in[..., :out_dim_E]) * offdiag + transpose) / 2, masked

:class:`NodeEdgeBlock` is not dot-product attention: ``Y_ij = Q_i * K_j / sqrt(df)`` keeps all
``df`` channels of every head, is modulated by the edges (FiLM: ``Y * (E_mul(E_ij) + 1) +
E_add(E_ij)``), becomes the new edge features (after a FiLM from y), and is soft-maxed over the
keys ``j`` separately for every head and channel to weight ``V_j``.

Choices:

* **Masked pooling** (the reference's ``fixed_bug`` branch, commit d3f853f): the X -> y and
  E -> y maps pool ``[mean, min, max, var]`` over real nodes / real pairs only, with the biased
  variance ``sum (x - m)^2 / N`` (no square root, as in that branch). The ``main`` branch pools
  padding too (unbiased std); ``fixed_bug`` masks min, max and var but its mean still sums the
  padded rows, which are non-zero after the first layer's LayerNorm. Here the mean is masked as
  well, so real outputs never depend on padding.
* **Initialisation** as PyTorch's ``nn.Linear`` (weights and biases ``U(-1/sqrt(fan_in),
  1/sqrt(fan_in))``) so that training at the reference's learning rate behaves alike.
* **No dead y head**: with ``out_dim_y = 0`` (QM9) the reference still builds
  ``Linear(dy, 128) -> ReLU -> Linear(128, 0)`` (8,320 unused parameters); we skip it, so the
  paper configuration has 8,155,401 parameters instead of the reference's 8,163,721.
* Masked attention keys get a large finite negative score instead of ``-inf``, so a graph with
  no real node gives zeros instead of NaN.
* Compile time (XLA inlines the threefry code at every random op): dropout masks of a layer
  are cut from one random draw, and :meth:`TransformerNet.init` cuts all parameters from one
  draw (same law as ``module.init``).
* Dropout randomness (``GraphTransformerConfig.dropout_rng``): ``"uniform"`` (the default, the
  masks of recorded runs) cuts every mask of a layer from one flat float32 uniform draw: the law
  of ``nn.Dropout``. ``"bits16"`` draws, per layer and per molecule, raw threefry words (two
  32-bit words per threefry block, each word split into two 16-bit numbers: 4 masks per block
  instead of 1) and keeps an entry when its 16-bit number is ``>= round(rate * 2^16)``; kept
  entries are scaled by ``1 / P(keep)``. The drop probability is ``round(rate * 2^16) / 2^16``
  (0.1 -> 0.10000610), every entry independent, expectation preserved exactly; it costs about a
  quarter of the random numbers, and the per-molecule layout keeps the draw local to each shard
  of a batch-sharded step. Different masks from ``"uniform"`` for the same key.
* Speed (same function, other float rounding): the projections that read the same input are
  one matmul (q, k, v; e_mul, e_add; the five maps of y), :class:`Linear` has a hand-written
  VJP, and the per-channel attention core has a hand-written VJP that reuses the forward's
  softmax (:func:`attention_core`); both are tested against ``jax.grad`` of the plain code.

Every operation is permutation-equivariant in the node axis (tested with
:func:`sympe_jax.testing.assert_equivariant`), including the positions of padded nodes, and real
outputs do not depend on the content of padded slots.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.extend.random  # noqa: F401 - threefry2x32_p for the bits16 dropout
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GraphTransformerConfig",
    "DROPOUT_RNGS",
    "Linear",
    "dense",
    "attention_core",
    "attention_core_reference",
    "NodeEdgeBlock",
    "XEyTransformerLayer",
    "GraphTransformer",
    "TransformerNet",
    "count_params",
    "fast_init",
]


DROPOUT_RNGS = ("uniform", "bits16")


@dataclasses.dataclass(frozen=True)
class GraphTransformerConfig:
    """Sizes of the DiGress transformer (``configs/model/discrete.yaml`` names in comments).

    Input channel counts are inferred from the arrays at ``init``; only output sizes are fixed.
    """

    n_layers: int = 9                   # n_layers (QM9 without H: 9; the default file: 5)
    mlp_X: int = 256                    # hidden_mlp_dims.X
    mlp_E: int = 128                    # hidden_mlp_dims.E
    mlp_y: int = 128                    # hidden_mlp_dims.y
    dx: int = 256                       # hidden_dims.dx
    de: int = 64                        # hidden_dims.de
    dy: int = 64                        # hidden_dims.dy
    n_head: int = 8                     # hidden_dims.n_head (df = dx / n_head)
    dim_ffX: int = 256                  # hidden_dims.dim_ffX
    dim_ffE: int = 128                  # hidden_dims.dim_ffE
    dim_ffy: int = 2048                 # not passed by the reference: the layer default 2048
    dropout: float = 0.1                # the layer default
    dropout_rng: str = "uniform"        # "uniform" (exact nn.Dropout law) or "bits16" (see the module docstring)
    layer_norm_eps: float = 1e-5        # PyTorch's LayerNorm default
    out_dim_X: int = 4                  # atom classes C, N, O, F
    out_dim_E: int = 5                  # no bond, single, double, triple, aromatic
    out_dim_y: int = 0                  # QM9: no graph-level target

    def __post_init__(self):
        if self.dx % self.n_head:
            raise ValueError(f"dx = {self.dx} must be divisible by n_head = {self.n_head}")
        if min(self.n_layers, self.dx, self.de, self.dy, self.n_head) < 1:
            raise ValueError(f"all layer sizes must be positive: {self}")
        if self.dropout_rng not in DROPOUT_RNGS:
            raise ValueError(f"dropout_rng must be one of {DROPOUT_RNGS}, got {self.dropout_rng!r}")

    @classmethod
    def paper(cls, **overrides: Any) -> "GraphTransformerConfig":
        """The reference's QM9-without-H model: 9 layers, 8.16 M parameters."""
        return cls(**overrides)

    @classmethod
    def cpu(cls, **overrides: Any) -> "GraphTransformerConfig":
        """A reduced model for this 2-core machine: 4 layers, dx 128, de 32, dy 32 (1.40 M).

        The reduction timed in PyTorch in ``reference/ecosystem.md`` (0.593 s per step at batch
        256 there); every other size is the paper's.
        """
        base = dict(n_layers=4, dx=128, de=32, dy=32)
        base.update(overrides)
        return cls(**base)


def _torch_uniform(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


@jax.custom_vjp
def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """``x @ kernel + bias`` for ``x [..., k]``, ``kernel [k, f]``, ``bias [f]`` -> ``[..., f]``.

    Its VJP is written by hand: the weight gradient ``x^T g`` over all leading axes is computed
    from the 2-d views with the operand of fewer channels transposed explicitly (XLA's CPU
    default transposes the larger one, e.g. the ``[B n^2, dx]`` cotangent of an edge-side layer).
    """
    return jnp.matmul(x, kernel) + bias


def _dense_fwd(x, kernel, bias):
    return dense(x, kernel, bias), (x, kernel)


def _dense_bwd(res, g):
    x, kernel = res
    k, f = kernel.shape
    x2, g2 = x.reshape(-1, k), g.reshape(-1, f)
    dx = jnp.matmul(g, kernel.T)
    if k <= f:
        dk = jnp.matmul(jnp.transpose(x2), g2)
    else:
        dk = jnp.transpose(jnp.matmul(jnp.transpose(g2), x2))
    return dx, dk.astype(kernel.dtype), jnp.sum(g2, axis=0).astype(kernel.dtype)


dense.defvjp(_dense_fwd, _dense_bwd)


class _LinearParams(nn.Module):
    """The ``kernel [fan_in, features]`` and ``bias [features]`` of a :class:`Linear` (same names and init)."""

    features: int
    fan_in: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        kernel = self.param("kernel", _torch_uniform(self.fan_in), (self.fan_in, self.features), jnp.float32)
        bias = self.param("bias", _torch_uniform(self.fan_in), (self.features,), jnp.float32)
        return kernel, bias


class Linear(nn.Module):
    """``nn.Dense`` with PyTorch's ``nn.Linear`` initialisation (kernel and bias uniform)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", _torch_uniform(fan_in), (fan_in, self.features), jnp.float32)
        bias = self.param("bias", _torch_uniform(fan_in), (self.features,), jnp.float32)
        return dense(x, kernel.astype(x.dtype), bias.astype(x.dtype))


def _fused_linear(x: jax.Array, specs: tuple[tuple[str, int], ...], split: bool = True):
    """Several :class:`Linear` layers of one input ``x [..., k]`` as one matmul (call inside a
    compact method: ``specs`` = ``((name, features), ...)``, the parameters keep those names):
    their outputs, or with ``split=False`` their concatenation ``[..., sum features]``."""
    fan_in = x.shape[-1]
    params = [_LinearParams(f, fan_in, name=name)() for name, f in specs]
    kernel = jnp.concatenate([k for k, _ in params], axis=1).astype(x.dtype)
    bias = jnp.concatenate([b for _, b in params]).astype(x.dtype)
    out = dense(x, kernel, bias)
    if not split:
        return out
    return jnp.split(out, np.cumsum([f for _, f in specs])[:-1].tolist(), axis=-1)


def attention_core_reference(Q, K, V, EM, y_e_add, y_e_mul, key_mask, n_head: int):
    """The plain code of :func:`attention_core` (``jax.grad`` of it is the test oracle)."""
    dx = Q.shape[-1]
    scale = 1.0 / math.sqrt(dx // n_head)
    pair = _pair(key_mask)
    Y = (Q[:, :, None] * K[:, None, :] * scale) * (EM[..., :dx] * pair + 1.0) + EM[..., dx:] * pair
    new_E = y_e_add[:, None, None] + (y_e_mul[:, None, None] + 1.0) * Y
    attn = jax.nn.softmax(_masked_logits(Y, key_mask), axis=2)
    return new_E, jnp.sum(attn * V[:, None, :], axis=2)


def _pair(key_mask: jax.Array) -> jax.Array:
    return key_mask[:, :, None, None] * key_mask[:, None, :, None]           # [B, n, n, 1]


def _masked_logits(Y: jax.Array, key_mask: jax.Array) -> jax.Array:
    neg = jnp.asarray(jnp.finfo(Y.dtype).min / 2, Y.dtype)
    return jnp.where(key_mask[:, None, :, None] > 0, Y, neg)


_UNROLL = 16


def _reduce(x: jax.Array, axis: int, op=jnp.add) -> jax.Array:
    """``op``-reduction of ``x`` over ``axis``; over an axis of at most ``_UNROLL`` entries
    written as a chain of ``op`` over slices. XLA fuses that chain with the elementwise code that
    produces ``x``, so no ``[B, n, n, dx]`` operand (nor a broadcast of ``Q``, ``K`` or ``V``) is
    written out for a separate reduction kernel; over a longer axis ``jnp.sum`` / ``jnp.max``."""
    n = x.shape[axis]
    if n > _UNROLL:
        return jnp.sum(x, axis) if op is jnp.add else jnp.max(x, axis)
    return functools.reduce(op, (jax.lax.index_in_dim(x, j, axis, keepdims=False) for j in range(n)))


def _scores(Q, K, EM, key_mask, n_head):
    """``(S, M, Y, pair)`` of :func:`attention_core`, all ``[B, n, n, dx]`` but ``pair``."""
    dx = Q.shape[-1]
    pair = _pair(key_mask)
    S = Q[:, :, None] * K[:, None, :] * (1.0 / math.sqrt(dx // n_head))
    M = EM[..., :dx] * pair + 1.0
    return S, M, S * M + EM[..., dx:] * pair, pair


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def attention_core(Q, K, V, EM, y_e_add, y_e_mul, key_mask, n_head: int):
    """The node-edge attention of :class:`NodeEdgeBlock` between its projections.

    ``Q, K, V [B, n, dx]`` (masked), ``EM [B, n, n, 2 dx]`` = ``[E_mul, E_add]`` (the fused edge
    projection; masked here on the pairs of real nodes, so that XLA fuses the mask instead of
    writing masked copies), ``y_e_add, y_e_mul [B, dx]``, ``key_mask [B, n]`` (1.0 for real
    nodes, 0.0 else; not differentiated) -> ``(new_E [B, n, n, dx], weighted_V [B, n, dx])``
    with ``Y_ij = Q_i K_j / sqrt(dx / n_head) * (m_ij E_mul_ij + 1) + m_ij E_add_ij``
    (channel-wise; ``m_ij = key_mask_i key_mask_j``), ``new_E = y_e_add + (y_e_mul + 1) Y`` and
    ``weighted_V_i = sum_j softmax_j(Y)_ij V_j`` (per channel; masked keys excluded).

    Hand-written VJP, written for memory traffic (each ``[B, n, n, dx]`` pass is memory-bound):
    the forward writes ``new_E`` and keeps only the softmax's per-row max and sum
    (``[B, n, dx]``); the backward recomputes ``Y`` and the softmax from ``EM``, uses
    ``sum_j a_ij (g_i V_j) = g_i weighted_V_i`` for the softmax term, and writes the cotangent of
    ``EM`` in one pass; the reductions over the short node axes are fused (:func:`_reduce`).
    """
    return attention_core_reference(Q, K, V, EM, y_e_add, y_e_mul, key_mask, n_head)


def _attention_fwd(Q, K, V, EM, y_e_add, y_e_mul, key_mask, n_head):
    _, _, Y, _ = _scores(Q, K, EM, key_mask, n_head)
    new_E = y_e_add[:, None, None] + (y_e_mul[:, None, None] + 1.0) * Y
    logits = _masked_logits(Y, key_mask)
    top = _reduce(logits, 2, jnp.maximum)                                    # [B, n, dx]
    e = jnp.exp(logits - top[:, :, None])
    total = _reduce(e, 2)
    weighted_V = _reduce(e * V[:, None, :], 2) / total
    return (new_E, weighted_V), (Q, K, V, EM, y_e_mul, key_mask, top, total, weighted_V)


def _attention_bwd(n_head, res, cotangents):
    Q, K, V, EM, y_e_mul, key_mask, top, total, weighted_V = res
    g_E, g_V = cotangents
    S, M, Y, pair = _scores(Q, K, EM, key_mask, n_head)
    scale = 1.0 / math.sqrt(Q.shape[-1] // n_head)
    attn = jnp.exp(_masked_logits(Y, key_mask) - top[:, :, None]) / total[:, :, None]
    # softmax: d logits_ij = a_ij (g_i V_j - g_i wV_i), zero at masked keys
    d_soft = attn * (g_V[:, :, None] * (V[:, None, :] - weighted_V[:, :, None]))
    dY = g_E * (y_e_mul[:, None, None] + 1.0) + d_soft * key_mask[:, None, :, None]
    dS = dY * M
    dQ = _reduce(dS * K[:, None, :], 2) * scale
    dK = _reduce(dS * Q[:, :, None], 1) * scale
    dV = _reduce(attn * g_V[:, :, None], 1)
    dE_add = dY * pair
    d_EM = jnp.concatenate([dE_add * S, dE_add], axis=-1)
    d_y_add = jnp.sum(_reduce(g_E, 2), axis=1)
    d_y_mul = jnp.sum(_reduce(g_E * Y, 2), axis=1)
    return dQ, dK, dV, d_EM, d_y_add, d_y_mul, jnp.zeros_like(key_mask)


attention_core.defvjp(_attention_fwd, _attention_bwd)


class _MLP(nn.Module):
    """Linear -> ReLU -> Linear [-> ReLU]."""

    hidden: int
    out: int
    final_relu: bool

    @nn.compact
    def __call__(self, x):
        x = nn.relu(Linear(self.hidden)(x))
        x = Linear(self.out)(x)
        return nn.relu(x) if self.final_relu else x


def _masks(node_mask: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
    x_mask = node_mask[..., :, None].astype(dtype)                            # [B, n, 1]
    pair = (node_mask[..., :, None] & node_mask[..., None, :])[..., None]     # [B, n, n, 1]
    return x_mask, pair.astype(dtype)


def _masked_stats(x: jax.Array, mask: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """``[mean, min, max, var]`` of ``x`` over ``axes`` restricted to ``mask`` (biased var)."""
    count = jnp.maximum(jnp.sum(mask, axis=axes), 1.0)
    mean = jnp.sum(x * mask, axis=axes) / count
    real = mask > 0
    big = jnp.asarray(1e5, x.dtype)  # the reference's offset for masked entries
    mi = jnp.min(jnp.where(real, x, big), axis=axes)
    ma = jnp.max(jnp.where(real, x, -big), axis=axes)
    centred = x - jnp.expand_dims(mean, axes)
    var = jnp.sum(centred ** 2 * mask, axis=axes) / count
    return jnp.concatenate([mean, mi, ma, var], axis=-1)


class NodeEdgeBlock(nn.Module):
    """Per-channel FiLM attention over nodes, edges and a global vector (one layer's mixer).

    ``(X [B,n,dx], E [B,n,n,de], y [B,dy], node_mask [B,n]) -> (dX, dE, dy)`` of the same shapes;
    dX is zero on padded nodes and dE on pairs touching them.
    """

    dx: int
    de: int
    dy: int
    n_head: int

    @nn.compact
    def __call__(self, X, E, y, node_mask):
        dx, dy = self.dx, self.dy
        x_mask, pair = _masks(node_mask, X.dtype)

        Q, K, V = (t * x_mask for t in _fused_linear(X, (("q", dx), ("k", dx), ("v", dx))))
        EM = _fused_linear(E, (("e_mul", dx), ("e_add", dx)), split=False)       # masked in attention_core
        y_e_add, y_e_mul, y_x_add, y_x_mul, y_y = _fused_linear(
            y, (("y_e_add", dx), ("y_e_mul", dx), ("y_x_add", dx), ("y_x_mul", dx), ("y_y", dy)))

        # Y_ij = Q_i * K_j / sqrt(df) * (E_mul_ij + 1) + E_add_ij, every channel kept; new edge
        # features y_e_add + (y_e_mul + 1) * Y; softmax over the keys j per channel; weighted V.
        new_E, weighted_V = attention_core(Q, K, V, EM, y_e_add, y_e_mul, node_mask.astype(X.dtype),
                                           self.n_head)
        new_E = Linear(self.de, name="e_out")(new_E) * pair

        new_X = y_x_add[:, None] + (y_x_mul[:, None] + 1.0) * weighted_V
        new_X = Linear(dx, name="x_out")(new_X) * x_mask

        # Global features from y and from masked statistics of the layer's input X and E.
        x_y = Linear(dy, name="x_y")(_masked_stats(X, x_mask, (1,)))
        e_y = Linear(dy, name="e_y")(_masked_stats(E, pair, (1, 2)))
        new_y = y_y + x_y + e_y
        new_y = Linear(dy, name="y_out_2")(nn.relu(Linear(dy, name="y_out_1")(new_y)))
        return new_X, new_E, new_y


class XEyTransformerLayer(nn.Module):
    """One post-norm transformer layer updating nodes, edges and the global vector."""

    dx: int
    de: int
    dy: int
    n_head: int
    dim_ffX: int
    dim_ffE: int
    dim_ffy: int
    dropout: float
    layer_norm_eps: float
    dropout_rng: str = "uniform"

    @nn.compact
    def __call__(self, X, E, y, node_mask, *, deterministic: bool):
        norm = lambda name: nn.LayerNorm(epsilon=self.layer_norm_eps, name=name)  # noqa: E731
        B, n = X.shape[:2]
        sites = {"X": (B, n, self.dx), "ffX": (B, n, self.dim_ffX), "E": (B, n, n, self.de),
                 "ffE": (B, n, n, self.dim_ffE), "y": (B, self.dy), "ffy": (B, self.dim_ffy)}
        drop = _Dropouts(self.dropout, deterministic, self.make_rng("dropout") if not deterministic and
                         self.dropout > 0 else None,
                         [sites[k] for k in ("X", "E", "y", "ffX", "X", "ffE", "E", "ffy", "y")], self.dropout_rng)

        new_X, new_E, new_y = NodeEdgeBlock(self.dx, self.de, self.dy, self.n_head, name="self_attn")(
            X, E, y, node_mask)
        X = norm("normX1")(X + drop(new_X))
        E = norm("normE1")(E + drop(new_E))
        y = norm("norm_y1")(y + drop(new_y))

        def feed_forward(v, hidden, out, tag):
            v = drop(nn.relu(Linear(hidden, name=f"lin{tag}1")(v)))
            return drop(Linear(out, name=f"lin{tag}2")(v))

        X = norm("normX2")(X + feed_forward(X, self.dim_ffX, self.dx, "X"))
        E = norm("normE2")(E + feed_forward(E, self.dim_ffE, self.de, "E"))
        y = norm("norm_y2")(y + feed_forward(y, self.dim_ffy, self.dy, "_y"))
        return X, E, y


class _Dropouts:
    """Inverted dropout at a fixed sequence of sites, all masks of a layer cut from one random draw.

    ``rng="uniform"``: one flat float32 uniform draw; at each site the law of ``nn.Dropout``
    (independent Bernoulli(1 - rate) keeps, scaled by 1 / (1 - rate)). ``rng="bits16"``: one
    threefry draw of ``[B, words]`` (per molecule: counter = (molecule, word)), every 32-bit word
    split into two 16-bit numbers ``u``; keep where ``u >= round(rate * 2^16)``, scaled by
    1 / P(keep) (module docstring). A site's entries, in row-major order, take the low halves of
    its first words, then their high halves, then the same of its second words (the masks are
    compared and concatenated as booleans, so no 32-bit array of the site's size is built). One
    random op per layer instead of one per site keeps XLA's compile time down (the threefry code
    is inlined at every random op).
    """

    def __init__(self, rate, deterministic, key, shapes, rng: str = "uniform"):
        self.rate, self.active, self.rng = rate, (not deterministic) and rate > 0, rng
        self.shapes, self.i = shapes, 0
        if rng not in DROPOUT_RNGS:
            raise ValueError(f"dropout_rng must be one of {DROPOUT_RNGS}, got {rng!r}")
        if not self.active:
            return
        if rate >= 1.0:
            raise ValueError(f"dropout rate must be < 1, got {rate}")
        if rng == "uniform":
            sizes = [math.prod(s) for s in shapes]
            self.u = jax.random.uniform(key, (sum(sizes),), jnp.float32)
        else:
            B = shapes[0][0]
            if any(s[0] != B for s in shapes):
                raise ValueError(f"bits16 dropout needs a common leading batch axis, got {shapes}")
            sizes = [-(-math.prod(s[1:]) // 4) for s in shapes]     # threefry blocks per molecule and site
            self.threshold = int(round(rate * 65536))
            self.keep_scale = 65536.0 / (65536 - self.threshold)
            self.words = _random_words(key, B, sum(sizes))
        self.offsets = np.cumsum([0] + sizes)

    def __call__(self, v):
        i = self.i
        self.i += 1
        if not self.active:
            return v
        if tuple(v.shape) != tuple(self.shapes[i]):
            raise ValueError(f"dropout site {i}: expected shape {self.shapes[i]}, got {v.shape}")
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        if self.rng == "uniform":           # exactly the masks and values of the recorded runs
            keep = (self.u[lo:hi] >= self.rate).reshape(v.shape)
            return jnp.where(keep, v / (1.0 - self.rate), 0.0).astype(v.dtype)
        size = math.prod(v.shape[1:])
        w0, w1 = self.words[0][:, lo:hi], self.words[1][:, lo:hi]
        low16, t = jnp.uint32(0xFFFF), jnp.uint32(self.threshold)
        keep = jnp.concatenate([(w0 & low16) >= t, (w0 >> 16) >= t, (w1 & low16) >= t, (w1 >> 16) >= t], axis=1)
        keep = keep[:, :size].reshape(v.shape)
        return jnp.where(keep, v * jnp.asarray(self.keep_scale, v.dtype), 0.0).astype(v.dtype)


def _random_words(key: jax.Array, batch: int, blocks: int) -> tuple[jax.Array, jax.Array]:
    """Two uint32[batch, blocks] arrays of independent uniform words: the two outputs of threefry
    block ``(b, k)`` (counter = (molecule, block)); each word gives two 16-bit numbers.

    Molecule ``b``'s words depend only on ``(key, b)``, so a batch-sharded step draws its shard's
    words locally.
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        data = jax.random.key_data(key)
        threefry = jax.random.key_impl(key) == jax.random.key_impl(jax.random.key(0))
    else:
        data, threefry = key, key.shape == (2,)
    if threefry:
        rows = jax.lax.broadcasted_iota(jnp.uint32, (batch, blocks), 0)
        cols = jax.lax.broadcasted_iota(jnp.uint32, (batch, blocks), 1)
        w0, w1 = jax.extend.random.threefry2x32_p.bind(data[0], data[1], rows, cols)
        return w0, w1
    words = jax.random.bits(key, (2, batch, blocks), jnp.uint32)    # another PRNG implementation
    return words[0], words[1]


class GraphTransformer(nn.Module):
    """The DiGress denoising network (see the module docstring for shapes and outputs)."""

    config: GraphTransformerConfig

    @nn.compact
    def __call__(self, X, E, y, node_mask, extra_node=None, extra_edge=None, *, deterministic: bool = True):
        c = self.config
        X, E, y = jnp.asarray(X), jnp.asarray(E), jnp.asarray(y)
        node_mask = jnp.asarray(node_mask)
        _check_inputs(c, X, E, y, node_mask, extra_node, extra_edge)
        B, n = X.shape[:2]
        x_mask, pair = _masks(node_mask, X.dtype)
        offdiag = (1.0 - jnp.eye(n, dtype=X.dtype))[None, :, :, None]

        X_skip = X[..., : c.out_dim_X]
        E_skip = E[..., : c.out_dim_E]
        if extra_node is not None:
            X = jnp.concatenate([X, jnp.asarray(extra_node, X.dtype)], axis=-1)
        if extra_edge is not None:
            E = jnp.concatenate([E, jnp.asarray(extra_edge, E.dtype)], axis=-1)

        X = _MLP(c.mlp_X, c.dx, True, name="mlp_in_X")(X) * x_mask
        E = _MLP(c.mlp_E, c.de, True, name="mlp_in_E")(E)
        E = 0.5 * (E + jnp.swapaxes(E, 1, 2)) * pair
        y = _MLP(c.mlp_y, c.dy, True, name="mlp_in_y")(y)

        for i in range(c.n_layers):
            X, E, y = XEyTransformerLayer(c.dx, c.de, c.dy, c.n_head, c.dim_ffX, c.dim_ffE, c.dim_ffy,
                                          c.dropout, c.layer_norm_eps, c.dropout_rng, name=f"tf_layers_{i}")(
                X, E, y, node_mask, deterministic=deterministic)

        X = (_MLP(c.mlp_X, c.out_dim_X, False, name="mlp_out_X")(X) + X_skip) * x_mask
        E = (_MLP(c.mlp_E, c.out_dim_E, False, name="mlp_out_E")(E) + E_skip) * offdiag
        E = 0.5 * (E + jnp.swapaxes(E, 1, 2)) * pair
        if c.out_dim_y > 0:
            y = _MLP(c.mlp_y, c.out_dim_y, False, name="mlp_out_y")(y)
        else:
            y = jnp.zeros((B, 0), X.dtype)
        return X, E, y


def _check_inputs(c, X, E, y, node_mask, extra_node, extra_edge):
    if X.ndim != 3 or E.ndim != 4 or y.ndim != 2 or node_mask.ndim != 2:
        raise ValueError("expected X [B, n, dX], E [B, n, n, dE], y [B, dy], node_mask [B, n]; got shapes "
                         f"{X.shape}, {E.shape}, {y.shape}, {node_mask.shape}")
    B, n = X.shape[:2]
    if E.shape[:3] != (B, n, n) or y.shape[0] != B or node_mask.shape != (B, n):
        raise ValueError(f"inconsistent shapes: X {X.shape}, E {E.shape}, y {y.shape}, node_mask {node_mask.shape}")
    if node_mask.dtype != jnp.bool_:
        raise TypeError(f"node_mask must be boolean, got {node_mask.dtype}")
    if X.shape[-1] < c.out_dim_X or E.shape[-1] < c.out_dim_E:
        raise ValueError(f"X and E must start with the {c.out_dim_X} / {c.out_dim_E} one-hot class channels; got "
                         f"{X.shape[-1]} and {E.shape[-1]} channels")
    if extra_node is not None and jnp.shape(extra_node)[:2] != (B, n):
        raise ValueError(f"extra_node must have shape [B, n, k] = [{B}, {n}, k], got {jnp.shape(extra_node)}")
    if extra_edge is not None and jnp.shape(extra_edge)[:3] != (B, n, n):
        raise ValueError(f"extra_edge must have shape [B, n, n, k] = [{B}, {n}, {n}, k], got {jnp.shape(extra_edge)}")


@dataclasses.dataclass(frozen=True)
class TransformerNet:
    """Functional wrapper: ``net(params, key, X, E, y, node_mask, extra_node, extra_edge,
    deterministic=...)`` with dropout driven by ``key``.

    Example::

        net = TransformerNet(GraphTransformerConfig.cpu())
        params = net.init(jax.random.key(0), X, E, y, node_mask)          # shapes only matter
        X_logits, E_logits, _ = net(params, key, X, E, y, node_mask, deterministic=False)
    """

    config: GraphTransformerConfig = dataclasses.field(default_factory=GraphTransformerConfig)

    @property
    def module(self) -> GraphTransformer:
        return GraphTransformer(self.config)

    def init(self, key: jax.Array, X, E, y, node_mask, extra_node=None, extra_edge=None) -> Any:
        """Parameters for inputs of these channel counts (values are not used).

        Same law as ``self.module.init`` (PyTorch's ``nn.Linear`` uniform init, LayerNorm scale 1
        and bias 0), but every parameter is cut from one uniform draw: XLA compiles one random
        op instead of one per parameter (about 20 s for a 2-layer model on this CPU otherwise), and
        eagerly the draw is cut into parameters on the host. Call it eagerly: under ``jit`` the
        cutting compiles one small kernel per parameter (several seconds).
        """
        return fast_init(self.module, key, X, E, y, node_mask, extra_node, extra_edge, deterministic=True)

    def __call__(self, params, key: jax.Array | None, X, E, y, node_mask, extra_node=None, extra_edge=None, *,
                 deterministic: bool = True):
        """``(X_logits [B,n,dX_out], E_logits [B,n,n,dE_out], y_out [B,dy_out])``.

        ``key`` (a PRNG key) drives dropout and is required when ``deterministic`` is False.
        """
        rngs = None
        if not deterministic:
            if key is None:
                raise ValueError("a PRNG key is required for dropout (deterministic=False)")
            rngs = {"dropout": key}
        return self.module.apply(params, X, E, y, node_mask, extra_node, extra_edge,
                                 deterministic=deterministic, rngs=rngs)


def fast_init(module: nn.Module, key: jax.Array, *args: Any, **kwargs: Any) -> Any:
    """``module.init(key, *args, **kwargs)`` for modules built from :class:`Linear` and
    ``nn.LayerNorm`` only, with one random draw (see :meth:`TransformerNet.init`)."""
    shapes = jax.eval_shape(functools.partial(module.init, **kwargs), jax.random.key(0), *args)
    return _fill_params(key, shapes)


def _fill_params(key: jax.Array, shapes: Any) -> Any:
    """Initial values for a pytree of ``ShapeDtypeStruct`` of Linear and LayerNorm parameters."""
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes))
    sizes = [math.prod(s.shape) for s in flat.values()]
    noise = jax.random.uniform(key, (sum(sizes),), jnp.float32, -1.0, 1.0)
    try:
        noise = np.asarray(noise)  # eager: cut on the host, no per-parameter XLA kernels to compile
    except jax.errors.TracerArrayConversionError:
        pass                       # under jit: cut with jnp
    out, start = {}, 0
    for (path, s), size in zip(flat.items(), sizes):
        parent, name = path[:-1], path[-1]
        if name == "kernel":
            scale = 1.0 / math.sqrt(s.shape[0]) if s.shape[0] else 0.0
        elif name == "bias" and parent + ("kernel",) in flat:
            fan_in = flat[parent + ("kernel",)].shape[0]
            scale = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
        elif name == "scale":
            scale = None
        elif name == "bias":
            scale = 0.0
        else:
            raise ValueError(f"unexpected parameter {'/'.join(path)}")
        if scale is None:
            value = jnp.ones(s.shape, s.dtype)
        else:
            value = jnp.asarray((noise[start:start + size] * np.float32(scale)).reshape(s.shape), s.dtype)
        out[path] = value
        start += size
    return flax.traverse_util.unflatten_dict(out)


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree (works on ``jax.eval_shape`` outputs too)."""
    return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))
