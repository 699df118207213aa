"""GP prior with hyperpriors: every dataset draws its own kernel hyperparameters, then a GP.

A PFN trained on this prior approximates the full Bayesian posterior predictive, which integrates
over the hyperparameters (Müller et al. 2022, §5.2), instead of plugging in one estimate of them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from scipy.special import gammaincinv
from torch import Tensor

from priorfit.priors.base import Batch
from priorfit.priors.gp import GP, KERNELS, cholesky_with_fallback, correlation, sq_dist
from priorfit.priors.inputs import Uniform, draw_device, target_device


@dataclass
class Gamma:
    """Gamma(concentration, rate) on (0, ∞) with mean ``concentration / rate``, as GammaPrior."""

    concentration: float
    rate: float

    def __post_init__(self) -> None:
        if not (self.concentration > 0 and self.rate > 0):
            raise ValueError(f"Gamma needs concentration > 0 and rate > 0, got {self}")

    def sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None) -> Tensor:
        """float64 CPU tensor of ``shape``, by inversion of the CDF of a uniform draw."""
        u = torch.rand(
            shape, generator=generator, dtype=torch.float64, device=draw_device(generator, None)
        )
        return torch.from_numpy(gammaincinv(self.concentration, u.cpu().numpy())) / self.rate

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of ``value`` (float64, or the dtype of a floating-point tensor)."""
        value = torch.as_tensor(value, dtype=torch.float64) if not torch.is_tensor(value) else value
        a, b = self.concentration, self.rate
        return a * math.log(b) - math.lgamma(a) + (a - 1) * value.log() - b * value


@dataclass
class LogUniform:
    """log-uniform on [low, high]: every decade in the range is equally likely."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"LogUniform needs 0 < low < high, got {self}")

    def sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None) -> Tensor:
        """float64 CPU tensor of ``shape``."""
        u = torch.rand(
            shape, generator=generator, dtype=torch.float64, device=draw_device(generator, None)
        )
        log_low, log_high = math.log(self.low), math.log(self.high)
        return (log_low + (log_high - log_low) * u.cpu()).exp()

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of ``value`` (float64, or the dtype of a floating-point tensor)."""
        value = torch.as_tensor(value, dtype=torch.float64) if not torch.is_tensor(value) else value
        inside = (value >= self.low) & (value <= self.high)
        density = -value.log() - math.log(math.log(self.high / self.low))
        return torch.where(inside, density, -math.inf)


@dataclass
class LogNormal:
    """log-normal: ``log value ~ N(loc, scale²)``, with median ``exp(loc)``."""

    loc: float
    scale: float

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"LogNormal needs scale > 0, got {self}")

    def sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None) -> Tensor:
        """float64 CPU tensor of ``shape``."""
        z = torch.randn(
            shape, generator=generator, dtype=torch.float64, device=draw_device(generator, None)
        )
        return (self.loc + self.scale * z.cpu()).exp()

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of ``value`` (float64, or the dtype of a floating-point tensor)."""
        value = torch.as_tensor(value, dtype=torch.float64) if not torch.is_tensor(value) else value
        z = (value.log() - self.loc) / self.scale
        return -0.5 * z.square() - value.log() - math.log(self.scale * math.sqrt(2 * math.pi))


HYPERPRIORS = (Gamma, LogUniform, LogNormal)


def scale_hyperprior(spec: Any, factor: float) -> Any:
    """The distribution of ``factor * value`` for ``value ~ spec`` (a number or a hyperprior):
    every hyperprior family here is closed under scaling."""
    if isinstance(spec, Gamma):
        return Gamma(spec.concentration, spec.rate / factor)
    if isinstance(spec, LogUniform):
        return LogUniform(spec.low * factor, spec.high * factor)
    if isinstance(spec, LogNormal):
        return LogNormal(spec.loc + math.log(factor), spec.scale)
    return spec * factor


@dataclass
class GPHyperparameters:
    """The hyperparameters of a batch of datasets.

    Attributes:
        lengthscale: ``[B, F]``; ``inf`` for a feature the function does not depend on.
        outputscale: ``[B]`` kernel variances.
        noise: ``[B]`` observation-noise variances.
        slope: ``[B, F]`` coefficients of the linear trend (zeros when there is none).
        warp: ``[B, 2, F]`` concentrations ``(a, b)`` of the Kumaraswamy input warping
            ``x -> 1 - (1 - x^a)^b`` per feature, or ``None`` (no warping).
    """

    lengthscale: Tensor
    outputscale: Tensor
    noise: Tensor
    slope: Tensor
    warp: Tensor | None = None

    def select(self, index) -> GPHyperparameters:
        """The hyperparameters of datasets ``index`` (a tensor or list of indices)."""
        index = index.cpu() if torch.is_tensor(index) else index
        fields = (self.lengthscale, self.outputscale, self.noise, self.slope)
        warp = None if self.warp is None else self.warp[index]
        return GPHyperparameters(*(h[index] for h in fields), warp=warp)


@dataclass
class GPHyperPrior:
    """GP prior whose lengthscales (ARD), outputscale and noise are drawn per dataset.

    The defaults are the paper's App. F hyperpriors (those of BoTorch): Matérn-5/2, lengthscale
    ~ Γ(3, 6), outputscale ~ Γ(2, 0.15), noise variance ~ Γ(1.1, 0.05), x ~ U[0, 1]^F.

    Attributes:
        num_features: the largest input width F.
        min_features: each batch draws its width uniformly from ``min_features..num_features``
            (``None``: always ``num_features``).
        kernel: ``"rbf"``, ``"matern12"``, ``"matern32"`` or ``"matern52"``.
        lengthscale, outputscale, noise: hyperpriors (:class:`Gamma`, :class:`LogUniform`,
            :class:`LogNormal`) or fixed positive numbers.
        lengthscale_dim_scaling: lengthscales of a dataset with F' inputs are multiplied by
            ``F' ** lengthscale_dim_scaling``. With 0.5 (as in Hvarfner et al. 2024) the typical
            correlation between two random points no longer shrinks as inputs are added.
        irrelevant_prob: each feature is, independently, ignored by the function with this
            probability (infinite lengthscale); at least one feature is always used.
        trend_std: standard deviation of the slope of a linear trend ``slope · (x - 0.5)`` added
            per used feature (0: no trend).
        inputs: input distribution with ``sample(shape, *, generator, device)``.
        input_warping: with ``s > 0``, the function sees every input through its own
            Kumaraswamy CDF ``1 - (1 - x^a)^b`` with ``log a, log b ~ N(0, s²)`` (inputs in
            [0, 1]; BoTorch's and HEBO's input warping): stretched near 0 or 1, as objectives
            of BO often are. 0: none.
    """

    num_features: int = 1
    min_features: int | None = None
    kernel: str = "matern52"
    lengthscale: Any = field(default_factory=lambda: Gamma(3.0, 6.0))
    outputscale: Any = field(default_factory=lambda: Gamma(2.0, 0.15))
    noise: Any = field(default_factory=lambda: Gamma(1.1, 0.05))
    lengthscale_dim_scaling: float = 0.0
    irrelevant_prob: float = 0.0
    trend_std: float = 0.0
    inputs: Any = field(default_factory=Uniform)
    input_warping: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.num_features, bool) or not isinstance(self.num_features, int):
            raise ValueError(f"num_features must be an int, got {self.num_features!r}")
        if self.num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {self.num_features}")
        low = self.num_features if self.min_features is None else self.min_features
        if not 1 <= low <= self.num_features:
            raise ValueError(
                f"min_features must be in 1..num_features={self.num_features}, got {low}"
            )
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        for name in ("lengthscale", "outputscale", "noise"):
            value = getattr(self, name)
            fixed = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            if not (fixed or isinstance(value, HYPERPRIORS)):
                raise ValueError(
                    f"{name} must be a positive number, Gamma, LogUniform or LogNormal, "
                    f"got {value!r}"
                )
        if not 0 <= self.irrelevant_prob < 1:
            raise ValueError(f"irrelevant_prob must be in [0, 1), got {self.irrelevant_prob}")
        if not self.trend_std >= 0:
            raise ValueError(f"trend_std must be non-negative, got {self.trend_std}")
        if not (math.isfinite(self.input_warping) and self.input_warping >= 0):
            raise ValueError(f"input_warping must be finite and >= 0, got {self.input_warping}")

    def sample_hyperparameters(
        self, batch_size: int, num_features: int, *, generator: torch.Generator | None = None
    ) -> GPHyperparameters:
        """Hyperparameters of ``batch_size`` datasets of ``num_features`` inputs (float64, CPU)."""
        draw = draw_device(generator, None)

        def hyper(name: str, shape: tuple[int, ...]) -> Tensor:
            value = getattr(self, name)
            if isinstance(value, (int, float)):
                return torch.full(shape, float(value), dtype=torch.float64)
            return value.sample(shape, generator=generator)

        lengthscale = hyper("lengthscale", (batch_size, num_features))
        lengthscale = lengthscale * num_features**self.lengthscale_dim_scaling
        shape = (batch_size, num_features)
        ignored = torch.rand(shape, generator=generator, device=draw).cpu() < self.irrelevant_prob
        keep = torch.randint(num_features, (batch_size,), generator=generator, device=draw).cpu()
        ignored[torch.arange(batch_size), keep] = False
        lengthscale = lengthscale.masked_fill(ignored, math.inf)
        slope = (
            self.trend_std
            * torch.randn(shape, generator=generator, dtype=torch.float64, device=draw).cpu()
        )
        warp = None
        if self.input_warping > 0:
            z = torch.randn((batch_size, 2, num_features), generator=generator,
                            dtype=torch.float64, device=draw).cpu()
            warp = (self.input_warping * z).exp()
        return GPHyperparameters(
            lengthscale=lengthscale,
            outputscale=hyper("outputscale", (batch_size,)),
            noise=hyper("noise", (batch_size,)),
            slope=slope.masked_fill(ignored, 0.0),
            warp=warp,
        )

    def at_width(self, num_features: int) -> GPHyperPrior:
        """This prior restricted to datasets of ``num_features`` inputs, with the dimension
        scaling of the lengthscales folded into their hyperprior (for the baselines)."""
        factor = num_features**self.lengthscale_dim_scaling
        return dataclasses.replace(
            self,
            num_features=num_features,
            min_features=None,
            lengthscale=scale_hyperprior(self.lengthscale, factor),
            lengthscale_dim_scaling=0.0,
        )

    def covariance(self, x: Tensor, hypers: GPHyperparameters) -> Tensor:
        """``outputscale_b k_b(x_b, x_b) + noise_b I`` of each dataset b.

        ``x [B, n, F]`` -> ``[B, n, n]`` in the dtype of ``x``; the linear trend is not part of it.
        With ``hypers.warp``, the kernel reads the warped inputs.
        """
        if hypers.warp is not None:
            a, b = (w.to(x)[:, None, :] for w in hypers.warp.unbind(1))
            x = 1 - (1 - x.clamp(0, 1).pow(a)).pow(b)
        ls, os_, noise = (h.to(x) for h in (hypers.lengthscale, hypers.outputscale, hypers.noise))
        scaled = x / ls[:, None, :]
        K = correlation(self.kernel, sq_dist(scaled, scaled)).mul_(os_[:, None, None])
        K.diagonal(dim1=-2, dim2=-1).copy_((os_ + noise)[:, None].expand(K.shape[:-1]))
        return K

    def sample(
        self,
        batch_size: int,
        seq_len: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Batch:
        """``batch_size`` datasets: x ``[B, T, F']`` and y ``[B, T]``, float32, where F' is
        ``num_features`` or, with ``min_features``, drawn for the whole batch."""
        return self.sample_with_hyperparameters(
            batch_size, seq_len, generator=generator, device=device
        )[0]

    def sample_with_hyperparameters(
        self,
        batch_size: int,
        seq_len: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[Batch, GPHyperparameters]:
        """As :meth:`sample`, also returning the hyperparameters each dataset was drawn with."""
        draw, out = draw_device(generator, device), target_device(generator, device)
        width = self.num_features
        if self.min_features is not None and self.min_features < self.num_features:
            bounds = (self.min_features, self.num_features + 1)
            width = int(torch.randint(*bounds, (1,), generator=generator, device=draw))
        hypers = self.sample_hyperparameters(batch_size, width, generator=generator)
        shape = (batch_size, seq_len, width)
        x = self.inputs.sample(shape, generator=generator, device=draw).to(out, torch.float32)
        z = torch.randn(batch_size, 1, seq_len, generator=generator, device=draw).to(out)
        K = self.covariance(x, hypers)
        L = cholesky_with_fallback(
            K, lambda bad: self.covariance(x[bad].double(), hypers.select(bad))
        )
        y = (z @ L.mT).squeeze(-2)
        if self.trend_std > 0:
            y = y + ((x - 0.5) @ hypers.slope.to(x).unsqueeze(-1)).squeeze(-1)
        return Batch(x, y), hypers

    def oracle(self, hypers: GPHyperparameters, index: int) -> GP:
        """The fixed-hyperparameter :class:`GP` that generated dataset ``index`` (no trend): its
        exact posterior is the oracle that knows the true hyperparameters."""
        if hypers.slope[index].abs().max() > 0:
            raise ValueError("the oracle GP does not model a linear trend; use trend_std=0")
        if hypers.warp is not None:
            raise ValueError("the oracle GP does not model input warping; use input_warping=0")
        return GP(
            num_features=hypers.lengthscale.shape[1],
            kernel=self.kernel,
            lengthscale=hypers.lengthscale[index].tolist(),
            outputscale=float(hypers.outputscale[index]),
            noise=float(hypers.noise[index]),
        )
