"""Lattice models with and without symmetry breaking, one interface: ``model(key, x) -> logits``.

Every model maps a batch of site fields ``x [B, L, L, c]`` (the first 4 channels a bond field
``[J_right, J_up, J_left, J_down]``, the rest scalars) and a PRNG key to per-site logits
``[B, L, L]``. ``method`` chooses how symmetry is broken:

* ``"none"``: the p4m G-CNN alone: exactly equivariant, so a p4m-symmetric input (constant
  couplings) gets a p4m-symmetric output law;
* ``"sympe"``: SymPE (Algorithm 1 of Lawrence et al. 2025): an equivariant G-CNN scorer gives
  one score per group element ``[B, 8, L, L]``; ``argmax_element`` samples g~ uniformly among the
  maxima (within ``atol``); the learned field v ``[L, L, pe_features]`` moved by g~ is
  concatenated to the input of the same G-CNN backbone. The law of the output is equivariant.
  The scorer is reached only through an argmax, so it gets no gradient: it is a fixed random
  equivariant map (for constant couplings every element ties and g~ is uniform on p4m, which
  is the exact inversion kernel of such an input);
* ``"noise"``: i.i.d. Gaussian channels concatenated to the input of the same backbone
  (equivariant noise injection);
* ``"cnn"``: a non-equivariant baseline: a plain CNN with circular padding that also sees a
  learned positional map ``[L, L, pe_features]`` (absolute position; circular padding alone
  would keep it translation-equivariant). Its widths are ``sqrt(8)`` times the G-CNN's, so the
  parameter counts of the convolutions match.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sympe_jax import encodings
from sympe_jax import flax as sp_flax
from sympe_jax.nn.gcnn import GCNN

__all__ = ["METHODS", "CircularCNN", "LatticeModel"]

METHODS = {"none": "none", "noise": "noise", "sympe": "sympe", "cnn": "position"}
"""Each method's symmetry breaking, by its name in ``sympe_jax.encodings.LATTICE_ENCODINGS``
("cnn" is the plain CNN backbone with the learned positional map)."""


class CircularCNN(nn.Module):
    """A plain (not p4m-equivariant) CNN with circular padding: [B, L, L, c] -> logits [B, L, L]."""

    features: Sequence[int] = (45, 45, 45)
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = self.kernel_size // 2
        h = x
        for i, width in enumerate(self.features):
            if i > 0:
                h = nn.gelu(nn.LayerNorm(reduction_axes=(-3, -2, -1), feature_axes=-1)(h))
            hp = jnp.pad(h, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="wrap")
            y = nn.Conv(width, (self.kernel_size, self.kernel_size), padding="VALID")(hp)
            h = h + y if i > 0 and width == h.shape[-1] else y
        h = nn.gelu(nn.LayerNorm(reduction_axes=(-3, -2, -1), feature_axes=-1)(h))
        return nn.Dense(1, kernel_init=nn.initializers.zeros, name="head")(h)[..., 0]


def bond_invariants(x: jax.Array) -> jax.Array:
    """D4-invariant scalars of the bond field at each site: float[..., L, L, 4 + ...] -> [..., L, L, 2].

    ``[(R + U + L + D) / 2, |R + L - U - D| / 2]``, for constant couplings ``[J_x + J_y, |J_x - J_y|]``,
    so ``max(J_x, J_y)`` and ``min(J_x, J_y)`` are their half sum and half difference: which of
    the four phases a Hamiltonian is in becomes linear in them (antiferromagnetic: the max is
    negative), where the lifted bond channels give it only through two layers of activations.
    Rotations and reflections permute ``[R, U, L, D]`` as they permute the directions, mapping
    the pair ``{R, L}`` to ``{R, L}`` or ``{U, D}``: both values are unchanged.
    """
    right, up, left, down = (x[..., k] for k in range(4))
    return jnp.stack([(right + up + left + down) / 2, jnp.abs(right + left - up - down) / 2], axis=-1)


class LatticeModel(nn.Module):
    """``(key, x [B, L, L, c]) -> logits [B, L, L]`` with the symmetry breaking of ``method``.

    Attributes:
      method: one of :data:`METHODS`.
      features: G-CNN widths (lifting conv, then group convs).
      pe_features: channels of the SymPE field, the noise, or the positional map.
      scorer_features: widths of the SymPE scorer G-CNN.
      kernel_size: spatial stencil of every convolution.
      norm: G-CNN normalization (see :class:`sympe_jax.nn.gcnn.GCNN`).
      atol: tie tolerance of the argmax over group elements.
      invariant_inputs: add the D4-invariant bond scalars :func:`bond_invariants` of the couplings
        ``[B, L, L, 2]`` as input channels.
      sign_scale: scale ``s`` of the bond-sign channels ``bond_invariants(tanh(J / s))``
        ``[B, L, L, 2]`` (0: none).
    """

    method: str = "sympe"
    features: Sequence[int] = (16, 16, 16, 16)
    pe_features: int = 4
    scorer_features: Sequence[int] = (4, 4)
    kernel_size: int = 3
    norm: str = "global"
    atol: float = 1e-4
    invariant_inputs: bool = False
    sign_scale: float = 0.0

    @nn.compact
    def __call__(self, key: jax.Array, x: jax.Array) -> jax.Array:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {tuple(METHODS)}, got {self.method!r}")
        if not self.sign_scale >= 0:
            raise ValueError(f"sign_scale must be >= 0 (0: no bond-sign channels), got {self.sign_scale}")
        if x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[-1] < 4:
            raise ValueError(f"x must be [B, L, L, c >= 4] with bond channels first, got {x.shape}")
        enc = encodings.lattice_encoding(METHODS[self.method], L=x.shape[1], features=self.pe_features,
                                         atol=self.atol)
        scores = None
        if enc.uses_scores:
            scores = GCNN(self.scorer_features, self.kernel_size, bond_channels=True, out="lifted_scores",
                          norm=self.norm, name="scorer")(x)
            scores = jax.lax.stop_gradient(scores)  # the argmax has zero gradient anyway
        pe = enc.apply(key, sp_flax.declare_params(self, enc), x, scores=scores).astype(x.dtype)
        if self.invariant_inputs:
            x = jnp.concatenate([x, bond_invariants(x)], axis=-1)
        if self.sign_scale > 0:
            x = jnp.concatenate([x, bond_invariants(jnp.tanh(x[..., :4] / self.sign_scale))], axis=-1)
        h = jnp.concatenate([x, pe], axis=-1)
        if self.method == "cnn":
            widths = [int(round(math.sqrt(8) * w)) for w in self.features]
            return CircularCNN(widths, self.kernel_size, name="backbone")(h)
        return GCNN(self.features, self.kernel_size, bond_channels=True, out="logits", norm=self.norm,
                    name="backbone")(h)
