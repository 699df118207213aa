"""Learning curves: the prior of LC-PFN (Adriaensen et al., NeurIPS 2023), built on the
parametric curve families of Domhan et al. (2015).

A curve is a weighted sum of parametric families, ``f(t) = sum_k w_k f_k(t | θ_k)`` over the
epochs ``t = 1..num_epochs``, each weight ``w_k ~ U(0, 1)`` (not normalised, as LC-PFN samples
them; optionally divided by their sum), each family's parameters from their own prior
(:data:`FAMILIES`), plus Gaussian observation noise of standard deviation ``σ``,
``log σ ~ N(-4, 1)``. A noiseless curve is rejected and redrawn unless its last value exceeds
its first and it stays within [0, 1] (LC-PFN's rule: a curve may dip in between). The noisy
observations are clipped to [0, 1] (``clip_observations``), as measured accuracies are.

The default families are LC-PFN's: ``pow3``, ``ilog2`` and ``janoschek``, with its "peaked"
parameter priors. The other families of Domhan et al. — ``log_power``, ``weibull``, ``mmf``,
``vap``, ``loglog_linear``, ``exp4``, ``pow4``, ``dr_hill`` (zero background) — are there to be
named in ``families``, with the parameter priors of LC-PFN's code.

Points are in epoch order, ``x = t / num_epochs`` in (0, 1]: the training loop's cut between
training and test points is therefore an observed prefix (epochs ``1..n``) and the epochs after
it, for every prefix length it draws. Sampling is vectorised: candidate curves are drawn in
batches and the accepted ones kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from priorfit.priors.base import Batch
from priorfit.priors.inputs import draw_device, target_device


@dataclass(frozen=True)
class CurveFamily:
    """A parametric curve family.

    Attributes:
        function: ``f(t [1, T], **params each [N, 1]) -> [N, T]``.
        parameters: name -> ``(kind, a, b)``; kinds: ``"uniform"`` on [a, b], ``"normal"``
            N(a, b²), ``"lognormal"`` exp(N(a, b²)), ``"exp_uniform"`` exp(U[a, b]),
            ``"one_minus_exp_uniform"`` 1 - exp(U[a, b]).
    """

    function: Callable[..., Tensor]
    parameters: dict[str, tuple[str, float, float]]


FAMILIES: dict[str, CurveFamily] = {
    "pow3": CurveFamily(
        lambda t, c, a, alpha: c - a * t ** (-alpha),
        {"c": ("uniform", 0.0, 1.25), "a": ("uniform", -0.6, 0.6),
         "alpha": ("lognormal", 0.0, 2.0)},
    ),
    "ilog2": CurveFamily(
        lambda t, c, a: c - a / torch.log(t + 1),
        {"c": ("uniform", 0.0, 1.0), "a": ("uniform", -0.5, 0.5)},
    ),
    "janoschek": CurveFamily(
        lambda t, a, beta, k, delta: a - (a - beta) * torch.exp(-k * t**delta),
        {"a": ("uniform", 0.0, 1.0), "beta": ("uniform", 0.0, 2.0),
         "k": ("lognormal", -2.0, 1.0), "delta": ("lognormal", 0.0, 0.5)},
    ),
    "log_power": CurveFamily(
        lambda t, a, b, c: a / (1 + (t / torch.exp(b)) ** c),
        {"a": ("normal", 0.8, 0.1), "b": ("normal", 1.0, 1.0), "c": ("uniform", -3.0, 0.0)},
    ),
    "weibull": CurveFamily(
        lambda t, alpha, beta, kappa, delta: alpha - (alpha - beta) * torch.exp(
            -((kappa * t) ** delta)),
        {"alpha": ("uniform", 0.0, 1.5), "beta": ("uniform", 0.0, 1.0),
         "kappa": ("lognormal", -2.0, 1.0), "delta": ("lognormal", 0.0, 0.5)},
    ),
    "mmf": CurveFamily(
        lambda t, alpha, beta, kappa, delta: alpha - (alpha - beta) / (1 + (kappa * t) ** delta),
        {"alpha": ("normal", 0.8, 0.1), "beta": ("normal", 0.2, 0.1),
         "kappa": ("lognormal", 0.0, 2.0), "delta": ("lognormal", 0.0, 1.0)},
    ),
    "vap": CurveFamily(
        lambda t, a, b, c: torch.exp(a + b / t + c * torch.log(t)),
        {"a": ("uniform", -2.0, 0.0), "b": ("uniform", -4.0, 0.0),
         "c": ("exp_uniform", -8.0, 0.0)},
    ),
    "loglog_linear": CurveFamily(
        lambda t, a, b: torch.log(a * torch.log(t) + b),
        {"a": ("lognormal", -2.0, 1.0), "b": ("exp_uniform", 0.0, 1.0)},
    ),
    "exp4": CurveFamily(
        lambda t, c, a, b, alpha: c - torch.exp(-a * t**alpha + b),
        {"c": ("normal", 0.8, 0.1), "a": ("lognormal", -2.0, 1.0),
         "b": ("lognormal", 0.0, 0.5), "alpha": ("lognormal", 0.0, 1.0)},
    ),
    "pow4": CurveFamily(
        lambda t, c, a, b, alpha: c - (a * t + b) ** (-alpha),
        {"c": ("one_minus_exp_uniform", -5.0, 0.0), "a": ("lognormal", -3.0, 2.0),
         "b": ("exp_uniform", 0.0, 1.0), "alpha": ("lognormal", 0.0, 1.0)},
    ),
    "dr_hill": CurveFamily(
        lambda t, theta, eta, kappa: theta * t**eta / (kappa**eta + t**eta),
        {"theta": ("normal", 0.8, 0.1), "eta": ("lognormal", 1.0, 1.0),
         "kappa": ("lognormal", 1.0, 2.0)},
    ),
}
DEFAULT_FAMILIES = ("pow3", "ilog2", "janoschek")
MAX_ROUNDS = 1000  # rounds of candidate curves before sampling gives up


@dataclass
class CurvePrior:
    """Learning curves of ``num_epochs`` epochs from a weighted sum of parametric families
    (see the module).

    Attributes:
        families: names from :data:`FAMILIES`, each with weight ``U(0, 1)`` in every curve.
        num_epochs: the curve length; ``x = epoch / num_epochs``.
        log_noise_mean, log_noise_std: ``log σ ~ N(mean, std²)`` (LC-PFN: -4, 1).
        normalize_weights: divide the weights by their sum (a convex combination). LC-PFN does
            not; with many families the unnormalised sum rarely stays within [0, 1].
        clip_observations: clip the noisy observations to [0, 1], as measured accuracies are
            (a PFN with a head bounded on [0, 1] needs it; LC-PFN does not clip).
    """

    families: tuple[str, ...] = DEFAULT_FAMILIES
    num_epochs: int = 100
    log_noise_mean: float = -4.0
    log_noise_std: float = 1.0
    normalize_weights: bool = False
    clip_observations: bool = True

    num_features: ClassVar[int] = 1

    def __post_init__(self) -> None:
        self.families = tuple(self.families)
        unknown = [f for f in self.families if f not in FAMILIES]
        if not self.families or unknown or len(set(self.families)) != len(self.families):
            raise ValueError(
                f"CurvePrior.families must name distinct families of {sorted(FAMILIES)}, got "
                f"{self.families}"
            )
        if isinstance(self.num_epochs, bool) or not isinstance(self.num_epochs, int) or (
                self.num_epochs < 2):
            raise ValueError(f"CurvePrior.num_epochs must be an integer >= 2, got "
                             f"{self.num_epochs!r}")
        if not (math.isfinite(self.log_noise_mean) and self.log_noise_std >= 0):
            raise ValueError("CurvePrior.log_noise_mean must be finite and log_noise_std >= 0, "
                             f"got {self.log_noise_mean!r}, {self.log_noise_std!r}")

    def sample(self, batch_size: int, seq_len: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Batch:
        """Curves at epochs ``1..seq_len``: x ``[B, T, 1]`` = epoch / num_epochs, y ``[B, T]``
        noisy observations, float32 (``seq_len <= num_epochs``)."""
        return self.sample_with_curves(batch_size, seq_len, generator=generator,
                                       device=device)[0]

    def sample_with_curves(
        self, batch_size: int, seq_len: int, *, generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[Batch, Tensor, Tensor]:
        """As :meth:`sample`, plus the noiseless curves ``[B, T]`` and the noise standard
        deviations ``[B]``."""
        if not 1 <= seq_len <= self.num_epochs:
            raise ValueError(f"seq_len must be in 1..num_epochs ({self.num_epochs}), got "
                             f"{seq_len}")
        draw, out = draw_device(generator, device), target_device(generator, device)
        curves = self._noiseless(batch_size, generator, draw)[:, :seq_len]
        sigma = torch.exp(self.log_noise_mean + self.log_noise_std * torch.randn(
            batch_size, generator=generator, device=draw, dtype=torch.float64))
        noise = torch.randn(batch_size, seq_len, generator=generator, device=draw,
                            dtype=torch.float64)
        y = curves + sigma[:, None] * noise
        if self.clip_observations:
            y = y.clamp(0.0, 1.0)
        epochs = torch.arange(1, seq_len + 1, device=draw, dtype=torch.float64)
        x = (epochs / self.num_epochs).expand(batch_size, seq_len)[..., None]
        return (Batch(x.float().to(out), y.float().to(out)), curves.float().to(out),
                sigma.float().to(out))

    def _noiseless(self, count: int, generator, device) -> Tensor:
        """``count`` accepted noiseless curves ``[count, num_epochs]`` (float64)."""
        t = torch.arange(1, self.num_epochs + 1, device=device, dtype=torch.float64)[None]
        return self.curves(self.accepted_parameters(count, generator, device), t)

    def accepted_parameters(self, count: int, generator=None, device=None) -> Tensor:
        """``count`` parameter vectors ``[count, D]`` whose curves pass the rejection rule
        (:meth:`accepts`), drawn in vectorised rounds of candidates."""
        t = torch.arange(1, self.num_epochs + 1, device=device, dtype=torch.float64)[None]
        accepted: list[Tensor] = []
        have = 0
        for _ in range(MAX_ROUNDS):
            candidates = self.draw_parameters(max(2 * (count - have), 16), generator, device)
            ok = self.accepts(self.curves(candidates, t))
            accepted.append(candidates[ok])
            have += int(ok.sum())
            if have >= count:
                return torch.cat(accepted)[:count]
        raise RuntimeError(
            f"CurvePrior({self.families}) accepted {have} of {count} curves in {MAX_ROUNDS} "
            "rounds: its families rarely give increasing curves within [0, 1] (with many "
            "families, set normalize_weights=True)"
        )

    def draw_curves(self, count: int, t: Tensor, generator=None) -> Tensor:
        """``count`` candidate noiseless curves ``[count, T]`` at epochs ``t [1, T]``, before
        rejection (float64)."""
        return self.curves(self.draw_parameters(count, generator, t.device), t)

    def parameter_names(self) -> list[str]:
        """The columns of a parameter vector: ``"family.weight"``, then ``"family.name"`` for
        each of the family's parameters, family by family."""
        return [f"{family}.{name}" for family in self.families
                for name in ("weight", *FAMILIES[family].parameters)]

    def draw_parameters(self, count: int, generator=None, device=None) -> Tensor:
        """``count`` parameter vectors ``[count, D]`` from the prior (columns as
        :meth:`parameter_names`; float64), weights before any normalisation."""
        columns = []
        for family in self.families:
            columns.append(torch.rand(count, 1, generator=generator, device=device,
                                      dtype=torch.float64))
            columns += [_draw(spec, count, generator, device)
                        for spec in FAMILIES[family].parameters.values()]
        return torch.cat(columns, 1)

    def curves(self, theta: Tensor, t: Tensor) -> Tensor:
        """Noiseless curves ``[N, T]`` of parameter vectors ``theta [N, D]`` at epochs
        ``t [1, T]``."""
        total = torch.zeros(theta.shape[0], t.shape[1], dtype=theta.dtype, device=theta.device)
        weights, start = [], 0
        parts = []
        for family in self.families:
            names = FAMILIES[family].parameters
            weights.append(theta[:, start : start + 1])
            params = {name: theta[:, start + 1 + i : start + 2 + i]
                      for i, name in enumerate(names)}
            parts.append(FAMILIES[family].function(t, **params))
            start += 1 + len(names)
        weight = torch.cat(weights, 1)
        if self.normalize_weights:
            weight = weight / weight.sum(1, keepdim=True)
        for k, part in enumerate(parts):
            total = total + weight[:, k : k + 1] * part
        return total

    def log_parameter_density(self, theta: Tensor) -> Tensor:
        """Log density ``[N]`` of parameter vectors ``theta [N, D]`` under the parameter priors
        (``-inf`` outside their support), before the rejection rule (which
        :meth:`accepts` checks)."""
        total = torch.zeros(theta.shape[0], dtype=theta.dtype, device=theta.device)
        start = 0
        for family in self.families:
            specs = [("uniform", 0.0, 1.0), *FAMILIES[family].parameters.values()]
            for i, spec in enumerate(specs):
                total = total + _log_density(spec, theta[:, start + i])
            start += len(specs)
        return total

    @staticmethod
    def accepts(curves: Tensor) -> Tensor:
        """LC-PFN's rejection rule on noiseless curves ``[N, T]``: ``[N]`` bool, finite,
        last value above the first, within [0, 1]."""
        return (torch.isfinite(curves).all(1) & (curves[:, -1] > curves[:, 0])
                & (curves >= 0).all(1) & (curves <= 1).all(1))


def _draw(spec: tuple[str, float, float], count: int, generator, device) -> Tensor:
    """One parameter ``[count, 1]`` from its prior ``(kind, a, b)`` (see :class:`CurveFamily`)."""
    kind, a, b = spec
    shape = (count, 1)
    if kind in ("normal", "lognormal"):
        value = a + b * torch.randn(shape, generator=generator, device=device,
                                    dtype=torch.float64)
        return value.exp() if kind == "lognormal" else value
    uniform = a + (b - a) * torch.rand(shape, generator=generator, device=device,
                                       dtype=torch.float64)
    if kind == "uniform":
        return uniform
    if kind == "exp_uniform":
        return uniform.exp()
    if kind == "one_minus_exp_uniform":
        return 1 - uniform.exp()
    raise ValueError(f"unknown parameter prior kind {kind!r}")


def _log_density(spec: tuple[str, float, float], value: Tensor) -> Tensor:
    """Log density ``[N]`` of one parameter ``value [N]`` under its prior ``(kind, a, b)``."""
    kind, a, b = spec
    if kind == "normal":
        return -0.5 * ((value - a) / b) ** 2 - math.log(b * math.sqrt(2 * math.pi))
    if kind == "lognormal":
        log = torch.log(value.clamp(min=torch.finfo(value.dtype).tiny))
        density = -0.5 * ((log - a) / b) ** 2 - math.log(b * math.sqrt(2 * math.pi)) - log
        return torch.where(value > 0, density, -torch.inf)
    if kind == "uniform":
        inside = (value >= a) & (value <= b)
        return torch.where(inside, -math.log(b - a), -torch.inf)
    # exp(U[a, b]) or 1 - exp(U[a, b]): the uniform's density times the Jacobian 1 / |u|
    u = value if kind == "exp_uniform" else 1 - value
    inside = (u >= math.exp(a)) & (u <= math.exp(b))
    log_u = torch.log(u.clamp(min=torch.finfo(value.dtype).tiny))
    return torch.where(inside, -math.log(b - a) - log_u, -torch.inf)
