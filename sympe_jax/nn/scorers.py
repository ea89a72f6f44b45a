"""Learned node scorers: permutation-equivariant node scores for SymPE's sort.

* :class:`NodeScoreHead`: a fixed base score plus a zero-initialized per-node MLP of exactly
  equivariant node features.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax

from sympe_jax.nn.mpnn import MLP

__all__ = ["NodeScoreHead"]


class NodeScoreHead(nn.Module):
    """A learned, permutation-equivariant node score for SymPE's sort: ``base + MLP(x)``.

    The same MLP scores every node from its own features ``x`` float[n, c] (exactly equivariant
    node features, e.g. ``features.structural_node_features``), so permuting the nodes permutes
    the scores, and nodes with equal features (automorphic nodes) get equal scores up to
    rounding. The last layer starts at zero: at initialization the score is ``base`` float[n]
    (e.g. the fixed ``features.invariant_node_scores``), and training moves it only as far as
    the loss asks. Sorting passes no gradient; train it through
    ``encodings.straight_through_sympe``. Returns float[n].
    """

    hidden: tuple[int, ...] = (32, 32)
    activation: Callable[[jax.Array], jax.Array] = nn.silu

    @nn.compact
    def __call__(self, x: jax.Array, base: jax.Array) -> jax.Array:
        if x.ndim != 2 or base.shape != x.shape[:1]:
            raise ValueError(f"NodeScoreHead needs node features [n, c] and a base score [n], got {x.shape} and {base.shape}")
        h = MLP(self.hidden, self.activation)(x) if self.hidden else x
        delta = nn.Dense(1, kernel_init=nn.initializers.zeros_init())(self.activation(h) if self.hidden else h)
        return base + delta[:, 0]
