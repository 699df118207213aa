"""Tests of the reference inference for GP hyperparameters: MLE-II, MAP-II and NUTS."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from priorfit.baselines import NUTSGP, GaussianMixturePredictive, map2, mle2
from priorfit.baselines.gp_hyper import _jax_correlation
from priorfit.priors import (
    GP,
    Gamma,
    GPHyperparameters,
    GPHyperPrior,
    LogNormal,
    LogUniform,
)
from priorfit.priors.gp import KERNELS, correlation, sq_dist


def gp_data(gp: GP, n: int, m: int = 3, seed: int = 0):
    """float64 ``x_train [n, d]``, ``y_train [n]``, ``x_test [m, d]``, ``y_test [m]`` of ``gp``."""
    batch = gp.sample(1, n + m, generator=torch.Generator().manual_seed(seed))
    x, y = batch.x[0].double(), batch.y[0].double()
    return x[:n], y[:n], x[n:], y[n:]


def assert_matches_gp(predictive: GaussianMixturePredictive, gp: GP, data, rtol: float) -> None:
    mean, var = gp.posterior(*data[:3])
    np.testing.assert_allclose(predictive.mean_prediction(), mean.numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(predictive.total_variance(), var.numpy(), rtol=rtol)


# ---------------------------------------------------------------- the mixture predictive


def test_mixture_log_prob_matches_direct_computation():
    rng = np.random.default_rng(0)
    mean, var = rng.normal(size=(5, 4)), rng.uniform(0.1, 2.0, size=(5, 4))
    mixture = GaussianMixturePredictive(mean, var)
    y = rng.normal(size=4)
    direct = np.log(norm.pdf(y, mean, np.sqrt(var)).mean(0))
    np.testing.assert_allclose(mixture.log_prob(y), direct, rtol=1e-12)
    np.testing.assert_allclose(mixture.mean_prediction(), mean.mean(0))
    np.testing.assert_allclose(
        mixture.total_variance(), (var + mean**2).mean(0) - mean.mean(0) ** 2
    )
    far = mixture.log_prob(np.full(4, 1e3))  # every density underflows; logsumexp does not
    assert np.isfinite(far).all() and (far < -1e4).all()
    single = GaussianMixturePredictive(mean[:1], var[:1])
    np.testing.assert_allclose(single.log_prob(y), norm.logpdf(y, mean[0], np.sqrt(var[0])))


def test_mixture_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[S, m\]"):
        GaussianMixturePredictive(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        GaussianMixturePredictive(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="y_test"):
        GaussianMixturePredictive(np.zeros((1, 3)), np.ones((1, 3))).log_prob(np.zeros(2))


# ---------------------------------------------------------------- MLE-II


def test_mle2_matches_sklearn_and_the_exact_gp_with_plenty_of_data():
    sklearn_gp = pytest.importorskip("sklearn.gaussian_process")
    gp = GP(num_features=2, kernel="matern32", lengthscale=[0.3, 0.6], outputscale=2.0, noise=0.1)
    data = gp_data(gp, n=300)
    predictive = mle2(*data[:3], kernel="matern32", restarts=1)
    assert predictive.num_components == 1
    fitted = predictive.hyperparameters
    assert fitted["lengthscale"].shape == (1, 2)
    assert fitted["noise"][0] == pytest.approx(0.1, rel=0.3)
    assert_matches_gp(predictive, gp, data, rtol=0.1)
    # the plug-in GP is scikit-learn's own fitted model
    k = sklearn_gp.kernels
    kernel = k.ConstantKernel(fitted["outputscale"][0], "fixed") * k.Matern(
        fitted["lengthscale"][0], "fixed", nu=1.5
    ) + k.WhiteKernel(fitted["noise"][0], "fixed")
    model = sklearn_gp.GaussianProcessRegressor(kernel, optimizer=None, alpha=0.0)
    mean, std = model.fit(data[0], data[1]).predict(data[2], return_std=True)
    np.testing.assert_allclose(predictive.mean[0], mean, rtol=1e-7)
    np.testing.assert_allclose(predictive.var[0], std**2, rtol=1e-7)


# ---------------------------------------------------------------- MAP-II


def test_covariance_of_the_hyperprior_is_differentiable():
    prior = GPHyperPrior(num_features=2)
    x = torch.rand(2, 4, 2, dtype=torch.float64)
    x[:, 1] = x[:, 0]  # coinciding points: r = 0 must not give NaN gradients

    def covariance(log_ls, log_os, log_noise):
        hypers = GPHyperparameters(log_ls.exp(), log_os.exp(), log_noise.exp(), torch.zeros(2, 2))
        return prior.covariance(x, hypers)

    for kernel in KERNELS:
        prior.kernel = kernel
        args = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in ((2, 2), 2, 2)]
        assert torch.autograd.gradcheck(covariance, args)
        differentiable = covariance(*args)
        with torch.no_grad():  # the in-place path gives the same values
            torch.testing.assert_close(covariance(*args), differentiable.detach())


def test_map2_is_the_exact_gp_under_a_point_mass_hyperprior():
    gp = GP(num_features=2, kernel="rbf", lengthscale=[0.3, 0.3], outputscale=2.0, noise=0.1)
    data = gp_data(gp, n=10)
    fixed = GPHyperPrior(num_features=2, kernel="rbf", lengthscale=0.3, outputscale=2.0, noise=0.1)
    assert_matches_gp(map2(*data[:3], fixed), gp, data, rtol=1e-10)
    tight = GPHyperPrior(
        num_features=2,
        kernel="rbf",
        lengthscale=Gamma(3e4, 1e5),
        outputscale=Gamma(2e4, 1e4),
        noise=LogUniform(0.0999, 0.1001),
    )
    predictive = map2(*data[:3], tight, restarts=2)
    np.testing.assert_allclose(predictive.hyperparameters["lengthscale"], 0.3, rtol=0.02)
    assert_matches_gp(predictive, gp, data, rtol=0.02)
    scaled = GPHyperPrior(  # lengthscales LogNormal around 0.3 / sqrt(2), times sqrt(2 inputs)
        num_features=2,
        kernel="rbf",
        lengthscale=LogNormal(math.log(0.3 / math.sqrt(2)), 1e-3),
        lengthscale_dim_scaling=0.5,
        outputscale=2.0,
        noise=0.1,
    )
    predictive = map2(*data[:3], scaled, restarts=2)
    np.testing.assert_allclose(predictive.hyperparameters["lengthscale"], 0.3, rtol=0.01)


def test_map2_recovers_the_hyperparameters_from_a_large_dataset():
    gp = GP(num_features=2, kernel="matern52", lengthscale=[0.2, 0.6], outputscale=4.0, noise=0.2)
    data = gp_data(gp, n=300, seed=1)
    predictive = map2(*data[:3], GPHyperPrior(num_features=2), restarts=2)
    fitted = predictive.hyperparameters
    np.testing.assert_allclose(fitted["lengthscale"][0], [0.2, 0.6], rtol=0.3)
    assert fitted["outputscale"][0] == pytest.approx(4.0, rel=0.6)
    assert fitted["noise"][0] == pytest.approx(0.2, rel=0.25)
    assert_matches_gp(predictive, gp, data, rtol=0.2)  # the variance is mostly the noise
    assert predictive.info["log_posterior"] == max(predictive.info["start_log_posteriors"])


# ---------------------------------------------------------------- NUTS


@pytest.mark.parametrize("kernel", KERNELS)
def test_jax_kernel_matches_torch(kernel):
    pytest.importorskip("numpyro")
    from priorfit.baselines.jax_inference import import_jax

    import_jax()  # float64
    a, b = torch.rand(5, 2, dtype=torch.float64), torch.rand(4, 2, dtype=torch.float64)
    expected = correlation(kernel, sq_dist(a, b))
    got = np.asarray(_jax_correlation(kernel, a.numpy(), b.numpy()))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-12, atol=1e-12)


def test_nuts_is_the_exact_gp_under_a_nearly_point_mass_hyperprior():
    pytest.importorskip("numpyro")
    gp = GP(num_features=1, kernel="matern32", lengthscale=0.3, outputscale=2.0, noise=0.1)
    data = gp_data(gp, n=8)
    tight = GPHyperPrior(  # one of each: a Gamma, a LogNormal and a LogUniform
        kernel="matern32",
        lengthscale=Gamma(3e4, 1e5),
        outputscale=LogNormal(math.log(2.0), 1e-3),
        noise=LogUniform(0.0999, 0.1001),
    )
    predictive = NUTSGP(tight, num_warmup=64, num_samples=32)(*data[:3])
    assert predictive.num_components == 32
    np.testing.assert_allclose(predictive.hyperparameters["outputscale"], 2.0, rtol=0.01)
    assert_matches_gp(predictive, gp, data, rtol=0.02)


def test_nuts_is_reproducible_reports_diagnostics_and_compiles_once():
    pytest.importorskip("numpyro")
    prior = GPHyperPrior(num_features=1)
    data = prior.sample(1, 12, generator=torch.Generator().manual_seed(0))
    x, y = data.x[0].double(), data.y[0].double()
    args = (x[:10], y[:10], x[10:])
    nuts = NUTSGP(prior, num_warmup=32, num_samples=48, max_components=16)
    first = nuts(*args, seed=3)
    compile_seconds = nuts.compile_seconds
    assert compile_seconds > 0 and first.info["compile_seconds"] == compile_seconds
    again, other = nuts(*args, seed=3), nuts(*args, seed=4)
    assert nuts.compile_seconds == compile_seconds and again.info["compile_seconds"] == 0.0
    assert again.info["run_seconds"] > 0
    np.testing.assert_array_equal(first.mean, again.mean)
    np.testing.assert_array_equal(first.var, again.var)
    assert not np.array_equal(first.mean, other.mean)
    assert first.mean.shape == (16, 2) and first.hyperparameters["lengthscale"].shape == (16, 1)
    info = first.info
    assert info["num_divergences"] >= 0 and info["min_ess"] > 0
    assert math.isfinite(info["max_split_r_hat"]) and math.isfinite(info["max_split_r_hat_mean"])
    # each component is the exact GP with that component's hyperparameters (float64 numerics)
    for k in (0, 15):
        h = {name: value[k] for name, value in first.hyperparameters.items()}
        gp = GP(
            kernel="matern52",
            lengthscale=h["lengthscale"].tolist(),
            outputscale=float(h["outputscale"]),
            noise=float(h["noise"]),
        )
        mean, var = gp.posterior(*args)
        np.testing.assert_allclose(first.mean[k], mean.numpy(), rtol=1e-9)
        np.testing.assert_allclose(first.var[k], var.numpy(), rtol=1e-9)


# ---------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors():
    prior = GPHyperPrior(num_features=1)
    rng = np.random.default_rng(0)
    x, y, xs = rng.random((5, 1)), rng.random(5), rng.random((2, 1))
    for method in (lambda *a: mle2(*a), lambda *a: map2(*a, prior)):
        with pytest.raises(ValueError, match="y_train"):
            method(x, y[:4], xs)
        with pytest.raises(ValueError, match="x_test"):
            method(x, y, rng.random((2, 2)))
        with pytest.raises(ValueError, match="x_train"):
            method(x[:, 0], y, xs)
        with pytest.raises(ValueError, match="NaN"):
            method(x, np.where(np.arange(5) == 2, np.nan, y), xs)
    with pytest.raises(ValueError, match="kernel"):
        mle2(x, y, xs, kernel="cosine")
    with pytest.raises(ValueError, match="restarts"):
        map2(x, y, xs, prior, restarts=-1)
    for bad in (GPHyperPrior(num_features=2, irrelevant_prob=0.5), GPHyperPrior(trend_std=1.0)):
        with pytest.raises(ValueError, match="irrelevant_prob=0 and trend_std=0"):
            map2(x, y, xs, bad)
        with pytest.raises(ValueError, match="irrelevant_prob=0 and trend_std=0"):
            NUTSGP(bad)
    with pytest.raises(TypeError, match="GPHyperPrior"):
        map2(x, y, xs, GP())
    with pytest.raises(ValueError, match="fixed"):
        NUTSGP(GPHyperPrior(lengthscale=0.2, outputscale=1.0, noise=0.1))
    with pytest.raises(ValueError, match="num_samples"):
        NUTSGP(prior, num_samples=2)
