"""Classical baselines of the small-table classification benchmark (OpenML-CC18 tables with up
to 1000 training rows, 100 features and 10 classes).

Convention: ``X [n, F]`` is float64 with NaN for missing values; ``categorical [F]`` is a bool
mask of the columns that hold integer category codes ``0..k-1`` (stored as float); ``y [n]`` is
int64 labels ``0..K-1``. Every baseline's ``predict_proba(X [m, F])`` returns ``[m, K]``, the
columns being the classes ``0..K-1`` in order, classes absent from the training rows padded
with zero columns.

Preprocessing, per method (:data:`DEFAULT_BASELINES`, in this order):

- ``"logistic"``: ``LogisticRegression``; numeric columns median-imputed and standardised,
  categorical columns most-frequent-imputed and one-hot encoded (unseen categories ignored);
- ``"knn"``: ``KNeighborsClassifier`` (defaults) on the same preprocessing;
- ``"random_forest"``: ``RandomForestClassifier`` (defaults) after median imputation, category
  codes used as ordinal numbers;
- ``"hist_gradient_boosting"``: ``HistGradientBoostingClassifier``, NaN native, categorical
  columns native (a column with more distinct codes than the 255 bins is used as numeric);
- ``"xgboost"``: ``XGBClassifier`` (defaults), NaN native, category codes as numbers;
- ``"lightgbm"``: ``LGBMClassifier`` (defaults), NaN native, categorical columns native;
- ``"catboost"``: ``CatBoostClassifier`` (defaults), NaN native in numeric columns, categorical
  columns as integer ``cat_features`` with NaN mapped to its own category ``-1``.

All run on one thread. :func:`fit_tuned` tunes the three boosting libraries with Optuna
(search spaces in :data:`SEARCH_SPACES`). xgboost, lightgbm, catboost, optuna and pandas are
imported only when used: ``pip install 'priorfit[tables]'``.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import numpy as np

DEFAULT_BASELINES: tuple[str, ...] = (
    "logistic",
    "knn",
    "random_forest",
    "hist_gradient_boosting",
    "xgboost",
    "lightgbm",
    "catboost",
)
TUNABLE: tuple[str, ...] = ("xgboost", "lightgbm", "catboost")

# Search spaces of fit_tuned, close to those of Gorishniy et al. (2021, "Revisiting deep
# learning models for tabular data") and Grinsztajn et al. (2022): name -> (kind, low, high),
# kind "log" (log-uniform float), "float" (uniform), "int" or "logint" (log-uniform integer).
SEARCH_SPACES: dict[str, dict[str, tuple[str, float, float]]] = {
    "xgboost": {
        "n_estimators": ("logint", 50, 1000),
        "learning_rate": ("log", 1e-3, 0.3),
        "max_depth": ("int", 2, 10),
        "min_child_weight": ("log", 1e-2, 20.0),
        "subsample": ("float", 0.5, 1.0),
        "colsample_bytree": ("float", 0.5, 1.0),
        "reg_alpha": ("log", 1e-8, 10.0),
        "reg_lambda": ("log", 1e-8, 10.0),
    },
    "lightgbm": {
        "n_estimators": ("logint", 50, 1000),
        "learning_rate": ("log", 1e-3, 0.3),
        "num_leaves": ("logint", 2, 128),
        "min_child_samples": ("logint", 2, 100),
        "subsample": ("float", 0.5, 1.0),  # with subsample_freq=1, else LightGBM ignores it
        "colsample_bytree": ("float", 0.5, 1.0),
        "reg_alpha": ("log", 1e-8, 10.0),
        "reg_lambda": ("log", 1e-8, 10.0),
    },
    "catboost": {
        "iterations": ("logint", 50, 1000),
        "learning_rate": ("log", 1e-3, 0.3),
        "depth": ("int", 2, 8),
        "l2_leaf_reg": ("log", 1.0, 10.0),
        "bagging_temperature": ("float", 0.0, 1.0),
        "random_strength": ("log", 1e-2, 10.0),
    },
}
# Fixed alongside the searched parameters.
_TUNED_FIXED: dict[str, dict[str, Any]] = {"lightgbm": {"subsample_freq": 1}}


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module} is needed for this baseline: pip install 'priorfit[tables]'"
        ) from err


def _check_name(name: str, valid: tuple[str, ...]) -> None:
    if name not in valid:
        raise ValueError(f"unknown baseline {name!r}; valid: {', '.join(valid)}")


def _onehot_pipeline(categorical: np.ndarray, estimator: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    onehot = make_pipeline(
        SimpleImputer(strategy="most_frequent"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    columns = ColumnTransformer([("num", numeric, ~categorical), ("cat", onehot, categorical)])
    return make_pipeline(columns, estimator)


def _estimator(name: str, categorical: np.ndarray, seed: int, params: dict[str, Any]) -> Any:
    """The unfitted estimator of ``name`` (``params`` override its keyword arguments)."""
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        return _onehot_pipeline(categorical, LogisticRegression(max_iter=10_000, **params))
    if name == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return _onehot_pipeline(categorical, KNeighborsClassifier(**params))
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline

        forest = RandomForestClassifier(random_state=seed, n_jobs=1, **params)
        return make_pipeline(SimpleImputer(strategy="median"), forest)
    if name == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            categorical_features=categorical, random_state=seed, **params
        )
    if name == "xgboost":
        return _require("xgboost").XGBClassifier(n_jobs=1, random_state=seed, **params)
    if name == "lightgbm":
        return _require("lightgbm").LGBMClassifier(
            n_jobs=1, verbose=-1, random_state=seed, **params
        )
    return _require("catboost").CatBoostClassifier(
        thread_count=1, verbose=0, random_seed=seed, allow_writing_files=False, **params
    )


class TableBaseline:
    """One baseline of :data:`DEFAULT_BASELINES` under the module's convention.

    ``fit(X [n, F], y [n]) -> self``; ``predict_proba(X [m, F]) -> [m, K]``, columns the
    classes ``0..K-1`` with ``K = n_classes`` (default ``max(y) + 1`` of the training labels):
    classes absent from the training rows get zero columns, one training class gets
    probability 1. ``params`` override the estimator's keyword arguments.
    """

    def __init__(
        self,
        name: str,
        categorical: np.ndarray,
        seed: int = 0,
        *,
        n_classes: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        _check_name(name, DEFAULT_BASELINES)
        self.name, self.seed, self.n_classes = name, seed, n_classes
        self.categorical = np.asarray(categorical, dtype=bool)
        self.params = dict(params or {})

    def _inputs(self, X: Any) -> Any:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.categorical.size:
            raise ValueError(f"X must be [n, {self.categorical.size}], got {list(X.shape)}")
        if self.name != "catboost":
            return X
        frame = _require("pandas").DataFrame(X)
        for j in np.flatnonzero(self.categorical):
            frame[j] = np.where(np.isnan(X[:, j]), -1, X[:, j]).astype(np.int64)
        return frame

    def fit(self, X: Any, y: Any) -> TableBaseline:
        """``X [n, F]`` float64 with NaN, ``y [n]`` int labels in ``0..K-1``."""
        inputs, y = self._inputs(X), np.asarray(y, dtype=np.int64)
        if y.shape != (len(inputs),) or y.min() < 0:
            raise ValueError(f"y must be [{len(inputs)}] labels >= 0, got shape {list(y.shape)}")
        # Estimators see the labels 0..K'-1 of the K' classes present.
        self.classes_, codes = np.unique(y, return_inverse=True)
        self.n_classes_ = self.n_classes or int(y.max()) + 1
        if self.classes_[-1] >= self.n_classes_:
            raise ValueError(f"labels must be < n_classes = {self.n_classes_}")
        self.estimator_ = None
        if self.classes_.size > 1:
            categorical = self.categorical
            if self.name == "hist_gradient_boosting":  # at most max_bins = 255 categories
                distinct = [np.unique(c[~np.isnan(c)]).size for c in inputs.T]
                categorical = categorical & (np.array(distinct) <= 255)
            fit_kwargs: dict[str, Any] = {}
            if self.name == "lightgbm" and categorical.any():
                fit_kwargs["categorical_feature"] = np.flatnonzero(categorical).tolist()
            if self.name == "catboost":
                fit_kwargs["cat_features"] = np.flatnonzero(categorical).tolist()
            self.estimator_ = _estimator(self.name, categorical, self.seed, self.params)
            self.estimator_.fit(inputs, codes, **fit_kwargs)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """``X [m, F]`` -> float64 ``[m, K]`` class probabilities, rows summing to 1."""
        inputs = self._inputs(X)
        p = np.zeros((len(inputs), self.n_classes_))
        if self.estimator_ is None:
            p[:, self.classes_[0]] = 1.0
        else:
            p[:, self.classes_] = self.estimator_.predict_proba(inputs)
        return p


def make_baseline(
    name: str, categorical: np.ndarray, seed: int, *, n_classes: int | None = None
) -> TableBaseline:
    """The unfitted baseline ``name`` (one of :data:`DEFAULT_BASELINES`) for tables whose
    columns are marked by ``categorical [F]``; see :class:`TableBaseline`. Pass ``n_classes``
    when the training rows may lack the highest class."""
    return TableBaseline(name, categorical, seed, n_classes=n_classes)


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log probability of the labels ``y [m]`` under ``p [m, K]``."""
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-15, None))))


def fit_tuned(
    name: str, X: Any, y: Any, categorical: np.ndarray, seed: int, seconds: float = 60.0
) -> tuple[TableBaseline, dict[str, Any]]:
    """Tune ``name`` (one of :data:`TUNABLE`) on ``X [n, F]``, ``y [n]`` and refit it on them.

    Optuna's TPE sampler (seeded) searches :data:`SEARCH_SPACES` ``[name]``, each trial scored by
    the mean log loss of a 3-fold stratified cross-validation (shuffled, seeded, the same folds
    for every trial). The search stops at the first trial ending after ``seconds`` of wall time
    (so at least one trial runs); the best parameters are then refit on all of ``X``, ``y``.
    Returns the fitted :class:`TableBaseline` and ``info``: ``n_trials``, ``best_params``,
    ``best_cv_log_loss``, ``search_seconds``.
    """
    _check_name(name, TUNABLE)
    optuna = _require("optuna")
    from sklearn.model_selection import StratifiedKFold

    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)
    n_classes = int(y.max()) + 1
    folds = list(StratifiedKFold(3, shuffle=True, random_state=seed).split(X, y))
    suggest = {
        "log": lambda t, k, lo, hi: t.suggest_float(k, lo, hi, log=True),
        "float": lambda t, k, lo, hi: t.suggest_float(k, lo, hi),
        "int": lambda t, k, lo, hi: t.suggest_int(k, lo, hi),
        "logint": lambda t, k, lo, hi: t.suggest_int(k, lo, hi, log=True),
    }

    def params_of(trial: Any) -> dict[str, Any]:
        space = SEARCH_SPACES[name].items()
        return {k: suggest[kind](trial, k, lo, hi) for k, (kind, lo, hi) in space}

    def objective(trial: Any) -> float:
        params = {**_TUNED_FIXED.get(name, {}), **params_of(trial)}
        losses = []
        for train, val in folds:
            model = TableBaseline(name, categorical, seed, n_classes=n_classes, params=params)
            model.fit(X[train], y[train])
            losses.append(_log_loss(model.predict_proba(X[val]), y[val]))
        return float(np.mean(losses))

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        start = time.perf_counter()
        study.optimize(objective, timeout=seconds)
        search_seconds = time.perf_counter() - start
    finally:
        optuna.logging.set_verbosity(verbosity)
    best = {**_TUNED_FIXED.get(name, {}), **study.best_params}
    model = TableBaseline(name, categorical, seed, n_classes=n_classes, params=best)
    info = {
        "n_trials": len(study.trials),
        "best_params": study.best_params,
        "best_cv_log_loss": study.best_value,
        "search_seconds": search_seconds,
    }
    return model.fit(X, y), info
