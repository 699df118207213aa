"""PFNClassifier: small-table classification in forward passes of a PFN trained on synthetic
tables (the shipped ``tabular`` model, trained on :class:`~priorfit.priors.TablePrior`).

``fit`` stores the table and fits only preprocessing on its rows; ``predict_proba`` conditions
each ensemble member once on the training rows and predicts the test rows in chunks.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from priorfit.model import PFN, load
from priorfit.model.heads import CategoricalHead
from priorfit.predict import PRECISIONS, chunks
from priorfit.tabular.columns import TableEncoder
from priorfit.tabular.preprocessing import PREPROCESSING, Preprocessor
from priorfit.transforms import fit_transform

DEFAULT_MAX_ROWS = 1000  # training rows a member conditions on before subsets are drawn


@dataclass
class Member:
    """One ensemble member: which training rows and columns it sees, in which order, and how
    classes map to the model's labels.

    Attributes:
        rows: ``[n_m]`` training-row indices. features: ``[F_m]`` column indices, in order.
        code: ``[n_classes]``: class ``c`` is the model's label ``code[c]`` (a permutation
            when the model holds every class; else a balanced grouping, an output code).
        preprocessing: a name in :data:`PREPROCESSING`.
    """

    rows: np.ndarray
    features: np.ndarray
    code: np.ndarray
    preprocessing: str


class PFNClassifier(ClassifierMixin, BaseEstimator):
    """Classification of small tables by a PFN: no training on your data, no tuning.

    The PFN was trained on millions of synthetic tables; ``predict_proba`` is its posterior
    predictive given the training rows, averaged over an ensemble of ``n_estimators`` members.
    Each member sees the table through one preprocessing variant, a random column order and a
    random relabelling of the classes (the first member: the given order and labels), so the
    average does not depend on how the table happens to be laid out.

    Preprocessing (fitted on the training rows only; categorical columns pass as codes):
    ``"quantile"`` (a quantile transform to a normal), ``"power"`` (Yeo-Johnson, standardised),
    ``"robust"`` (median and interquartile range, clipped at ±4 IQR), ``"none"``; the model then
    standardises every column. Missing values (NaN, None, pandas NA) are given to the model,
    which encodes them; they are not imputed. Column handling is that of
    :class:`~priorfit.tabular.columns.TableEncoder` (categories, dropped constant columns,
    errors naming the column).

    Beyond the model's limits, each with a warning: more training rows than it was trained on
    (``max_train`` of its card): every member conditions on all of them up to ``max_rows``
    (on held-out prior tables of 500 training rows, all rows gave a lower test NLL than 128-row
    subsets, to a model trained on at most 128; docs/classification.md), and beyond
    ``max_rows`` each member conditions on its own stratified random subset; more columns
    than it takes: each member sees its own random subset; more
    classes than it holds: each member predicts a balanced random grouping of the classes into
    as many groups as it holds (error-correcting output codes), at least as many members as
    needed for every pair of classes to be told apart, decoded as ``P(c) ∝ exp(mean over members
    of log P_member(group of c))``.

    Parameters:
        model: a zoo name, a path to a ``.safetensors`` file, or a loaded classifier PFN.
        n_estimators: ensemble members.
        softmax_temperature: each member's logits are divided by it (below 1: sharper).
        preprocessing: names from :data:`PREPROCESSING`, taken by the members in turn.
        max_rows: the most training rows a member conditions on (default
            :data:`DEFAULT_MAX_ROWS`); larger tables are subsampled per member.
        random_state: seeds the members; same seed, same predictions.
        device: where the PFN runs. chunk_size: test rows per forward pass.
        precision: ``"float32"``, or ``"bfloat16"``: the network under bfloat16 autocast,
            faster on CPUs with native bfloat16 (AMX) and GPUs; ``bench tabular`` reports its
            speed.

    Attributes (after ``fit``):
        classes_: the class labels, sorted. model_: the PFN (a float32 copy).
        encoder_: the fitted :class:`TableEncoder`. members_: the :class:`Member` s.
        preprocessors_: the fitted :class:`Preprocessor` of each variant the members use.
        n_features_in_, feature_names_in_: as in scikit-learn.
    """

    def __init__(
        self,
        model: str | PFN = "tabular",
        *,
        n_estimators: int = 8,
        softmax_temperature: float = 0.9,
        preprocessing: tuple[str, ...] = PREPROCESSING,
        max_rows: int | None = None,
        random_state: int | None = 0,
        device: str = "cpu",
        chunk_size: int = 128,
        precision: str = "float32",
    ) -> None:
        self.model = model
        self.n_estimators = n_estimators
        self.softmax_temperature = softmax_temperature
        self.preprocessing = preprocessing
        self.max_rows = max_rows
        self.random_state = random_state
        self.device = device
        self.chunk_size = chunk_size
        self.precision = precision

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X: Any, y: Any) -> PFNClassifier:
        """Store the training table ``X [n, F]`` (array or DataFrame) and labels ``y [n]`` of any
        type; fit the preprocessing on these rows. Returns self."""
        self._check_settings()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None")
        rows, _ = _check_shape(X)
        validate_data(self, X, skip_check_array=True)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if len(y) != rows:
            raise ValueError(f"X has {rows} rows but y has {len(y)} labels")
        self.classes_, y_codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y has only one class ({self.classes_[0]!r}); a classifier needs "
                             "at least two")
        model = self.model if isinstance(self.model, PFN) else load(self.model, device=self.device)
        if not isinstance(model.head, CategoricalHead):
            raise ValueError(
                f"PFNClassifier needs a PFN with the classes head, got head {model.config.head!r}"
            )
        self.model_ = copy.deepcopy(model).float().eval()
        self.encoder_ = TableEncoder().fit(X)
        self.X_ = self.encoder_.transform(X)
        self.y_ = y_codes.astype(np.float64)
        rng = np.random.default_rng(self.random_state)
        self.members_ = self._members(rng)
        self.preprocessors_ = {
            name: Preprocessor(name, self.X_, self.encoder_.categorical, int(rng.integers(2**31)))
            for name in sorted({m.preprocessing for m in self.members_})
        }
        return self

    def _check_settings(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("n_estimators", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.max_rows is not None and (isinstance(self.max_rows, bool)
                                          or not isinstance(self.max_rows, int)
                                          or self.max_rows < 2):
            raise ValueError(f"max_rows must be None or an int >= 2, got {self.max_rows!r}")
        temperature = self.softmax_temperature
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
                0 < temperature < math.inf):
            raise ValueError(f"softmax_temperature must be a positive number, got {temperature!r}")
        variants = self.preprocessing
        if isinstance(variants, str) or not len(variants) or any(
                v not in PREPROCESSING for v in variants):
            raise ValueError(
                f"preprocessing must be a non-empty tuple of names from {PREPROCESSING}, got "
                f"{variants!r}"
            )

    def _members(self, rng: np.random.Generator) -> list[Member]:
        n, num_features = self.X_.shape
        n_classes, labels = len(self.classes_), self.model_.config.num_outputs
        max_rows = self.max_rows or DEFAULT_MAX_ROWS
        trained = self.model_.card.get("train", {}).get("max_train", n)
        if trained < n <= max_rows:
            warnings.warn(f"{n} training rows: more than this PFN was trained on ({trained}); "
                          "every member conditions on all of them (set max_rows to subsample)",
                          stacklevel=3)
        max_features = self.model_.config.num_features
        limits = [
            f"{have} {what} (this PFN takes at most {most})"
            for have, most, what in ((n, max_rows, "training rows"),
                                     (num_features, max_features, "columns"),
                                     (n_classes, labels, "classes"))
            if have > most
        ]
        if limits:
            strategy = ("members see random subsets and predict output codes of the classes"
                        if n_classes > labels else "members see random subsets")
            warnings.warn(f"{' and '.join(limits)}: {strategy}", stacklevel=3)
        members = []
        while len(members) < self.n_estimators or not _separates(members, n_classes):
            first = not members
            features = np.arange(num_features) if first else rng.permutation(num_features)
            if num_features > max_features:
                features = rng.permutation(num_features)[:max_features]
            if n_classes <= labels:
                code = np.arange(n_classes) if first else rng.permutation(n_classes)
            else:
                code = rng.permutation(n_classes) % labels
            rows = (stratified_subset(self.y_, max_rows, rng) if n > max_rows
                    else np.arange(n))
            variant = self.preprocessing[len(members) % len(self.preprocessing)]
            members.append(Member(rows, features, code, variant))
        return members

    def _encode(self, X: Any) -> np.ndarray:
        """Validated test table -> float64 ``[m, F]`` (after the fit's column encoding)."""
        check_is_fitted(self)
        _check_shape(X)
        validate_data(self, X, skip_check_array=True, reset=False)
        return self.encoder_.transform(X)

    @torch.inference_mode()
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[m, n_classes]``, columns in the order of ``classes_``."""
        X = self._encode(X)
        model = self.model_
        device = next(model.parameters()).device
        tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)[None]  # noqa: E731
        train = {name: p.transform(self.X_) for name, p in self.preprocessors_.items()}
        test = {name: p.transform(X) for name, p in self.preprocessors_.items()}
        autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                  enabled=self.precision == "bfloat16")
        with autocast:
            return self._predict_proba(X, tensor, train, test)

    def _predict_proba(self, X, tensor, train, test) -> np.ndarray:
        model = self.model_
        conditioned = []
        for member in self.members_:
            x_train = tensor(train[member.preprocessing][member.rows][:, member.features])
            y_train = tensor(member.code[self.y_[member.rows].astype(int)])
            transform = fit_transform(model.config.x_transform, "none", x_train, y_train)
            cache = model.condition(transform.x(x_train), y_train)
            x_test = tensor(test[member.preprocessing][:, member.features])
            conditioned.append((cache, transform, x_test))
        n_classes, labels = len(self.classes_), model.config.num_outputs
        used = min(n_classes, labels)
        parts = []
        for part in chunks(X.shape[0], self.chunk_size):
            rows = len(range(X.shape[0])[part])
            scores = torch.zeros(rows, n_classes, dtype=torch.float64)
            for member, (cache, transform, x_test) in zip(self.members_, conditioned,
                                                          strict=True):
                # every chunk is padded to chunk_size rows: the same matrix shapes for every
                # call, so a row's probabilities do not depend, even in rounding, on which other
                # rows are predicted with it (check_methods_subset_invariance)
                chunk = F.pad(transform.x(x_test[:, part]), (0, 0, 0, self.chunk_size - rows))
                logits = model.predict_logits(cache, chunk)[0, :rows, :used].double()
                log_probs = (logits / self.softmax_temperature).log_softmax(-1).cpu()
                member_scores = log_probs[:, torch.as_tensor(member.code)]
                scores += member_scores.exp() if n_classes <= labels else member_scores
            scores = scores / len(self.members_)
            parts.append(scores if n_classes <= labels else scores.softmax(-1))
        return torch.cat(parts).numpy()

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log class probabilities ``[m, n_classes]``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row ``[m]`` (labels from ``classes_``)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(1)]


def _check_shape(X: Any) -> tuple[int, int]:
    """scikit-learn's errors for empty or non-2-D input, whatever the column types (a
    DataFrame keeps its columns: ``check_array`` would cast its categories)."""
    if not (hasattr(X, "columns") and hasattr(X, "iloc")):
        return check_array(X, dtype=None, ensure_all_finite=False, ensure_2d=True).shape
    shape = X.shape
    for size, what in ((shape[0], "sample"), (shape[1], "feature")):
        if size == 0:
            raise ValueError(f"Found array with 0 {what}(s) (shape={shape}) while a minimum of 1 "
                             "is required.")
    return shape


def _separates(members: list[Member], n_classes: int) -> bool:
    """Whether the members' codes tell every pair of classes apart."""
    codes = np.stack([m.code for m in members], axis=1)  # [n_classes, members]
    return len(np.unique(codes, axis=0)) == n_classes


def stratified_subset(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` sorted row indices of labels ``y [n]``, drawn at random, holding every class at
    least once (as far as ``size`` allows)."""
    order = rng.permutation(len(y))
    _, first = np.unique(y[order], return_index=True)
    taken = np.zeros(len(y), dtype=bool)
    taken[order[first]] = True
    rest = order[~taken[order]]
    return np.sort(np.concatenate([order[first], rest[: max(size - len(first), 0)]]))
