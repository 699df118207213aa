"""What every baseline shares: checking one dataset's arrays, and the Gaussian-mixture
predictive that point estimates (S = 1) and posterior samples (S > 1) both return."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp


@dataclass
class GaussianMixturePredictive:
    """Equally weighted mixture of S Gaussians at each of m test points.

    Attributes:
        mean: ``[S, m]`` component means (float64).
        var: ``[S, m]`` component variances (float64, positive); S = 1 for point estimates.
        hyperparameters: the parameters behind the components, ``[S, ...]`` each (for GPs
            ``lengthscale [S, d]``, ``outputscale [S]``, ``noise [S]``).
        info: method details (optimum, timings, chain diagnostics).
    """

    mean: np.ndarray
    var: np.ndarray
    hyperparameters: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.var = np.asarray(self.var, dtype=np.float64)
        if self.mean.ndim != 2 or self.mean.shape != self.var.shape or self.mean.shape[0] < 1:
            raise ValueError(
                f"mean and var must both be [S, m] with S >= 1, got {self.mean.shape} and "
                f"{self.var.shape}"
            )
        if not (np.isfinite(self.mean).all() and np.isfinite(self.var).all()):
            raise ValueError("mean and var must be finite")
        if not (self.var > 0).all():
            raise ValueError("var must be positive")

    @property
    def num_components(self) -> int:
        return self.mean.shape[0]

    def mean_prediction(self) -> np.ndarray:
        """Mean of the mixture ``[m]``."""
        return self.mean.mean(0)

    def total_variance(self) -> np.ndarray:
        """Variance of the mixture ``[m]``: mean of the variances plus variance of the means."""
        return self.var.mean(0) + self.mean.var(0)

    def log_prob(self, y_test: Any) -> np.ndarray:
        """Log density ``[m]`` of ``y_test [m]`` (one value per test point), via logsumexp."""
        y = as_numpy(y_test, "y_test")
        if y.shape != self.mean.shape[1:]:
            raise ValueError(f"y_test must be [m] = [{self.mean.shape[1]}], got {y.shape}")
        log_comp = -0.5 * (np.log(2 * math.pi * self.var) + (y - self.mean) ** 2 / self.var)
        return logsumexp(log_comp, axis=0) - math.log(self.num_components)


def as_numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        message = f"{name} must be an array of numbers, got {type(value).__name__}"
        raise ValueError(message) from error


def check_data(x_train: Any, y_train: Any, x_test: Any) -> tuple[np.ndarray, ...]:
    """float64 copies of ``x_train [n, d]``, ``y_train [n]``, ``x_test [m, d]`` (n, m, d >= 1)."""
    x, y, xs = (
        as_numpy(x_train, "x_train"),
        as_numpy(y_train, "y_train"),
        as_numpy(x_test, "x_test"),
    )
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x_train must be [n, d] with n, d >= 1, got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y_train must be [n] = [{x.shape[0]}] like x_train, got {y.shape}")
    if xs.ndim != 2 or xs.shape[0] < 1 or xs.shape[1] != x.shape[1]:
        raise ValueError(f"x_test must be [m, d] = [m, {x.shape[1]}], m >= 1, got {xs.shape}")
    for name, v in (("x_train", x), ("y_train", y), ("x_test", xs)):
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(x), np.ascontiguousarray(y), np.ascontiguousarray(xs)
