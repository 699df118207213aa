"""Prediction: validate user data, condition once, predict test points in chunks.

The training set is run through the network once (:class:`Conditioned`: keys and values cached
per layer); test points are then predicted ``chunk_size`` at a time, so memory stays bounded
for any number of test points, and summaries (:meth:`Conditioned.reduce`) are taken chunk by
chunk. Predictions come back in the user's units, through the model's head.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import Tensor

from priorfit.transforms import fit_transform

PRECISIONS = ("float32", "bfloat16")


def as_float_tensor(name: str, value, device: torch.device, dtype: torch.dtype = torch.float32,
                    *, finite: bool = True, allow_nan: bool = False,
                    keep_grad: bool = False) -> Tensor:
    """Numbers (numpy, torch, nested lists) -> a ``dtype`` tensor; clear errors for anything
    else. ``finite`` rejects NaN and inf (only inf with ``allow_nan``: missing values for a
    model that encodes them); ``keep_grad`` keeps a tensor's autograd history."""
    if isinstance(value, Tensor):
        tensor = value if keep_grad else value.detach()
    else:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"{name} must contain numbers only, got an array of dtype {array.dtype} "
                "(encode strings or categories as numbers first)"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.is_complex():
        raise TypeError(f"{name} must be real numbers, got dtype {tensor.dtype}")
    tensor = tensor.to(device=device, dtype=dtype)
    if finite:
        check_finite_where(name, tensor, None, allow_nan)
    return tensor


def check_finite_where(name: str, tensor: Tensor, where: Tensor | None,
                       allow_nan: bool = False) -> None:
    """``ValueError`` if ``tensor`` has NaN or inf (only where ``where`` is ``True``; only inf
    with ``allow_nan``)."""
    values = tensor.detach()
    bad = values.isinf() if allow_nan else ~torch.isfinite(values)
    if where is not None:
        bad = bad & where
    if bool(bad.any()):
        what = "infinite" if allow_nan else "NaN or infinite"
        raise ValueError(
            f"{name} contains {int(bad.sum())} {what} value(s); remove or impute them"
        )


def check_training_set(
    x_train: Tensor, y_train: Tensor, max_features: int
) -> tuple[Tensor, Tensor]:
    """Check shapes; return batched ``x_train [B, n, F]`` and ``y_train [B, n]``."""
    if x_train.dim() not in (2, 3):
        raise ValueError(
            f"x_train must be [n, features] or batched [B, n, features], got shape "
            f"{tuple(x_train.shape)} (for one feature use x.reshape(-1, 1))"
        )
    batched = x_train.dim() == 3
    if y_train.dim() != x_train.dim() - 1:
        raise ValueError(
            f"y_train must be {'[B, n]' if batched else '[n]'} to match x_train "
            f"{tuple(x_train.shape)}, got shape {tuple(y_train.shape)}"
        )
    if not batched:
        x_train, y_train = x_train[None], y_train[None]
    if y_train.shape != x_train.shape[:2]:
        raise ValueError(
            f"x_train has {x_train.shape[1]} points but y_train has {y_train.shape[1]} "
            f"(shapes {tuple(x_train.shape)} and {tuple(y_train.shape)})"
        )
    num_features = x_train.shape[2]
    if not 1 <= num_features <= max_features:
        raise ValueError(
            f"x_train has {num_features} features; this model takes 1 to {max_features}"
        )
    return x_train, y_train


def check_mask(train_mask, y_train: Tensor, batched: bool) -> Tensor:
    """``train_mask`` as a bool tensor ``[B, n]`` matching ``y_train [B, n]``."""
    mask = torch.as_tensor(np.asarray(train_mask) if not isinstance(train_mask, Tensor)
                           else train_mask.detach())
    if mask.dtype != torch.bool:
        raise TypeError(f"train_mask must be booleans (True = a real point), got {mask.dtype}")
    mask = (mask if batched else mask[None]).to(y_train.device)
    if mask.shape != y_train.shape:
        raise ValueError(
            f"train_mask must have the shape of y_train {tuple(y_train.shape[int(not batched):])}"
            f", got {tuple(mask.shape[int(not batched):])}"
        )
    return mask


class Conditioned:
    """A PFN conditioned once on training data; test points are then predicted any number of
    times, in chunks of bounded memory.

    Args:
        model: a :class:`~priorfit.model.pfn.PFN`.
        x_train: ``[n, F]`` or batched ``[B, n, F]`` (numpy, torch or lists; ``n`` may be 0);
            NaN marks a missing value where the model encodes them (``model.accepts_missing``).
        y_train: ``[n]`` or ``[B, n]``, in the user's units.
        train_mask: optional ``[n]`` / ``[B, n]`` booleans, ``True`` for real training points:
            datasets with different numbers of points share one batch, the rest is padding
            (whose values are ignored, NaN included).
        precision: ``"float32"`` (the weights' precision; exact and reproducible) or
            ``"bfloat16"``: the transformer under bfloat16 autocast (norms, residuals and the
            decoder to logits stay float32), several times faster on CPUs with native bfloat16
            (AMX); ``priorfit bench gp`` reports what it costs in NLL.

    The training set is run through the network once, without gradients. Predictions
    (:meth:`distribution`, :meth:`reduce`) keep gradients with respect to ``x_test`` when it is a
    tensor that requires them, for acquisition functions in Bayesian optimisation.
    """

    def __init__(self, model, x_train, y_train, *, train_mask=None,
                 precision: str = "float32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.model = model
        config = model.config
        weight = next(model.parameters())
        device, dtype = weight.device, weight.dtype
        missing_ok = model.accepts_missing
        x_train = as_float_tensor("x_train", x_train, device, dtype, finite=train_mask is None,
                                  allow_nan=missing_ok)
        y_train = as_float_tensor("y_train", y_train, device, dtype, finite=train_mask is None)
        self.batched = x_train.dim() == 3
        x_train, y_train = check_training_set(x_train, y_train, config.num_features)
        mask = None if train_mask is None else check_mask(train_mask, y_train, self.batched)
        if mask is not None:
            check_finite_where("x_train", x_train, mask[..., None], missing_ok)
            check_finite_where("y_train", y_train, mask)
            x_train = x_train.masked_fill(~mask[..., None], 0.0)
            y_train = y_train.masked_fill(~mask, 0.0)
        model.head.check_targets("y_train", y_train if mask is None else y_train[mask])
        self.num_features = x_train.shape[2]
        self.y_train, self.train_mask = y_train, mask
        self.transform = fit_transform(config.x_transform, config.y_transform, x_train, y_train,
                                       mask)
        self._autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bfloat16"
            else contextlib.nullcontext()
        )
        with torch.no_grad(), self._autocast:
            self.cache = model.condition(self.transform.x(x_train), self.transform.y(y_train),
                                         mask)

    def _test_inputs(self, x_test) -> Tensor:
        """``x_test`` validated and batched, ``[B, m, F]``."""
        device, dtype = self.y_train.device, self.y_train.dtype
        x_test = as_float_tensor("x_test", x_test, device, dtype, keep_grad=True,
                                 allow_nan=self.model.accepts_missing)
        if x_test.dim() != (3 if self.batched else 2):
            raise ValueError(
                f"x_test must be {'[B, m, features]' if self.batched else '[m, features]'} like "
                f"x_train, got shape {tuple(x_test.shape)}"
            )
        x_test = x_test if self.batched else x_test[None]
        if x_test.shape[0] != self.y_train.shape[0]:
            raise ValueError(
                f"x_test has {x_test.shape[0]} datasets but x_train has {self.y_train.shape[0]}"
            )
        if x_test.shape[2] != self.num_features:
            raise ValueError(
                f"x_test has {x_test.shape[2]} features but x_train has {self.num_features}"
            )
        return x_test

    def logits(self, x_test: Tensor) -> Tensor:
        """Logits ``[B, m, K]`` of ``x_test [B, m, F]`` (batched, user units) in one pass."""
        with self._autocast:
            return self.model.predict_logits(self.cache, self.transform.x(x_test)).float()

    def _distribution(self, logits: Tensor) -> torch.distributions.Distribution:
        if self.batched:
            return self.model.head.distribution(logits, self.transform, self.y_train,
                                                self.train_mask)
        mask = None if self.train_mask is None else self.train_mask[0]
        return self.model.head.distribution(logits[0], self.transform.unbatched(),
                                            self.y_train[0], mask)

    def distribution(self, x_test, *, chunk_size: int | None = None):
        """The predictive at ``x_test`` (``[m, F]``, or ``[B, m, F]`` if batched) in user units,
        batch shape ``[m]`` / ``[B, m]``; holds the logits of every test point."""
        x_test = self._test_inputs(x_test)
        size = _chunk_size(chunk_size, self.model)
        logits = torch.cat([self.logits(x_test[:, part]) for part in chunks(x_test.shape[1], size)],
                           dim=1)
        return self._distribution(logits)

    def reduce(self, x_test, fn, *, chunk_size: int | None = None) -> Tensor:
        """``fn(predictive)`` chunk by chunk, concatenated along the last dim: memory stays flat in
        the number of test points. ``fn`` maps a predictive with batch shape ``[c]`` / ``[B, c]``
        to a tensor whose last dim is ``c`` (e.g. ``lambda d: d.mean``)."""
        x_test = self._test_inputs(x_test)
        size = _chunk_size(chunk_size, self.model)
        return torch.cat(
            [fn(self._distribution(self.logits(x_test[:, part])))
             for part in chunks(x_test.shape[1], size)],
            dim=-1,
        )


def chunks(m: int, size: int) -> list[slice]:
    """Slices of ``range(m)`` of at most ``size`` (one empty slice when ``m = 0``)."""
    return [slice(start, start + size) for start in range(0, max(m, 1), size)]


def _chunk_size(chunk_size: int | None, model) -> int:
    if chunk_size is None:
        return model.default_chunk_size
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return chunk_size


@torch.inference_mode()
def predict(model, x_train, y_train, x_test, *, chunk_size: int | None = None,
            train_mask=None, precision: str = "float32") -> torch.distributions.Distribution:
    """Posterior predictive of ``model`` at ``x_test`` given ``(x_train, y_train)``.

    Args:
        x_train: ``[n, F]`` or batched ``[B, n, F]`` (numpy, torch or lists; ``n`` may be 0).
        y_train: ``[n]`` or ``[B, n]``.
        x_test: ``[m, F]`` or ``[B, m, F]``.
        chunk_size: test points per forward pass (default: the architecture's).
        train_mask: ``[n]`` / ``[B, n]`` booleans marking real training points, and
            precision: ``"float32"`` or ``"bfloat16"`` (see :class:`Conditioned`).

    Returns:
        The head's distribution with batch shape ``[m]`` (or ``[B, m]``) in the user's units: a
        :class:`~priorfit.model.riemann.RiemannDistribution` for the Riemann heads, a
        ``Categorical`` for classes. Without gradients; for those use ``model.condition_on``.
    """
    conditioned = Conditioned(model, x_train, y_train, train_mask=train_mask,
                              precision=precision)
    return conditioned.distribution(x_test, chunk_size=chunk_size)
