"""An E(3)-equivariant message-passing network on dense point clouds, built on e3nn-jax.

:class:`E3PointNet` maps a batch of point clouds ``points float[..., n, 3]`` (``mask bool[..., n]``
marks real points), optional per-point vector channels (e.g. a symmetry-breaking encoding from
:func:`sympe_jax.point_cloud_encoding`, ``float[..., n, k, 3]``) and optional invariant scalars
``float[..., n, c]`` to per-point outputs of the irreps ``irreps_out`` (default one vector, 1o).

It is exactly equivariant: rotations and reflections (O(3), with parity: a 1o output flips under
inversion, a 1e one does not), translations, and permutations of the points; and scale-equivariant
(positions are divided by the cloud's RMS radius about its centroid and vector outputs multiplied
back, so ``f(s x) = s f(x)`` for 1o outputs). Padding never influences real points.

Layers (``num_layers`` times): messages ``Linear_w(r_ij)(h_j (x) Y(r_ij))``, the tensor product of
the sender's features with the spherical harmonics (``l <= lmax``) of the normalized edge vector,
mixed by a linear map whose weights depend on the edge length (a radial MLP of a smooth basis),
summed over all other real points, added to a linear self-interaction, then a gated nonlinearity
(``e3nn_jax.gate``). Dense all-pairs edges: O(n^2) per cloud, meant for small clouds.

Needs e3nn-jax (the ``[e3]`` extra), imported by this module.
"""

from __future__ import annotations

import math

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["E3PointNet"]


class E3PointNet(nn.Module):
    """``(points [..., n, 3], mask [..., n], vectors [..., n, k, 3], scalars [..., n, c]) -> [..., n, irreps_out.dim]``.

    Attributes:
      hidden: irreps of the hidden node features (every non-scalar irrep gets a gate scalar).
      num_layers: message-passing layers.
      lmax: largest degree of the edge spherical harmonics.
      radial_basis: size of the smooth radial basis of the (radius-normalized) edge lengths.
      radial_hidden: width of the radial MLP giving the edge-dependent linear weights.
      max_radius: the radial basis covers normalized lengths in ``[0, max_radius]``.
      irreps_out: output irreps per point.
      scale_output: multiply the output by the cloud's RMS radius (scale-equivariant vectors).
    """

    hidden: str = "16x0e + 8x1o + 8x1e"
    num_layers: int = 3
    lmax: int = 2
    radial_basis: int = 8
    radial_hidden: int = 32
    max_radius: float = 4.0
    irreps_out: str = "1x1o"
    scale_output: bool = True

    @nn.compact
    def __call__(self, points: jax.Array, mask: jax.Array | None = None, vectors: jax.Array | None = None,
                 scalars: jax.Array | None = None) -> jax.Array:
        points = jnp.asarray(points)
        if points.ndim < 2 or points.shape[-1] != 3:
            raise ValueError(f"E3PointNet: points must have shape [..., n, 3], got {points.shape}")
        lead, n = points.shape[:-2], points.shape[-2]
        real = jnp.ones(lead + (n,), bool) if mask is None else jnp.asarray(mask, bool)
        if real.shape != lead + (n,):
            raise ValueError(f"E3PointNet: mask must have shape {lead + (n,)}, got {real.shape}")
        w = real.astype(points.dtype)
        count = jnp.maximum(jnp.sum(w, -1, keepdims=True), 1.0)                       # [..., 1]
        c = jnp.sum(points * w[..., None], -2, keepdims=True) / count[..., None]
        y = jnp.where(real[..., None], points - c, 0.0)
        rho = jnp.sqrt(jnp.sum(jnp.sum(y * y, -1), -1, keepdims=True) / count) + 1e-6  # [..., 1]
        u = y / rho[..., None]

        feats = [e3nn.IrrepsArray("1x0e", w[..., None]), e3nn.IrrepsArray("1x1o", u)]
        if vectors is not None:
            vectors = jnp.asarray(vectors, points.dtype)
            if vectors.shape[:-2] != lead + (n,) or vectors.shape[-1] != 3:
                raise ValueError(f"E3PointNet: vectors must have shape {lead + (n,)} + (k, 3), got {vectors.shape}")
            if vectors.shape[-2]:
                feats.append(e3nn.IrrepsArray(f"{vectors.shape[-2]}x1o", vectors.reshape(lead + (n, -1))))
        if scalars is not None:
            scalars = jnp.asarray(scalars, points.dtype)
            if scalars.shape[:-1] != lead + (n,):
                raise ValueError(f"E3PointNet: scalars must have shape {lead + (n,)} + (c,), got {scalars.shape}")
            if scalars.shape[-1]:
                feats.append(e3nn.IrrepsArray(f"{scalars.shape[-1]}x0e", scalars))
        h = e3nn.concatenate(feats, axis=-1).regroup()
        h = h * w[..., None]

        # dense edges between distinct real points
        rij = u[..., None, :, :] - u[..., :, None, :]                                   # [..., i, j, 3]: j - i
        eye = jnp.eye(n, dtype=bool)
        valid = real[..., :, None] & real[..., None, :] & ~eye
        dist = jnp.sqrt(jnp.sum(jnp.where(valid[..., None], rij, 1.0) ** 2, -1))
        valid = valid & (dist > 1e-6)
        safe = jnp.where(valid[..., None], rij, jnp.array([1.0, 0.0, 0.0], points.dtype))
        sh = e3nn.spherical_harmonics(e3nn.Irreps.spherical_harmonics(self.lmax, p=-1), safe, normalize=True,
                                      normalization="component")
        emb = e3nn.soft_one_hot_linspace(jnp.where(valid, dist, 0.0), start=0.0, end=self.max_radius,
                                         number=self.radial_basis, basis="smooth_finite", cutoff=False)
        emb = emb * math.sqrt(self.radial_basis)
        norm = 1.0 / jnp.sqrt(jnp.maximum(count - 1.0, 1.0))[..., None]               # [..., 1, 1]

        hidden = e3nn.Irreps(self.hidden)
        gates = sum(mul for mul, ir in hidden if not ir.is_scalar())
        scalars_irreps = e3nn.Irreps([(mul, ir) for mul, ir in hidden if ir.is_scalar()])
        pre_gate = (scalars_irreps + e3nn.Irreps(f"{gates}x0e") + e3nn.Irreps(
            [(mul, ir) for mul, ir in hidden if not ir.is_scalar()])).simplify()
        for layer in range(self.num_layers):
            radial = nn.silu(nn.Dense(self.radial_hidden, name=f"radial_{layer}_0")(emb))
            radial = nn.silu(nn.Dense(self.radial_hidden, name=f"radial_{layer}_1")(radial))
            tp = e3nn.tensor_product(h[..., None, :, :], sh, filter_ir_out=pre_gate)    # [..., i, j, irreps]
            msg = e3nn.flax.Linear(pre_gate, force_irreps_out=True, name=f"message_{layer}")(radial, tp)
            msg = msg * valid[..., None].astype(points.dtype)
            agg = e3nn.sum(msg, axis=-2) * norm
            self_int = e3nn.flax.Linear(pre_gate, force_irreps_out=True, name=f"self_{layer}")(h)
            h = e3nn.gate((self_int + agg).regroup())
            h = h * w[..., None]
        out = e3nn.flax.Linear(self.irreps_out, force_irreps_out=True, name="readout")(h).array
        if self.scale_output:
            out = out * rho[..., None]
        return jnp.where(real[..., None], out, 0.0)
