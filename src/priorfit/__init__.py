"""priorfit: Prior-Data Fitted Networks.

A PFN is a transformer trained on synthetic datasets drawn from a prior; it then approximates
the posterior predictive distribution of new data in one forward pass.
"""

from priorfit import curves, fewshot, priors
from priorfit.model import PFN, ModelConfig, RiemannDistribution, load
from priorfit.predict import predict
from priorfit.train import TrainConfig, load_config, train

__version__ = "0.1.0"

__all__ = [
    "PFN",
    "ModelConfig",
    "PFNClassifier",
    "PFNRegressor",
    "RiemannDistribution",
    "TrainConfig",
    "curves",
    "fewshot",
    "load",
    "load_config",
    "predict",
    "priors",
    "train",
]


def __getattr__(name: str):
    if name in ("PFNClassifier", "PFNRegressor"):  # import scikit-learn only when asked for
        from priorfit import tabular

        return getattr(tabular, name)
    if name == "bo":
        import priorfit.bo

        return priorfit.bo
    raise AttributeError(f"module 'priorfit' has no attribute {name!r}")
