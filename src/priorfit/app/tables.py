"""The tables view of the web page: a CSV table classified by :class:`~priorfit.PFNClassifier`
(the shipped ``tabular`` model) — cross-validated accuracy and ROC AUC on the uploaded rows,
and class probabilities for uploaded test rows, also as CSV text to download.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from priorfit.app import RequestError

MAX_ROWS = 3000  # rows of an uploaded table (cross-validation takes ~40 s at 3000)
MAX_COLUMNS = 500
FOLDS = 5
N_ESTIMATORS = 8


def read_csv(name: str, text) -> object:
    """The table in ``text`` (CSV with a header row) as a pandas DataFrame; a
    :class:`RequestError` naming ``name`` and the problem otherwise."""
    import pandas as pd

    if not isinstance(text, str) or not text.strip():
        raise RequestError(f"{name} is empty: give CSV text with a header row")
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError, UnicodeError) as error:
        raise RequestError(f"{name} is not readable as CSV: {error}") from None
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise RequestError(f"{name} has no rows or no columns")
    if frame.shape[0] > MAX_ROWS or frame.shape[1] > MAX_COLUMNS:
        raise RequestError(f"{name} has {frame.shape[0]} rows and {frame.shape[1]} columns; "
                           f"at most {MAX_ROWS} rows and {MAX_COLUMNS} columns")
    if frame.columns.duplicated().any():
        raise RequestError(f"{name} has duplicated column names")
    return frame


def inspect(train_csv) -> dict:
    """The columns of the training table, its row count and the default target (the last
    column)."""
    frame = read_csv("train_csv", train_csv)
    columns = [str(c) for c in frame.columns]
    return {"columns": columns, "rows": len(frame), "target": columns[-1]}


def classify(train_csv, target, test_csv=None) -> dict:
    """Cross-validated scores of :class:`~priorfit.PFNClassifier` on the training table
    (stratified ``FOLDS``-fold, fewer when a class has fewer rows) and, given ``test_csv``,
    the probabilities of its rows from a classifier fitted on every training row."""
    from sklearn.model_selection import StratifiedKFold

    frame = read_csv("train_csv", train_csv)
    if not isinstance(target, str) or target not in map(str, frame.columns):
        raise RequestError(f"target {target!r} is not a column of train_csv")
    target_column = next(c for c in frame.columns if str(c) == target)
    labelled = frame[frame[target_column].notna()]
    y = labelled[target_column].astype(str).to_numpy()
    X = labelled.drop(columns=[target_column])
    if X.shape[1] == 0:
        raise RequestError("train_csv has no feature column besides the target")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise RequestError(f"the target {target!r} has one class only: nothing to classify")
    folds = min(FOLDS, int(counts.min()))
    if folds < 2:
        raise RequestError(f"class {classes[counts.argmin()]!r} has a single row: cross-"
                           "validation needs at least two rows of every class")
    caught: list[str] = []
    probabilities = np.zeros((len(y), len(classes)))
    splits = StratifiedKFold(folds, shuffle=True, random_state=0).split(X, y)
    for train, test in splits:
        model = _fit(X.iloc[train], y[train], caught)
        columns = np.searchsorted(classes, model.classes_)
        probabilities[np.ix_(test, columns)] = model.predict_proba(X.iloc[test])
    answer = {"classes": classes.tolist(), "rows": len(y), "folds": folds,
              "cv": _scores(y, probabilities, classes)}
    if test_csv is not None:
        answer["test"] = _test_rows(read_csv("test_csv", test_csv), X, y, target_column,
                                    classes, caught)
    answer["warnings"] = sorted(set(caught))
    return answer


def _fit(X, y, caught: list[str]):
    from priorfit import PFNClassifier

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            model = PFNClassifier(n_estimators=N_ESTIMATORS).fit(X, y)
        except (ValueError, TypeError) as error:
            raise RequestError(f"the classifier refused the table: {error}") from None
    caught.extend(str(w.message) for w in seen)
    return model


def _scores(y: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> dict:
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    predicted = classes[probabilities.argmax(1)]
    if len(classes) == 2:
        auc = roc_auc_score(y == classes[1], probabilities[:, 1])
    else:
        auc = roc_auc_score(y, probabilities, multi_class="ovo", labels=classes)
    return {"accuracy": float(accuracy_score(y, predicted)), "roc_auc": float(auc),
            "log_loss": float(log_loss(y, np.clip(probabilities, 1e-12, 1), labels=classes))}


def _test_rows(test, X, y, target_column, classes: np.ndarray, caught: list[str]) -> dict:
    """Probabilities of the test rows (a target column there is ignored), with the CSV text."""
    import pandas as pd

    test = test.drop(columns=[c for c in test.columns if c == target_column])
    missing = [str(c) for c in X.columns if c not in test.columns]
    if missing:
        raise RequestError(f"test_csv lacks the training columns {', '.join(missing)}")
    model = _fit(X, y, caught)
    probabilities = model.predict_proba(test[X.columns])
    table = pd.DataFrame(probabilities, columns=[f"P({c})" for c in classes])
    table.insert(0, "predicted", classes[probabilities.argmax(1)])
    return {"columns": list(table.columns), "rows": table.to_numpy().tolist(),
            "csv": pd.concat([test.reset_index(drop=True), table], axis=1).to_csv(index=False)}
