"""The models compared, one interface: ``model.apply(params, points, mask, rngs={"sympe": key}) -> float[B, n, 3]``.

* an E(3)-equivariant network (:class:`sympe_jax.nn.e3.E3PointNet`, e3nn-jax) that sees the points
  and the vectors of one symmetry breaker from :data:`sympe_jax.POINT_CLOUD_ENCODINGS`, chosen by
  name (``"none"``: no symmetry breaking; ``"noise"``: Gaussian vectors per point; ``"haar"``: learned
  vectors moved by a Haar-random frame; ``"covariance"``: by the covariance frame with random
  degeneracies; ``"sympe"``: by the sorted-point frame, the inversion kernel on these shapes);
* ``"mlp"``: a non-equivariant MLP on the centred, radius-normalized coordinates of the points in
  their given order (trained on freshly rotated instances: rotation augmentation), displacements
  scaled back by the radius.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

import sympe_jax as sp
from sympe_jax.nn.e3 import E3PointNet

__all__ = ["METHODS", "ShapeModel"]

METHODS = {"none": "none", "noise": "noise", "haar": "haar", "covariance": "covariance", "sympe": "sympe",
           "mlp": None}
"""Each method's point-cloud encoding (``None``: the MLP, no encoding)."""


class ShapeModel(nn.Module):
    """``(points [B, n, 3], mask [B, n]) -> displacements [B, n, 3]`` with the symmetry breaking of ``method``."""

    method: str = "sympe"
    hidden: str = "16x0e + 8x1o + 8x1e"
    num_layers: int = 2
    pe_features: int = 4
    mlp_features: Sequence[int] = (256, 256, 256)
    atol: float = 1e-4

    @nn.compact
    def __call__(self, points: jax.Array, mask: jax.Array) -> jax.Array:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {tuple(METHODS)}, got {self.method!r}")
        if self.method == "mlp":
            w = mask.astype(points.dtype)[..., None]
            c = jnp.sum(points * w, -2, keepdims=True) / jnp.maximum(jnp.sum(w, -2, keepdims=True), 1.0)
            y = (points - c) * w
            rho = jnp.sqrt(jnp.sum(y * y, (-2, -1)) / jnp.maximum(jnp.sum(w, (-2, -1)), 1.0))[..., None, None] + 1e-6
            h = jnp.concatenate([(y / rho).reshape(y.shape[:-2] + (-1,)), mask.astype(points.dtype)], -1)
            for width in self.mlp_features:
                h = nn.gelu(nn.Dense(width)(h))
            out = nn.Dense(points.shape[-2] * 3, kernel_init=nn.initializers.zeros)(h).reshape(points.shape)
            return out * rho * w
        enc = sp.flax.PointCloudEncoding(METHODS[self.method], features=self.pe_features, atol=self.atol,
                                         name="encoding")
        vectors = enc(points, mask) if self.method != "none" else None
        return E3PointNet(hidden=self.hidden, num_layers=self.num_layers, name="backbone")(points, mask, vectors)
