"""Output heads: how logits become a training loss and a predictive distribution.

A head owns everything specific to what is predicted: how it is fitted to prior samples
(bucket borders), the loss on logits ``[B, m, K]`` in model units, and the predictive
distribution in the user's units. Three heads:

* ``"riemann"``: the bar distribution with half-normal tails on the whole real line.
* ``"bounded"``: the bar distribution on a known interval ``ModelConfig.bounds`` — no tails,
  all mass on the interval (accuracies in [0, 1], say).
* ``"classes"``: a categorical distribution over up to ``K`` classes; classes a dataset does not
  use (labels above its largest) get no probability, in the loss and in prediction.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution

from priorfit.model.riemann import RiemannDistribution, borders_from_samples
from priorfit.transforms import DataTransform


class Head(nn.Module):
    """Base class. Subclasses set ``name`` and implement :meth:`loss` and
    :meth:`distribution`; ``fits_to_prior`` heads get :meth:`fit` called on prior targets."""

    name: ClassVar[str]
    fits_to_prior: ClassVar[bool] = False

    def __init__(self, config):
        super().__init__()
        self.num_outputs = config.num_outputs

    @classmethod
    def check_config(cls, config) -> None:
        """Raise ``ValueError`` if ``config`` (a ModelConfig) does not suit this head."""

    def check_prior(self, prior) -> None:
        """Raise ``ValueError`` if ``prior`` makes targets this head cannot represent."""

    def fit(self, targets: Tensor) -> None:
        """Fit to targets of prior test points in model units (any shape)."""

    def check_targets(self, name: str, y: Tensor) -> None:
        """Raise ``ValueError`` naming ``name`` if targets ``y`` are out of this head's range."""

    def loss(self, logits: Tensor, target: Tensor, y_train: Tensor,
             train_mask: Tensor | None = None) -> Tensor:
        """Per-point NLL ``[B, m]`` of ``target [B, m]`` (model units) under ``logits [B, m, K]``;
        ``y_train [B, n]`` (and its mask) are the dataset's training targets."""
        raise NotImplementedError

    def distribution(self, logits: Tensor, transform: DataTransform, y_train: Tensor,
                     train_mask: Tensor | None = None) -> Distribution:
        """Predictive of ``logits [*, m, K]`` in user units, batch shape ``[*, m]``; the
        transform's statistics and ``y_train [*, n]`` (user units) have the same leading dims."""
        raise NotImplementedError

    def nll(self, logits: Tensor, target: Tensor, transform: DataTransform, y_train: Tensor,
            train_mask: Tensor | None = None) -> Tensor:
        """Per-point NLL ``[B, m]`` of ``target [B, m]`` in user units (validation: comparable
        with exact posteriors); ``y_train [B, n]`` in user units."""
        return -self.distribution(logits, transform, y_train, train_mask).log_prob(target)


class RiemannHead(Head):
    """Bar distribution over ``K`` buckets with half-normal tails; borders ``[K + 1]`` are a
    buffer, set from equal-mass quantiles of prior targets by :meth:`fit`."""

    name = "riemann"
    fits_to_prior = True
    tails: ClassVar[bool] = True

    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("borders", self._initial_borders(config))

    def _initial_borders(self, config) -> Tensor:
        return torch.linspace(-3.0, 3.0, config.num_outputs + 1)

    @classmethod
    def check_config(cls, config) -> None:
        if config.num_outputs < 2:
            raise ValueError("ModelConfig.num_outputs (bucket count) must be at least 2")

    def fit(self, targets: Tensor) -> None:
        self.borders.copy_(borders_from_samples(targets, self.num_outputs))

    def _dist(self, borders: Tensor, logits: Tensor) -> RiemannDistribution:
        return RiemannDistribution(borders, logits, validate_args=False, tails=self.tails)

    def loss(self, logits, target, y_train, train_mask=None):
        return -self._dist(self.borders, logits).log_prob(target)

    def distribution(self, logits, transform, y_train, train_mask=None):
        return RiemannDistribution(transform.borders(self.borders), logits, tails=self.tails)


class BoundedRiemannHead(RiemannHead):
    """Bar distribution on ``[low, high] = ModelConfig.bounds`` with no tails: the outer borders
    are the bounds, the inner ones equal-mass quantiles of prior targets. Targets are used as
    they are (``y_transform = "none"``), so the interval is in the user's units."""

    name = "bounded"
    tails = False

    def __init__(self, config):
        self.low, self.high = config.bounds
        super().__init__(config)

    def _initial_borders(self, config) -> Tensor:
        return torch.linspace(self.low, self.high, config.num_outputs + 1)

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        low, high = config.bounds if len(config.bounds) == 2 else (None, None)
        if low is None or not low < high:
            raise ValueError(
                f"ModelConfig.bounds must be [low, high] with low < high, got {config.bounds}"
            )
        if config.y_transform != "none":
            raise ValueError(
                "the bounded head needs ModelConfig.y_transform = 'none' (its interval is in the "
                f"targets' own units), got {config.y_transform!r}"
            )

    def check_targets(self, name: str, y: Tensor) -> None:
        outside = (y < self.low) | (y > self.high)
        if bool(outside.any()):
            raise ValueError(
                f"{name} has {int(outside.sum())} value(s) outside the bounded head's interval "
                f"[{self.low:g}, {self.high:g}]; map them into it first"
            )

    def fit(self, targets: Tensor) -> None:
        self.check_targets("prior targets", targets)
        borders = borders_from_samples(targets, self.num_outputs)
        borders[0], borders[-1] = self.low, self.high  # inner borders lie strictly inside
        self.borders.copy_(borders)


class CategoricalHead(Head):
    """Logits over ``K = ModelConfig.num_outputs`` classes, labels ``0..K-1`` stored as floats.

    A dataset uses the classes ``0..c-1`` with ``c = max(2, largest label + 1)`` (the largest
    label over all its points in training and validation, over its training points in
    prediction); the other logits are masked, so the loss ignores classes a dataset does not
    use and prediction puts no mass on them."""

    name = "classes"

    @classmethod
    def check_config(cls, config) -> None:
        if config.y_transform != "none":
            raise ValueError(
                f"the classes head needs ModelConfig.y_transform = 'none', got "
                f"{config.y_transform!r}"
            )

    def check_prior(self, prior) -> None:
        classes = getattr(prior, "num_classes", None)
        if classes is not None and classes > self.num_outputs:
            raise ValueError(
                f"the prior has up to {classes} classes but ModelConfig.num_outputs (the head's "
                f"class count) is {self.num_outputs}"
            )

    def check_targets(self, name: str, y: Tensor) -> None:
        if bool(((y != y.round()) | (y < 0) | (y >= self.num_outputs)).any()):
            raise ValueError(
                f"{name} must hold class indices 0..{self.num_outputs - 1} for this classifier"
            )

    def _masked(self, logits: Tensor, largest: Tensor) -> Tensor:
        """Logits ``[*, m, K]`` with classes above ``max(1, largest [*])`` set to ``-inf``."""
        classes = torch.arange(self.num_outputs, device=logits.device)
        unused = classes > largest.clamp(min=1)[..., None, None]
        return logits.masked_fill(unused, -torch.inf)

    def _largest(self, y_train: Tensor, train_mask: Tensor | None) -> Tensor:
        """Largest training label per dataset ``[*]`` (``K - 1`` when there is none)."""
        if train_mask is not None:
            y_train = y_train.masked_fill(~train_mask, -1)
        if y_train.shape[-1] == 0:
            return y_train.new_full(y_train.shape[:-1], self.num_outputs - 1)
        largest = y_train.amax(-1)
        return torch.where(largest < 0, self.num_outputs - 1, largest)

    def loss(self, logits, target, y_train, train_mask=None):
        if train_mask is not None:
            y_train = y_train.masked_fill(~train_mask, -1)
        logits = self._masked(logits, torch.cat([y_train, target], -1).amax(-1))
        return F.cross_entropy(logits.transpose(1, 2), target.long(), reduction="none")

    def distribution(self, logits, transform, y_train, train_mask=None):
        return Categorical(logits=self._masked(logits, self._largest(y_train, train_mask)))

    def nll(self, logits, target, transform, y_train, train_mask=None):
        return self.loss(logits, target, y_train, train_mask)  # labels have no units


HEADS: dict[str, type[Head]] = {
    head.name: head for head in (RiemannHead, BoundedRiemannHead, CategoricalHead)
}
