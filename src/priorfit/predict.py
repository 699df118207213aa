"""Prediction: validate user data, condition once, predict test points in chunks.

The training set is run through the network once (keys and values cached per layer); test
points are then predicted ``chunk_size`` at a time, so memory stays bounded for any number of
test points. Predictions come back in the user's units.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from priorfit.model.riemann import RiemannDistribution
from priorfit.model.transformer import PFN
from priorfit.transforms import fit_transform


def as_float_tensor(name: str, value, device: torch.device) -> Tensor:
    """Numbers (numpy, torch, nested lists) -> float32 tensor; clear errors for anything else."""
    if isinstance(value, Tensor):
        tensor = value.detach()
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
    tensor = tensor.to(device=device, dtype=torch.float32)
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); remove or impute them")
    return tensor


def check_dataset(
    x_train: Tensor, y_train: Tensor, x_test: Tensor, max_features: int
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Check shapes; return batched ``[B, n, F]``, ``[B, n]``, ``[B, m, F]`` and whether the
    input was batched."""
    batched = x_train.dim() == 3
    if x_train.dim() not in (2, 3):
        raise ValueError(
            f"x_train must be [n, features] or batched [B, n, features], got shape "
            f"{tuple(x_train.shape)} (for one feature use x.reshape(-1, 1))"
        )
    if x_test.dim() != x_train.dim():
        raise ValueError(
            f"x_test must have as many dimensions as x_train ({x_train.dim()}), got shape "
            f"{tuple(x_test.shape)}"
        )
    if y_train.dim() != x_train.dim() - 1:
        raise ValueError(
            f"y_train must be {'[B, n]' if batched else '[n]'} to match x_train "
            f"{tuple(x_train.shape)}, got shape {tuple(y_train.shape)}"
        )
    if not batched:
        x_train, y_train, x_test = x_train[None], y_train[None], x_test[None]
    if y_train.shape != x_train.shape[:2]:
        raise ValueError(
            f"x_train has {x_train.shape[1]} points but y_train has {y_train.shape[1]} "
            f"(shapes {tuple(x_train.shape)} and {tuple(y_train.shape)})"
        )
    if x_test.shape[0] != x_train.shape[0]:
        raise ValueError(
            f"x_test has {x_test.shape[0]} datasets but x_train has {x_train.shape[0]}"
        )
    if x_test.shape[2] != x_train.shape[2]:
        raise ValueError(
            f"x_test has {x_test.shape[2]} features but x_train has {x_train.shape[2]}"
        )
    num_features = x_train.shape[2]
    if not 1 <= num_features <= max_features:
        raise ValueError(
            f"x_train has {num_features} features; this model takes 1 to {max_features}"
        )
    return x_train, y_train, x_test, batched


@torch.inference_mode()
def predict(
    model: PFN, x_train, y_train, x_test, *, chunk_size: int = 2048
) -> torch.distributions.Distribution:
    """Posterior predictive of ``model`` at ``x_test`` given ``(x_train, y_train)``.

    Args:
        x_train: ``[n, F]`` or batched ``[B, n, F]`` (numpy, torch or lists; ``n`` may be 0).
        y_train: ``[n]`` or ``[B, n]``.
        x_test: ``[m, F]`` or ``[B, m, F]``.
        chunk_size: test points per forward pass.

    Returns:
        For regression a :class:`RiemannDistribution` with batch shape ``[m]`` (or ``[B, m]``)
        in the user's units; for classification a ``Categorical`` over the classes.
    """
    config = model.config
    device = next(model.parameters()).device
    x_train, y_train, x_test, batched = check_dataset(
        as_float_tensor("x_train", x_train, device),
        as_float_tensor("y_train", y_train, device),
        as_float_tensor("x_test", x_test, device),
        config.num_features,
    )
    if config.task == "classification":
        _check_labels(y_train, config.num_outputs)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")

    transform = fit_transform(config.x_transform, config.y_transform, x_train, y_train)
    logits = logits_in_chunks(
        model, transform.x(x_train), transform.y(y_train), transform.x(x_test), chunk_size
    )
    if not batched:
        logits = logits[0]
    if config.task == "classification":
        return torch.distributions.Categorical(logits=logits)
    borders = transform.borders(model.borders)
    return RiemannDistribution(borders if batched else borders[0], logits)


def logits_in_chunks(
    model: PFN, x_train: Tensor, y_train: Tensor, x_test: Tensor, chunk_size: int = 2048
) -> Tensor:
    """Logits ``[B, m, K]`` for data already in model units (``[B, n, F]``, ``[B, n]``,
    ``[B, m, F]``): the training set is conditioned on once, test points go ``chunk_size`` at a
    time. A test point's logits do not depend on the other test points, bit for bit."""
    cache = model.condition(x_train, y_train)
    return torch.cat(
        [
            model.predict_logits(cache, x_test[:, start : start + chunk_size])
            for start in range(0, max(x_test.shape[1], 1), chunk_size)
        ],
        dim=1,
    )[:, : x_test.shape[1]]


def _check_labels(y_train: Tensor, num_classes: int) -> None:
    if ((y_train != y_train.round()) | (y_train < 0) | (y_train >= num_classes)).any():
        raise ValueError(
            f"y_train must hold class indices 0..{num_classes - 1} for this classifier"
        )
