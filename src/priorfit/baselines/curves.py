"""Reference inference for learning curves, the slow and the simple competitors of a curve PFN.

Each takes an observed prefix ``y [n]`` (values at epochs ``1..n``) and returns the predictive
of the noisy values at later epochs ``at`` (1-based epoch numbers) as a
:class:`GaussianMixturePredictive`:

- :func:`mcmc`: the exact Bayesian answer, up to MCMC error, for the very model the PFN is trained
  on (:class:`~priorfit.priors.CurvePrior`: its families, parameter priors, noise prior,
  rejection rule and clipping of observations to [0, 1]), sampled with emcee's
  affine-invariant ensemble, vectorised over walkers, with Domhan et al. (2015)'s settings:
  100 walkers, 500 burn-in steps, 2500 steps kept;
- :func:`last_value`: the last observed value, spread as a random walk;
- :func:`pow3_fit`: a least-squares ``c - a t^(-α)`` fit, with Gaussian residual noise.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from priorfit.priors.curves import CurvePrior

MIN_STD = 1e-3  # the simple baselines' smallest predictive standard deviation


@dataclass
class GaussianMixturePredictive:
    """An equal mixture of Gaussians per epoch: ``N(means[s, j], stds[s, j]²)`` over ``s``.

    Attributes:
        means: ``[S, m]``, one row per posterior sample. stds: ``[S, m]``.
    """

    means: Tensor
    stds: Tensor

    @property
    def mean(self) -> Tensor:
        """``[m]``."""
        return self.means.mean(0)

    def log_prob(self, values) -> Tensor:
        """Log density ``[m]`` of ``values [m]`` (one per epoch)."""
        values = torch.as_tensor(np.array(values, dtype=np.float64), dtype=self.means.dtype)
        z = (values - self.means) / self.stds
        log_pdf = -0.5 * z**2 - torch.log(self.stds) - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(log_pdf, 0) - math.log(self.means.shape[0])

    def cdf(self, values) -> Tensor:
        """``P(value <= values)`` ``[m]``."""
        values = torch.as_tensor(np.array(values, dtype=np.float64), dtype=self.means.dtype)
        return torch.special.ndtr((values - self.means) / self.stds).mean(0)

    def icdf(self, q: float) -> Tensor:
        """The ``q`` quantile ``[m]`` (bisection on :meth:`cdf`)."""
        low = (self.means - 10 * self.stds).min(0).values
        high = (self.means + 10 * self.stds).max(0).values
        for _ in range(60):
            middle = (low + high) / 2
            below = self.cdf(middle) < q
            low, high = torch.where(below, middle, low), torch.where(below, high, middle)
        return (low + high) / 2


@dataclass
class MCMCInfo:
    """What an :func:`mcmc` run did: acceptance rate and samples kept."""

    acceptance: float
    samples: int


def mcmc(prior: CurvePrior, y, at, *, walkers: int = 100, burn_in: int = 500,
         steps: int = 2500, thin: int = 10, seed: int = 0
         ) -> tuple[GaussianMixturePredictive, MCMCInfo]:
    """Posterior predictive of the noisy values at epochs ``at`` given ``y [n]`` at epochs
    ``1..n``, by emcee over ``prior``'s parameters and log noise (every ``thin``-th step of
    each walker after ``burn_in``). Walkers start from accepted prior draws."""
    import emcee

    y = torch.as_tensor(np.asarray(y, dtype=np.float64))
    at = torch.as_tensor(np.asarray(at, dtype=np.float64))[None]
    n = y.shape[0]
    epochs = torch.arange(1, prior.num_epochs + 1, dtype=torch.float64)[None]
    num_parameters = len(prior.parameter_names())

    def log_posterior(state: np.ndarray) -> np.ndarray:
        state = torch.from_numpy(np.ascontiguousarray(state))
        theta, log_sigma = state[:, :num_parameters], state[:, num_parameters]
        log_p = prior.log_parameter_density(theta) + _log_normal(
            log_sigma, prior.log_noise_mean, prior.log_noise_std)
        finite = torch.isfinite(log_p)
        curves = torch.full((state.shape[0], prior.num_epochs), torch.nan, dtype=torch.float64)
        with np.errstate(all="ignore"):
            curves[finite] = prior.curves(theta[finite], epochs)
        ok = finite & prior.accepts(curves)
        log_likelihood = observation_log_likelihood(prior, y, curves[:, :n],
                                                    log_sigma.exp()[:, None]).sum(1)
        return torch.where(ok, log_p + log_likelihood, -torch.inf).numpy()

    generator = torch.Generator().manual_seed(seed)
    start = torch.cat([prior.accepted_parameters(walkers, generator),
                       prior.log_noise_mean + prior.log_noise_std * torch.randn(
                           walkers, 1, generator=generator, dtype=torch.float64)], 1)
    sampler = emcee.EnsembleSampler(walkers, num_parameters + 1, log_posterior, vectorize=True)
    initial = emcee.State(start.numpy(), random_state=np.random.RandomState(seed).get_state())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # proposals outside the support
        sampler.run_mcmc(initial, burn_in + steps)
    chain = torch.from_numpy(sampler.get_chain(discard=burn_in, thin=thin, flat=True))
    means = prior.curves(chain[:, :num_parameters], at)
    stds = chain[:, num_parameters:].exp().expand_as(means)
    info = MCMCInfo(float(np.mean(sampler.acceptance_fraction)), chain.shape[0])
    return GaussianMixturePredictive(means, stds), info


def last_value(y, at) -> GaussianMixturePredictive:
    """The last observed value, spread like a random walk: standard deviation
    ``s · sqrt(epochs ahead)``, ``s`` the RMS of the prefix's successive differences (at least
    :data:`MIN_STD`)."""
    y = np.asarray(y, dtype=np.float64)
    at = np.asarray(at, dtype=np.float64)
    step = float(np.sqrt(np.mean(np.diff(y) ** 2))) if len(y) > 1 else 0.0
    stds = np.maximum(step, MIN_STD) * np.sqrt(np.maximum(at - len(y), 1.0))
    return GaussianMixturePredictive(torch.full((1, len(at)), float(y[-1]), dtype=torch.float64),
                                     torch.from_numpy(stds)[None])


def pow3_fit(y, at) -> GaussianMixturePredictive:
    """Least squares ``c - a t^(-α)`` on the prefix (scipy's ``curve_fit``), Gaussian noise of
    the residuals' standard deviation (at least :data:`MIN_STD`); :func:`last_value` when the
    prefix has fewer than 4 points or the fit fails."""
    from scipy.optimize import curve_fit

    y = np.asarray(y, dtype=np.float64)
    if len(y) < 4:
        return last_value(y, at)
    t = np.arange(1, len(y) + 1, dtype=np.float64)

    def pow3(t, c, a, alpha):
        return c - a * t ** (-alpha)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = curve_fit(pow3, t, y, p0=(y[-1], y[-1] - y[0], 0.5),
                                  bounds=([-1.0, -2.0, 0.0], [2.0, 2.0, 10.0]), maxfev=5000)
    except (RuntimeError, ValueError):
        return last_value(y, at)
    std = max(float(np.std(y - pow3(t, *params))), MIN_STD)
    means = pow3(np.asarray(at, dtype=np.float64), *params)
    return GaussianMixturePredictive(torch.from_numpy(means)[None],
                                     torch.full((1, len(means)), std, dtype=torch.float64))


def observation_log_likelihood(prior: CurvePrior, y: Tensor, curves: Tensor,
                               sigma: Tensor) -> Tensor:
    """Log likelihood ``[N, n]`` of observations ``y [n]`` given noiseless ``curves [N, n]`` and
    noise ``sigma [N, 1]``: Gaussian, and, when the prior clips its observations to [0, 1], a
    value at 0 or 1 is censored (the Gaussian's mass beyond it)."""
    z = (y - curves) / sigma
    log_density = -0.5 * z**2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
    if not prior.clip_observations:
        return log_density
    below = torch.special.log_ndtr(-curves / sigma)
    above = torch.special.log_ndtr((curves - 1) / sigma)
    return torch.where(y <= 0, below, torch.where(y >= 1, above, log_density))


def _log_normal(value: Tensor, mean: float, std: float) -> Tensor:
    return -0.5 * ((value - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))
