"""The prior protocol, the batch it produces, and mixtures of priors.

A prior is anything with ``sample(batch_size, seq_len, *, generator, device) -> Batch`` and a
``num_features`` attribute. Priors in this package are dataclasses, so their parameters serialise
into a model card (:func:`prior_to_config`) and back (:func:`prior_from_config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class Batch:
    """A batch of synthetic datasets, batch-first.

    Attributes:
        x: ``[B, T, F]`` float32 inputs.
        y: ``[B, T]`` float32 targets (class indices stored as floats for classification priors).
    """

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.dim() != 3 or self.y.dim() != 2 or self.x.shape[:2] != self.y.shape:
            raise ValueError(
                f"Batch expects x [B, T, F] and y [B, T]; got x {tuple(self.x.shape)} "
                f"and y {tuple(self.y.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]

    @property
    def seq_len(self) -> int:
        return self.x.shape[1]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.x.to(device), self.y.to(device))


@runtime_checkable
class Prior(Protocol):
    """What the training loop needs from a prior."""

    num_features: int

    def sample(
        self,
        batch_size: int,
        seq_len: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Batch: ...


@dataclass
class Mixture:
    """Draws each dataset from one of several priors, chosen with probability ``weights``.

    All components must have the same ``num_features``. The datasets of a batch are shuffled
    so that components are interleaved.
    """

    priors: list[Any]
    weights: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.priors:
            raise ValueError("Mixture needs at least one prior")
        if not self.weights:
            self.weights = [1.0] * len(self.priors)
        if len(self.weights) != len(self.priors):
            raise ValueError(
                f"Mixture got {len(self.priors)} priors but {len(self.weights)} weights"
            )
        if any(not (w >= 0) for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError(
                f"Mixture weights must be non-negative with a positive sum, got {self.weights}"
            )
        widths = {p.num_features for p in self.priors}
        if len(widths) != 1:
            raise ValueError(f"Mixture components must share num_features, got {sorted(widths)}")

    @property
    def num_features(self) -> int:
        return self.priors[0].num_features

    def sample(
        self,
        batch_size: int,
        seq_len: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Batch:
        probs = torch.tensor(self.weights, dtype=torch.float64)
        choice = torch.multinomial(probs, batch_size, replacement=True, generator=generator)
        counts = torch.bincount(choice, minlength=len(self.priors)).tolist()
        parts = [
            prior.sample(count, seq_len, generator=generator, device=device)
            for prior, count in zip(self.priors, counts, strict=True)
            if count > 0
        ]
        x = torch.cat([p.x for p in parts])
        y = torch.cat([p.y for p in parts])
        order = torch.randperm(batch_size, generator=generator).to(x.device)
        return Batch(x[order], y[order])


def prior_to_config(prior: Any) -> dict:
    """``{"class": name, **parameters}`` of a dataclass prior, nested priors included."""
    if not dataclasses.is_dataclass(prior):
        raise TypeError(f"cannot serialise prior of type {type(prior).__name__}: not a dataclass")
    config: dict[str, Any] = {"class": type(prior).__name__}
    for f in dataclasses.fields(prior):
        value = getattr(prior, f.name)
        if dataclasses.is_dataclass(value):
            value = prior_to_config(value)
        elif isinstance(value, (list, tuple)):
            value = [prior_to_config(v) if dataclasses.is_dataclass(v) else v for v in value]
        config[f.name] = value
    return config


def prior_from_config(config: dict) -> Any:
    """Rebuild a prior (or input distribution) written by :func:`prior_to_config`."""
    from priorfit import priors  # the registry is the public namespace

    config = dict(config)
    name = config.pop("class", None)
    cls = getattr(priors, name, None) if isinstance(name, str) else None
    if cls is None or not dataclasses.is_dataclass(cls):
        raise ValueError(f"unknown prior class {name!r} in config")

    def build(value: Any) -> Any:
        if isinstance(value, dict) and "class" in value:
            return prior_from_config(value)
        if isinstance(value, list):
            return [build(v) for v in value]
        return value

    return cls(**{k: build(v) for k, v in config.items()})
