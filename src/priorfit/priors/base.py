"""The prior protocol, the batch it produces, and mixtures of priors.

A prior is anything with ``sample(batch_size, seq_len, *, generator, device) -> Batch`` and a
``num_features`` attribute. A prior whose datasets come with their own cut between training and
test points (few-shot episodes: the support set first) also has ``sample_split(...) -> (Batch,
num_train)``, which training then uses instead of drawing the cut. Priors in this package are
dataclasses, so their parameters serialise into a model card (:func:`prior_to_config`) and back
(:func:`prior_from_config`); so do a user's own dataclass priors, recorded by module and name
and rebuilt where that module is importable.
"""

from __future__ import annotations

import dataclasses
import importlib
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
    """``{"class": name, **parameters}`` of a dataclass prior, nested priors included.

    The priors of :mod:`priorfit.priors` are named as there (``"GP"``); any other dataclass by
    where it is defined, ``"module:QualifiedName"`` (e.g. ``"mypkg.priors:MyPrior"``), so that
    :func:`prior_from_config` can import it again.
    """
    if not dataclasses.is_dataclass(prior) or isinstance(prior, type):
        raise TypeError(f"cannot serialise prior of type {type(prior).__name__}: not a dataclass")
    config: dict[str, Any] = {"class": _class_name(type(prior))}
    for f in dataclasses.fields(prior):
        value = getattr(prior, f.name)
        if dataclasses.is_dataclass(value):
            value = prior_to_config(value)
        elif isinstance(value, (list, tuple)):
            value = [prior_to_config(v) if dataclasses.is_dataclass(v) else v for v in value]
        config[f.name] = value
    return config


def prior_from_config(config: dict) -> Any:
    """Rebuild a prior (or input distribution) written by :func:`prior_to_config`.

    A ``"module:QualifiedName"`` class is found by importing ``module`` (which runs its code, as
    any import does: rebuild only configs you trust) and looking ``QualifiedName`` up in it;
    nothing is evaluated. It must be a dataclass.
    """
    config = dict(config)
    cls = _resolve_class(config.pop("class", None))

    def build(value: Any) -> Any:
        if isinstance(value, dict) and "class" in value:
            return prior_from_config(value)
        if isinstance(value, list):
            return [build(v) for v in value]
        return value

    return cls(**{k: build(v) for k, v in config.items()})


def _class_name(cls: type) -> str:
    """How :func:`prior_to_config` names ``cls``: bare for priorfit's priors, else qualified."""
    from priorfit import priors  # the registry is the public namespace

    if getattr(priors, cls.__name__, None) is cls:
        return cls.__name__
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve_class(name: Any) -> type:
    """The dataclass a config's ``"class"`` names (see :func:`prior_to_config`)."""
    from priorfit import priors

    if not isinstance(name, str) or ":" not in name:
        cls = getattr(priors, name, None) if isinstance(name, str) else None
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise ValueError(f"unknown prior class {name!r} in config")
        return cls
    module_name, _, qualname = name.partition(":")
    if "<locals>" in qualname.split("."):
        raise ValueError(
            f"prior class {qualname!r} of module {module_name!r} was defined inside a function "
            "and cannot be rebuilt; define it at module level"
        )
    modules, attributes = module_name.split("."), qualname.split(".")
    if not all(part.isidentifier() for part in (*modules, *attributes)) or any(
        part.startswith("__") for part in attributes
    ):
        raise ValueError(f"malformed prior class {name!r} in config; expected 'module:Class'")
    try:
        target = importlib.import_module(module_name)
    except ImportError as error:
        missing = getattr(error, "name", None)
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            problem = f"module {module_name!r} was not found"
        else:
            problem = f"importing module {module_name!r} failed ({error})"
        raise ValueError(
            f"cannot rebuild prior class {qualname!r}: {problem}; the module must be importable "
            "where the config is read (installed, or on PYTHONPATH)"
        ) from None
    for attribute in attributes:
        target = getattr(target, attribute, None)
        if target is None:
            hint = (" (it was defined in a script run as __main__; define it in an importable "
                    "module instead)" if module_name == "__main__" else "")
            raise ValueError(
                f"cannot rebuild prior class {qualname!r}: module {module_name!r} does not "
                f"define it{hint}"
            )
    if not isinstance(target, type):
        raise ValueError(f"{name!r} in config is not a class")
    if not dataclasses.is_dataclass(target):
        raise ValueError(
            f"prior class {qualname!r} of module {module_name!r} is not a dataclass; only "
            "dataclass priors can be rebuilt from a config"
        )
    return target
