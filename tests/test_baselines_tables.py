"""Tests of the classical baselines of the small-table classification benchmark."""

import importlib.util

import numpy as np
import pytest

from priorfit.baselines.tables import DEFAULT_BASELINES, fit_tuned, make_baseline

NEEDS = {"xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost"}


def easy_table(n: int, n_classes: int = 3, seed: int = 0):
    """``X [n, 4]`` with NaN (one categorical column, the label's code 80% of the time),
    ``categorical [4]``, ``y [n]`` in ``0..n_classes-1``: an easy problem."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    X = np.column_stack(
        [
            y + 0.3 * rng.standard_normal(n),
            rng.standard_normal(n),
            np.where(rng.random(n) < 0.8, y, rng.integers(0, n_classes, n)).astype(float),
            -y + 0.5 * rng.standard_normal(n),
        ]
    )
    X[rng.random(X.shape) < 0.1] = np.nan
    return X, np.array([False, False, True, False]), y.astype(np.int64)


def skip_if_missing(name: str) -> None:
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"{NEEDS[name]} is not installed")


@pytest.mark.parametrize("name", DEFAULT_BASELINES)
def test_baseline_fits_table_with_nan_and_categories(name):
    skip_if_missing(name)
    X, categorical, y = easy_table(180)
    model = make_baseline(name, categorical, seed=0).fit(X[:120], y[:120])
    p = model.predict_proba(X[120:])
    assert p.shape == (60, 3)
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    assert np.mean(p.argmax(1) == y[120:]) > 0.7  # chance is 1/3


@pytest.mark.parametrize("name", DEFAULT_BASELINES)
def test_missing_class_gets_a_zero_column(name):
    skip_if_missing(name)
    X, categorical, y = easy_table(150, n_classes=4, seed=1)
    keep = (y != 1) & (y != 3)  # class 1 in the middle, class 3 at the top
    model = make_baseline(name, categorical, seed=0, n_classes=4).fit(X[keep], y[keep])
    p = model.predict_proba(X[:10])
    assert p.shape == (10, 4)
    np.testing.assert_array_equal(p[:, [1, 3]], 0.0)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    # Without n_classes, K = max(y) + 1 of the training rows.
    assert make_baseline(name, categorical, 0).fit(X[keep], y[keep]).predict_proba(X).shape[1] == 3


def test_single_training_class_is_certain():
    X, categorical, _ = easy_table(20)
    model = make_baseline("logistic", categorical, 0, n_classes=3).fit(X, np.full(20, 2))
    p = model.predict_proba(X)
    np.testing.assert_array_equal(p, np.tile([0.0, 0.0, 1.0], (20, 1)))


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: logistic, knn"):
        make_baseline("svm", np.zeros(3, bool), 0)
    with pytest.raises(ValueError, match="valid: xgboost, lightgbm, catboost"):
        fit_tuned("logistic", np.zeros((9, 3)), np.zeros(9, int), np.zeros(3, bool), 0)


@pytest.mark.parametrize("name", ["xgboost", "lightgbm", "catboost"])
def test_fit_tuned_runs_trials_and_refits(name):
    pytest.importorskip("optuna")
    skip_if_missing(name)
    X, categorical, y = easy_table(60)
    model, info = fit_tuned(name, X, y, categorical, seed=0, seconds=2.0)
    assert info["n_trials"] >= 1
    assert set(info["best_params"]) >= {"learning_rate"}
    assert np.isfinite(info["best_cv_log_loss"])
    p = model.predict_proba(X)
    assert p.shape == (60, 3)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
