"""Training precision: float32, or bfloat16 autocast, chosen for the machine.

CPUs differ: with native bfloat16 (AMX) autocast is faster than float32, without it much slower
(about 15x on one machine here). ``precision = "auto"`` therefore measures: it times a few
forward and backward passes of a copy of the model in both precisions, on one micro-batch that
training never sees, and keeps the faster; on CUDA it takes bfloat16 where the GPU supports it.
The measurement leaves the model, the optimiser, the data stream and the random state as they
were, so a run is reproducible given the precision it records.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable

import torch
from torch import nn

PRECISIONS = ("auto", "float32", "bfloat16")
TIMED_PASSES = 2  # after one warm-up pass each


def autocast(precision: str, device: torch.device):
    """The autocast context of a resolved precision (``"float32"``: none)."""
    if precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def choose_precision(
    requested: str,
    model: nn.Module,
    device: torch.device,
    loss_fn: Callable[[nn.Module], torch.Tensor],
) -> tuple[str, dict[str, float]]:
    """Resolve ``requested`` (one of :data:`PRECISIONS`) to ``"float32"`` or ``"bfloat16"``.

    ``loss_fn(model) -> scalar`` is one training micro-batch's loss. Returns the precision and,
    when measured, the seconds per forward + backward pass of each.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"TrainConfig.precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested, {}
    if device.type == "cuda":
        return ("bfloat16" if torch.cuda.is_bf16_supported() else "float32"), {}
    rng = torch.get_rng_state()
    trial = copy.deepcopy(model).train()
    timings = {p: _seconds_per_pass(trial, device, p, loss_fn) for p in ("float32", "bfloat16")}
    torch.set_rng_state(rng)
    return min(timings, key=timings.get), timings


def _seconds_per_pass(model, device, precision: str, loss_fn) -> float:
    times = []
    for i in range(TIMED_PASSES + 1):
        start = time.perf_counter()
        with autocast(precision, device):
            loss = loss_fn(model)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - start)
    return min(times)
