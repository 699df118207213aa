"""Input distributions: where the x of a synthetic dataset come from.

Each is a dataclass with ``sample(shape, *, generator, device) -> Tensor`` (float32, of ``shape``).

Device handling, shared by every prior in this package: random numbers are drawn on the
generator's device (a CPU generator draws on the CPU) and the result is then moved to ``device``.
Without a generator the global RNG of ``device`` is used. ``device=None`` means the generator's
device, or the CPU when there is no generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def draw_device(
    generator: torch.Generator | None, device: torch.device | str | None
) -> torch.device:
    """The device random numbers must be drawn on: the generator's, else ``device`` (else CPU)."""
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def target_device(
    generator: torch.Generator | None, device: torch.device | str | None
) -> torch.device:
    """The device results are returned on: ``device``, else the generator's (else CPU)."""
    return torch.device(device) if device is not None else draw_device(generator, None)


@dataclass
class Uniform:
    """Independent uniform inputs on ``[low, high)``."""

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"Uniform needs high > low, got low={self.low}, high={self.high}")

    def sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """A float32 tensor of ``shape`` on ``device``."""
        u = torch.rand(shape, generator=generator, device=draw_device(generator, device))
        return (self.low + (self.high - self.low) * u).to(target_device(generator, device))


@dataclass
class Normal:
    """Independent Gaussian inputs with the given ``mean`` and standard deviation ``std``."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise ValueError(f"Normal needs std > 0, got std={self.std}")

    def sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """A float32 tensor of ``shape`` on ``device``."""
        z = torch.randn(shape, generator=generator, device=draw_device(generator, device))
        return (self.mean + self.std * z).to(target_device(generator, device))
