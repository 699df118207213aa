"""NUTS and Bayes-by-Backprop over BNN weights, against a conjugate closed form."""

import math

import numpy as np
import pytest
import torch

from priorfit.priors import BNN

pytest.importorskip("numpyro")

from priorfit.baselines import NUTSBNN, SVIBNN
from priorfit.baselines.bnn import bnn_function


def linear_posterior(prior: BNN, x, y, xs):
    """Exact predictive of the BNN without hidden layers: Bayesian linear regression."""
    features = np.hstack([x, np.ones((len(x), 1))])
    test = np.hstack([xs, np.ones((len(xs), 1))])
    prior_var = np.r_[np.full(x.shape[1], prior.weight_std**2 / x.shape[1]), prior.bias_std**2]
    precision = np.diag(1 / prior_var) + features.T @ features / prior.noise_std**2
    cov = np.linalg.inv(precision)
    mean = cov @ features.T @ y / prior.noise_std**2
    return test @ mean, np.einsum("md,de,me->m", test, cov, test) + prior.noise_std**2


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
    prior = BNN(num_features=2, hidden=(), weight_std=1.0, bias_std=1.0, noise_std=0.3)
    x, y, xs = linear_data(prior)
    mean, var = linear_posterior(prior, x, y, xs)
    nuts = NUTSBNN(prior, num_warmup=300, num_samples=600, max_components=600)
    predictive = nuts(x, y, xs, seed=0)
    np.testing.assert_allclose(predictive.mean_prediction(), mean, atol=0.06)
    np.testing.assert_allclose(predictive.total_variance(), var, rtol=0.15)
    info = predictive.info
    assert info["num_divergences"] == 0 and info["max_split_r_hat"] < 1.1 and info["min_ess"] > 50
    assert 0.9 < info["max_split_r_hat_mean"] < 1.1
    assert info["compile_seconds"] > 0 and nuts(x, y, xs, seed=0).info["compile_seconds"] == 0


def test_bayes_by_backprop_finds_the_posterior_mean_of_a_linear_model():
    prior = BNN(num_features=2, hidden=(), weight_std=1.0, bias_std=1.0, noise_std=0.3)
    x, y, xs = linear_data(prior)
    mean, var = linear_posterior(prior, x, y, xs)
    svi = SVIBNN(prior, num_steps=3000, learning_rate=0.01, num_particles=16, num_draws=500)
    predictive = svi(x, y, xs, seed=0)
    np.testing.assert_allclose(predictive.mean_prediction(), mean, atol=0.08)
    # mean field ignores posterior correlations: the variance is right only roughly
    np.testing.assert_allclose(predictive.total_variance(), var, rtol=0.5)
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
