"""Tables as users have them (pandas or numpy, numbers, categories, strings, NaN) -> numbers.

:class:`TableEncoder` is fitted on the training table and encodes any table with the same
columns into a float64 matrix ``[n, F]``, NaN where a value is missing:

* numeric columns (numbers, booleans) pass through; ``inf`` is an error naming the column;
* pandas ``category``, ``object``, ``string`` and ``bool`` columns, and numpy columns of
  strings, are categorical: each category seen in training gets a code ``0, 1, ...`` (in sorted
  order), as the prior's categorical columns are codes; a category first seen at prediction is
  missing (NaN);
* a column that mixes numbers and strings (a numeric column with a stray ``"?"``, say) is an
  error naming the column and the first offending value;
* columns with fewer than two distinct observed training values (constant or all missing) carry
  no information and are dropped (:attr:`TableEncoder.kept`); if none is left, one constant
  column stands in, so the model still sees a table.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

CATEGORICAL_KINDS = "OUSb"  # numpy dtype kinds read as categories: objects, strings, booleans


class TableEncoder:
    """Encode the columns of tables like the one given to :meth:`fit` (see the module).

    Attributes (after ``fit``):
        names: the column names (strings for a DataFrame, ``"column i"`` otherwise).
        categories: per column, the sorted categories of a categorical column, else ``None``.
        kept: indices of the columns the encoded matrix holds (informative ones).
        categorical: ``[len(kept)]`` bool, which encoded columns hold category codes.
    """

    def fit(self, X: Any) -> TableEncoder:
        """Learn the columns of the training table ``X [n, F]``; returns self."""
        columns, self.names = _columns(X)
        self.categories = []
        values = []
        for name, column in zip(self.names, columns, strict=True):
            categories = _categories(name, column)
            self.categories.append(categories)
            values.append(_encode(name, column, categories))
        informative = [
            j for j, v in enumerate(values) if np.unique(v[~np.isnan(v)]).size >= 2
        ]
        self.kept = np.array(informative, dtype=int)
        self.categorical = np.array([self.categories[j] is not None for j in informative],
                                    dtype=bool)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``X [m, F]`` with the training table's columns -> float64 ``[m, len(kept)]`` (at least
        one column: a constant one when no column is informative)."""
        columns, _ = _columns(X)
        if len(columns) != len(self.names):
            raise ValueError(f"X has {len(columns)} columns; the training table had "
                             f"{len(self.names)}")
        if not len(self.kept):
            return np.zeros((_num_rows(X), 1))
        encoded = [_encode(self.names[j], columns[j], self.categories[j]) for j in self.kept]
        return np.stack(encoded, axis=1)


def _num_rows(X: Any) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _columns(X: Any) -> tuple[list[np.ndarray], list[str]]:
    """The columns of a DataFrame (each keeps its dtype) or of a 2-D array-like."""
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # a pandas DataFrame
        columns = [_pandas_column(X.iloc[:, j]) for j in range(X.shape[1])]
        return columns, [str(name) for name in X.columns]
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(f"X must be a 2-D table [rows, columns], got shape {array.shape}")
    return [array[:, j] for j in range(array.shape[1])], [
        f"column {j}" for j in range(array.shape[1])
    ]


def _pandas_column(series) -> np.ndarray:
    """A pandas column as numpy: numeric ones as float64 (nullable NA -> NaN), the others as
    objects (NA -> None)."""
    import pandas as pd

    dtype = series.dtype
    categorical = isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype)
    if pd.api.types.is_numeric_dtype(dtype) and not categorical:
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.astype(object).where(series.notna(), None).to_numpy(dtype=object)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _categories(name: str, column: np.ndarray) -> list | None:
    """The sorted categories of a categorical column, ``None`` for a numeric one."""
    if column.dtype.kind in "biuf":
        return None
    if column.dtype.kind != "O":
        return sorted(set(column[column == column].tolist()))  # strings, booleans
    observed = [v for v in column.tolist() if not _is_missing(v)]
    strings = [v for v in observed if isinstance(v, (str, bool, np.bool_))]
    if not strings:
        return None  # numbers stored as objects
    numbers_seen = [v for v in observed if isinstance(v, numbers.Number)
                    and not isinstance(v, (bool, np.bool_))]
    if numbers_seen:
        raise ValueError(
            f"{name} mixes numbers ({numbers_seen[0]!r}) and strings ({strings[0]!r}); encode "
            "its missing-value markers as NaN, or make it a categorical column"
        )
    return sorted({str(v) for v in strings})


def _encode(name: str, column: np.ndarray, categories: list | None) -> np.ndarray:
    """One column -> float64 ``[n]``: numbers as they are, categories as codes, NaN missing."""
    if categories is not None:
        codes = {str(c): float(i) for i, c in enumerate(categories)}
        return np.array([np.nan if _is_missing(v) else codes.get(str(v), np.nan)
                         for v in column.tolist()])
    try:
        values = column.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name}: {error}") from None
    if np.isinf(values).any():
        raise ValueError(f"{name} contains {int(np.isinf(values).sum())} infinite value(s); "
                         "replace them by NaN (missing) or a finite number")
    return values
