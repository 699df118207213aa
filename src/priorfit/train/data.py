"""The stream of prior batches that training consumes.

Each micro-batch is identified by ``(step, index)`` and sampled with a generator seeded from
``(seed, stream, step, index)`` alone. The stream is therefore the same whatever the number of
DataLoader workers, a resumed run continues with exactly the batches it would have seen, and
``w`` processes with ``a`` accumulation steps see the same data as one process with ``w * a``
(process ``r`` takes indices ``r * a .. r * a + a - 1``).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from priorfit.priors.base import Batch
from priorfit.train.config import TrainConfig

# Stream tags keep training, validation, border-estimation and precision-probe batches apart.
TRAIN_STREAM, VALIDATION_STREAM, BORDER_STREAM, PRECISION_STREAM = 0, 1, 2, 3


def seeded_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of non-negative integers."""
    seed = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(seed)


def train_size_probs(config: TrainConfig) -> Tensor:
    """Probabilities ``[max_train - min_train + 1]`` of each training-set size."""
    sizes = torch.arange(config.min_train, config.max_train + 1, dtype=torch.float64)
    if config.train_size_sampling == "uniform":
        weights = torch.ones_like(sizes)
    else:
        weights = 1.0 / (config.seq_len - sizes)
    return weights / weights.sum()


def config_at_step(config: TrainConfig, step: int) -> TrainConfig:
    """The batch shape of training step ``step`` under the config's curriculum.

    Over the first ``ramp_steps`` steps the dataset length goes linearly (rounded down) from
    ``seq_len_start`` to ``seq_len`` (the largest training set ``max_train`` keeps its share of
    the length, and never falls below ``min_train``) and the batch from ``batch_size_start`` to
    ``batch_size`` datasets; afterwards, and for a field left at 0, the config's own sizes.
    """
    if step >= config.ramp_steps or not (config.seq_len_start or config.batch_size_start):
        return config
    fraction = step / config.ramp_steps
    changes = {}
    if config.batch_size_start:
        start = config.batch_size_start
        changes["batch_size"] = int(start + fraction * (config.batch_size - start))
    if config.seq_len_start:
        start = config.seq_len_start
        seq_len = int(start + fraction * (config.seq_len - start))
        max_train = max(config.min_train, min(seq_len - 1, config.max_train * seq_len
                                              // config.seq_len))
        changes.update(seq_len=seq_len, max_train=max_train)
    return dataclasses.replace(config, **changes)


def datasets_seen(config: TrainConfig, steps: int, world_size: int = 1) -> int:
    """Datasets that the first ``steps`` optimiser steps consume, curriculum included."""
    ramp = min(steps, config.ramp_steps)
    per_process = (sum(config_at_step(config, step).batch_size for step in range(ramp))
                   + (steps - ramp) * config.batch_size)
    return per_process * config.accumulation * world_size


@dataclass
class MicroBatch:
    """A prior batch and its cut: ``batch.x[:, :num_train]`` are the training points, the rest
    are predicted. With ``train_mask [B, num_train]`` (``True`` = a training point) each dataset
    has its own training-set size; its positions beyond that are neither trained on nor
    predicted."""

    batch: Batch
    num_train: int
    train_mask: Tensor | None = None

    def to(self, device: torch.device) -> MicroBatch:
        mask = None if self.train_mask is None else self.train_mask.to(device)
        return MicroBatch(self.batch.to(device), self.num_train, mask)


def sample_micro_batch(prior, config: TrainConfig, *key: int) -> MicroBatch:
    """The micro-batch identified by ``key`` (e.g. ``(seed, step, index)``). A prior with a
    ``sample_split(batch_size, seq_len, *, generator) -> (Batch, num_train)`` method chooses
    the cut itself (``min_train``, ``max_train`` and their sampling are then unused)."""
    generator = seeded_generator(*key)
    if hasattr(prior, "sample_split"):  # the prior draws its own cut (few-shot episodes)
        batch, num_train = prior.sample_split(config.batch_size, config.seq_len,
                                              generator=generator)
        return MicroBatch(batch, num_train)
    probs = train_size_probs(config)
    if not config.train_size_per_dataset:
        num_train = config.min_train + int(torch.multinomial(probs, 1, generator=generator))
        batch = prior.sample(config.batch_size, config.seq_len, generator=generator)
        return MicroBatch(batch, num_train)
    sizes = config.min_train + torch.multinomial(probs, config.batch_size, replacement=True,
                                                 generator=generator)
    batch = prior.sample(config.batch_size, config.seq_len, generator=generator)
    num_train = int(sizes.max())
    mask = torch.arange(num_train) < sizes[:, None]
    return MicroBatch(batch, num_train, mask.to(batch.x.device))


class PriorStream(IterableDataset):
    """Yields, for steps ``start_step..`` the micro-batches of process ``rank``, in order.

    With DataLoader workers, worker ``i`` of ``k`` produces every ``k``-th item; the DataLoader
    interleaves workers round-robin, so the order is that of a single process.
    """

    def __init__(self, prior, config: TrainConfig, start_step: int, rank: int):
        self.prior, self.config, self.start_step, self.rank = prior, config, start_step, rank

    def keys(self):
        accumulation = self.config.accumulation
        for step in range(self.start_step, self.config.steps):
            for i in range(accumulation):
                yield (self.config.seed, TRAIN_STREAM, step, self.rank * accumulation + i)

    def __iter__(self):
        worker = get_worker_info()
        num_workers, worker_id = (1, 0) if worker is None else (worker.num_workers, worker.id)
        for position, key in enumerate(self.keys()):
            if position % num_workers == worker_id:
                _, _, step, _ = key
                yield sample_micro_batch(self.prior, config_at_step(self.config, step), *key)


def micro_batches(prior, config: TrainConfig, start_step: int, rank: int) -> DataLoader:
    """DataLoader over :class:`PriorStream` (sampling in ``config.num_workers`` processes).

    Workers are started by a fork server (spawned where there is none), never forked from the
    training process itself: forking a process that runs other threads (JAX, an OpenMP pool)
    can deadlock. The prior is therefore pickled to the workers, and a script that trains with
    workers needs the usual ``if __name__ == "__main__":`` guard.
    """
    workers = config.num_workers
    methods = multiprocessing.get_all_start_methods()
    context = ("forkserver" if "forkserver" in methods else "spawn") if workers else None
    return DataLoader(
        PriorStream(prior, config, start_step, rank),
        batch_size=None,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        worker_init_fn=_single_thread,
        multiprocessing_context=context,
        # its own generator: a DataLoader otherwise draws a seed from the global generator
        # whenever an iterator starts, which would shift the dropout masks of a resumed run
        generator=torch.Generator(),
    )


def validation_batches(prior, config: TrainConfig) -> list[MicroBatch]:
    """Fixed held-out batches, independent of the training stream."""
    return [
        sample_micro_batch(prior, config, config.seed, VALIDATION_STREAM, i)
        for i in range(config.val_batches)
    ]


def _single_thread(_: int) -> None:
    torch.set_num_threads(1)
