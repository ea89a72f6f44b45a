"""The discrete cosine noise schedule of the reference (``cosine_beta_schedule_discrete``).

Nichol & Dhariwal's cosine schedule as DiGress discretises it (``digress-qm9.md`` section 2),
with T + 1 entries indexed by the integer time t = 0..T::

    steps = T + 2,  x = linspace(0, steps, steps)          (endpoint included: a quirk kept)
    abar(x) = cos^2(pi/2 (x/steps + s) / (1 + s)) / abar(0)
    beta_t = 1 - abar(t + 1) / abar(t),  t = 0..T          (beta_T = 1 exactly)
    alpha_bar_t = prod_{u <= t} (1 - clip(beta_u, 0, 0.9999))

``betas`` are kept unclipped (the reference's one-step matrices Q_t use them; Q_T is then the
limit distribution itself), ``alpha_bars`` use the clipped values (so alpha_bar_T = 9.7e-10 for
T = 500, not 0). Computed in float64 with NumPy, stored as float32.

The reference looks time up as ``round(t_normalized * T)``; here times are integers throughout
and ``t / T`` is only the network's input feature.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["NoiseSchedule", "cosine_betas", "cosine_schedule"]


class NoiseSchedule(NamedTuple):
    """Lookup tables of a discrete noise schedule, indexed by integer time t = 0..T."""

    betas: jax.Array        # float32[T + 1]: one-step noise beta_t (unclipped)
    alpha_bars: jax.Array   # float32[T + 1]: prod_{u <= t} (1 - beta_u), beta clipped to 0.9999

    @property
    def T(self) -> int:
        """Number of diffusion steps (static)."""
        return self.betas.shape[0] - 1


def cosine_betas(T: int, s: float = 0.008) -> np.ndarray:
    """float64[T + 1]: the reference's discrete cosine betas (see the module docstring)."""
    if T < 1:
        raise ValueError(f"T must be a positive number of steps, got {T}")
    steps = T + 2
    x = np.linspace(0, steps, steps)
    abar = np.cos(0.5 * np.pi * ((x / steps) + s) / (1 + s)) ** 2
    abar = abar / abar[0]
    return 1.0 - abar[1:] / abar[:-1]


def cosine_schedule(T: int = 500, s: float = 0.008) -> NoiseSchedule:
    """The reference's schedule with T steps (QM9: T = 500)."""
    betas = cosine_betas(T, s)
    alpha_bars = np.exp(np.cumsum(np.log(1.0 - np.clip(betas, 0.0, 0.9999))))
    return NoiseSchedule(jnp.asarray(betas, jnp.float32), jnp.asarray(alpha_bars, jnp.float32))
