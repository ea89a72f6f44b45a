"""p4m group-convolutional network (Cohen & Welling 2016) on an L x L torus.

Layouts follow :mod:`sympe_jax.groups.lattice`:

* site fields: ``(*batch, L, L, c)``, p4m acts by ``act_on_field`` (scalar channels) and, with
  ``bond_channels=True``, by ``act_on_bonds`` on the first 4 channels ``[R, U, L, D]``;
* lifted fields (functions on p4m): ``(*batch, 8, L, L, c)``, entry ``[d, x, y]`` is the value at
  the group element ``(d, x, y)``; p4m acts by the regular representation ``act_on_lifted``.

Any number of leading batch axes is allowed (including none). Every layer is exactly
p4m-equivariant:

* :class:`LiftingConv`: ``lift(g . x) = act_on_lifted(g, lift(x))``;
* :class:`GroupConv`: ``gconv(act_on_lifted(g, F)) = act_on_lifted(g, gconv(F))``;
* :class:`PoolD4`: ``pool(act_on_lifted(g, F)) = act_on_field(g, pool(F))``;
* :class:`GCNN` with ``out="logits"``: ``logits(g . x) = act_on_field(g, logits(x))``, and with
  ``out="lifted_scores"``: ``scores(g . x) = act_on_lifted(g, scores(x))``.

Implementation: a lifting/group convolution is a cross-correlation with the 8 D4-transformed
copies of one filter. The 8 filter banks are gathered once (static index tables) into a single
``HWIO`` kernel and applied by one ``jax.lax.conv_general_dilated`` (VALID) on a circularly padded
input.

Derivation. With ``h = (d, t)`` and ``h^-1 y = M_d^-1 (y - t)``:

* lifting, input with fiber representation ``rho`` (identity on scalars, the direction
  permutation on bonds): ``out[d, t] = sum_u <rho(d) psi(M_d^-1 u), x(t + u)>``;
* group conv: ``out[d, t] = sum_{d', u} <psi(d^-1 d', M_d^-1 u), F[d', t + u]>``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sympe_jax.groups import lattice

__all__ = [
    "lifting_filter_bank",
    "group_filter_bank",
    "LiftingConv",
    "GroupConv",
    "PoolD4",
    "GCNN",
]

_DN = ("NHWC", "HWIO", "NHWC")


# ---------------------------------------------------------------------------------------------
# Static index tables.
# ---------------------------------------------------------------------------------------------


def _check_kernel_size(kernel_size: int) -> int:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or (
            kernel_size < 1 or kernel_size % 2 == 0):
        raise ValueError(f"kernel_size must be a positive odd int (a D4-symmetric stencil); got "
                         f"{kernel_size!r}")
    return int(kernel_size)


def _spatial_sources(kernel_size: int) -> np.ndarray:
    """int32[8, K, K, 2]: for each d and kernel offset u (index u + r), the index of M_d^-1 u."""
    r = kernel_size // 2
    offs = np.stack(np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij"), -1)
    inv_mats = lattice.D4_MATRICES[lattice.D4_INVERSE]  # (8, 2, 2)
    return (np.einsum("dij,abj->dabi", inv_mats, offs) + r).astype(np.int32)


def _bond_channel_sources(in_features: int, bond_channels: bool) -> np.ndarray:
    """int32[8, c_in]: input channel of psi feeding channel k of the d-th filter, i.e. rho(d)."""
    base = np.arange(in_features, dtype=np.int32)
    if not bond_channels:
        return np.broadcast_to(base, (8, in_features)).copy()
    if in_features < 4:
        raise ValueError(f"bond_channels=True needs at least 4 input channels [R, U, L, D]; got "
                         f"{in_features}")
    inv_perm = np.argsort(lattice.D4_DIRECTION_PERM, axis=1).astype(np.int32)  # (8, 4)
    return np.concatenate([inv_perm, np.broadcast_to(base[4:], (8, in_features - 4))], axis=1)


def lifting_filter_bank(psi: jax.Array, bond_channels: bool = False) -> jax.Array:
    """The 8 D4-transformed copies of a lifting filter, as one HWIO kernel.

    Filter ``d`` is ``psi`` transformed like a site field by the point-group element ``d``:
    ``W_d(u) = rho(d) psi(M_d^-1 u)`` (``rho`` permutes the first 4 channels as ``act_on_bonds``
    does when ``bond_channels``, else is the identity).

    Args:
        psi: [K, K, c_in, c_out] base filter, ``psi[u + r]`` for offsets u in [-r, r]^2.
        bond_channels: whether the first 4 input channels are bond directions [R, U, L, D].
    Returns:
        [K, K, c_in, 8 * c_out], output channels ordered (d, c_out).
    """
    K, _, c_in, c_out = psi.shape
    src = _spatial_sources(K)  # (8, K, K, 2)
    chan = _bond_channel_sources(c_in, bond_channels)  # (8, c_in)
    # bank[d, a, b, i] = psi[src[d, a, b], chan[d, i]]: shape (8, K, K, c_in, c_out)
    bank = psi[src[..., 0, None], src[..., 1, None], chan[:, None, None, :]]
    return jnp.transpose(bank, (1, 2, 3, 0, 4)).reshape(K, K, c_in, 8 * c_out)


def group_filter_bank(psi: jax.Array) -> jax.Array:
    """The 8 D4-transformed copies of a group-conv filter, as one HWIO kernel.

    ``W_d[u, d'] = psi[d^-1 d', M_d^-1 u]`` (the regular action of ``(d, 0)`` on the filter).

    Args:
        psi: [8, K, K, c_in, c_out] base filter on (D4 element, offset).
    Returns:
        [K, K, 8 * c_in, 8 * c_out], input channels ordered (d', c_in), output (d, c_out).
    """
    _, K, _, c_in, c_out = psi.shape
    src = _spatial_sources(K)  # (8, K, K, 2)
    rot = lattice.D4_TABLE[lattice.D4_INVERSE[:, None], np.arange(8)[None, :]]  # (8, 8): d^-1 d'
    bank = psi[rot[:, None, None, :], src[..., 0, None], src[..., 1, None]]  # (8, K, K, 8, ci, co)
    return jnp.transpose(bank, (1, 2, 3, 4, 0, 5)).reshape(K, K, 8 * c_in, 8 * c_out)


# ---------------------------------------------------------------------------------------------
# Shape helpers.
# ---------------------------------------------------------------------------------------------


def _flatten_site(x: jax.Array, what: str) -> tuple[jax.Array, tuple[int, ...]]:
    if x.ndim < 3 or x.shape[-3] != x.shape[-2]:
        raise ValueError(f"{what}: expected a site field of shape (*batch, L, L, c); got {x.shape}")
    return x.reshape((-1,) + x.shape[-3:]), x.shape[:-3]


def _flatten_lifted(x: jax.Array, what: str) -> tuple[jax.Array, tuple[int, ...]]:
    if x.ndim < 4 or x.shape[-4] != 8 or x.shape[-3] != x.shape[-2]:
        raise ValueError(f"{what}: expected a lifted field of shape (*batch, 8, L, L, c); got "
                         f"{x.shape}")
    return x.reshape((-1,) + x.shape[-4:]), x.shape[:-4]


def _circular_conv(x: jax.Array, kernel: jax.Array, precision) -> jax.Array:
    """x: (N, L, L, c_in), kernel HWIO (K, K, c_in, c_out) -> (N, L, L, c_out) on the torus."""
    r = kernel.shape[0] // 2
    xp = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="wrap")
    return jax.lax.conv_general_dilated(xp, kernel, (1, 1), "VALID", dimension_numbers=_DN,
                                        precision=precision)


# ---------------------------------------------------------------------------------------------
# Layers.
# ---------------------------------------------------------------------------------------------


class LiftingConv(nn.Module):
    """Lifting convolution: site field -> lifted field, ``lift(g . x) = g . lift(x)``.

    Attributes:
        features: output channels per group element.
        kernel_size: odd spatial stencil size K (offsets in [-K//2, K//2]^2, circular padding).
        bond_channels: the first 4 input channels are a bond field [R, U, L, D] (acted on by
            ``act_on_bonds``); the rest are scalars. If False, all channels are scalars.
        use_bias: add a per-feature bias (shared by all group elements, hence invariant).
        precision: passed to ``conv_general_dilated``.
    """

    features: int
    kernel_size: int = 3
    bond_channels: bool = False
    use_bias: bool = True
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: x [*batch, L, L, c_in]. Returns: [*batch, 8, L, L, features]."""
        K = _check_kernel_size(self.kernel_size)
        x = jnp.asarray(x)
        xf, batch = _flatten_site(x, "LiftingConv")
        c_in = xf.shape[-1]
        if self.bond_channels and c_in < 4:
            raise ValueError(f"LiftingConv(bond_channels=True) needs at least 4 input channels "
                             f"[R, U, L, D]; got {c_in}")
        psi = self.param("kernel", self.kernel_init, (K, K, c_in, self.features), jnp.float32)
        kernel = lifting_filter_bank(psi, self.bond_channels)
        y = _circular_conv(xf.astype(kernel.dtype), kernel, self.precision)  # (N, L, L, 8 f)
        N, L = y.shape[0], y.shape[1]
        y = jnp.transpose(y.reshape(N, L, L, 8, self.features), (0, 3, 1, 2, 4))
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return y.reshape(batch + y.shape[1:])


class GroupConv(nn.Module):
    """Group convolution on p4m: lifted -> lifted, commutes with ``act_on_lifted``.

    Attributes:
        features: output channels per group element.
        kernel_size: odd spatial stencil size K (circular padding).
        use_bias: add a per-feature bias (shared by all group elements).
        precision: passed to ``conv_general_dilated``.
    """

    features: int
    kernel_size: int = 3
    use_bias: bool = True
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: x [*batch, 8, L, L, c_in]. Returns: [*batch, 8, L, L, features]."""
        K = _check_kernel_size(self.kernel_size)
        x = jnp.asarray(x)
        xf, batch = _flatten_lifted(x, "GroupConv")
        N, _, L, _, c_in = xf.shape
        # lecun_normal on (8, K, K, c_in, c_out): fan_in = 8 K^2 c_in, as it should be.
        psi = self.param("kernel", self.kernel_init, (8, K, K, c_in, self.features), jnp.float32)
        kernel = group_filter_bank(psi)
        xs = jnp.transpose(xf, (0, 2, 3, 1, 4)).reshape(N, L, L, 8 * c_in)  # channels (d', c)
        y = _circular_conv(xs.astype(kernel.dtype), kernel, self.precision)
        y = jnp.transpose(y.reshape(N, L, L, 8, self.features), (0, 3, 1, 2, 4))
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return y.reshape(batch + y.shape[1:])


class PoolD4(nn.Module):
    """Pool the D4 axis of a lifted field: ``(*batch, 8, L, L, c) -> (*batch, L, L, c)``.

    Invariant to the D4 permutation at each site, so ``pool(g . F) = act_on_field(g, pool(F))``.

    Attributes:
        mode: ``"mean"`` or ``"max"``.
    """

    mode: str = "mean"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: x [*batch, 8, L, L, c]. Returns: [*batch, L, L, c]."""
        x = jnp.asarray(x)
        _flatten_lifted(x, "PoolD4")
        if self.mode == "mean":
            return jnp.mean(x, axis=-4)
        if self.mode == "max":
            return jnp.max(x, axis=-4)
        raise ValueError(f"PoolD4: mode must be 'mean' or 'max'; got {self.mode!r}")


class GCNN(nn.Module):
    """p4m G-CNN backbone: per-site spin logits, or one score per group element.

    Lifting conv, then pre-activation blocks ``[norm -> activation -> GroupConv]`` (residual when
    the width is unchanged), then ``norm -> activation`` and a head:

    * ``out="logits"``: :class:`PoolD4` then a 1x1 dense to one logit per site, ``(*batch, L, L)``;
    * ``out="lifted_scores"``: a 1x1 dense per group element, ``(*batch, 8, L, L)``: scores for an
      equivariant canonicalizer (argmax with uniform random tie-breaking over the ``8 L^2``
      elements; entry ``[d, x, y]`` is the element ``[d, x, y]`` of ``lattice.elements(L)``).

    Normalizations (both commute with the regular representation):

    * ``norm="layer"``: LayerNorm over the channels at each group element ``(d, x, y)``;
    * ``norm="global"``: statistics over all of ``(8, L, L, c)`` of each example (a group norm with
      one group), per-channel scale and offset. Better conditioned for narrow layers (a
      LayerNorm over 3-4 channels amplifies float round-off when the channels nearly coincide);
    * ``norm="none"``.

    Attributes:
        features: widths of the lifting conv and of each following group conv (at least one).
        kernel_size: odd spatial stencil size.
        bond_channels: the first 4 input channels are a bond field [R, U, L, D].
        out: ``"logits"`` or ``"lifted_scores"``.
        pool: D4 pooling for the logits head, ``"mean"`` or ``"max"``.
        norm: normalization before each activation: ``"layer"``, ``"global"`` or ``"none"``.
        residual: residual connections between group convs of equal width.
        activation: pointwise nonlinearity.
        zero_init_head: zero-initialize the last dense layer (zero logits at init, which avoids
            the early logit blow-up). ``None`` means True for logits and False for scores (a
            zero scorer ties all elements).
        precision: passed to the convolutions.
    """

    features: Sequence[int] = (16, 16, 16)
    kernel_size: int = 3
    bond_channels: bool = True
    out: str = "logits"
    pool: str = "mean"
    norm: str = "layer"
    residual: bool = True
    activation: Callable[[jax.Array], jax.Array] = nn.gelu
    zero_init_head: bool | None = None
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: x [*batch, L, L, c_in]. Returns: [*batch, L, L] or [*batch, 8, L, L] (``out``)."""
        if len(self.features) < 1:
            raise ValueError("GCNN: features must contain at least one width")
        if self.out not in ("logits", "lifted_scores"):
            raise ValueError(f"GCNN: out must be 'logits' or 'lifted_scores'; got {self.out!r}")
        if self.norm not in ("layer", "global", "none"):
            raise ValueError(f"GCNN: norm must be 'layer', 'global' or 'none'; got {self.norm!r}")
        zero_head = (self.out == "logits") if self.zero_init_head is None else self.zero_init_head

        def normalize(y):
            if self.norm == "layer":
                return nn.LayerNorm(epsilon=1e-5)(y)
            if self.norm == "global":  # reduce over (8, L, L, c) of each example
                return nn.LayerNorm(epsilon=1e-5, reduction_axes=(-4, -3, -2, -1),
                                    feature_axes=-1)(y)
            return y

        h = LiftingConv(self.features[0], self.kernel_size, self.bond_channels,
                        precision=self.precision, name="lift")(x)
        for i, width in enumerate(self.features[1:]):
            y = GroupConv(width, self.kernel_size, precision=self.precision,
                          name=f"gconv_{i}")(self.activation(normalize(h)))
            h = h + y if self.residual and width == h.shape[-1] else y
        h = self.activation(normalize(h))
        head_init = nn.initializers.zeros if zero_head else nn.initializers.lecun_normal()
        if self.out == "logits":
            h = PoolD4(self.pool)(h)
        return nn.Dense(1, kernel_init=head_init, name="head")(h)[..., 0]
