"""Tests of the reference inference for GP hyperparameters: MLE-II, MAP-II and NUTS."""

import math

import numpy as np
import pytest
import torch
from scipy import linalg, optimize, stats
from scipy.spatial.distance import cdist
from scipy.stats import norm

from priorfit.baselines import NUTSGP, GaussianMixturePredictive, map2, mle2
from priorfit.baselines.gp_hyper import MLE2_BOUNDS, _jax_correlation
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


def fitted_hyperparameters(predictive: GaussianMixturePredictive) -> np.ndarray:
    """The S = 1 plug-in's ``[lengthscale_1, ..., lengthscale_d, outputscale, noise]``."""
    h = predictive.hyperparameters
    return np.r_[h["lengthscale"][0], h["outputscale"][0], h["noise"][0]]


# ---------------------------------------------------------------- an independent reference
# The GP in closed form with numpy/scipy only (neither priorfit nor scikit-learn), and a
# multi-start optimiser: the ground truth for the checks under genuinely uncertain hyperpriors.


def reference_gp(kernel: str, x, y, xs, lengthscale, outputscale, noise):
    """``(log marginal likelihood, mean [m], var [m])`` of the noisy target of the zero-mean GP
    ``outputscale * k(r) + noise * I`` with ARD ``lengthscale``, at ``xs``."""
    def k(a, b):
        r = cdist(a / lengthscale, b / lengthscale)
        if kernel == "rbf":
            return outputscale * np.exp(-0.5 * r**2)
        s = math.sqrt({"matern32": 3, "matern52": 5}[kernel]) * r
        poly = 1 + s if kernel == "matern32" else 1 + s + s**2 / 3
        return outputscale * poly * np.exp(-s)

    factor = linalg.cho_factor(k(x, x) + noise * np.eye(len(x)), lower=True)
    alpha, cross = linalg.cho_solve(factor, y), k(x, xs)
    log_det = 2 * np.log(factor[0].diagonal()).sum()
    lml = -0.5 * (y @ alpha + log_det + len(x) * math.log(2 * math.pi))
    var = outputscale + noise - (cross * linalg.cho_solve(factor, cross)).sum(0)
    return lml, cross.T @ alpha, var


def maximise(objective, bounds, starts=8, seed=0):
    """``(argmax, max)`` of ``objective(values)`` over positive values within ``bounds``:
    L-BFGS-B on their logs from ``starts`` points drawn log-uniformly in [0.03, 3] (clipped to
    ``bounds``); the best end point wins. A numerically singular covariance scores -1e10."""
    log_bounds = np.log(np.asarray(bounds, dtype=float))

    def loss(log_values):
        try:
            return -objective(np.exp(log_values))
        except np.linalg.LinAlgError:
            return 1e10

    rng = np.random.default_rng(seed)
    best = None
    for _ in range(starts):
        start = np.clip(rng.uniform(math.log(0.03), math.log(3), len(bounds)), *log_bounds.T)
        result = optimize.minimize(loss, start, method="L-BFGS-B", bounds=log_bounds)
        best = result if best is None or result.fun < best.fun else best
    return np.exp(best.x), -best.fun


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


def test_mle2_recovers_the_exact_gp_with_plenty_of_data():
    """With 300 points MLE-II finds the true noise and predicts like the true GP."""
    gp = GP(num_features=2, kernel="matern32", lengthscale=[0.3, 0.6], outputscale=2.0, noise=0.1)
    data = gp_data(gp, n=300)
    predictive = mle2(*data[:3], kernel="matern32", restarts=1)
    assert predictive.num_components == 1
    fitted = predictive.hyperparameters
    assert fitted["lengthscale"].shape == (1, 2)
    assert fitted["noise"][0] == pytest.approx(0.1, rel=0.3)
    assert_matches_gp(predictive, gp, data, rtol=0.1)


def test_mle2_maximises_the_marginal_likelihood_computed_independently():
    """mle2's hyperparameters maximise the closed-form log marginal likelihood (numpy, maximised
    by scipy within MLE2_BOUNDS), its reported maximum is that likelihood, and its predictive is
    the closed-form GP predictive at the maximiser."""
    gp = GP(num_features=2, kernel="matern32", lengthscale=[0.3, 0.6], outputscale=2.0, noise=0.1)
    x, y, xs, _ = (v.numpy() for v in gp_data(gp, n=40))
    predictive = mle2(x, y, xs, kernel="matern32")

    def lml(h):
        return reference_gp("matern32", x, y, xs, h[:2], h[2], h[3])[0]

    bounds = [MLE2_BOUNDS[h] for h in ("lengthscale", "lengthscale", "outputscale", "noise")]
    best, best_lml = maximise(lml, bounds)
    fitted = fitted_hyperparameters(predictive)
    assert predictive.info["log_marginal_likelihood"] == pytest.approx(lml(fitted), abs=1e-6)
    assert lml(fitted) == pytest.approx(best_lml, abs=1e-4)
    np.testing.assert_allclose(fitted, best, rtol=1e-2)
    _, mean, var = reference_gp("matern32", x, y, xs, best[:2], best[2], best[3])
    np.testing.assert_allclose(predictive.mean[0], mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(predictive.var[0], var, rtol=1e-3)


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


# Genuinely uncertain hyperpriors: the paper's App. F (all Gamma) in 1-D, and one of each family
# in 2-D with the lengthscales scaled by sqrt(2 inputs); each with its log density from scipy.
MAP_CASES = {  # (true GP, number of points, hyperprior, its log density, bounds for scipy)
    "app-f-1d": (
        GP(num_features=1, kernel="matern52", lengthscale=0.3, outputscale=2.0, noise=0.05),
        8,
        GPHyperPrior(num_features=1),
        lambda ls, os_, noise: stats.gamma(3.0, scale=1 / 6.0).logpdf(ls).sum()
        + stats.gamma(2.0, scale=1 / 0.15).logpdf(os_)
        + stats.gamma(1.1, scale=1 / 0.05).logpdf(noise),
        [(1e-3, 1e2)] * 3,
    ),
    "mixed-2d": (
        GP(num_features=2, kernel="rbf", lengthscale=[0.3, 0.6], outputscale=1.0, noise=0.01),
        15,
        GPHyperPrior(
            num_features=2,
            kernel="rbf",
            lengthscale=LogNormal(math.log(0.3), 0.5),
            lengthscale_dim_scaling=0.5,
            outputscale=Gamma(2.0, 2.0),
            noise=LogUniform(1e-3, 1.0),
        ),
        lambda ls, os_, noise: stats.lognorm(0.5, scale=0.3 * math.sqrt(2)).logpdf(ls).sum()
        + stats.gamma(2.0, scale=1 / 2.0).logpdf(os_)
        + stats.loguniform(1e-3, 1.0).logpdf(noise),
        [(1e-3, 1e2)] * 3 + [(1.001e-3, 0.999)],  # inside the LogUniform noise
    ),
}


@pytest.mark.parametrize("case", sorted(MAP_CASES))
def test_map2_maximises_the_log_posterior_computed_independently(case):
    """Under wide hyperpriors and little data (where the hyperprior moves the optimum far from
    MLE-II), map2's hyperparameters maximise log marginal likelihood + log hyperprior density,
    both in closed form with numpy/scipy and maximised by scipy; its reported maximum is that
    log posterior and its predictive the closed-form GP predictive at the maximiser."""
    gp, n, prior, log_hyperprior, bounds = MAP_CASES[case]
    d = gp.num_features
    x, y, xs, _ = (v.numpy() for v in gp_data(gp, n))

    def lml(h):
        return reference_gp(gp.kernel, x, y, xs, h[:d], h[d], h[d + 1])[0]

    best, best_value = maximise(lambda h: lml(h) + log_hyperprior(h[:d], h[d], h[d + 1]), bounds)
    mle, _ = maximise(lml, [(1e-5, 1e5)] * (d + 2))
    assert np.abs(best / mle - 1).max() > 0.2  # the hyperprior matters: MAP-II is not MLE-II
    predictive = map2(x, y, xs, prior)
    fitted = fitted_hyperparameters(predictive)
    assert predictive.info["log_posterior"] == pytest.approx(best_value, abs=1e-5)
    np.testing.assert_allclose(fitted, best, rtol=1e-3)
    _, mean, var = reference_gp(gp.kernel, x, y, xs, best[:d], best[d], best[d + 1])
    np.testing.assert_allclose(predictive.mean[0], mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(predictive.var[0], var, rtol=1e-4)


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


def test_nuts_matches_quadrature_over_a_wide_lengthscale_hyperprior():
    """With lengthscale ~ LogUniform(0.01, 10) and the rest fixed, the posterior predictive is a
    1-D integral, done here by quadrature: p(ℓ | y) ∝ p(y | ℓ) p(ℓ) on a fine grid of log ℓ,
    mixing closed-form GP predictives. NUTS's mixture mean and variance must match it within 4
    Monte Carlo standard errors of its effective sample size (the posterior spread of the
    component means, and of their contributions to the variance, over sqrt(ESS)). Four points
    leave ℓ very uncertain: a plug-in at the posterior median has under half the variance."""
    pytest.importorskip("numpyro")
    x, y = np.array([[0.1], [0.2], [0.8], [0.9]]), np.array([0.5, 0.6, -0.4, -0.6])
    xs = np.array([[0.35], [0.5], [1.1]])
    log_prior = stats.loguniform(0.01, 10.0).logpdf
    grid = np.geomspace(0.01, 10.0, 2001)
    fits = [reference_gp("matern32", x, y, xs, ls, 1.0, 0.01) for ls in grid]
    lml, means, variances = (np.array(v) for v in zip(*fits, strict=True))
    log_w = lml + log_prior(grid) + np.log(grid)  # density of log ℓ on the evenly spaced grid
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean = w @ means
    contribution = variances + (means - mean) ** 2  # its w-average is the predictive variance
    var = w @ contribution
    mean_spread = np.sqrt(w @ (means - mean) ** 2)
    var_spread = np.sqrt(w @ (contribution - var) ** 2)
    median = grid[np.searchsorted(np.cumsum(w), 0.5)]
    assert (reference_gp("matern32", x, y, xs, median, 1.0, 0.01)[2] < var / 2).all()

    prior = GPHyperPrior(
        kernel="matern32", lengthscale=LogUniform(0.01, 10.0), outputscale=1.0, noise=0.01
    )
    predictive = NUTSGP(prior, num_warmup=500, num_samples=4000, max_components=4000)(x, y, xs)
    assert predictive.info["num_divergences"] == 0 and predictive.info["min_ess"] > 500
    draws = min(predictive.info["min_ess"], 4000)
    mean_error = (predictive.mean_prediction() - mean) / (mean_spread / math.sqrt(draws))
    assert (np.abs(mean_error) < 4).all(), f"mean off by {mean_error.round(1)} standard errors"
    var_error = (predictive.total_variance() - var) / (var_spread / math.sqrt(draws))
    assert (np.abs(var_error) < 4).all(), f"variance off by {var_error.round(1)} standard errors"
    assert (4 * var_spread / math.sqrt(draws) < var / 4).all()  # so a 2x error cannot pass


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
        with pytest.raises(ValueError, match="irrelevant_prob=0, trend_std=0"):
            map2(x, y, xs, bad)
        with pytest.raises(ValueError, match="irrelevant_prob=0, trend_std=0"):
            NUTSGP(bad)
    with pytest.raises(TypeError, match="GPHyperPrior"):
        map2(x, y, xs, GP())
    with pytest.raises(ValueError, match="fixed"):
        NUTSGP(GPHyperPrior(lengthscale=0.2, outputscale=1.0, noise=0.1))
    with pytest.raises(ValueError, match="num_samples"):
        NUTSGP(prior, num_samples=2)
