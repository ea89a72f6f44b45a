"""Discrete denoising diffusion for graphs (DiGress), jit-compiled, in JAX.

Modules (each small, named after what it holds):

* :mod:`.dense`: the dense one-hot graph convention, masks, encode/decode.
* :mod:`.qm9_reference`: the reference's hard-coded QM9-without-H constants (defaults only).
* :mod:`.schedule`: the discrete cosine schedule (betas and alpha_bars, t = 0..T).
* :mod:`.transitions`: marginal / uniform transition matrices.
* :mod:`.posterior`: q(z_s | z_t, x) and the model's reverse step distribution.
* :mod:`.noise`: categorical sampling, forward noising, the prior.
* :mod:`.extra_features`: cycles, spectral and molecular features of the noisy graph, t/T.
* :mod:`.loss`: the training cross-entropy CE_X + lambda CE_E.
* :mod:`.likelihood`: the four terms of the test NLL.
* :mod:`.sampling`: node counts and the reverse step.
* :mod:`.denoiser`: the denoiser interface and DiGress's transformer denoiser.
* :mod:`.digress`: :class:`DiGress`: ``training_loss``, ``nll``, ``sample``.
* :mod:`.sympe`: denoisers with symmetry breaking (SymPE node/edge channels, Gaussian noise).
"""

from experiments.digress_qm9.diffusion import (dense, denoiser, digress, extra_features, likelihood, loss, noise,
                                               posterior, qm9_reference, sampling, schedule, sympe, transitions)
from experiments.digress_qm9.diffusion.dense import DenseGraphs
from experiments.digress_qm9.diffusion.denoiser import Denoiser, TransformerDenoiser
from experiments.digress_qm9.diffusion.digress import DiffusionConfig, DiGress
from experiments.digress_qm9.diffusion.extra_features import QM9_FEATURES, ExtraFeatures, ExtraFeaturesConfig
from experiments.digress_qm9.diffusion.schedule import NoiseSchedule, cosine_schedule

__all__ = [
    "DenseGraphs",
    "Denoiser",
    "DiGress",
    "DiffusionConfig",
    "ExtraFeatures",
    "ExtraFeaturesConfig",
    "NoiseSchedule",
    "QM9_FEATURES",
    "TransformerDenoiser",
    "cosine_schedule",
    "dense",
    "denoiser",
    "digress",
    "extra_features",
    "likelihood",
    "loss",
    "noise",
    "posterior",
    "qm9_reference",
    "sampling",
    "schedule",
    "sympe",
    "transitions",
]
