"""Bayesian optimisation with a PFN surrogate (:mod:`priorfit.bo.optimizer`: ask/tell and
:func:`minimize`; :mod:`priorfit.bo.acquisition`; :mod:`priorfit.bo.problems`: the test
problems of the benchmarks)."""

from priorfit.bo import problems
from priorfit.bo.optimizer import Optimizer, Result, minimize

__all__ = ["Optimizer", "Result", "minimize", "problems"]
