"""Priors: distributions over datasets that a PFN is trained on.

Every class here is found by name by :func:`prior_from_config`, so each prior and input
distribution must be exported from this namespace; other dataclass priors are recorded as
``"module:QualName"``.
"""

from priorfit.priors.base import Batch, Mixture, Prior, prior_from_config, prior_to_config
from priorfit.priors.bnn import BNN, BNNHyperPrior, MLPWeights
from priorfit.priors.curves import CurvePrior
from priorfit.priors.discrete import BetaBernoulli
from priorfit.priors.episodes import ImageEpisodes
from priorfit.priors.gp import GP
from priorfit.priors.hyper import Gamma, GPHyperparameters, GPHyperPrior, LogNormal, LogUniform
from priorfit.priors.inputs import ClusteredInputs, MixedInputs, Normal, Uniform
from priorfit.priors.strokes import StrokePrior
from priorfit.priors.tables import TableInfo, TablePrior

__all__ = [
    "BNN",
    "GP",
    "BNNHyperPrior",
    "Batch",
    "BetaBernoulli",
    "ClusteredInputs",
    "CurvePrior",
    "GPHyperPrior",
    "GPHyperparameters",
    "Gamma",
    "ImageEpisodes",
    "LogNormal",
    "LogUniform",
    "MLPWeights",
    "MixedInputs",
    "Mixture",
    "Normal",
    "Prior",
    "StrokePrior",
    "TableInfo",
    "TablePrior",
    "Uniform",
    "prior_from_config",
    "prior_to_config",
]
