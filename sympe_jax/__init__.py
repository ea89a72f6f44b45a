"""sympe_jax: symmetry breaking for equivariant networks, without giving up equivariance."""

__version__ = "0.1.0"
