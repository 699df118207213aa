"""Learning-curve extrapolation: from the first epochs of training runs, the distribution of
their later values, in one forward pass of a PFN trained on :class:`~priorfit.priors.CurvePrior`
(LC-PFN's idea).

The prior's curves are accuracy-like: values in [0, 1] that improve, over ``num_epochs``
epochs (100). Other metrics are mapped into that domain and back, invertibly, per ``metric``:

=================  ===================================  =============================
metric             prior value ``u`` of a value ``v``    domain of ``v``
=================  ===================================  =============================
``"accuracy"``     ``u = v``                            [0, 1]
``"percent"``      ``u = v / 100``                      [0, 100]
``"error"``        ``u = 1 - v``                        [0, 1]
``"error_percent"````u = 1 - v / 100``                  [0, 100]
``"loss"``         ``u = exp(-v / s)``, ``s`` the        ``v >= 0``, first value > 0
                   curve's first observed value
=================  ===================================  =============================

Densities carry the Jacobian of the map, quantiles flip for metrics to be minimised. Runs of
another length are rescaled: with ``horizon = H``, epoch ``e`` of a run is the prior's epoch
``e · num_epochs / H`` (``x = e / H``), so a run of H epochs is read as the prior's whole curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from priorfit.model import PFN, load
from priorfit.predict import Conditioned

METRICS = ("accuracy", "percent", "error", "error_percent", "loss")
_SCALE = {"accuracy": 1.0, "percent": 100.0, "error": 1.0, "error_percent": 100.0}
MEAN_QUANTILES = 512  # quadrature points of the mean of a loss (a nonlinear map)


@dataclass
class CurvePredictive:
    """The predictive of curves' values at later epochs, ``[n_curves, len(at)]``, in the units
    of the metric.

    Attributes:
        prior_values: the model's distribution of the prior value ``u`` (a bounded
            :class:`~priorfit.model.riemann.RiemannDistribution`, batch ``[n_curves, m]``).
        metric: a name in :data:`METRICS`. scale: ``[n_curves, 1]``, the map's scale
            (100 for percent, the first value for a loss).
    """

    prior_values: torch.distributions.Distribution
    metric: str
    scale: Tensor

    @property
    def minimised(self) -> bool:
        return _minimised(self.metric)

    def _values(self, v) -> Tensor:
        return torch.as_tensor(v, dtype=torch.float32)

    @property
    def mean(self) -> Tensor:
        """``[n_curves, m]``."""
        if self.metric != "loss":
            return to_metric(self.metric, self.scale, self.prior_values.mean)
        levels = (torch.arange(MEAN_QUANTILES) + 0.5) / MEAN_QUANTILES
        quantiles = self.prior_values.icdf(levels.reshape(-1, 1, 1))
        return to_metric(self.metric, self.scale, quantiles).mean(0)

    def icdf(self, q: float) -> Tensor:
        """The ``q`` quantile ``[n_curves, m]``."""
        level = torch.tensor(1 - q if self.minimised else q)
        return to_metric(self.metric, self.scale, self.prior_values.icdf(level))

    def cdf(self, v) -> Tensor:
        """``P(value <= v)`` ``[n_curves, m]``."""
        u = self.prior_values.cdf(to_prior(self.metric, self.scale, self._values(v)))
        return 1 - u if self.minimised else u

    def log_prob(self, v) -> Tensor:
        """Log density ``[n_curves, m]`` of values ``v`` (broadcast), Jacobian included."""
        v = self._values(v)
        log_jacobian = -torch.log(self.scale) - (v / self.scale if self.metric == "loss" else 0)
        return self.prior_values.log_prob(to_prior(self.metric, self.scale, v)) + log_jacobian

    def sample(self, shape=()) -> Tensor:
        """Samples ``[*shape, n_curves, m]``."""
        return to_metric(self.metric, self.scale, self.prior_values.sample(torch.Size(shape)))


class CurveExtrapolator:
    """Predicts learning curves from their first epochs (see the module).

    Parameters:
        model: a zoo name (the shipped ``"curves"``), a path, or a loaded PFN trained on a
            :class:`~priorfit.priors.CurvePrior`.
        metric: a name in :data:`METRICS`.
        horizon: the epochs of a whole run (default: the prior's ``num_epochs``).
        device: where the PFN runs.
    """

    def __init__(self, model: str | PFN = "curves", *, metric: str = "accuracy",
                 horizon: int | None = None, device: str = "cpu") -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.model = model if isinstance(model, PFN) else load(model, device=device)
        prior = self.model.card.get("prior", {})
        if prior.get("class") != "CurvePrior" or self.model.config.head != "bounded":
            raise ValueError("CurveExtrapolator needs a PFN trained on a CurvePrior with the "
                             f"bounded head, got prior {prior.get('class')!r} and head "
                             f"{self.model.config.head!r}")
        self.num_epochs = int(prior.get("num_epochs", 100))
        horizon = self.num_epochs if horizon is None else horizon
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 2:
            raise ValueError(f"horizon must be an integer >= 2, got {horizon!r}")
        self.metric, self.horizon = metric, horizon

    def predict(self, curves, at) -> CurvePredictive:
        """The predictive at epochs ``at`` (1-based, up to ``horizon``) of each curve: ``curves``
        is a list of 1-D arrays (values at epochs 1..len; lengths may differ) or a 2-D array
        padded with trailing NaN. Batch shape ``[n_curves, len(at)]``."""
        values, mask = self._curves(curves)
        epochs = self._epochs(at)
        count, longest = values.shape
        scale = self._scale(values, mask)
        observed = to_prior(self.metric, scale, torch.where(mask, values, 1.0))
        u = torch.where(mask, observed, 0.0).clamp(0.0, 1.0)
        x_train = (torch.arange(1, longest + 1) / self.horizon).expand(count, longest)[..., None]
        x_test = (epochs / self.horizon).expand(count, len(epochs))[..., None]
        with torch.inference_mode():
            conditioned = Conditioned(self.model, x_train, u, train_mask=mask)
            distribution = conditioned.distribution(x_test)
        return CurvePredictive(distribution, self.metric, scale)

    def prob_above(self, curves, at: int, threshold: float) -> np.ndarray:
        """``P(value at epoch at > threshold)`` ``[n_curves]``."""
        return (1 - self.predict(curves, [at]).cdf(threshold)[:, 0]).numpy()

    def _curves(self, curves) -> tuple[Tensor, Tensor]:
        """Values ``[n_curves, longest]`` (float32) and the mask of observed epochs."""
        if isinstance(curves, np.ndarray | Tensor) and np.ndim(curves) == 2:
            rows = [np.asarray(row, dtype=np.float64) for row in np.asarray(curves)]
            rows = [row[: len(row) - _trailing_nan(row)] for row in rows]
        else:
            if isinstance(curves, np.ndarray | Tensor) and np.ndim(curves) == 1:
                raise ValueError("curves must be a list of 1-D arrays or a 2-D array; for one "
                                 "curve pass [curve]")
            rows = [np.asarray(row, dtype=np.float64) for row in curves]
        if not rows:
            raise ValueError("curves is empty: pass at least one curve")
        for i, row in enumerate(rows):
            if row.ndim != 1:
                raise ValueError(f"curve {i} must be 1-D (values at epochs 1..n), got shape "
                                 f"{row.shape}")
            if len(row) > self.horizon:
                raise ValueError(f"curve {i} has {len(row)} epochs, more than the horizon "
                                 f"({self.horizon}); set horizon")
            if not np.isfinite(row).all():
                raise ValueError(f"curve {i} has NaN or infinite values inside it (only trailing "
                                 "NaN pads a 2-D array)")
            _check_domain(self.metric, i, row)
        longest = max(len(row) for row in rows)
        values = np.zeros((len(rows), longest))
        mask = np.zeros((len(rows), longest), dtype=bool)
        for i, row in enumerate(rows):
            values[i, : len(row)], mask[i, : len(row)] = row, True
        return torch.tensor(values, dtype=torch.float32), torch.from_numpy(mask)

    def _epochs(self, at) -> Tensor:
        epochs = np.atleast_1d(np.asarray(at))
        if epochs.ndim != 1 or not len(epochs) or epochs.dtype.kind not in "iuf" or not (
                np.all(epochs == np.round(epochs)) and np.all((epochs >= 1)
                                                              & (epochs <= self.horizon))):
            raise ValueError(f"at must be epoch numbers in 1..horizon ({self.horizon}), got "
                             f"{at!r}")
        return torch.tensor(epochs, dtype=torch.float32)

    def _scale(self, values: Tensor, mask: Tensor) -> Tensor:
        if self.metric != "loss":
            return torch.full((values.shape[0], 1), _SCALE[self.metric])
        first = values[:, :1]
        if not (mask[:, :1] & (first > 0)).all():
            bad = int(torch.nonzero(~(mask[:, 0] & (first[:, 0] > 0)))[0])
            raise ValueError(f"curve {bad}: a loss curve needs a first value > 0 (its scale)")
        return first


@dataclass
class EarlyStopping:
    """What :func:`simulate_early_stopping` found.

    Attributes:
        epochs: ``[n_runs]`` epochs each run trained before it stopped (or the horizon).
        stopped: ``[n_runs]`` bool, runs stopped early.
        best_found: the best final value among the runs trained to the end.
        best_overall: the best final value of all runs (had none been stopped).
        regret: ``|best_overall - best_found|`` (0 when the best run was kept).
        saving: epochs of training all runs to the end divided by the epochs used.
    """

    epochs: np.ndarray
    stopped: np.ndarray
    best_found: float
    best_overall: float
    regret: float
    saving: float


def simulate_early_stopping(extrapolator: CurveExtrapolator, runs, delta: float = 0.05,
                            min_epochs: int = 1) -> EarlyStopping:
    """Trains ``runs`` (full curves, ``horizon`` epochs each) one after another and stops a run
    after epoch ``e >= min_epochs`` as soon as ``P(final value better than the best final so
    far) < delta`` (better: higher, or lower for metrics to be minimised). The first run always
    trains to the end. For each run, every prefix is predicted in one batch."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    horizon = extrapolator.horizon
    runs = [np.asarray(run, dtype=np.float64) for run in runs]
    if not runs or any(run.shape != (horizon,) for run in runs):
        raise ValueError(f"runs must be curves of horizon = {horizon} epochs each")
    if not 1 <= min_epochs < horizon:
        raise ValueError(f"min_epochs must be in 1..horizon - 1, got {min_epochs!r}")
    minimised = _minimised(extrapolator.metric)
    better = np.less if minimised else np.greater
    epochs = np.full(len(runs), horizon)
    best = None
    for i, run in enumerate(runs):
        if best is not None:
            prefixes = [run[:e] for e in range(min_epochs, horizon)]
            final = extrapolator.predict(prefixes, at=[horizon])
            cdf = final.cdf(best)[:, 0].numpy()
            hopeless = np.flatnonzero((cdf if minimised else 1 - cdf) < delta)
            if len(hopeless):
                epochs[i] = min_epochs + hopeless[0]
                continue
        best = run[-1] if best is None or better(run[-1], best) else best
    finals = np.array([run[-1] for run in runs])
    overall = finals.min() if minimised else finals.max()
    return EarlyStopping(epochs, epochs < horizon, float(best), float(overall),
                         float(abs(overall - best)), len(runs) * horizon / float(epochs.sum()))


def _minimised(metric: str) -> bool:
    return metric.startswith("error") or metric == "loss"


def to_prior(metric: str, scale: Tensor, v: Tensor) -> Tensor:
    """Metric values -> prior values ``u`` (the module's table); ``scale [n_curves, 1]``."""
    if metric == "loss":
        return torch.exp(-v / scale)
    return 1 - v / scale if _minimised(metric) else v / scale


def to_metric(metric: str, scale: Tensor, u: Tensor) -> Tensor:
    """Prior values ``u`` -> metric values, the inverse of :func:`to_prior`."""
    if metric == "loss":
        return -scale * torch.log(u.clamp(min=torch.finfo(u.dtype).tiny))
    return scale * (1 - u if _minimised(metric) else u)


def _trailing_nan(row: np.ndarray) -> int:
    finite = np.flatnonzero(~np.isnan(row))
    return len(row) - (finite[-1] + 1 if len(finite) else 0)


def _check_domain(metric: str, index: int, row: np.ndarray) -> None:
    high = {"accuracy": 1.0, "error": 1.0, "percent": 100.0, "error_percent": 100.0}.get(metric)
    if (row < 0).any() or (high is not None and (row > high).any()):
        domain = f"[0, {high:g}]" if high is not None else ">= 0"
        raise ValueError(f"curve {index} has values outside {domain}, the domain of metric "
                         f"{metric!r}")
