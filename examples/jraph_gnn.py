"""SymPE in your own jraph GNN: three lines (marked) turn a model that cannot reconstruct a cycle
into one that can.

    python examples/jraph_gnn.py                      # with SymPE
    python examples/jraph_gnn.py --encoding none      # the same model without it: stuck at the floor
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

import sympe_jax as sp                                                        # 1. import

try:
    from examples._common import adam, cycles, floor, pair_bce, run
except ImportError:  # run as a script: python examples/jraph_gnn.py
    from _common import adam, cycles, floor, pair_bce, run


class GNN(nn.Module):
    """A plain message-passing network on a padded GraphsTuple: node embeddings [N, 8] and the
    offset of the distance decoder (edge logit = offset - |z_i - z_j|^2)."""

    encoding: str = "sympe"
    n_max: int = 8

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple) -> tuple[jax.Array, jax.Array]:
        pe = sp.flax.GraphEncoding(self.encoding, n_max=self.n_max, features=8)(graph)   # 2. one module call
        h = jnp.concatenate([graph.nodes, pe], axis=-1)                                    # 3. one concatenation
        for _ in range(3):
            messages = jraph.segment_sum(h[graph.senders], graph.receivers, h.shape[0])
            h = nn.silu(nn.Dense(32)(jnp.concatenate([h, messages], axis=-1)))
        return nn.Dense(8)(h), self.param("offset", nn.initializers.ones, ())


def main(encoding: str = "sympe", steps: int = 300, seed: int = 0) -> dict:
    graph, adjacency, mask = cycles()
    model = GNN(encoding)
    k_init, k_pe, k_train = jax.random.split(jax.random.key(seed), 3)
    params = model.init({"params": k_init, "sympe": k_pe}, graph)

    def loss_fn(params, key):
        z, offset = model.apply(params, graph, rngs={"sympe": key})                # [N, 8]
        z, _ = sp.graphs.nodes_to_dense(graph, z, 8, num_graphs=mask.shape[0])       # [G, 8, 8]
        logits = offset - jnp.sum((z[:, :, None] - z[:, None, :]) ** 2, -1)
        return pair_bce(logits, adjacency, mask)

    _, loss = adam(loss_fn, params, k_train, steps)
    return {"encoding": encoding, "loss": loss, "floor": floor(adjacency, mask)}


if __name__ == "__main__":
    run(main, __doc__)
