"""Input distributions: where the x of a synthetic dataset come from.

Each is a dataclass with ``sample(shape, *, generator, device) -> Tensor`` (float32, of ``shape``).

Device handling, shared by every prior in this package: random numbers are drawn on the
generator's device (a CPU generator draws on the CPU) and the result is then moved to ``device``.
Without a generator the global RNG of ``device`` is used. ``device=None`` means the generator's
device, or the CPU when there is no generator.
"""

from __future__ import annotations

import math
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


@dataclass
class MixedInputs:
    """Columns as in real tables: each feature of each dataset draws its own marginal.

    With probabilities ``weights`` a feature is uniform on [0, 1), standard normal, log-normal
    (``exp`` of a standard normal: skewed, like counts or prices) or discrete with 2 to
    ``max_levels`` equally likely levels ``0, 1/(k-1), ..., 1`` (binary flags, ordinal codes).
    Every point of a feature shares its marginal; shape ``[..., T, F]``.
    """

    weights: tuple[float, float, float, float] = (0.4, 0.2, 0.2, 0.2)
    max_levels: int = 5

    def __post_init__(self) -> None:
        self.weights = tuple(float(w) for w in self.weights)
        if len(self.weights) != 4 or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError(
                "MixedInputs.weights must be 4 non-negative numbers (uniform, normal, log-normal, "
                f"discrete) with a positive sum, got {self.weights}"
            )
        if isinstance(self.max_levels, bool) or not isinstance(self.max_levels, int):
            raise ValueError(f"MixedInputs.max_levels must be an int, got {self.max_levels!r}")
        if self.max_levels < 2:
            raise ValueError(f"MixedInputs.max_levels must be >= 2, got {self.max_levels}")

    def sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """A float32 tensor of ``shape`` (at least ``[T, F]``) on ``device``."""
        draw = draw_device(generator, device)
        column = (*shape[:-2], 1, shape[-1])  # one marginal per dataset and feature
        weights = torch.tensor(self.weights, device=draw)
        cumulative = (weights / weights.sum()).cumsum(0)
        kind = torch.searchsorted(cumulative, torch.rand(column, generator=generator, device=draw))
        levels = torch.randint(2, self.max_levels + 1, column, generator=generator, device=draw)
        u = torch.rand(shape, generator=generator, device=draw)
        z = torch.randn(shape, generator=generator, device=draw)
        discrete = (u * levels).floor() / (levels - 1)
        marginals = torch.stack([u, z, z.exp(), discrete])  # [4, *shape]
        x = marginals.gather(0, kind.expand(shape).unsqueeze(0)).squeeze(0)
        return x.to(target_device(generator, device))


@dataclass
class ClusteredInputs:
    """Inputs in the unit cube as a Bayesian optimisation run collects them: spread out at
    first, then concentrated around the good points found (the inputs a BO surrogate is asked
    about). PFNs4BO's prior samples clustered inputs for the same reason.

    Each dataset is, with probability ``1 - clustered_prob``, uniform on ``[0, 1)``. Otherwise
    it draws a uniform share ``u ~ U(0, 1)``, 1 to ``max_centres`` centres uniform in the cube
    and a spread ``s``, log-uniform in ``[min_std, max_std]``; each point is uniform with
    probability ``u``, else a centre (chosen at random) plus ``N(0, s²)`` noise per coordinate,
    clamped to ``[0, 1]`` (BO runs sample the box's faces too). Shape ``[..., T, F]``.
    """

    clustered_prob: float = 0.5
    max_centres: int = 3
    min_std: float = 0.01
    max_std: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.clustered_prob <= 1:
            raise ValueError(
                f"ClusteredInputs.clustered_prob must be in [0, 1], got {self.clustered_prob}"
            )
        if isinstance(self.max_centres, bool) or not isinstance(self.max_centres, int) \
                or self.max_centres < 1:
            raise ValueError(
                f"ClusteredInputs.max_centres must be an int >= 1, got {self.max_centres!r}"
            )
        if not 0 < self.min_std <= self.max_std:
            raise ValueError(
                "ClusteredInputs needs 0 < min_std <= max_std, got "
                f"min_std={self.min_std}, max_std={self.max_std}"
            )

    def sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """A float32 tensor of ``shape`` (at least ``[T, F]``) in ``[0, 1]`` on ``device``."""
        draw = draw_device(generator, device)
        *batch, points, features = shape

        def per_dataset(*tail: int) -> Tensor:
            return torch.rand((*batch, *tail), generator=generator, device=draw)

        clustered = per_dataset(1, 1) < self.clustered_prob
        uniform_share = per_dataset(1, 1)
        log_low, log_high = math.log(self.min_std), math.log(self.max_std)
        spread = (log_low + (log_high - log_low) * per_dataset(1, 1)).exp()
        centres = per_dataset(self.max_centres, features)
        count = 1 + (per_dataset(1) * self.max_centres).long()  # [..., 1] in 1..max_centres
        which = (per_dataset(points) * count).long()  # [..., T]: each point's centre
        index = which.unsqueeze(-1).expand(*batch, points, features)
        around = centres.gather(-2, index) + spread * torch.randn(
            shape, generator=generator, device=draw
        )
        uniform = torch.rand(shape, generator=generator, device=draw)
        spread_out = ~clustered | (per_dataset(points, 1) < uniform_share)
        x = torch.where(spread_out, uniform, around.clamp(0.0, 1.0))
        return x.to(target_device(generator, device))
