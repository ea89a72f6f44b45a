"""Random small molecule-like graphs in the dense DiGress convention (no QM9 needed)."""

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.digress_qm9.diffusion import dense


def molecule_like_batch(seed: int, num_graphs: int, n_max: int = 9, n_min: int = 3, dx: int = 4, de: int = 5,
                        ring_prob: float = 0.5) -> dense.DenseGraphs:
    """Random trees (a chain-biased random parent for each atom) plus at most one ring closure;
    atoms mostly C, bonds mostly single, some double/triple. Real nodes come first."""
    rng = np.random.default_rng(seed)
    X = np.zeros((num_graphs, n_max, dx), np.float32)
    E = np.zeros((num_graphs, n_max, n_max, de), np.float32)
    mask = np.zeros((num_graphs, n_max), bool)
    for b in range(num_graphs):
        n = int(rng.integers(n_min, n_max + 1))
        mask[b, :n] = True
        X[b, np.arange(n), rng.choice(dx, size=n, p=[0.7, 0.12, 0.15, 0.03][:dx] / np.sum([0.7, 0.12, 0.15, 0.03][:dx]))] = 1
        bond = np.zeros((n, n), int)
        for i in range(1, n):
            j = i - 1 if rng.random() < 0.6 else int(rng.integers(0, i))
            bond[i, j] = bond[j, i] = int(rng.choice([1, 2, 3], p=[0.85, 0.12, 0.03]))
        if n >= 5 and rng.random() < ring_prob:
            i, j = 0, int(rng.integers(4, n))
            if bond[i, j] == 0:
                bond[i, j] = bond[j, i] = 1
        for i in range(n):
            for j in range(n):
                if i != j:
                    E[b, i, j, bond[i, j]] = 1
    return dense.DenseGraphs(jnp.asarray(X), jnp.asarray(E), jnp.asarray(mask))


@pytest.fixture(scope="session")
def molecules():
    return molecule_like_batch
