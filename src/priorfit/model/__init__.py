"""PFN networks (a registry of architectures), their output heads and the Riemann distribution."""

from priorfit.model.heads import HEADS, BoundedRiemannHead, CategoricalHead, Head, RiemannHead
from priorfit.model.pfn import PFN
from priorfit.model.registry import (
    ARCHITECTURES,
    ModelConfig,
    build_model,
    load,
    register_architecture,
)
from priorfit.model.riemann import RiemannDistribution, borders_from_samples

# the built-in architectures register themselves on import
from priorfit.model import cells, images, rows  # noqa: F401  isort: skip

__all__ = [
    "ARCHITECTURES",
    "HEADS",
    "PFN",
    "BoundedRiemannHead",
    "CategoricalHead",
    "Head",
    "ModelConfig",
    "RiemannDistribution",
    "RiemannHead",
    "borders_from_samples",
    "build_model",
    "load",
    "register_architecture",
]
