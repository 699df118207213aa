"""The PFN transformer and its Riemann (bar) output distribution."""

from priorfit.model.riemann import RiemannDistribution, borders_from_samples
from priorfit.model.transformer import PFN, ModelConfig

__all__ = ["PFN", "ModelConfig", "RiemannDistribution", "borders_from_samples"]
