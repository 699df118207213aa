"""Gaussian-process prior: y ~ N(0, outputscale * k(x, x) + noise * I), with its exact posterior."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from priorfit.priors.base import Batch
from priorfit.priors.inputs import Uniform, draw_device, target_device

KERNELS = ("rbf", "matern12", "matern32", "matern52")


def sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances ``[..., n, m]`` between ``a [..., n, F]`` and ``b [..., m, F]``.

    Uses ``|a|² + |b|² - 2 a·b`` after centring on the mean of ``a`` (distances are shift-invariant
    and centring shrinks the cancellation error of that expansion). Works in place unless autograd
    records the inputs.
    """
    if a.shape[-2] > 0:
        shift = a.mean(-2, keepdim=True)
        a, b = a - shift, b - shift
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        d = a.square().sum(-1, keepdim=True) + b.square().sum(-1).unsqueeze(-2) - 2 * (a @ b.mT)
        return d.clamp_min(0)
    d = (a @ b.mT).mul_(-2)
    d.add_(a.square().sum(-1, keepdim=True)).add_(b.square().sum(-1).unsqueeze(-2))
    return d.clamp_min_(0)


def correlation(kernel: str, r2: Tensor) -> Tensor:
    """Unit-variance stationary kernel of the scaled squared distance ``r2``.

    ``r2`` is overwritten, unless autograd records it: then the result is computed out of place,
    with a gradient of zero (not NaN) at ``r2 = 0``, as a fresh tensor that callers may still
    scale in place.
    """
    if torch.is_grad_enabled() and r2.requires_grad:
        return _correlation_autograd(kernel, r2)
    if kernel == "rbf":
        return r2.mul_(-0.5).exp_()
    r = r2.sqrt_()
    if kernel == "matern12":
        return r.neg_().exp_()
    s = r.mul_(math.sqrt(3.0) if kernel == "matern32" else math.sqrt(5.0))
    decay = s.neg().exp_()
    if kernel == "matern32":  # (1 + √3 r) exp(-√3 r)
        return s.add_(1).mul_(decay)
    return s.square().div_(3).add_(s).add_(1).mul_(decay)  # (1 + √5 r + 5r²/3) exp(-√5 r)


def _correlation_autograd(kernel: str, r2: Tensor) -> Tensor:
    """:func:`correlation` out of place, for tensors that need gradients."""
    if kernel == "rbf":
        return torch.exp(-0.5 * r2).clone()  # exp saves its output for backward: hand out a copy
    r = r2.clamp_min(1e-30).sqrt()  # no infinite slope at 0: r2 = 0 only where two points coincide
    if kernel == "matern12":
        return torch.exp(-r).clone()
    s = r * (math.sqrt(3.0) if kernel == "matern32" else math.sqrt(5.0))
    if kernel == "matern32":
        return (1 + s) * torch.exp(-s)
    return (1 + s + s.square() / 3) * torch.exp(-s)


def robust_cholesky(K: Tensor, max_tries: int = 6) -> Tensor:
    """Lower Cholesky factor of each matrix of ``K [..., n, n]``.

    Matrices whose factorisation fails are retried, alone, with diagonal jitter starting at
    1e-8 (float64) or 1e-6 (float32) times their mean diagonal and growing tenfold per try.
    Raises ``torch.linalg.LinAlgError`` if some matrix still fails.
    """
    n = K.shape[-1]
    flat = K.reshape(-1, n, n)
    L, info = torch.linalg.cholesky_ex(flat)
    bad = (info > 0).nonzero().squeeze(-1)
    jitter = 1e-8 if K.dtype == torch.float64 else 1e-6
    eye = torch.eye(n, dtype=K.dtype, device=K.device)
    for _ in range(max_tries):
        if bad.numel() == 0:
            return L.reshape(K.shape)
        scale = flat[bad].diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)[:, None, None]
        L[bad], info = torch.linalg.cholesky_ex(flat[bad] + jitter * scale * eye)
        bad = bad[info > 0]
        jitter *= 10
    if bad.numel() == 0:
        return L.reshape(K.shape)
    raise torch.linalg.LinAlgError(f"Cholesky failed for {bad.numel()} matrices even with jitter")


def cholesky_with_fallback(K: Tensor, covariance64: Callable[[Tensor], Tensor]) -> Tensor:
    """Lower Cholesky factors of the float32 covariances ``K [B, n, n]``.

    Datasets whose float32 factorisation fails are refactorised with :func:`robust_cholesky` on
    ``covariance64(indices)``, their covariances recomputed in float64.
    """
    L, info = torch.linalg.cholesky_ex(K)
    bad = (info > 0).nonzero().squeeze(-1)
    if bad.numel() > 0:
        L[bad] = robust_cholesky(covariance64(bad)).to(L.dtype)
    return L


@dataclass
class GP:
    """Zero-mean GP prior over functions of ``num_features`` inputs, observed with Gaussian noise.

    Attributes:
        num_features: width F of x.
        kernel: ``"rbf"``, ``"matern12"``, ``"matern32"`` or ``"matern52"``.
        lengthscale: one lengthscale, or a list of F (one per feature, ARD).
        outputscale: kernel variance (the prior variance of f).
        noise: observation-noise variance (as GPyTorch's ``likelihood.noise``), may be 0.
        inputs: input distribution with ``sample(shape, *, generator, device)``.
    """

    num_features: int = 1
    kernel: str = "rbf"
    lengthscale: float | list[float] = 0.2
    outputscale: float = 1.0
    noise: float = 1e-4
    inputs: Any = field(default_factory=Uniform)

    def __post_init__(self) -> None:
        if isinstance(self.num_features, bool) or not isinstance(self.num_features, int):
            raise ValueError(f"num_features must be an int, got {self.num_features!r}")
        if self.num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {self.num_features}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if isinstance(self.lengthscale, (list, tuple)):
            self.lengthscale = list(self.lengthscale)
            if len(self.lengthscale) != self.num_features:
                raise ValueError(
                    f"lengthscale list has {len(self.lengthscale)} entries, "
                    f"expected num_features={self.num_features}"
                )
        scales = self.lengthscale if isinstance(self.lengthscale, list) else [self.lengthscale]
        if not all(isinstance(s, numbers.Real) and s > 0 for s in scales):
            raise ValueError(f"lengthscale must be positive, got {self.lengthscale!r}")
        if not self.outputscale > 0:
            raise ValueError(f"outputscale must be positive, got {self.outputscale!r}")
        if not self.noise >= 0:
            raise ValueError(f"noise must be non-negative, got {self.noise!r}")
        if not callable(getattr(self.inputs, "sample", None)):
            raise ValueError(f"inputs must have a sample(shape, ...) method, got {self.inputs!r}")

    def kernel_matrix(self, x1: Tensor, x2: Tensor) -> Tensor:
        """``outputscale * k(x1, x2)`` (no noise): ``x1 [..., n, F]``, ``x2 [..., m, F]`` →
        ``[..., n, m]``, batch dimensions broadcast, in the promoted dtype of ``x1`` and ``x2``."""
        for name, x in (("x1", x1), ("x2", x2)):
            if x.dim() < 2 or x.shape[-1] != self.num_features:
                raise ValueError(
                    f"{name} must be [..., n, {self.num_features}], got {tuple(x.shape)}"
                )
        dtype = torch.promote_types(x1.dtype, x2.dtype)
        dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
        ls = torch.as_tensor(self.lengthscale, dtype=dtype, device=x1.device)
        # matern12 is not smooth at r = 0: float32 rounding of r² (~1e-7) would turn into errors of
        # ~1e-4 in k for nearby points, larger than a typical noise, so its r² is formed in float64.
        wide = torch.float64 if self.kernel == "matern12" else dtype
        r2 = sq_dist((x1.to(dtype) / ls).to(wide), (x2.to(dtype) / ls).to(wide)).to(dtype)
        return correlation(self.kernel, r2).mul_(self.outputscale)

    def covariance(self, x: Tensor) -> Tensor:
        """``outputscale * k(x, x) + noise * I`` for ``x [..., n, F]``, exact on the diagonal."""
        K = self.kernel_matrix(x, x)
        K.diagonal(dim1=-2, dim2=-1).fill_(self.outputscale + self.noise)
        return K

    def sample(
        self,
        batch_size: int,
        seq_len: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Batch:
        """``batch_size`` datasets of ``seq_len`` points: x ``[B, T, F]`` and y ``[B, T]``, float32.

        x is drawn from ``inputs``, then y = L z with L L^T the covariance and z ~ N(0, I). Random
        numbers are drawn on the generator's device; the kernel algebra runs on ``device``. The
        Cholesky is tried in float32; datasets where it fails are refactorised in float64.
        """
        draw, out = draw_device(generator, device), target_device(generator, device)
        shape = (batch_size, seq_len, self.num_features)
        x = self.inputs.sample(shape, generator=generator, device=draw).to(out, torch.float32)
        z = torch.randn(batch_size, 1, seq_len, generator=generator, device=draw).to(out)
        L = cholesky_with_fallback(self.covariance(x), lambda bad: self.covariance(x[bad].double()))
        return Batch(x, (z @ L.mT).squeeze(-2))  # (L z)^T: the row-vector form is fastest on CPU

    def posterior(self, x_train: Tensor, y_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
        """Exact predictive mean and variance of the noisy target y at ``x_test``, in float64.

        Args:
            x_train: ``[B, n, F]`` or ``[n, F]`` (n may be 0: the prior predictive).
            y_train: ``[B, n]`` or ``[n]``.
            x_test: ``[B, m, F]`` or ``[m, F]``.

        Returns:
            ``(mean, variance)``, each ``[B, m]`` (``[m]`` if no input has a batch dimension;
            batch dimensions broadcast).
        """
        xt, yt, xs = (torch.as_tensor(v).to(torch.float64) for v in (x_train, y_train, x_test))
        if xt.dim() < 2 or yt.dim() < 1 or xt.shape[-2] != yt.shape[-1]:
            raise ValueError(
                "x_train [..., n, F] and y_train [..., n] disagree: "
                f"{tuple(xt.shape)} vs {tuple(yt.shape)}"
            )
        batch = torch.broadcast_shapes(xt.shape[:-2], yt.shape[:-1], xs.shape[:-2])
        out_shape = (*batch, xs.shape[-2])
        prior_var = self.outputscale + self.noise
        Ks = self.kernel_matrix(xt, xs)  # also validates the feature widths
        if xt.shape[-2] == 0:
            mean = xs.new_zeros(out_shape)
            return mean, torch.full_like(mean, prior_var)
        L = robust_cholesky(self.covariance(xt))
        v = torch.linalg.solve_triangular(L, Ks, upper=False)  # L^-1 K(x_train, x_test)
        w = torch.linalg.solve_triangular(L, yt.unsqueeze(-1), upper=False)  # L^-1 y
        mean = (v * w).sum(-2)
        var = (prior_var - v.square().sum(-2)).clamp_min(self.noise)
        return mean.expand(out_shape), var.expand(out_shape)

    def log_prob(self, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor) -> Tensor:
        """Predictive log density of each ``y_test [B, m]`` (or ``[m]``) given the training data,
        shapes as in :meth:`posterior`; returns float64 ``[B, m]``."""
        mean, var = self.posterior(x_train, y_train, x_test)
        y = torch.as_tensor(y_test).to(torch.float64)
        return -0.5 * (torch.log(2 * math.pi * var) + (y - mean).square() / var)
