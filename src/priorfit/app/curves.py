"""The curves view of the web page: a learning curve extrapolated by
:class:`~priorfit.curves.CurveExtrapolator` (the shipped ``curves`` model) — bands at every
later epoch and the probability that the final value beats a threshold.
"""

from __future__ import annotations

import math
import re
from functools import cache

import numpy as np

from priorfit.app import RequestError
from priorfit.curves import METRICS, CurveExtrapolator

MAX_TEXT = 100_000  # characters of a pasted curve
QUANTILES = (0.05, 0.25, 0.75, 0.95)  # the 90% and 50% bands


@cache
def _extrapolator(metric: str, horizon: int | None) -> CurveExtrapolator:
    return CurveExtrapolator(metric=metric, horizon=horizon)


def parse_curve(text) -> np.ndarray:
    """Values of a curve from text: numbers separated by commas, semicolons, spaces or new
    lines (one value per epoch, from epoch 1). A :class:`RequestError` names a bad token."""
    if not isinstance(text, str):
        raise RequestError("curve must be text: the values of epochs 1, 2, ... ")
    if len(text) > MAX_TEXT:
        raise RequestError(f"curve text over {MAX_TEXT} characters")
    tokens = [t for t in re.split(r"[\s,;]+", text.strip()) if t]
    if not tokens:
        raise RequestError("curve is empty: give the values of its first epochs")
    values = []
    for i, token in enumerate(tokens):
        try:
            value = float(token)
        except ValueError:
            raise RequestError(f"curve value {i + 1} is not a number: {token[:40]!r}") from None
        if not math.isfinite(value):
            raise RequestError(f"curve value {i + 1} is not finite: {token[:40]!r}")
        values.append(value)
    return np.array(values)


def extrapolate(text, metric="accuracy", threshold=None, horizon=None) -> dict:
    """The curve's predictive at every epoch up to the horizon: ``epochs``, the ``observed``
    values, the ``mean`` and ``quantiles`` (one list per :data:`QUANTILES`), and with a
    ``threshold`` ``p_above``, the probability that the value at the last epoch exceeds it."""
    if metric not in METRICS:
        raise RequestError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, int)
                                or not 2 <= horizon <= 10_000):
        raise RequestError(f"horizon must be an integer in 2..10000 or null, got {horizon!r}")
    if threshold is not None and (isinstance(threshold, bool)
                                  or not isinstance(threshold, (int, float))
                                  or not math.isfinite(threshold)):
        raise RequestError(f"threshold must be a finite number or null, got {threshold!r}")
    values = parse_curve(text)
    extrapolator = _extrapolator(metric, horizon)
    epochs = np.arange(1, extrapolator.horizon + 1)
    try:
        predictive = extrapolator.predict([values], epochs)
    except ValueError as error:
        raise RequestError(str(error)) from None
    answer = {"epochs": epochs.tolist(), "observed": values.tolist(), "metric": metric,
              "horizon": extrapolator.horizon,
              "mean": predictive.mean[0].double().tolist(),
              "quantiles": [predictive.icdf(q)[0].double().tolist() for q in QUANTILES]}
    if threshold is not None:
        final = predictive.cdf(float(threshold))[0, -1]
        answer["threshold"] = float(threshold)
        answer["p_above"] = float(1 - final)
    return answer
