"""Training configuration and TOML config files.

A config file has three tables, ``[prior]`` (``class`` plus the prior's parameters), ``[model]``
(:class:`~priorfit.model.registry.ModelConfig`) and ``[train]`` (:class:`TrainConfig`).
Unknown keys and wrong types are rejected with the table and key named.

A file may start from another: a top-level ``base = "other.toml"`` (a path relative to the file)
reads that file first, and each table of this one then sets its keys over the base's, one by
one; a ``[prior]`` of another ``class`` replaces the base's prior whole. A later training stage
names only what it changes (``init_from``, sizes, learning rate, ``out_dir``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from priorfit.model import ModelConfig
from priorfit.priors.base import prior_from_config
from priorfit.schema import dataclass_from_dict
from priorfit.train.optim import OPTIMIZERS
from priorfit.train.precision import PRECISIONS
from priorfit.train.schedule import CLOCKS, SCHEDULES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TRAIN_SIZE_SAMPLING = ("uniform", "paper")


@dataclass
class TrainConfig:
    """How to train a PFN.

    One optimiser step consumes ``batch_size * accumulation`` datasets per process (times the
    number of processes under ``torchrun``). Each dataset has ``seq_len`` points; the first
    ``n`` are the training set and the rest are predicted, with ``n`` drawn per micro-batch from
    ``[min_train, max_train]``: ``"uniform"``, or ``"paper"`` (probability proportional to
    ``1 / (seq_len - n)``, so that every ``n`` contributes equally many predicted points).

    Attributes:
        steps: optimiser steps.
        batch_size: datasets per micro-batch per process.
        accumulation: micro-batches per optimiser step (gradient accumulation).
        seq_len, min_train, max_train: points per dataset and the range of training-set sizes.
        train_size_sampling: ``"uniform"`` or ``"paper"``.
        train_size_per_dataset: draw ``n`` per dataset instead of per micro-batch; the batch is
            cut at the largest ``n`` and a key-padding mask hides the rest (predicted points
            are then those after the cut).
        ramp_steps, seq_len_start, batch_size_start: a curriculum over the first
            ``ramp_steps`` steps: datasets grow linearly from ``seq_len_start`` points to
            ``seq_len`` (``max_train`` shrinks in proportion) and micro-batches from
            ``batch_size_start`` datasets to ``batch_size``; 0 leaves that dimension at full
            size (see :func:`priorfit.train.data.config_at_step`).
        optimizer: ``"adamw"``, or ``"muon"`` (Muon for the transformer's weight matrices,
            AdamW for the rest; see :mod:`priorfit.train.optim`).
        lr, weight_decay: learning rate and decoupled weight decay (weight matrices only).
        warmup_steps, lr_schedule, min_lr_ratio, cooldown_fraction, schedule_clock: linear
            warm-up, then ``"cosine"``, ``"linear"`` or ``"wsd"`` decay to ``lr * min_lr_ratio``
            (``"wsd"``: constant, then linear over the last ``cooldown_fraction``), by steps or
            by wall time against ``time_limit_s`` (:mod:`priorfit.train.schedule`).
        ema_decay: with ``0 < ema_decay < 1``, an exponential moving average of the weights
            (``torch.optim.swa_utils``) is what is validated, saved and returned.
        grad_clip: clip the global gradient norm to this (0 disables).
        precision: ``"float32"``, ``"bfloat16"`` (autocast; norms, residuals and the decoder to
            logits stay float32) or ``"auto"``: on CUDA bfloat16 where supported, on a CPU the
            faster of the two, timed on a probe batch at the start (see
            :mod:`priorfit.train.precision`); the choice and the timings go into the card.
        compile: ``torch.compile`` the model's forward, dynamic shapes; batches with fewer
            than two training points run eagerly. Not for the ``"cells"`` architecture.
        num_workers: DataLoader worker processes sampling the prior (0: in the main process).
        seed: seeds initialisation, data and validation; same seed, same run.
        border_datasets: prior datasets used to estimate the Riemann bucket borders.
        val_every, val_batches: validate every so many steps on this many fixed held-out
            batches of ``batch_size`` datasets.
        checkpoint_every: write an atomic checkpoint every so many steps.
        log_every: log metrics every so many steps.
        out_dir: where checkpoints, metrics and the final model go.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
        time_limit_s: stop after this much wall time (0: no limit); the run can be resumed.
        init_from: a zoo name or model file whose weights a fresh run starts from
            (:func:`priorfit.train.warm_start.warm_start`); ``""``: random initialisation. A
            resumed run continues from its checkpoint instead.
    """

    steps: int = 10_000
    batch_size: int = 64
    accumulation: int = 1
    seq_len: int = 128
    min_train: int = 0
    max_train: int = 100
    train_size_sampling: str = "paper"
    train_size_per_dataset: bool = False
    ramp_steps: int = 0
    seq_len_start: int = 0
    batch_size_start: int = 0
    optimizer: str = "adamw"
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 500
    lr_schedule: str = "cosine"
    min_lr_ratio: float = 0.01
    cooldown_fraction: float = 0.2
    schedule_clock: str = "steps"
    ema_decay: float = 0.0
    grad_clip: float = 1.0
    precision: str = "auto"
    compile: bool = False
    num_workers: int = 0
    seed: int = 0
    border_datasets: int = 4096
    val_every: int = 500
    val_batches: int = 8
    checkpoint_every: int = 500
    log_every: int = 50
    out_dir: str = "runs/default"
    device: str = "auto"
    time_limit_s: float = 0.0
    init_from: str = ""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "accumulation", "seq_len", "border_datasets",
                     "val_every", "val_batches", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"TrainConfig.{name} must be at least 1, got {getattr(self, name)}"
                )
        if not 0 <= self.min_train <= self.max_train < self.seq_len:
            raise ValueError(
                "TrainConfig needs 0 <= min_train <= max_train < seq_len, got "
                f"min_train={self.min_train}, max_train={self.max_train}, seq_len={self.seq_len}"
            )
        if self.ramp_steps < 0:
            raise ValueError(f"TrainConfig.ramp_steps must be >= 0, got {self.ramp_steps}")
        if self.seq_len_start and not self.min_train < self.seq_len_start <= self.seq_len:
            raise ValueError(
                "TrainConfig.seq_len_start must be 0 (off) or in (min_train, seq_len], got "
                f"{self.seq_len_start} with min_train={self.min_train}, seq_len={self.seq_len}"
            )
        if not 0 <= self.batch_size_start <= self.batch_size:
            raise ValueError(
                "TrainConfig.batch_size_start must be 0 (off) or in [1, batch_size], got "
                f"{self.batch_size_start} with batch_size={self.batch_size}"
            )
        if self.train_size_sampling not in TRAIN_SIZE_SAMPLING:
            raise ValueError(
                f"TrainConfig.train_size_sampling must be one of {TRAIN_SIZE_SAMPLING}, "
                f"got {self.train_size_sampling!r}"
            )
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be positive, got {self.lr}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("lr_schedule", SCHEDULES),
                              ("schedule_clock", CLOCKS), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"TrainConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if self.schedule_clock == "time" and not self.time_limit_s > 0:
            raise ValueError("TrainConfig.schedule_clock = 'time' needs a time_limit_s > 0")
        if not 0 < self.cooldown_fraction <= 1:
            raise ValueError(
                f"TrainConfig.cooldown_fraction must be in (0, 1], got {self.cooldown_fraction}"
            )
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.num_workers < 0:
            raise ValueError(f"TrainConfig.num_workers must be >= 0, got {self.num_workers}")


def train_config_from_card(train: dict, where: str = "model card train") -> TrainConfig:
    """The ``TrainConfig`` recorded in a model card's ``"train"`` table. Cards written before
    the precision was chosen per machine name it by ``amp`` (CUDA) and ``cpu_amp`` (CPU); every
    shipped model was trained on a CPU, so ``cpu_amp`` decides."""
    train = dict(train)
    if "cpu_amp" in train or "amp" in train:
        train.pop("amp", None)
        train.setdefault("precision", "bfloat16" if train.pop("cpu_amp", False) else "float32")
    return dataclass_from_dict(TrainConfig, train, where)


def load_config(path: str | Path) -> tuple[Any, ModelConfig, TrainConfig]:
    """Read a TOML training config: ``(prior, ModelConfig, TrainConfig)``."""
    path = Path(path)
    data = read_config_tables(path)
    if "prior" not in data:
        raise ValueError(f"{path} has no [prior] table")
    try:
        prior = prior_from_config(data["prior"])
    except TypeError as error:
        raise ValueError(f"[prior] in {path}: {error}") from None
    model = dataclass_from_dict(ModelConfig, data.get("model", {}), "model")
    train = dataclass_from_dict(TrainConfig, data.get("train", {}), "train")
    return prior, model, train


def read_config_tables(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, dict]:
    """The ``[prior]``, ``[model]`` and ``[train]`` tables of the config file ``path``, each
    merged over those of its ``base`` chain (see the module docstring)."""
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ValueError(f"the base chain of config files loops: {chain}")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        where = f" (the base of {seen[-1]})" if seen else ""
        raise ValueError(f"config file {path}{where} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config file {path} is not valid TOML: {error}") from None
    unknown = set(data) - {"base", "prior", "model", "train"}
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)} in {path}; allowed: base, "
                         "[prior], [model], [train]")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ValueError(f"base in {path} must be the path of a config file, got {base!r}")
    merged = read_config_tables(path.parent / base, (*seen, path.resolve()))
    for table, values in data.items():
        inherited = merged.get(table, {})
        if table == "prior" and "class" in values and values["class"] != inherited.get("class"):
            inherited = {}  # another prior: none of the base's knobs applies
        merged[table] = {**inherited, **values}
    return merged
