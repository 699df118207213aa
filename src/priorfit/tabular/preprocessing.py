"""Preprocessing variants of :class:`~priorfit.PFNClassifier`'s ensemble members, fitted on
the training rows only."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.preprocessing import PowerTransformer, QuantileTransformer, RobustScaler

PREPROCESSING = ("quantile", "none", "power", "robust")
ROBUST_CLIP = 4.0  # "robust": values beyond this many interquartile ranges are clipped


class Preprocessor:
    """One preprocessing variant of :data:`PREPROCESSING`, fitted on the training table
    ``X [n, F]``; ``transform([m, F]) -> [m, F]``. Categorical columns and missing values pass
    unchanged; transformed test values are clipped to the training rows' transformed range
    (``"robust"``: to ±:data:`ROBUST_CLIP`)."""

    def __init__(self, name: str, X: np.ndarray, categorical: np.ndarray, seed: int) -> None:
        self.numeric = ~categorical
        self.transformer = None
        if name == "none" or not self.numeric.any():
            return
        if name == "quantile":
            self.transformer = QuantileTransformer(
                n_quantiles=min(1000, len(X)), output_distribution="normal", random_state=seed
            )
        elif name == "power":
            self.transformer = PowerTransformer(method="yeo-johnson", standardize=True)
        else:
            self.transformer = RobustScaler()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # e.g. Yeo-Johnson's overflow on huge values
            train = self.transformer.fit(X[:, self.numeric]).transform(X[:, self.numeric])
        if name == "robust":
            self.low = np.full(train.shape[1], -ROBUST_CLIP)
            self.high = np.full(train.shape[1], ROBUST_CLIP)
            return
        finite = np.where(np.isfinite(train), train, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-NaN columns
            self.low = np.nan_to_num(np.nanmin(finite, 0), nan=0.0)
            self.high = np.nan_to_num(np.nanmax(finite, 0), nan=0.0)

    def transform(self, A: np.ndarray) -> np.ndarray:
        if self.transformer is None:
            return A
        out = A.copy()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            values = self.transformer.transform(A[:, self.numeric])
        out[:, self.numeric] = np.clip(values, self.low, self.high)
        return out
