"""PFNClassifier and its table encoding: exactness against the model, ensembles, limits, input."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import priorfit as pf
from priorfit import zoo
from priorfit.model import ModelConfig, build_model
from priorfit.tabular.columns import TableEncoder


def tiny_model(path, num_features=6, num_classes=4, max_train=40):
    """An untrained cells classifier with the shipped model's transform, saved to ``path``."""
    torch.manual_seed(0)
    config = ModelConfig(arch="cells", head="classes", num_features=num_features,
                         num_outputs=num_classes, d_model=16, num_heads=2, num_layers=2,
                         d_ff=32, x_transform="standardize", thinking_rows=2)
    model = build_model(config).eval()
    model.card = {"prior": {"class": "TablePrior"}, "train": {"max_train": max_train}}
    model.save(path)
    return str(path)


@pytest.fixture
def model_path(tmp_path):
    return tiny_model(tmp_path / "tiny.safetensors")


def table(n=30, m=7, features=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + m, features))
    y = np.arange(n + m) % classes
    X[:, 0] += y
    return X[:n], y[:n], X[n:]


def test_one_plain_member_is_the_model_itself(model_path):
    X, y, X_test = table()
    clf = pf.PFNClassifier(model_path, n_estimators=1, preprocessing=("none",),
                           softmax_temperature=1.0).fit(X, y)
    expected = pf.load(model_path).predict(X, y.astype(float), X_test).probs[:, :3]
    np.testing.assert_allclose(clf.predict_proba(X_test), expected.numpy(), rtol=1e-5)


def test_probabilities_labels_and_reproducibility(model_path):
    X, y, X_test = table()
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = pf.PFNClassifier(model_path, random_state=3).fit(X, labels)
    proba = clf.predict_proba(X_test)
    assert proba.shape == (7, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert set(clf.predict(X_test)) <= set(clf.classes_)
    again = pf.PFNClassifier(model_path, random_state=3).fit(X, labels).predict_proba(X_test)
    np.testing.assert_array_equal(again, proba)
    other = pf.PFNClassifier(model_path, random_state=4).fit(X, labels).predict_proba(X_test)
    assert not np.allclose(other, proba)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X_test)), proba)


def test_members_relabel_classes_reorder_columns_and_cycle_preprocessing(model_path):
    X, y, _ = table()
    clf = pf.PFNClassifier(model_path, n_estimators=6).fit(X, y)
    first = clf.members_[0]
    np.testing.assert_array_equal(first.code, [0, 1, 2])
    np.testing.assert_array_equal(first.features, [0, 1, 2])
    for member in clf.members_:
        assert sorted(member.code) == [0, 1, 2] and sorted(member.features) == [0, 1, 2]
    assert [m.preprocessing for m in clf.members_] == [*pf.tabular.preprocessing.PREPROCESSING,
                                                       "quantile", "none"]
    assert len({tuple(m.code) for m in clf.members_}) > 1


def test_temperature_sharpens_and_chunks_do_not_change_predictions(model_path):
    X, y, X_test = table(m=11)
    sharp = pf.PFNClassifier(model_path, n_estimators=1, softmax_temperature=0.5).fit(X, y)
    flat = pf.PFNClassifier(model_path, n_estimators=1, softmax_temperature=2.0).fit(X, y)
    assert (sharp.predict_proba(X_test).max(1) > flat.predict_proba(X_test).max(1)).all()
    whole = pf.PFNClassifier(model_path, chunk_size=256).fit(X, y).predict_proba(X_test)
    chunked = pf.PFNClassifier(model_path, chunk_size=3).fit(X, y).predict_proba(X_test)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5)
    clf = pf.PFNClassifier(model_path, chunk_size=8).fit(X, y)
    alone = np.concatenate([clf.predict_proba(X_test[i : i + 1]) for i in range(len(X_test))])
    np.testing.assert_array_equal(alone, clf.predict_proba(X_test))  # padded chunks: exact


def test_bfloat16_is_close_to_float32_and_still_independent_of_the_other_rows(model_path):
    X, y, X_test = table(m=9)
    exact = pf.PFNClassifier(model_path).fit(X, y).predict_proba(X_test)
    clf = pf.PFNClassifier(model_path, precision="bfloat16", chunk_size=8).fit(X, y)
    fast = clf.predict_proba(X_test)
    np.testing.assert_allclose(fast, exact, atol=0.03)
    alone = np.concatenate([clf.predict_proba(X_test[i : i + 1]) for i in range(len(X_test))])
    np.testing.assert_array_equal(alone, fast)


def test_more_rows_than_max_rows_gives_stratified_subsets(model_path):
    X, y, X_test = table(n=90)
    y = np.where(np.arange(90) == 5, 2, np.minimum(y, 1))  # class 2 has a single row
    with pytest.warns(UserWarning, match="90 training rows: more than this PFN was trained on"):
        clf = pf.PFNClassifier(model_path).fit(X, y)
    assert all(len(member.rows) == 90 for member in clf.members_)  # below max_rows: all rows
    with pytest.warns(UserWarning, match="90 training rows .* at most 40"):
        clf = pf.PFNClassifier(model_path, max_rows=40).fit(X, y)
    for member in clf.members_:
        assert len(member.rows) == 40 and 5 in member.rows
    assert len({tuple(m.rows) for m in clf.members_}) == len(clf.members_)
    assert clf.predict_proba(X_test).shape == (7, 3)


def test_more_columns_than_the_model_takes_gives_column_subsets(model_path):
    X, y, X_test = table(features=9)
    with pytest.warns(UserWarning, match="9 columns .* at most 6"):
        clf = pf.PFNClassifier(model_path).fit(X, y)
    assert all(len(m.features) == 6 for m in clf.members_)
    assert len({frozenset(m.features) for m in clf.members_}) > 1
    np.testing.assert_allclose(clf.predict_proba(X_test).sum(1), 1.0)


def test_more_classes_than_the_model_holds_uses_output_codes(model_path):
    X, y, X_test = table(n=60, classes=9)
    with pytest.warns(UserWarning, match="9 classes .* at most 4.*output codes"):
        clf = pf.PFNClassifier(model_path, n_estimators=2).fit(X, y)
    codes = np.stack([m.code for m in clf.members_], 1)
    assert len(np.unique(codes, axis=0)) == 9  # every pair of classes told apart
    assert all(np.bincount(m.code).max() - np.bincount(m.code).min() <= 1
               for m in clf.members_)  # balanced groups
    proba = clf.predict_proba(X_test)
    assert proba.shape == (7, 9)
    np.testing.assert_allclose(proba.sum(1), 1.0)


def test_pandas_categories_strings_booleans_and_missing_values(model_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "size": rng.standard_normal(24),
        "colour": pd.Categorical([None, *rng.choice(["red", "green", "blue"], 23)]),
        "shape": rng.choice(["round", "square"], 24).astype(object),
        "flag": rng.random(24) > 0.5,
        "count": pd.array(rng.integers(0, 5, 24), dtype="Int64"),
    })
    frame.loc[3, "size"] = np.nan
    frame.loc[4, "shape"] = None
    frame.loc[5, "count"] = pd.NA
    y = rng.integers(0, 2, 24)
    clf = pf.PFNClassifier(model_path).fit(frame[:20], y[:20])
    np.testing.assert_array_equal(clf.encoder_.categorical, [False, True, True, True, False])
    assert list(clf.feature_names_in_) == list(frame.columns)
    encoded = clf.encoder_.transform(frame)
    assert np.isnan(encoded[3, 0]) and np.isnan(encoded[4, 2]) and np.isnan(encoded[5, 4])
    np.testing.assert_allclose(clf.predict_proba(frame[20:]).sum(1), 1.0)
    unseen = frame[20:].copy()
    unseen["colour"] = pd.Categorical(["purple"] * 4)
    missing = frame[20:].copy()
    missing["colour"] = pd.Categorical([None] * 4, categories=["red"])
    np.testing.assert_allclose(clf.predict_proba(unseen), clf.predict_proba(missing))


def test_uninformative_columns_are_dropped():
    X = np.column_stack([np.arange(6.0), np.full(6, 7.0), np.full(6, np.nan), [1, 0] * 3])
    encoder = TableEncoder().fit(X)
    np.testing.assert_array_equal(encoder.kept, [0, 3])
    assert encoder.transform(X).shape == (6, 2)
    nothing = TableEncoder().fit(np.ones((4, 2)))
    np.testing.assert_array_equal(nothing.transform(np.ones((3, 2))), np.zeros((3, 1)))


def test_dropped_columns_do_not_change_predictions(model_path):
    X, y, X_test = table()
    padded = lambda A: np.column_stack([A, np.full(len(A), 3.0), np.full(len(A), np.nan)])  # noqa: E731
    plain = pf.PFNClassifier(model_path).fit(X, y).predict_proba(X_test)
    np.testing.assert_allclose(
        pf.PFNClassifier(model_path).fit(padded(X), y).predict_proba(padded(X_test)), plain
    )


@pytest.mark.parametrize(
    ("X", "y", "error", "match"),
    [
        (pd.DataFrame({"age": [1.0, "?", 3.0, 4.0]}), [0, 1, 0, 1], ValueError,
         "age mixes numbers .* and strings"),
        (pd.DataFrame({"age": [1.0, np.inf, 3.0, 4.0]}), [0, 1, 0, 1], ValueError,
         "age contains 1 infinite"),
        (np.ones((4, 2)), [1, 1, 1, 1], ValueError, "only one class"),
        (np.ones((4, 2)), [0.5, 1.5, 2.5, 3.7], ValueError, "Unknown label type"),
        (np.ones((4, 2)), [0, 1, 0], ValueError, "4 rows but y has 3"),
        (np.ones((0, 2)), [], ValueError, "0 sample"),
        (pd.DataFrame({"a": pd.Categorical([])}), [], ValueError, "0 sample"),
        (np.ones((4, 0)), [0, 1, 0, 1], ValueError, "0 feature"),
        (np.ones(4), [0, 1, 0, 1], ValueError, "2D array"),
        (np.ones((4, 2)), None, ValueError, "requires y"),
    ],
)
def test_bad_training_data_are_named(model_path, X, y, error, match):
    with pytest.raises(error, match=match):
        pf.PFNClassifier(model_path).fit(X, y)


def test_bad_test_data_and_settings_are_named(model_path):
    X, y, X_test = table()
    clf = pf.PFNClassifier(model_path).fit(X, y)
    with pytest.raises(ValueError, match="X has 4 features, but PFNClassifier is expecting 3"):
        clf.predict(np.ones((2, 4)))
    bad = X_test.copy()
    bad[0, 1] = -np.inf
    with pytest.raises(ValueError, match="column 1 contains 1 infinite"):
        clf.predict_proba(bad)
    with pytest.raises(ValueError, match="could not convert"):
        clf.predict_proba(np.array([["a", 1, 2]], dtype=object))
    for setting, match in ((dict(n_estimators=0), "n_estimators"),
                           (dict(softmax_temperature=0), "softmax_temperature"),
                           (dict(preprocessing=("zscore",)), "preprocessing"),
                           (dict(max_rows=1), "max_rows"),
                           (dict(precision="float16"), "precision")):
        with pytest.raises(ValueError, match=match):
            pf.PFNClassifier(model_path, **setting).fit(X, y)
    regression = tiny_model_regression(model_path)
    with pytest.raises(ValueError, match="classes head"):
        pf.PFNClassifier(regression).fit(X, y)


def tiny_model_regression(path):
    config = ModelConfig(num_features=3, num_outputs=8, d_model=16, num_heads=2, num_layers=1,
                         d_ff=16)
    model = build_model(config)
    model.save(f"{path}.riemann.safetensors")
    return f"{path}.riemann.safetensors"


needs_shipped = pytest.mark.skipif("tabular" not in zoo.names(),
                                   reason="the shipped tabular model is not in this checkout")


@needs_shipped
def test_the_shipped_classifier_passes_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # more rows than trained on
        check_estimator(pf.PFNClassifier(n_estimators=2))  # raises on the first failing check


@needs_shipped
def test_the_shipped_classifier_beats_chance_on_a_real_table():
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import roc_auc_score

    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, test = order[:100], order[100:400]
    proba = pf.PFNClassifier(n_estimators=2).fit(X[train], y[train]).predict_proba(X[test])
    assert roc_auc_score(y[test], proba[:, 1]) > 0.95


@pytest.mark.parametrize("max_train, beyond", [(24, True), (500, False)])
def test_prior_checks_never_condition_on_the_test_rows(tmp_path, max_train, beyond):
    """The ensemble arms condition on at most ``rows`` rows (never on the test rows after them),
    and the rows-beyond-training check runs only for a model trained on fewer rows."""
    from priorfit.bench.tabular import prior_checks

    path = tiny_model(tmp_path / "m.safetensors", max_train=max_train)
    checks = prior_checks(path, tables=2, rows=40, test_rows=8)
    assert checks["tables"] >= 1 and set(checks["ensemble"]) == {1, 4, 8}
    assert (checks["rows_beyond_training"] is not None) == beyond
