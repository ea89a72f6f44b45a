"""What both examples share: a symmetric task and a tiny optimizer (only the core dependencies).

The task: reconstruct the adjacency of cycle graphs from nodes that all carry the same input.
A cycle is vertex-transitive, so an equivariant model without symmetry breaking gives every
node the same embedding, every pair the same logit, and cannot beat the binary entropy of the
edge density: :func:`floor`. With SymPE the nodes differ in each sample and the model can.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from sympe_jax import GRAPH_ENCODINGS, graphs


def cycle(n: int) -> np.ndarray:
    """Adjacency float32[n, n] of the cycle C_n."""
    return np.roll(np.eye(n, dtype=np.float32), 1, axis=1) + np.roll(np.eye(n, dtype=np.float32), -1, axis=1)


def cycles(sizes=(6, 7, 8), n_max: int = 8):
    """A padded jraph batch of cycles and its dense adjacency [G, n_max, n_max] and mask [G, n_max]."""
    batch = graphs.pad(graphs.batch([graphs.from_adjacency(cycle(n)) for n in sizes]),
                       sum(sizes) + 1, 2 * sum(sizes), len(sizes) + 1)
    adjacency, mask = graphs.to_dense(batch, n_max, num_graphs=len(sizes))
    return batch, adjacency, mask


def pair_bce(logits: jax.Array, adjacency: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean binary cross-entropy over the real ordered pairs i != j: float[]."""
    pairs = mask[:, :, None] & mask[:, None, :] & ~jnp.eye(mask.shape[-1], dtype=bool)
    bce = jnp.maximum(logits, 0) - logits * adjacency + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return jnp.sum(jnp.where(pairs, bce, 0.0)) / jnp.sum(pairs)


def floor(adjacency: jax.Array, mask: jax.Array) -> float:
    """The lowest :func:`pair_bce` of a model that gives every pair the same logit."""
    pairs = np.asarray(mask[:, :, None] & mask[:, None, :] & ~np.eye(mask.shape[-1], dtype=bool))
    p = float(np.asarray(adjacency)[pairs].mean())
    return float(-(p * np.log(p) + (1 - p) * np.log(1 - p)))


def adam(loss_fn, params, key, steps: int, lr: float = 3e-3):
    """Minimize ``loss_fn(params, key)`` with Adam (fresh key per step); returns params and the last
    20 steps' mean loss. (In your own code, use optax.)"""
    m = jax.tree.map(jnp.zeros_like, params)
    s = jax.tree.map(jnp.zeros_like, params)

    @jax.jit
    def step(params, m, s, t, key):
        loss, g = jax.value_and_grad(loss_fn)(params, key)
        m = jax.tree.map(lambda a, b: 0.9 * a + 0.1 * b, m, g)
        s = jax.tree.map(lambda a, b: 0.999 * a + 0.001 * b * b, s, g)
        corr = jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        params = jax.tree.map(lambda p, a, b: p - lr * corr * a / (jnp.sqrt(b) + 1e-8), params, m, s)
        return params, m, s, loss

    losses = []
    for t in range(1, steps + 1):
        params, m, s, loss = step(params, m, s, t, jax.random.fold_in(key, t))
        losses.append(float(loss))
    return params, float(np.mean(losses[-20:]))


def run(main, doc: str) -> None:
    """The examples' command line: ``--encoding``, ``--steps``, ``--seed``; prints the result."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoding", default="sympe", choices=GRAPH_ENCODINGS[:-1],
                        help="symmetry breaking (the registry's names; 'exact' needs host-side ranks)")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    out = main(**vars(parser.parse_args()))
    print(f"{out['encoding']}: pair BCE {out['loss']:.3f} (floor without symmetry breaking: {out['floor']:.3f})")
