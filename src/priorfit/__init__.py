"""priorfit: Prior-Data Fitted Networks.

A PFN is a transformer trained on synthetic datasets drawn from a prior; it then approximates
the posterior predictive distribution of new data in one forward pass.
"""

from priorfit import priors
from priorfit.io import load
from priorfit.model import PFN, ModelConfig, RiemannDistribution
from priorfit.predict import predict
from priorfit.train import TrainConfig, load_config, train

__version__ = "0.1.0"

__all__ = [
    "PFN",
    "ModelConfig",
    "RiemannDistribution",
    "TrainConfig",
    "load",
    "load_config",
    "predict",
    "priors",
    "train",
]
