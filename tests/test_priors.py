"""Tests of the priors: GP (vs scikit-learn), Beta-Bernoulli (vs closed form), inputs, mixtures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

from priorfit.priors import (
    GP,
    Batch,
    BetaBernoulli,
    Mixture,
    Normal,
    Prior,
    Uniform,
    prior_from_config,
    prior_to_config,
)

KERNELS = ["rbf", "matern12", "matern32", "matern52"]
NU = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sklearn_kernel(gp: GP, with_noise: bool = True):
    ls = np.asarray(gp.lengthscale, dtype=float)
    base = RBF(ls, "fixed") if gp.kernel == "rbf" else Matern(ls, "fixed", nu=NU[gp.kernel])
    kernel = ConstantKernel(gp.outputscale, "fixed") * base
    return kernel + WhiteKernel(gp.noise, "fixed") if with_noise else kernel


@dataclass
class Fixed:
    """Test input distribution: the same points in every dataset."""

    points: list

    def sample(self, shape, *, generator=None, device=None):
        x = torch.tensor(self.points, dtype=torch.float32, device=device)
        return x.expand(shape).clone()


# ---------------------------------------------------------------- inputs


def test_input_distributions():
    u = Uniform(-2.0, 3.0).sample((4000, 3), generator=gen())
    assert u.shape == (4000, 3) and u.dtype == torch.float32
    assert u.min() >= -2 and u.max() < 3 and abs(u.mean().item() - 0.5) < 0.1
    z = Normal(1.0, 2.0).sample((20000,), generator=gen())
    assert z.dtype == torch.float32
    assert abs(z.mean().item() - 1) < 0.05 and abs(z.std().item() - 2) < 0.05
    assert torch.equal(
        Normal().sample((5,), generator=gen(3)), Normal().sample((5,), generator=gen(3))
    )
    with pytest.raises(ValueError, match="high"):
        Uniform(1.0, 1.0)
    with pytest.raises(ValueError, match="std"):
        Normal(std=0.0)


# ---------------------------------------------------------------- GP: sampling


@pytest.mark.parametrize("kernel", KERNELS)
def test_gp_sample_shapes_and_reproducibility(kernel):
    gp = GP(num_features=5, kernel=kernel, lengthscale=[0.1, 0.2, 0.3, 0.4, 0.5])
    assert isinstance(gp, Prior)
    batch = gp.sample(8, 30, generator=gen(1), device="cpu")
    assert isinstance(batch, Batch)
    assert batch.x.shape == (8, 30, 5) and batch.y.shape == (8, 30)
    assert batch.x.dtype == batch.y.dtype == torch.float32
    assert torch.isfinite(batch.y).all()
    again = gp.sample(8, 30, generator=gen(1))
    assert torch.equal(batch.x, again.x) and torch.equal(batch.y, again.y)
    assert not torch.equal(batch.y, gp.sample(8, 30, generator=gen(2)).y)


def test_gp_empirical_covariance_matches_kernel():
    points = [[0.1, 0.5], [0.15, 0.4], [0.6, 0.9], [0.9, 0.1]]
    gp = GP(num_features=2, kernel="matern32", lengthscale=[0.3, 0.6], outputscale=2.0, noise=0.1)
    gp.inputs = Fixed(points)
    y = gp.sample(20000, 4, generator=gen()).y.double()
    x = torch.tensor(points, dtype=torch.float64)
    expected = gp.kernel_matrix(x, x) + gp.noise * torch.eye(4, dtype=torch.float64)
    empirical = torch.cov(y.T)
    assert y.mean(0).abs().max() < 0.05
    torch.testing.assert_close(empirical, expected, atol=0.08, rtol=0)


def test_gp_marginal_variance_with_random_inputs():
    y = GP(num_features=3, outputscale=0.5, noise=0.2).sample(4000, 5, generator=gen()).y
    assert abs(y.var().item() - 0.7) < 0.05


def test_gp_sample_falls_back_when_float32_cholesky_fails():
    # Nearly singular covariance: float32 Cholesky fails, float64 (+ jitter) must take over.
    gp = GP(lengthscale=10.0, noise=0.0)
    cov = gp.covariance(gp.inputs.sample((4, 60, 1), generator=gen()))
    assert (torch.linalg.cholesky_ex(cov).info > 0).any()
    y = gp.sample(4, 60, generator=gen()).y
    assert torch.isfinite(y).all() and 0.01 < y.std() < 10


def test_gp_duplicate_points_without_noise():
    gp = GP(noise=0.0, inputs=Fixed([[0.5], [0.5], [0.2]]))
    y = gp.sample(3, 3, generator=gen()).y
    torch.testing.assert_close(y[:, 0], y[:, 1], atol=1e-3, rtol=0)
    x = torch.tensor([[0.5], [0.5], [0.2]])
    mean, var = gp.posterior(x, y[0], torch.tensor([[0.5]]))
    assert torch.isfinite(mean).all() and var.min() >= 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gp_sample_on_cuda_with_cpu_generator():
    gp = GP(num_features=2)
    batch = gp.sample(4, 20, generator=gen(), device="cuda")
    assert batch.x.is_cuda and batch.y.is_cuda
    torch.testing.assert_close(batch.x.cpu(), gp.sample(4, 20, generator=gen()).x)


# ---------------------------------------------------------------- GP: kernels


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("lengthscale", [0.3, [0.2, 0.7, 1.5]])
def test_kernel_matrix_matches_sklearn(kernel, lengthscale):
    gp = GP(num_features=3, kernel=kernel, lengthscale=lengthscale, outputscale=1.7)
    rng = np.random.default_rng(0)
    x1, x2 = rng.uniform(size=(7, 3)), rng.uniform(size=(5, 3))
    ours = gp.kernel_matrix(torch.from_numpy(x1), torch.from_numpy(x2)).numpy()
    np.testing.assert_allclose(
        ours, sklearn_kernel(gp, with_noise=False)(x1, x2), rtol=1e-10, atol=1e-12
    )
    same = gp.kernel_matrix(torch.from_numpy(x1).float(), torch.from_numpy(x1).float())
    assert same.dtype == torch.float32
    np.testing.assert_allclose(same.numpy(), sklearn_kernel(gp, with_noise=False)(x1), atol=1e-5)


def test_matern_closed_forms():
    r = torch.linspace(0, 3, 31, dtype=torch.float64)
    x1, x2 = torch.zeros(1, 1, dtype=torch.float64), r[:, None]
    closed = {
        "matern12": torch.exp(-r),
        "matern32": (1 + 3**0.5 * r) * torch.exp(-(3**0.5) * r),
        "matern52": (1 + 5**0.5 * r + 5 * r**2 / 3) * torch.exp(-(5**0.5) * r),
        "rbf": torch.exp(-0.5 * r**2),
    }
    for kernel, expected in closed.items():
        k = GP(kernel=kernel, lengthscale=1.0).kernel_matrix(x1, x2)[0]
        torch.testing.assert_close(k, expected)
        nu = NU.get(kernel)
        if nu is not None:
            ref = Matern(1.0, nu=nu)(np.zeros((1, 1)), r[:, None].numpy())[0]
            np.testing.assert_allclose(k.numpy(), ref, rtol=1e-12)


def test_ard_lengthscales_act_per_feature():
    gp = GP(num_features=2, lengthscale=[0.1, 100.0])
    base = torch.tensor([[0.5, 0.5]])
    along_0 = gp.kernel_matrix(base, torch.tensor([[0.6, 0.5]])).item()
    along_1 = gp.kernel_matrix(base, torch.tensor([[0.5, 0.6]])).item()
    assert along_0 == pytest.approx(np.exp(-0.5), rel=1e-5)  # one lengthscale away
    assert along_1 == pytest.approx(1.0, abs=1e-5)  # irrelevant feature
    one_d = GP(lengthscale=0.1).kernel_matrix(torch.tensor([[0.5]]), torch.tensor([[0.6]])).item()
    assert along_0 == pytest.approx(one_d)


# ---------------------------------------------------------------- GP: posterior


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("lengthscale", [0.25, [0.2, 0.5]])
def test_posterior_matches_sklearn(kernel, lengthscale):
    gp = GP(num_features=2, kernel=kernel, lengthscale=lengthscale, outputscale=1.5, noise=0.01)
    train = gp.sample(3, 25, generator=gen())
    x_train, y_train = train.x[:, :20], train.y[:, :20]
    x_test = train.x[:, 20:]
    mean, var = gp.posterior(x_train, y_train, x_test)
    assert mean.shape == var.shape == (3, 5) and mean.dtype == var.dtype == torch.float64
    for b in range(3):
        reg = GaussianProcessRegressor(sklearn_kernel(gp), alpha=0.0, optimizer=None)
        reg.fit(x_train[b].double().numpy(), y_train[b].double().numpy())
        ref_mean, ref_std = reg.predict(x_test[b].double().numpy(), return_std=True)
        np.testing.assert_allclose(mean[b].numpy(), ref_mean, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(var[b].numpy(), ref_std**2, rtol=1e-6, atol=1e-8)


def test_posterior_shapes_and_empty_context():
    gp = GP(num_features=2, outputscale=2.0, noise=0.5)
    x_test = torch.rand(4, 6, 2, generator=gen())
    mean, var = gp.posterior(torch.zeros(4, 0, 2), torch.zeros(4, 0), x_test)
    assert mean.shape == (4, 6)
    assert torch.equal(mean, torch.zeros(4, 6, dtype=torch.float64))
    torch.testing.assert_close(var, torch.full((4, 6), 2.5, dtype=torch.float64))
    mean, var = gp.posterior(torch.zeros(0, 2), torch.zeros(0), x_test[0])
    assert mean.shape == var.shape == (6,)
    # unbatched inputs, and shared inputs with batched targets
    x, y = torch.rand(10, 2, generator=gen()), torch.randn(3, 10, generator=gen())
    assert gp.posterior(x, y[0], x_test[0])[0].shape == (6,)
    batched, _ = gp.posterior(x, y, x_test[0])
    assert batched.shape == (3, 6)
    torch.testing.assert_close(batched[1], gp.posterior(x, y[1], x_test[0])[0])
    with pytest.raises(ValueError, match="y_train"):
        gp.posterior(x, y[0, :5], x_test[0])


def test_log_prob_is_gaussian_predictive_density():
    gp = GP(num_features=1, kernel="matern52", noise=0.05)
    batch = gp.sample(2, 12, generator=gen())
    args = batch.x[:, :8], batch.y[:, :8], batch.x[:, 8:]
    lp = gp.log_prob(*args, batch.y[:, 8:])
    mean, var = gp.posterior(*args)
    expected = norm.logpdf(batch.y[:, 8:].double().numpy(), mean.numpy(), var.sqrt().numpy())
    assert lp.shape == (2, 4) and lp.dtype == torch.float64
    np.testing.assert_allclose(lp.numpy(), expected, rtol=1e-10)


# ---------------------------------------------------------------- GP: validation


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"kernel": "cubic"}, "kernel"),
        ({"lengthscale": -0.1}, "lengthscale"),
        ({"lengthscale": 0.0}, "lengthscale"),
        ({"num_features": 2, "lengthscale": [0.1, -0.2]}, "lengthscale"),
        ({"num_features": 3, "lengthscale": [0.1, 0.2]}, "lengthscale"),
        ({"noise": -1e-4}, "noise"),
        ({"outputscale": 0.0}, "outputscale"),
        ({"num_features": 0}, "num_features"),
        ({"inputs": "uniform"}, "inputs"),
    ],
)
def test_gp_rejects_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GP(**kwargs)


def test_kernel_matrix_rejects_wrong_width():
    with pytest.raises(ValueError, match="x1"):
        GP(num_features=2).kernel_matrix(torch.rand(3, 1), torch.rand(3, 2))


# ---------------------------------------------------------------- Beta-Bernoulli


def test_beta_bernoulli_sample():
    prior = BetaBernoulli(2.0, 3.0)
    assert prior.num_features == 1 and prior.num_classes == 2
    batch = prior.sample(500, 20, generator=gen())
    assert batch.x.shape == (500, 20, 1) and batch.y.shape == (500, 20)
    assert batch.y.dtype == torch.float32 and torch.equal(batch.x, torch.zeros(500, 20, 1))
    assert set(batch.y.unique().tolist()) <= {0.0, 1.0}
    assert abs(batch.y.mean().item() - 0.4) < 0.03
    assert torch.equal(batch.y, prior.sample(500, 20, generator=gen()).y)
    with pytest.raises(ValueError, match="b must be positive"):
        BetaBernoulli(1.0, -1.0)


@pytest.mark.parametrize(("a", "b"), [(0.3, 0.7), (1e-3, 1e-3), (50.0, 5.0)])
def test_beta_bernoulli_theta_moments(a, b):
    # E[y_1] = E[θ] and E[y_1 y_2] = E[θ²]; tiny a, b must not underflow into θ = 1/2.
    y = BetaBernoulli(a, b).sample(100_000, 2, generator=gen()).y
    mean, second = a / (a + b), a * (a + 1) / ((a + b) * (a + b + 1))
    assert abs(y[:, 0].mean().item() - mean) < 0.01
    assert abs((y[:, 0] * y[:, 1]).mean().item() - second) < 0.01


def test_beta_bernoulli_predictive_matches_monte_carlo():
    a, b, n = 2.0, 3.0, 5
    prior = BetaBernoulli(a, b)
    y = prior.sample(200_000, n + 1, generator=gen()).y
    ones = y[:, :n].sum(1)
    for k in range(n + 1):
        nxt = y[ones == k, n]
        exact = (a + k) / (a + b + n)
        assert abs(nxt.mean().item() - exact) < 4 * (exact * (1 - exact) / len(nxt)) ** 0.5
        context = torch.tensor([1.0] * k + [0.0] * (n - k))
        assert prior.posterior_predictive(context).item() == pytest.approx(exact)


def test_beta_bernoulli_posterior_and_log_prob():
    prior = BetaBernoulli(0.5, 1.5)
    y_train = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    p = prior.posterior_predictive(y_train)
    torch.testing.assert_close(p, torch.tensor([2.5 / 5, 0.5 / 5], dtype=torch.float64))
    assert prior.posterior_predictive(torch.zeros(2, 0)).tolist() == [0.25, 0.25]
    y_test = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    lp = prior.log_prob(y_train, y_test)
    expected = torch.log(torch.tensor([[0.5, 0.5], [0.1, 0.1]], dtype=torch.float64))
    assert lp.shape == (2, 2)
    torch.testing.assert_close(lp, expected)
    x = torch.zeros(2, 3, 1)  # the GP-style call of the training loop, x ignored
    torch.testing.assert_close(prior.log_prob(x, y_train, x[:, :2], y_test), lp)


# ---------------------------------------------------------------- configs and mixtures


@pytest.mark.parametrize(
    "prior",
    [
        GP(num_features=3, lengthscale=[0.1, 0.2, 0.3], inputs=Normal()),
        GP(kernel="matern12", outputscale=2.0, noise=0.0, inputs=Uniform(-1.0, 1.0)),
        BetaBernoulli(0.5, 2.0),
        Mixture([GP(num_features=2), GP(num_features=2, kernel="matern32")], [0.3, 0.7]),
    ],
)
def test_config_round_trip(prior):
    config = prior_to_config(prior)
    assert config["class"] == type(prior).__name__
    assert prior_from_config(config) == prior


def test_mixture_samples_both_components_in_proportion():
    low = GP(num_features=2, inputs=Uniform(0.0, 1.0))
    high = GP(num_features=2, inputs=Uniform(2.0, 3.0))
    mixture = Mixture([low, high], [0.3, 0.7])
    batch = mixture.sample(2000, 10, generator=gen())
    assert batch.x.shape == (2000, 10, 2) and batch.y.shape == (2000, 10)
    from_low = (batch.x.mean((1, 2)) < 1.5).float().mean().item()
    assert abs(from_low - 0.3) < 0.04
    again = mixture.sample(2000, 10, generator=gen())
    assert torch.equal(batch.x, again.x) and torch.equal(batch.y, again.y)
