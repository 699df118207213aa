"""Per-dataset input and target transforms, shared by training and prediction.

A model records in its config which transforms it was trained with (``x_transform``,
``y_transform``). The statistics come from the training points of each dataset only, and the
very same :func:`fit_transform` runs on prior batches during training and on user data at
prediction time, so the model always sees data distributed as in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

X_TRANSFORMS = ("none", "unit_cube", "standardize")
Y_TRANSFORMS = ("none", "standardize")


@dataclass
class DataTransform:
    """Affine maps ``x -> (x - x_loc) / x_scale`` and ``y -> (y - y_loc) / y_scale``.

    Attributes:
        x_loc, x_scale: ``[B, 1, F]``.
        y_loc, y_scale: ``[B, 1]``.
    """

    x_loc: Tensor
    x_scale: Tensor
    y_loc: Tensor
    y_scale: Tensor

    def x(self, x: Tensor) -> Tensor:
        """``[B, N, F]`` user units -> model units."""
        return (x - self.x_loc) / self.x_scale

    def y(self, y: Tensor) -> Tensor:
        """``[B, N]`` user units -> model units."""
        return (y - self.y_loc) / self.y_scale

    def borders(self, borders: Tensor) -> Tensor:
        """Bucket borders ``[K + 1]`` in model units -> ``[B, 1, K + 1]`` in user units."""
        return self.y_loc.unsqueeze(-1) + self.y_scale.unsqueeze(-1) * borders

    def unbatched(self) -> DataTransform:
        """The transform of the first dataset without its batch dim (``x_loc [1, F]``, ...)."""
        return DataTransform(self.x_loc[0], self.x_scale[0], self.y_loc[0], self.y_scale[0])


def fit_transform(
    x_transform: str,
    y_transform: str,
    x_train: Tensor,
    y_train: Tensor,
    train_mask: Tensor | None = None,
) -> DataTransform:
    """Fit the named transforms on the training points ``x_train [B, n, F]``, ``y_train [B, n]``.

    ``unit_cube`` maps each feature's training range to [0, 1]; ``standardize`` gives each
    feature (x) or the targets (y) mean 0 and standard deviation 1 over the training points.
    Degenerate statistics (no training points, a constant feature or target) fall back to an
    identity scale, never to a division by zero. ``train_mask [B, n]`` (``True`` = a real point)
    leaves padding out of the statistics. The x ``standardize`` skips missing values (NaN): they
    stay NaN, for a network that encodes them (``"cells"``).
    """
    if x_transform not in X_TRANSFORMS:
        raise ValueError(f"x_transform must be one of {X_TRANSFORMS}, got {x_transform!r}")
    if y_transform not in Y_TRANSFORMS:
        raise ValueError(f"y_transform must be one of {Y_TRANSFORMS}, got {y_transform!r}")
    if x_transform == "standardize":
        x_loc, x_scale = _standardize_features(x_train, train_mask)
        rest = fit_transform("none", y_transform, x_train, y_train, train_mask)
        return DataTransform(x_loc, x_scale, rest.y_loc, rest.y_scale)
    if train_mask is not None:
        return _fit_masked(x_transform, y_transform, x_train, y_train, train_mask)
    batch, n, num_features = x_train.shape
    x_loc = x_train.new_zeros(batch, 1, num_features)
    x_scale = x_train.new_ones(batch, 1, num_features)
    y_loc = y_train.new_zeros(batch, 1)
    y_scale = y_train.new_ones(batch, 1)
    if n > 0 and x_transform == "unit_cube":
        low, high = x_train.amin(1, keepdim=True), x_train.amax(1, keepdim=True)
        x_loc, x_scale = low, _safe_scale(high - low)
    if n > 0 and y_transform == "standardize":
        y_loc = y_train.mean(1, keepdim=True)
        y_scale = _safe_scale(y_train.std(1, keepdim=True, correction=0))
    return DataTransform(x_loc, x_scale, y_loc, y_scale)


def _fit_masked(x_transform, y_transform, x_train, y_train, mask) -> DataTransform:
    """:func:`fit_transform` over the points where ``mask [B, n]`` is ``True``, per dataset."""
    count = mask.sum(1, keepdim=True)  # [B, 1]
    has_points = count > 0
    identity = fit_transform(x_transform, y_transform, x_train[:, :0], y_train[:, :0])
    x_loc, x_scale, y_loc, y_scale = (
        identity.x_loc, identity.x_scale, identity.y_loc, identity.y_scale
    )
    if x_transform == "unit_cube":
        m = mask[..., None]
        low = x_train.masked_fill(~m, torch.inf).amin(1, keepdim=True)
        high = x_train.masked_fill(~m, -torch.inf).amax(1, keepdim=True)
        ok = has_points[..., None]
        x_loc = torch.where(ok, low, x_loc)
        x_scale = torch.where(ok, _safe_scale(torch.where(ok, high - low, 1.0)), x_scale)
    if y_transform == "standardize":
        safe_count = count.clamp(min=1)
        y = torch.where(mask, y_train, 0.0)  # padding may hold anything, NaN included
        mean = y.sum(1, keepdim=True) / safe_count
        var = torch.where(mask, y - mean, 0.0).square().sum(1, keepdim=True) / safe_count
        y_loc = torch.where(has_points, mean, y_loc)
        y_scale = torch.where(has_points, _safe_scale(var.sqrt()), y_scale)
    return DataTransform(x_loc, x_scale, y_loc, y_scale)


def _standardize_features(x_train: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation ``[B, 1, F]`` of each feature over the observed (not NaN,
    not padding) training values; 0 and 1 for a feature with none."""
    observed = ~x_train.isnan()
    if mask is not None:
        observed &= mask[..., None]
    count = observed.sum(1, keepdim=True)
    safe_count = count.clamp(min=1)
    x = torch.where(observed, x_train, 0.0)
    mean = x.sum(1, keepdim=True) / safe_count
    var = torch.where(observed, x - mean, 0.0).square().sum(1, keepdim=True) / safe_count
    return mean, _safe_scale(var.sqrt())


def _safe_scale(scale: Tensor) -> Tensor:
    tiny = torch.finfo(scale.dtype).tiny ** 0.5
    return torch.where(scale > tiny, scale, torch.ones_like(scale))
