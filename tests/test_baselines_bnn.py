"""NUTS and Bayes-by-Backprop over BNN weights, against a conjugate closed form."""

import math

import numpy as np
import pytest
import torch

from priorfit.priors import BNN

pytest.importorskip("numpyro")

from priorfit.baselines import NUTSBNN, SVIBNN
from priorfit.baselines.bnn import bnn_function


def with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))])


def linear_posterior(prior: BNN, x, y):
    """Exact Gaussian posterior ``N(mean, inv(precision))`` of the weights and bias of the BNN
    without hidden layers: conjugate Bayesian linear regression."""
    features = with_bias(x)
    prior_var = np.r_[np.full(x.shape[1], prior.weight_std**2 / x.shape[1]), prior.bias_std**2]
    precision = np.diag(1 / prior_var) + features.T @ features / prior.noise_std**2
    mean = np.linalg.solve(precision, features.T @ y) / prior.noise_std**2
    return mean, precision


def assert_within_monte_carlo_error(predictive, prior: BNN, f_mean, f_var, draws: float):
    """``predictive`` mixes ``N(f(x*; θ), noise_std²)`` over ``draws`` (effective) independent
    draws of θ, where ``f(x*) ~ N(f_mean, f_var)``: its mean and its variance minus the noise
    must match within 4 Monte Carlo standard errors. The error of a mean of N draws is
    ``sqrt(f_var / N)`` and that of their sample variance ``f_var * sqrt(2 / N)``: with N >= 200
    the variance band is at most 1 ± 0.4, so a point estimate (ratio 0) or a variance off by 2x
    fails."""
    np.testing.assert_allclose(predictive.var, prior.noise_std**2)
    mean_error = np.abs(predictive.mean_prediction() - f_mean) / np.sqrt(f_var / draws)
    assert (mean_error < 4).all(), f"mean off by {mean_error.round(1)} standard errors"
    ratio = (predictive.total_variance() - prior.noise_std**2) / f_var
    band = 4 * math.sqrt(2 / draws)
    assert (np.abs(ratio - 1) < band).all(), f"variance ratio {ratio.round(3)}, band 1 ± {band:.2f}"


def linear_data(prior, n=12, m=6):
    batch = prior.sample(1, n + m, generator=torch.Generator().manual_seed(3))
    x, y = batch.x[0].double().numpy(), batch.y[0].double().numpy()
    return x[:n], y[:n], x[n:]


def test_jax_network_matches_the_torch_prior():
    prior = BNN(num_features=3, hidden=(5, 4), activation="gelu")
    weights = prior.sample_weights(2, generator=torch.Generator().manual_seed(0))
    xs = torch.randn(7, 3, generator=torch.Generator().manual_seed(1))
    draws = {}
    for i, (w, b) in enumerate(zip(weights.weights, weights.biases, strict=True)):
        draws[f"w{i}"], draws[f"b{i}"] = w.double().numpy(), b.double().numpy()
    expected = prior.function(xs.expand(2, 7, 3), weights)
    got = np.asarray(bnn_function(prior, draws, xs.double().numpy()))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_nuts_matches_the_conjugate_posterior_and_reports_diagnostics():
    """NUTS over the weights of a linear BNN: the predictive mean and variance match the exact
    conjugate posterior within the Monte Carlo error of the chain's effective sample size."""
    prior = BNN(num_features=2, hidden=(), weight_std=1.0, bias_std=1.0, noise_std=0.3)
    x, y, xs = linear_data(prior)
    mean, precision = linear_posterior(prior, x, y)
    test = with_bias(xs)
    f_var = np.einsum("md,de,me->m", test, np.linalg.inv(precision), test)
    assert (f_var > 0.1 * prior.noise_std**2).all()  # the weights' uncertainty is not negligible
    nuts = NUTSBNN(prior, num_warmup=300, num_samples=600, max_components=600)
    predictive = nuts(x, y, xs, seed=0)
    info = predictive.info
    assert info["num_divergences"] == 0 and info["max_split_r_hat"] < 1.1 and info["min_ess"] > 200
    assert 0.9 < info["max_split_r_hat_mean"] < 1.1
    draws = min(info["min_ess"], 600)
    assert_within_monte_carlo_error(predictive, prior, test @ mean, f_var, draws)
    assert info["compile_seconds"] > 0 and nuts(x, y, xs, seed=0).info["compile_seconds"] == 0


def test_bayes_by_backprop_finds_the_mean_field_optimum_of_a_linear_model():
    """Bayes-by-Backprop on a linear BNN: for a Gaussian posterior N(m, inv(Λ)) the best
    mean-field Gaussian is known in closed form, N(m_i, 1 / Λ_ii) per weight; the predictive of
    its 1000 draws must match it within their Monte Carlo error (a small learning rate keeps
    Adam's last iterate close to the optimum)."""
    prior = BNN(num_features=2, hidden=(), weight_std=1.0, bias_std=1.0, noise_std=0.3)
    x, y, xs = linear_data(prior)
    mean, precision = linear_posterior(prior, x, y)
    test = with_bias(xs)
    mean_field_var = (test**2 / precision.diagonal()).sum(1)
    exact_var = np.einsum("md,de,me->m", test, np.linalg.inv(precision), test)
    assert np.abs(mean_field_var / exact_var - 1).max() > 0.2  # mean field is not the posterior
    svi = SVIBNN(prior, num_steps=4000, learning_rate=0.002, num_particles=8, num_draws=1000)
    predictive = svi(x, y, xs, seed=0)
    assert_within_monte_carlo_error(predictive, prior, test @ mean, mean_field_var, 1000)
    assert math.isfinite(predictive.info["final_loss"])
    again = svi(x, y, xs, seed=0)
    np.testing.assert_array_equal(again.mean, predictive.mean)


def test_bad_settings_are_named():
    with pytest.raises(TypeError, match="BNN"):
        NUTSBNN("not a prior")
    with pytest.raises(ValueError, match="num_steps"):
        SVIBNN(BNN(), num_steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        SVIBNN(BNN(), learning_rate=0.0)
