"""Reference inference for learning curves: emcee over the curve prior, last value, pow3 fit."""

import math

import numpy as np
import pytest
import torch

from priorfit.baselines.curves import (
    GaussianMixturePredictive,
    last_value,
    mcmc,
    observation_log_likelihood,
    pow3_fit,
)
from priorfit.priors import CurvePrior

pytest.importorskip("emcee", reason="the curve MCMC needs emcee ([bench] extra)")


def test_mixture_statistics_match_closed_forms():
    one = GaussianMixturePredictive(torch.tensor([[0.5, 0.2]], dtype=torch.float64),
                                    torch.tensor([[0.1, 0.3]], dtype=torch.float64))
    expected = [-0.5 * 4 - math.log(0.1 * math.sqrt(2 * math.pi)),
                -0.5 - math.log(0.3 * math.sqrt(2 * math.pi))]
    torch.testing.assert_close(one.log_prob([0.7, 0.5]), torch.tensor(expected,
                                                                      dtype=torch.float64))
    torch.testing.assert_close(one.icdf(0.975), torch.tensor([0.5 + 0.196, 0.2 + 0.588],
                                                             dtype=torch.float64), atol=1e-3,
                               rtol=0)
    two = GaussianMixturePredictive(torch.tensor([[0.0], [1.0]], dtype=torch.float64),
                                    torch.full((2, 1), 0.1, dtype=torch.float64))
    assert two.mean.item() == pytest.approx(0.5)
    assert two.cdf([0.5]).item() == pytest.approx(0.5)
    assert two.icdf(0.5).item() == pytest.approx(0.5, abs=1e-6)


def test_mcmc_without_observations_is_the_prior_predictive():
    """No data: the chain samples the prior itself (parameter priors, noise prior, rejection
    rule), so its predictive of the last epoch matches prior draws."""
    prior = CurvePrior(num_epochs=30)
    predictive, info = mcmc(prior, [], [30], walkers=64, burn_in=300, steps=1500, thin=5)
    batch, curves, _ = prior.sample_with_curves(20000, 30,
                                                generator=torch.Generator().manual_seed(0))
    assert predictive.mean.item() == pytest.approx(curves[:, -1].double().mean().item(), abs=0.03)
    assert predictive.icdf(0.5).item() == pytest.approx(
        batch.y[:, -1].double().median().item(), abs=0.04)
    assert 0.05 < info.acceptance < 0.9 and info.samples == 64 * 1500 // 5


def test_mcmc_follows_a_long_clean_prefix_and_is_reproducible():
    prior = CurvePrior()
    batch, curves, sigma = prior.sample_with_curves(1, 100,
                                                    generator=torch.Generator().manual_seed(7))
    y = batch.y[0, :60].double().numpy()
    kwargs = dict(walkers=32, burn_in=200, steps=400, seed=3)
    predictive, _ = mcmc(prior, y, [80, 100], **kwargs)
    truth = curves[0, [79, 99]].double()
    assert (predictive.mean - truth).abs().max().item() < 0.05 + 3 * sigma.item()
    again, _ = mcmc(prior, y, [80, 100], **kwargs)
    torch.testing.assert_close(again.means, predictive.means, rtol=0, atol=0)


def test_simple_baselines():
    y = 0.9 - 0.5 * np.arange(1, 21, dtype=float) ** -0.7
    last = last_value(y, [21, 40])
    torch.testing.assert_close(last.mean, torch.full((2,), y[-1], dtype=torch.float64))
    assert last.stds[0, 1] > last.stds[0, 0]  # spreads with the horizon
    fit = pow3_fit(y, [40, 100])
    expected = torch.tensor([0.9 - 0.5 * 40**-0.7, 0.9 - 0.5 * 100**-0.7], dtype=torch.float64)
    torch.testing.assert_close(fit.mean, expected, atol=1e-4, rtol=0)
    short = pow3_fit(y[:3], [10])
    torch.testing.assert_close(short.mean, torch.tensor([y[2]], dtype=torch.float64))


def test_clipped_observations_are_censored_in_the_likelihood():
    from scipy.stats import norm

    curves = torch.tensor([[0.98, 0.5, 0.01]], dtype=torch.float64)
    sigma = torch.tensor([[0.05]], dtype=torch.float64)
    y = torch.tensor([1.0, 0.55, 0.0], dtype=torch.float64)
    got = observation_log_likelihood(CurvePrior(), y, curves, sigma)[0]
    expected = [norm.logsf(1, 0.98, 0.05), norm.logpdf(0.55, 0.5, 0.05), norm.logcdf(0, 0.01, 0.05)]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    unclipped = observation_log_likelihood(CurvePrior(clip_observations=False), y, curves, sigma)
    assert unclipped[0, 0].item() == pytest.approx(norm.logpdf(1, 0.98, 0.05))
