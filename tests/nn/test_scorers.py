"""sympe_jax.nn.scorers: the learned node scorer starts at its base score, is equivariant, trains."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sympe_jax.groups import permutation as P
from sympe_jax.nn import scorers


def test_node_score_head_starts_at_the_base_score_permutes_with_the_nodes_and_trains(key):
    x = jax.random.normal(key, (6, 5))
    x = x.at[3].set(x[1])                                 # nodes 1 and 3 look alike
    base = jnp.arange(6.0) * 0.1
    base = base.at[3].set(base[1])
    head = scorers.NodeScoreHead(hidden=(8,))
    params = head.init(jax.random.key(1), x, base)
    np.testing.assert_array_equal(head.apply(params, x, base), base)    # zero-initialized output layer
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape), params)
    s = head.apply(params, x, base)
    assert float(s[1]) == float(s[3])                     # equal inputs, equal scores
    g = jnp.array([5, 3, 0, 1, 4, 2])
    np.testing.assert_allclose(head.apply(params, P.act_on_nodes(g, x), P.act_on_nodes(g, base)),
                               P.act_on_nodes(g, s), rtol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(head.apply(p, x, base) ** 2))(params)
    assert sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(grads)) > 0
    with pytest.raises(ValueError, match="base score"):
        head.apply(params, x, base[:5])
