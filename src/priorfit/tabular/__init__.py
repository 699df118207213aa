"""scikit-learn estimators on shipped PFNs: :class:`PFNRegressor` (regression with calibrated
uncertainty) and :class:`PFNClassifier` (small-table classification)."""

from priorfit.tabular.classifier import PFNClassifier
from priorfit.tabular.regressor import PFNRegressor

__all__ = ["PFNClassifier", "PFNRegressor"]
