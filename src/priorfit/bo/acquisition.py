"""Acquisition functions from a PFN's predictive, for minimisation, with black-box constraints.

The objective and every constraint are datasets of one batch: a PFN conditioned once on
``x_train [1 + J, n, d]`` and ``y_train [1 + J, n]`` (row 0 the objective, row j the j-th
constraint, all in the optimiser's transformed units) predicts all of them at the candidates in
one forward pass. Every function maps candidates ``x [m, d]`` (a tensor that may require grad)
to values ``[m]`` to be maximised, differentiable in ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from priorfit.predict import Conditioned

ACQUISITIONS = ("log_ei", "pi", "ucb")


@dataclass
class Acquisition:
    """An acquisition function over a conditioned PFN (see the module).

    Attributes:
        conditioned: the PFN conditioned on the objective and constraint datasets.
        kind: a name in :data:`ACQUISITIONS`.
        best: the best feasible objective value so far (transformed), or ``None`` when no
            observation is feasible yet: then the value is the log probability of feasibility.
        thresholds: ``[J]`` each constraint's bound (``g_j <= 0``) in its transformed units.
        beta: UCB's exploration weight (``mean - sqrt(beta) std`` is minimised).
    """

    conditioned: Conditioned
    kind: str
    best: float | None
    thresholds: Tensor
    beta: float = 2.0

    def __call__(self, x: Tensor) -> Tensor:
        """Acquisition values ``[m]`` at ``x [m, d]`` (unit cube), to be maximised."""
        rows = self.thresholds.shape[0] + 1
        predictive = self.conditioned.distribution(x.expand(rows, *x.shape))  # [1 + J, m]
        log_feasible = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if rows > 1:  # row 0's threshold is a dummy: only the constraint rows are read
            thresholds = torch.cat([self.thresholds.new_zeros(1), self.thresholds])
            cdf = predictive.cdf(thresholds[:, None].to(x.dtype))[1:]
            log_feasible = torch.log(cdf.clamp(min=torch.finfo(cdf.dtype).tiny)).sum(0)
        if self.best is None:
            return log_feasible
        best = torch.full((rows, 1), self.best, dtype=x.dtype, device=x.device)
        if self.kind == "log_ei":
            value = predictive.log_ei(best, maximize=False)[0]
        elif self.kind == "pi":
            pi = predictive.pi(best, maximize=False)[0]
            value = torch.log(pi.clamp(min=torch.finfo(pi.dtype).tiny))
        else:
            value = -(predictive.mean[0] - self.beta**0.5 * predictive.stddev[0])
        return value + log_feasible
