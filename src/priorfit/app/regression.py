"""The regression view of the web page: a shipped regression PFN's posterior along one input,
beside the exact GP posterior where the model's prior is a GP with fixed hyperparameters.

A model with more inputs than one is shown along its first input, the others held at the
centre of its prior's input distribution (a slice through the function: points on a line are
data like any other). Every answer is JSON-ready (lists of floats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from priorfit import zoo
from priorfit.app import RequestError
from priorfit.model import PFN, load
from priorfit.model.riemann import RiemannDistribution
from priorfit.priors import GP, prior_from_config

MAX_POINTS = 500  # observations per request
GRID = 200  # x positions drawn
QUANTILES = (0.025, 0.25, 0.75, 0.975)  # the 95% and 50% bands
DENSITY_POINTS = 120  # y positions of the density strip
Y_RANGE = (-3.0, 3.0)  # the canvas's y axis: every regression prior here has targets of scale 1
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(20)  # E over N(0, 1) of a function


@dataclass(frozen=True)
class RegressionView:
    """How one shipped model is drawn.

    Attributes:
        name: the zoo name.
        description: one line for the model menu.
        x_range, y_range: the canvas's axes (the prior's inputs; :data:`Y_RANGE`).
        columns: the inputs fed to the model (the first varies, the rest are ``centre``).
        centre: the value of the inputs not drawn.
        exact: the GP whose exact posterior is overlaid, or None (no closed form).
        max_train: the most observations the model was trained with (beyond, it extrapolates).
    """

    name: str
    description: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    columns: int
    centre: float
    exact: GP | None
    max_train: int

    @property
    def model(self) -> PFN:
        return _model(self.name)

    def summary(self) -> dict:
        return {"name": self.name, "description": self.description,
                "x_range": list(self.x_range), "y_range": list(self.y_range),
                "exact": self.exact is not None, "max_train": self.max_train}


@cache
def _model(name: str) -> PFN:
    return load(name).eval()


@cache
def views() -> dict[str, RegressionView]:
    """The shipped models with a Riemann head, by name."""
    found = {}
    for name in zoo.names():
        model = _model(name)
        if model.config.head != "riemann":
            continue
        prior = model.card.get("prior", {})
        inputs = prior.get("inputs") or {}
        if inputs.get("class") == "Uniform":
            x_range = (float(inputs["low"]), float(inputs["high"]))
        elif inputs.get("class") == "Normal":
            x_range = (inputs["mean"] - 3 * inputs["std"], inputs["mean"] + 3 * inputs["std"])
        else:  # inputs scaled to the unit cube, or the unit cube itself
            x_range = (0.0, 1.0)
        one_input = prior.get("min_features", model.config.num_features) <= 1
        columns = 1 if one_input else model.config.num_features
        exact = prior_from_config(prior) if prior.get("class") == "GP" else None
        found[name] = RegressionView(name, _describe(name, prior, model.config.num_features),
                                     x_range, Y_RANGE, columns, sum(x_range) / 2, exact,
                                     int(model.card["train"]["max_train"]))
    return found


def _describe(name: str, prior: dict, features: int) -> str:
    kind = prior.get("class", "a prior")
    return f"{name}: {kind}, {features} input{'s' if features > 1 else ''}"


def _inputs(view: RegressionView, x: torch.Tensor) -> torch.Tensor:
    """``x [n]`` as model inputs ``[n, columns]`` (the other inputs at the centre)."""
    inputs = torch.full((len(x), view.columns), view.centre, dtype=x.dtype)
    inputs[:, 0] = x
    return inputs


def parse_points(points) -> torch.Tensor:
    """``[[x, y], ...]`` from a request -> ``[n, 2]`` float64; a :class:`RequestError` naming
    the problem otherwise."""
    if not isinstance(points, list):
        raise RequestError("points must be a list of [x, y] pairs")
    if len(points) > MAX_POINTS:
        raise RequestError(f"too many points: {len(points)} (at most {MAX_POINTS})")
    for i, point in enumerate(points):
        if (not isinstance(point, list) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in point)):
            raise RequestError(f"points[{i}] must be a pair of numbers [x, y], got {point!r}")
        if not all(math.isfinite(v) for v in point):
            raise RequestError(f"points[{i}] is not finite: {point!r}")
    return torch.tensor(points, dtype=torch.float64).reshape(-1, 2)


@torch.inference_mode()
def posterior(view: RegressionView, points: torch.Tensor, density_x: float | None) -> dict:
    """The PFN's posterior given ``points [n, 2]`` on :data:`GRID` positions: ``x``,
    ``mean`` and ``quantiles`` (one list per :data:`QUANTILES`); with an exact GP also its
    ``exact`` mean and 95% band and ``nll_gap``, the PFN's mean extra negative log-likelihood
    (nats) of values drawn from the exact posterior, i.e. the mean KL divergence from it over
    the grid; with ``density_x``, both densities there on :data:`DENSITY_POINTS` values."""
    x = torch.linspace(*view.x_range, GRID, dtype=torch.float64)
    test = x if density_x is None else torch.cat([x, torch.tensor([float(density_x)])])
    x_train, y_train = _inputs(view, points[:, 0].float()), points[:, 1].float()
    predictive = view.model.predict(x_train, y_train, _inputs(view, test.float()))
    quantiles = predictive.icdf(torch.tensor(QUANTILES)[:, None]).double()  # [4, m]
    answer = {"x": x.tolist(), "mean": predictive.mean.double()[:GRID].tolist(),
              "quantiles": quantiles[:, :GRID].tolist(), "points": len(points)}
    if view.exact is not None:
        mean, variance = view.exact.posterior(_inputs(view, points[:, 0]), points[:, 1],
                                              _inputs(view, test))
        sd = variance.sqrt()
        answer["exact"] = {"mean": mean[:GRID].tolist(),
                           "lower": (mean - 1.96 * sd)[:GRID].tolist(),
                           "upper": (mean + 1.96 * sd)[:GRID].tolist()}
        y = mean + sd * torch.from_numpy(_NODES)[:, None]  # [nodes, m]
        exact_log = -0.5 * (np.log(2 * np.pi) + torch.log(variance) + (y - mean) ** 2 / variance)
        gap = (exact_log - predictive.log_prob(y.float()).double())[:, :GRID]
        answer["nll_gap"] = float((torch.from_numpy(_WEIGHTS)[:, None] * gap).sum(0).mean()
                                  / math.sqrt(2 * math.pi))
    if density_x is not None:
        answer["density"] = _density(view, predictive, points, float(density_x))
    return answer


def _density(view: RegressionView, predictive, points: torch.Tensor, at: float) -> dict:
    """Both densities at ``at`` (the last test position) on a y grid spanning the view."""
    low, high = view.y_range
    y = torch.linspace(low, high, DENSITY_POINTS, dtype=torch.float64)
    borders = predictive.borders if predictive.borders.dim() == 1 else predictive.borders[-1:]
    there = RiemannDistribution(borders, predictive.logits[-1:], validate_args=False,
                                tails=predictive.tails)
    pfn = there.log_prob(y[:, None].float()).double()[:, 0].exp()
    density = {"x": at, "y": y.tolist(), "pfn": pfn.tolist()}
    if view.exact is not None:
        mean, variance = view.exact.posterior(_inputs(view, points[:, 0]), points[:, 1],
                                              _inputs(view, torch.tensor([at],
                                                                         dtype=torch.float64)))
        exact = torch.exp(-0.5 * (y - mean) ** 2 / variance) / torch.sqrt(2 * math.pi * variance)
        density["exact"] = exact.tolist()
    return density
