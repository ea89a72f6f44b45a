"""SymPE in your own Flax transformer: three lines (marked) on dense node tokens.

The transformer attends along the graph's edges (and to itself); its tokens all start equal.

    python examples/flax_transformer.py                    # with SymPE
    python examples/flax_transformer.py --encoding none    # without: stuck at the floor
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import sympe_jax as sp                                                        # 1. import

try:
    from examples._common import adam, cycles, floor, pair_bce, run
except ImportError:  # run as a script: python examples/flax_transformer.py
    from _common import adam, cycles, floor, pair_bce, run


class Transformer(nn.Module):
    """Pre-norm transformer blocks over tokens [G, n, d]; returns edge logits [G, n, n]."""

    encoding: str = "sympe"
    n_max: int = 8

    @nn.compact
    def __call__(self, tokens: jax.Array, adjacency: jax.Array, mask: jax.Array) -> jax.Array:
        pe = sp.flax.GraphEncoding(self.encoding, n_max=self.n_max, features=8)(adjacency, mask)  # 2. one call
        h = nn.Dense(32)(jnp.concatenate([tokens, pe], axis=-1))                                    # 3. concatenate
        attend = ((adjacency > 0) | jnp.eye(mask.shape[-1], dtype=bool)) & mask[:, None, :] & mask[:, :, None]
        for _ in range(3):
            h = h + nn.MultiHeadDotProductAttention(num_heads=4)(nn.LayerNorm()(h), mask=attend[:, None])
            h = h + nn.Dense(32)(nn.gelu(nn.Dense(64)(nn.LayerNorm()(h))))
        z = nn.Dense(8)(h)
        return self.param("offset", nn.initializers.ones, ()) - jnp.sum((z[:, :, None] - z[:, None, :]) ** 2, -1)


def main(encoding: str = "sympe", steps: int = 300, seed: int = 0) -> dict:
    _, adjacency, mask = cycles()
    tokens = jnp.ones(mask.shape + (4,))                                       # every node the same
    model = Transformer(encoding)
    k_init, k_pe, k_train = jax.random.split(jax.random.key(seed), 3)
    params = model.init({"params": k_init, "sympe": k_pe}, tokens, adjacency, mask)

    def loss_fn(params, key):
        logits = model.apply(params, tokens, adjacency, mask, rngs={"sympe": key})
        return pair_bce(logits, adjacency, mask)

    _, loss = adam(loss_fn, params, k_train, steps)
    return {"encoding": encoding, "loss": loss, "floor": floor(adjacency, mask)}


if __name__ == "__main__":
    run(main, __doc__)
