"""Model configuration, the architecture registry, and building PFNs from configs and cards.

An architecture is a :class:`~priorfit.model.pfn.PFN` subclass registered under a name with
:func:`register_architecture`; ``ModelConfig.arch`` picks it and ``ModelConfig.head`` picks the
output head (:data:`~priorfit.model.heads.HEADS`). Training, saving, loading and prediction go
through :func:`build_model` and :func:`load`, so a new architecture is one new module.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from priorfit import io, zoo
from priorfit.model.heads import HEADS
from priorfit.schema import dataclass_from_dict
from priorfit.transforms import X_TRANSFORMS, Y_TRANSFORMS

ARCHITECTURES: dict[str, type] = {}
"""Architecture name -> PFN subclass; filled by :func:`register_architecture`."""


def register_architecture(name: str):
    """Class decorator: make a PFN subclass buildable as ``ModelConfig(arch=name)``."""

    def register(cls: type) -> type:
        if name in ARCHITECTURES and ARCHITECTURES[name] is not cls:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = cls
        cls.arch = name
        return cls

    return register


@dataclass
class ModelConfig:
    """Architecture and head of a PFN.

    Attributes:
        arch: the network, a name in :data:`ARCHITECTURES`: ``"rows"`` (one token per data
            point), ``"cells"`` (one token per table cell) or ``"images"`` (one token per
            image: a convolutional encoder, for few-shot classification).
        head: the output head, a name in :data:`~priorfit.model.heads.HEADS`: ``"riemann"``
            (bar distribution on the real line), ``"bounded"`` (bar distribution on
            ``bounds``), ``"classes"`` (up to ``num_outputs`` classes).
        num_features: the most input features a dataset may have.
        num_outputs: bucket count of a Riemann head, or the most classes.
        bounds: ``[low, high]``, the interval of a bounded head (unused by the others).
        d_model, num_heads, num_layers, d_ff: transformer sizes.
        dropout: dropout in attention outputs and feed-forward blocks.
        x_transform: ``"none"``, ``"unit_cube"`` or ``"standardize"`` (per feature, NaN
            skipped) — per dataset, before the model (see :mod:`priorfit.transforms`); the same
            transform is used in training and prediction.
        y_transform: ``"none"`` or ``"standardize"``, likewise.
        features_per_group: ``"cells"`` only: features embedded together in one token.
        thinking_rows: ``"cells"`` only: learned extra rows every row can attend to.
        residual_scale: the initial value of a learned per-channel gain on every residual
            branch (attention and feed-forward outputs; LayerScale); 1.0 means no gain at all.
    """

    arch: str = "rows"
    head: str = "riemann"
    num_features: int = 1
    num_outputs: int = 1000
    bounds: list[float] = field(default_factory=lambda: [0.0, 1.0])
    d_model: int = 256
    num_heads: int = 4
    num_layers: int = 6
    d_ff: int = 512
    dropout: float = 0.0
    x_transform: str = "none"
    y_transform: str = "none"
    features_per_group: int = 1
    thinking_rows: int = 0
    residual_scale: float = 1.0

    def __post_init__(self) -> None:
        _check_choice("arch", self.arch, ARCHITECTURES)
        _check_choice("head", self.head, HEADS)
        _check_choice("x_transform", self.x_transform, X_TRANSFORMS)
        _check_choice("y_transform", self.y_transform, Y_TRANSFORMS)
        for name in ("num_features", "num_outputs", "d_model", "num_heads", "num_layers", "d_ff",
                     "features_per_group"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.thinking_rows, int) or self.thinking_rows < 0:
            raise ValueError(
                f"ModelConfig.thinking_rows must be an integer >= 0, got {self.thinking_rows!r}"
            )
        if self.d_model % self.num_heads:
            raise ValueError(
                f"ModelConfig.d_model ({self.d_model}) must be divisible by num_heads "
                f"({self.num_heads})"
            )
        if not 0.0 < self.residual_scale <= 1.0:
            raise ValueError(
                f"ModelConfig.residual_scale must be in (0, 1], got {self.residual_scale!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        self.bounds = [float(b) for b in self.bounds]
        HEADS[self.head].check_config(self)


def _check_choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(
            f"ModelConfig.{name} must be one of {sorted(allowed)}, got {value!r}"
        )


def build_model(config: ModelConfig):
    """A freshly initialised PFN of ``config.arch`` with ``config.head``."""
    return ARCHITECTURES[config.arch](config)


_LEGACY_TASKS = {"regression": "riemann", "classification": "classes"}


def model_config_from_card(model: dict, where: str = "model card") -> ModelConfig:
    """The ``ModelConfig`` recorded in a card's ``"model"`` table, also from files written
    before architectures and heads were named (a ``task`` key instead of ``head``)."""
    model = dict(model)
    if "task" in model:
        task = model.pop("task")
        if task not in _LEGACY_TASKS:
            raise ValueError(f"[{where}] task must be one of {sorted(_LEGACY_TASKS)}, got {task!r}")
        model.setdefault("head", _LEGACY_TASKS[task])
    arch = model.get("arch", "rows")
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"[{where}] arch {arch!r} is not an architecture this version of priorfit knows; "
            f"known: {sorted(ARCHITECTURES)} (was the file written by a newer priorfit?)"
        )
    return dataclass_from_dict(ModelConfig, model, where)


def _upgrade_legacy_names(tensors: dict) -> dict:
    """Tensor names of files written before architectures and heads were modules: the borders
    were top-level and the feed-forward layers sat directly in each block."""
    renamed = {}
    for name, tensor in tensors.items():
        if name == "borders":
            name = "head.borders"
        name = re.sub(r"^blocks\.(\d+)\.(norm_ff|ff)\.", r"blocks.\1.feed_forward.\2.", name)
        renamed[name] = tensor
    return renamed


def load(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu"):
    """Load a PFN from a file written by ``PFN.save``, or by name from the shipped zoo."""
    path = Path(name_or_path)
    if not path.is_file():
        if str(name_or_path) not in zoo.names():
            raise ValueError(
                f"{str(name_or_path)!r} is neither a file nor a shipped model; "
                f"shipped models: {', '.join(zoo.names()) or 'none'}"
            )
        path = zoo.path(str(name_or_path))
    tensors, card = io.read(path, device=device)
    if "arch" not in card.get("model", {}):  # written before architectures and heads
        tensors = _upgrade_legacy_names(tensors)
    try:
        config = model_config_from_card(card["model"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path} has an unreadable model card: {error!r}") from None
    model = build_model(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match its model card: missing {missing}, unexpected {unexpected}"
        )
    model.card = {**card, "model": dataclasses.asdict(config)}
    return model.to(device).eval()
