"""PFNRegressor: a scikit-learn regressor on a shipped PFN.

:class:`PFNRegressor` turns a regression PFN (by default ``gp-hyper``, a GP with hyperpriors
built for real data) into an estimator with calibrated uncertainty: ``fit`` only stores the
data, ``predict`` runs forward passes that condition on it (one per ensemble member).
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from priorfit.model import PFN, RiemannDistribution, RiemannHead, load
from priorfit.predict import chunks
from priorfit.transforms import fit_transform


class PFNRegressor(RegressorMixin, BaseEstimator):
    """Bayesian regression in forward passes of a PFN (no fitting of hyperparameters).

    The posterior predictive is the PFN's Riemann distribution, in the units of ``y``: the model's
    input and target transforms (``unit_cube`` and ``standardize`` for ``gp-hyper``) are fitted
    on the training data exactly as in training, and undone on the way out. Everything runs in
    float64 (a copy of the PFN), so huge or tiny scales lose nothing and a test point's
    prediction does not depend on the other test points, not even in rounding.

    Ensemble over feature orders: the priors are symmetric in the features but the PFN's input
    encoder is not, so the predictive is an equal mixture (averaged bucket probabilities) over
    ``ensemble_size`` orders of the columns: the given order and random others, or every order
    when there are at most ``ensemble_size`` of them (then predictions do not depend on the
    column order). On held-out ``gp-hyper`` prior data, 8 orders lower the test NLL by 0.02 to
    0.08 nats against one; ``ensemble_size=1`` is a single forward pass.

    Data larger than the model: a PFN is trained on at most ``max_train`` training points (its
    card) and ``num_features`` features. Beyond either, the regressor warns, and each of the
    ``ensemble_size`` members conditions on a random subset of ``max_train`` points and of
    ``num_features`` features. All members share the transforms fitted on the whole training
    set, so with subsampled points a member's statistics differ slightly from those it was
    trained with.

    Parameters:
        model: a zoo name, a path to a ``.safetensors`` file, or a loaded regression :class:`PFN`.
        ensemble_size: ensemble members (feature orders, and subsets of data larger than the
            model).
        random_state: seeds the ensemble's orders and subsets.
        device: where the PFN runs.
        chunk_size: test points per forward pass (memory grows with it, not with the test set).

    Attributes (after ``fit``):
        model_: the PFN. n_features_in_: features seen in ``fit``.
        members_: ``(rows, features)`` index arrays of each ensemble member.
    """

    def __init__(
        self,
        model: str | PFN = "gp-hyper",
        *,
        ensemble_size: int = 8,
        random_state: int | None = 0,
        device: str = "cpu",
        chunk_size: int = 512,
    ) -> None:
        self.model = model
        self.ensemble_size = ensemble_size
        self.random_state = random_state
        self.device = device
        self.chunk_size = chunk_size

    def fit(self, X: Any, y: Any) -> PFNRegressor:
        """Store the training data ``X [n, F]``, ``y [n]`` (arrays or DataFrames); returns self."""
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        if isinstance(self.ensemble_size, bool) or not isinstance(self.ensemble_size, int):
            raise ValueError(f"ensemble_size must be an int >= 1, got {self.ensemble_size!r}")
        if self.ensemble_size < 1:
            raise ValueError(f"ensemble_size must be an int >= 1, got {self.ensemble_size}")
        model = self.model if isinstance(self.model, PFN) else load(self.model, device=self.device)
        if not isinstance(model.head, RiemannHead):
            raise ValueError(
                f"PFNRegressor needs a PFN with a Riemann head, got head {model.config.head!r}"
            )
        # float64: a test point's prediction must not depend, even in rounding, on how many
        # other test points share its matrix products (check_methods_subset_invariance)
        self.model_ = copy.deepcopy(model).double().eval()
        self.X_, self.y_ = X, y.astype(np.float64)
        self.members_ = self._members(*X.shape)
        return self

    def _members(self, n: int, num_features: int) -> list[tuple[np.ndarray, np.ndarray]]:
        config = self.model_.config
        max_train = self.model_.card.get("train", {}).get("max_train", n)
        too_many_points, too_many_features = n > max_train, num_features > config.num_features
        if too_many_points or too_many_features:
            excess = [
                f"{have} {what} (this PFN takes at most {most})"
                for have, most, what, too_many in (
                    (n, max_train, "training points", too_many_points),
                    (num_features, config.num_features, "features", too_many_features),
                )
                if too_many
            ]
            warnings.warn(
                f"{' and '.join(excess)}: predicting with an ensemble of {self.ensemble_size} "
                "members, each on a random subset",
                stacklevel=3,
            )
        rng = np.random.default_rng(self.random_state)
        orders = _feature_orders(num_features, self.ensemble_size, rng)
        size = self.ensemble_size if too_many_points or too_many_features else len(orders)
        return [
            (
                np.sort(rng.choice(n, max_train, replace=False)) if too_many_points
                else np.arange(n),
                orders[member % len(orders)][: config.num_features],
            )
            for member in range(size)
        ]

    @torch.inference_mode()
    def _mixtures(self, X: Any):
        """The posterior predictive at ``X [m, F]``, one chunk of test points at a time: yields
        float64 :class:`RiemannDistribution` s with batch shape ``[chunk]``, in the units of y.

        Each member conditions once; per chunk, its bucket probabilities are averaged in."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        model, device = self.model_, next(self.model_.parameters()).device
        x_train, y_train, x_test = (
            torch.tensor(a, device=device)[None] for a in (self.X_, self.y_, X)
        )
        transform = fit_transform(
            model.config.x_transform, model.config.y_transform, x_train, y_train
        )
        x_train, y_train, x_test = transform.x(x_train), transform.y(y_train), transform.x(x_test)
        caches = [
            (model.condition(x_train[:, rows][..., features], y_train[:, rows]), features)
            for rows, features in self.members_
        ]
        for part in chunks(X.shape[0], self.chunk_size):
            probs = sum(
                model.predict_logits(cache, x_test[:, part][..., features])[0].softmax(-1)
                for cache, features in caches
            )
            log_probs = (probs / len(caches)).log().cpu()
            yield model.head.distribution(log_probs, transform.unbatched(), y_train[0])

    def predict_dist(self, X: Any) -> RiemannDistribution:
        """The posterior predictive at ``X [m, F]``: a float64 :class:`RiemannDistribution` with
        batch shape ``[m]``, in the units of ``y``. It holds the bucket probabilities of every
        test point; :meth:`predict`, :meth:`predict_quantiles` and :meth:`log_likelihood` need
        memory independent of ``m``."""
        parts = list(self._mixtures(X))
        logits = torch.cat([part.logits for part in parts])
        return RiemannDistribution(parts[0].borders, logits)

    def predict(self, X: Any, return_std: bool = False) -> np.ndarray | tuple:
        """Posterior predictive mean ``[m]`` (and standard deviation ``[m]`` with
        ``return_std``), like ``GaussianProcessRegressor.predict``."""
        parts = [(d.mean, d.stddev) for d in self._mixtures(X)]
        mean = torch.cat([m for m, _ in parts]).numpy()
        return (mean, torch.cat([s for _, s in parts]).numpy()) if return_std else mean

    def predict_quantiles(self, X: Any, q: Any = (0.025, 0.5, 0.975)) -> np.ndarray:
        """Quantiles ``[m, len(q)]`` of the posterior predictive (``[m]`` for a scalar ``q``)."""
        quantiles = np.asarray(q, dtype=np.float64)
        if quantiles.ndim > 1 or not np.all((quantiles > 0) & (quantiles < 1)):
            raise ValueError(f"q must be a probability or a 1-D list of them in (0, 1), got {q!r}")
        levels = torch.from_numpy(np.atleast_1d(quantiles))[:, None]
        values = torch.cat(
            [d.icdf(levels.expand(-1, d.batch_shape[0])).T for d in self._mixtures(X)]
        ).numpy()
        return values[:, 0] if quantiles.ndim == 0 else values

    def log_likelihood(self, X: Any, y: Any) -> float:
        """Mean log predictive density of ``y [m]`` at ``X [m, F]`` (per point, in the units of
        ``y``; higher is better; minus the test NLL)."""
        X, y = validate_data(self, X, y, reset=False, y_numeric=True, dtype=np.float64)
        y = torch.from_numpy(y.astype(np.float64))
        sizes = [len(range(X.shape[0])[part]) for part in chunks(X.shape[0], self.chunk_size)]
        log_densities = [
            d.log_prob(y_part) for d, y_part in zip(self._mixtures(X), y.split(sizes), strict=True)
        ]
        return float(torch.cat(log_densities).mean())


def _feature_orders(num_features: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Every order of ``num_features`` columns if there are at most ``count`` of them (the
    identity first), else the identity and ``count - 1`` random permutations."""
    if math.factorial(num_features) <= count:
        return [np.array(order) for order in itertools.permutations(range(num_features))]
    return [np.arange(num_features)] + [rng.permutation(num_features) for _ in range(count - 1)]
