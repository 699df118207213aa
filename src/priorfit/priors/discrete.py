"""Beta-Bernoulli: an exactly solvable toy prior over coin-flip sequences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from priorfit.priors.base import Batch
from priorfit.priors.inputs import draw_device, target_device


@dataclass
class BetaBernoulli:
    """Each dataset flips one coin: θ ~ Beta(a, b), then y_t ~ Bernoulli(θ) i.i.d.

    x is a single constant feature (zeros); y holds 0./1. class labels (``num_classes = 2``).
    """

    a: float = 1.0
    b: float = 1.0

    num_features: ClassVar[int] = 1
    num_classes: ClassVar[int] = 2

    def __post_init__(self) -> None:
        for name in ("a", "b"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    def sample(
        self,
        batch_size: int,
        seq_len: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Batch:
        """x ``[B, T, 1]`` zeros and y ``[B, T]`` in {0., 1.}, float32.

        θ = G_a / (G_a + G_b) with Gamma variates handled in log space (float64, drawn on the
        generator's device), G_c = G'·U^(1/c) with G' ~ Gamma(c + 1): no underflow for tiny a, b.
        """
        draw, out = draw_device(generator, device), target_device(generator, device)
        conc = torch.tensor([self.a, self.b], dtype=torch.float64, device=draw)
        conc = conc.expand(batch_size, 2)
        # torch.distributions cannot take a generator; the Gamma sampler behind them can.
        boosted = torch._standard_gamma(conc + 1, generator=generator)
        u = torch.rand(batch_size, 2, generator=generator, device=draw, dtype=torch.float64)
        log_gamma = boosted.log() + torch.log1p(-u) / conc  # log G_c, 1 - u in (0, 1]
        theta = torch.sigmoid(log_gamma[:, 0] - log_gamma[:, 1])
        flips = torch.rand(
            batch_size, seq_len, generator=generator, device=draw, dtype=torch.float64
        )
        y = (flips < theta[:, None]).float().to(out)
        return Batch(torch.zeros(batch_size, seq_len, 1, device=out), y)

    def posterior_predictive(self, y_train: Tensor) -> Tensor:
        """P(next y = 1 | y_train) = (a + #ones) / (a + b + n): ``[B, n]`` → ``[B]`` (``[n]`` →
        scalar), float64. n may be 0."""
        y = torch.as_tensor(y_train).to(torch.float64)
        if y.dim() < 1:
            raise ValueError(f"y_train must be [..., n], got {tuple(y.shape)}")
        return (self.a + y.sum(-1)) / (self.a + self.b + y.shape[-1])

    def log_prob(self, *args: Tensor) -> Tensor:
        """Log probability of each test label under the exact posterior predictive, each test point
        on its own: ``log_prob(y_train [B, n], y_test [B, m]) -> [B, m]`` float64.

        Also accepts ``(x_train, y_train, x_test, y_test)``, the x ignored, so that it can be called
        like :meth:`GP.log_prob` (as the training loop's validation does).
        """
        if len(args) not in (2, 4):
            raise TypeError(
                "log_prob takes (y_train, y_test) or (x_train, y_train, x_test, y_test)"
            )
        y_train, y_test = args[-3 if len(args) == 4 else 0], args[-1]
        p = self.posterior_predictive(y_train).unsqueeze(-1)
        y = torch.as_tensor(y_test).to(torch.float64)
        return torch.where(y > 0.5, torch.log(p), torch.log1p(-p))
