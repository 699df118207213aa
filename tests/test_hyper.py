"""Tests of the GP prior with hyperpriors and its hyperprior distributions."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from priorfit.priors import (
    GP,
    ClusteredInputs,
    Gamma,
    GPHyperparameters,
    GPHyperPrior,
    LogNormal,
    LogUniform,
    MixedInputs,
    Prior,
    Uniform,
    prior_from_config,
    prior_to_config,
)
from priorfit.priors.hyper import scale_hyperprior


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dist", [Gamma(3.0, 6.0), Gamma(0.5, 2.0), Gamma(1.1, 0.05)])
def test_gamma_samples_match_scipy(dist):
    draws = dist.sample((20000,), generator=gen()).numpy()
    reference = stats.gamma(dist.concentration, scale=1 / dist.rate)
    assert stats.kstest(draws, reference.cdf).pvalue > 1e-3
    value = torch.tensor([0.01, 0.5, 3.0], dtype=torch.float64)
    torch.testing.assert_close(dist.log_prob(value), torch.from_numpy(reference.logpdf(value)))
    assert torch.equal(dist.sample((5,), generator=gen(1)), dist.sample((5,), generator=gen(1)))


def test_log_uniform_samples_and_density():
    dist = LogUniform(1e-3, 10.0)
    draws = dist.sample((20000,), generator=gen())
    assert draws.min() >= 1e-3 and draws.max() <= 10
    reference = stats.loguniform(1e-3, 10.0)
    assert stats.kstest(draws.numpy(), reference.cdf).pvalue > 1e-3
    value = torch.tensor([1e-4, 0.01, 5.0, 20.0], dtype=torch.float64)
    expected = torch.from_numpy(reference.logpdf(value.numpy()))
    torch.testing.assert_close(dist.log_prob(value), expected)


def test_paper_preset_shapes_and_hyperparameter_moments():
    prior = GPHyperPrior(num_features=3)
    assert isinstance(prior, Prior)
    batch = prior.sample(64, 20, generator=gen())
    assert batch.x.shape == (64, 20, 3) and batch.y.shape == (64, 20)
    assert batch.x.dtype == batch.y.dtype == torch.float32 and torch.isfinite(batch.y).all()
    again = prior.sample(64, 20, generator=gen())
    assert torch.equal(batch.y, again.y)
    hypers = prior.sample_hyperparameters(40000, 3, generator=gen())
    assert hypers.lengthscale.shape == (40000, 3) and hypers.noise.shape == (40000,)
    assert abs(hypers.lengthscale.mean().item() - 0.5) < 0.01
    assert abs(hypers.outputscale.mean().item() - 2 / 0.15) < 0.2
    assert abs(hypers.noise.mean().item() - 1.1 / 0.05) < 0.4
    assert torch.all(hypers.slope == 0)


def test_marginal_variance_is_expected_outputscale_plus_noise():
    prior = GPHyperPrior(num_features=2, outputscale=Gamma(4.0, 2.0), noise=LogUniform(0.1, 1.0))
    y = prior.sample(20000, 3, generator=gen()).y.double()
    expected = 4.0 / 2.0 + (1.0 - 0.1) / math.log(10.0)
    assert abs(y.var().item() - expected) < 0.05 * expected


def test_covariance_matches_the_oracle_gp():
    prior = GPHyperPrior(num_features=2, kernel="matern32")
    hypers = prior.sample_hyperparameters(3, 2, generator=gen())
    x = torch.rand(3, 7, 2, generator=gen(1), dtype=torch.float64)
    K = prior.covariance(x, hypers)
    for i in range(3):
        oracle = prior.oracle(hypers, i)
        assert isinstance(oracle, GP) and oracle.kernel == "matern32"
        torch.testing.assert_close(K[i], oracle.covariance(x[i]))


def test_fixed_hyperparameters_reproduce_the_gp_prior():
    points = torch.tensor([[0.1], [0.2], [0.7]], dtype=torch.float64)
    fixed = GPHyperPrior(kernel="rbf", lengthscale=0.3, outputscale=2.0, noise=0.1)
    hypers = fixed.sample_hyperparameters(2, 1, generator=gen())
    gp = GP(kernel="rbf", lengthscale=0.3, outputscale=2.0, noise=0.1)
    torch.testing.assert_close(
        fixed.covariance(points.expand(2, 3, 1), hypers)[1], gp.covariance(points)
    )


def test_variable_width_is_drawn_per_batch():
    prior = GPHyperPrior(num_features=4, min_features=2)
    widths = {prior.sample(2, 5, generator=gen(seed)).x.shape[-1] for seed in range(40)}
    assert widths == {2, 3, 4}


def test_irrelevant_features_do_not_change_the_function():
    prior = GPHyperPrior(num_features=6, irrelevant_prob=0.7, noise=1e-4)
    hypers = prior.sample_hyperparameters(4000, 6, generator=gen())
    used = torch.isfinite(hypers.lengthscale)
    assert used.any(-1).all()  # at least one feature per dataset
    assert abs((~used).float().mean().item() - 0.7 * 5 / 6) < 0.02
    # Moving the points along an ignored feature leaves the covariance unchanged.
    x = torch.rand(4000, 5, 6, generator=gen(1), dtype=torch.float64)
    moved = torch.where(
        used[:, None, :], x, torch.rand(x.shape, generator=gen(2), dtype=torch.float64)
    )
    torch.testing.assert_close(prior.covariance(x, hypers), prior.covariance(moved, hypers))


def test_linear_trend_adds_the_slope():
    prior = GPHyperPrior(num_features=2, outputscale=1e-6, noise=1e-6, trend_std=3.0)
    hypers = prior.sample_hyperparameters(1, 2, generator=gen())
    assert hypers.slope.abs().max() > 0
    batch = prior.sample(500, 40, generator=gen())
    x, y = batch.x.double() - 0.5, batch.y.double()
    slopes = torch.linalg.lstsq(x, y.unsqueeze(-1)).solution.squeeze(-1)
    assert abs(slopes.std().item() - 3.0) < 0.3  # exact linear fits, slopes ~ N(0, 3²)
    with pytest.raises(ValueError, match="trend"):
        prior.oracle(hypers, 0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_features": 0}, "num_features"),
        ({"num_features": 2, "min_features": 3}, "min_features"),
        ({"kernel": "cosine"}, "kernel"),
        ({"noise": -1.0}, "noise"),
        ({"lengthscale": "short"}, "lengthscale"),
        ({"irrelevant_prob": 1.0}, "irrelevant_prob"),
        ({"trend_std": -1.0}, "trend_std"),
    ],
)
def test_rejects_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GPHyperPrior(**kwargs)


def test_rejects_bad_hyperprior_parameters():
    with pytest.raises(ValueError, match="rate"):
        Gamma(1.0, 0.0)
    with pytest.raises(ValueError, match="low"):
        LogUniform(1.0, 0.5)


def test_config_round_trip():
    prior = GPHyperPrior(
        num_features=5,
        min_features=1,
        kernel="rbf",
        noise=LogUniform(1e-4, 1.0),
        irrelevant_prob=0.2,
        trend_std=0.5,
        inputs=Uniform(-1.0, 1.0),
    )
    assert prior_from_config(prior_to_config(prior)) == prior


def test_returned_hyperparameters_are_those_of_the_data():
    prior = GPHyperPrior(num_features=2)
    batch, hypers = prior.sample_with_hyperparameters(200, 30, generator=gen())
    assert torch.equal(batch.y, prior.sample(200, 30, generator=gen()).y)
    x, y = batch.x.double(), batch.y.double()

    def log_evidence(h):
        K = prior.covariance(x, h)
        return torch.distributions.MultivariateNormal(torch.zeros_like(y), K).log_prob(y)

    shuffled = hypers.select(torch.arange(200).roll(1))
    assert (log_evidence(hypers) - log_evidence(shuffled)).mean() > 5


def test_log_normal_samples_match_scipy():
    dist = LogNormal(0.5, 1.5)
    draws = dist.sample((20000,), generator=gen()).numpy()
    reference = stats.lognorm(1.5, scale=math.exp(0.5))
    assert stats.kstest(draws, reference.cdf).pvalue > 1e-3
    value = torch.tensor([0.01, 1.0, 30.0], dtype=torch.float64)
    torch.testing.assert_close(dist.log_prob(value), torch.from_numpy(reference.logpdf(value)))
    with pytest.raises(ValueError, match="scale > 0"):
        LogNormal(0.0, 0.0)


@pytest.mark.parametrize("spec", [Gamma(3.0, 6.0), LogUniform(0.1, 2.0), LogNormal(0.5, 1.5)])
def test_scaled_hyperprior_is_the_law_of_the_scaled_value(spec):
    scaled = scale_hyperprior(spec, 4.0)
    draws = 4.0 * spec.sample((20000,), generator=gen()).numpy()
    cdf = lambda v: torch.tensor(  # noqa: E731  numerical CDF of the scaled density
        [torch.trapezoid(scaled.log_prob(t).exp(), t).item()
         for t in (torch.linspace(1e-9, float(u), 4001, dtype=torch.float64) for u in v)]
    ).numpy()
    assert stats.kstest(draws[:2000], cdf).pvalue > 1e-3
    assert scale_hyperprior(0.5, 4.0) == 2.0


def test_lengthscale_dim_scaling_and_its_fixed_width_equivalent():
    prior = GPHyperPrior(num_features=9, min_features=1, lengthscale=LogNormal(0.0, 1.0),
                         lengthscale_dim_scaling=0.5)
    hypers = prior.sample_hyperparameters(4000, 9, generator=gen())
    assert hypers.lengthscale.log().mean().item() == pytest.approx(math.log(3.0), abs=0.02)
    fixed = prior.at_width(9)
    assert fixed.num_features == 9 and fixed.min_features is None
    assert fixed.lengthscale_dim_scaling == 0 and fixed.lengthscale == LogNormal(math.log(3), 1.0)
    again = fixed.sample_hyperparameters(4000, 9, generator=gen())
    torch.testing.assert_close(again.lengthscale, hypers.lengthscale)


def test_mixed_inputs_give_each_column_one_marginal():
    inputs = MixedInputs(weights=(1, 1, 1, 1), max_levels=3)
    x = inputs.sample((400, 200, 3), generator=gen())
    assert x.shape == (400, 200, 3) and x.dtype == torch.float32
    columns = x.transpose(1, 2).reshape(-1, 200)
    levels = torch.tensor([len(c.unique()) for c in columns])
    discrete = levels <= 3
    assert set(levels[discrete].tolist()) <= {1, 2, 3}
    uniform = ~discrete & (columns.min(1).values >= 0) & (columns.max(1).values < 1)
    log_normal = ~discrete & ~uniform & (columns.min(1).values > 0)
    normal = ~discrete & ~uniform & ~log_normal
    for kind in (discrete, uniform, log_normal, normal):  # each about a quarter of the columns
        assert abs(kind.float().mean().item() - 0.25) < 0.05
    assert torch.equal(inputs.sample((2, 5, 3), generator=gen(3)),
                       inputs.sample((2, 5, 3), generator=gen(3)))
    with pytest.raises(ValueError, match="weights"):
        MixedInputs(weights=(1, 0, 0))
    with pytest.raises(ValueError, match="max_levels"):
        MixedInputs(max_levels=1)


def test_clustered_inputs_concentrate_some_datasets_around_centres():
    x = ClusteredInputs(clustered_prob=0.5, max_centres=1, min_std=0.01, max_std=0.01).sample(
        (400, 300, 2), generator=gen()
    )
    assert x.shape == (400, 300, 2) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    # the densest point's share of neighbours within 0.05 (max-norm): about 1% for uniform
    # points; for a clustered dataset its clustered share 1 - u, u ~ U(0, 1)
    close = (x[:, :, None] - x[:, None]).abs().amax(-1) < 0.05  # [400, 300, 300]
    density = close.float().mean(-1).amax(-1)
    clustered = density > 0.1  # all uniform datasets, 90% of the clustered ones
    assert abs(clustered.float().mean().item() - 0.45) < 0.07
    assert density[~clustered].median() < 0.04
    uniform = ClusteredInputs(clustered_prob=0.0).sample((50, 400, 1), generator=gen(1))
    assert stats.kstest(uniform.flatten().numpy(), "uniform").pvalue > 1e-3
    assert torch.equal(ClusteredInputs().sample((2, 5, 3), generator=gen(3)),
                       ClusteredInputs().sample((2, 5, 3), generator=gen(3)))
    for bad, match in (({"clustered_prob": 1.5}, "clustered_prob"),
                       ({"max_centres": 0}, "max_centres"),
                       ({"min_std": 0.3, "max_std": 0.2}, "min_std")):
        with pytest.raises(ValueError, match=match):
            ClusteredInputs(**bad)


def test_gp_hyper_config_builds_the_real_data_prior():
    from pathlib import Path

    from priorfit.train import load_config

    prior, model, _ = load_config(Path(__file__).parents[1] / "configs" / "gp-hyper.toml")
    assert isinstance(prior.inputs, MixedInputs) and isinstance(prior.lengthscale, LogNormal)
    assert (model.x_transform, model.y_transform) == ("unit_cube", "standardize")
    assert prior_from_config(prior_to_config(prior)) == prior
    batch = prior.sample(4, 64, generator=gen())
    assert torch.isfinite(batch.y).all() and 1 <= batch.x.shape[2] <= 15


def test_input_warping_is_a_kumaraswamy_cdf_per_feature():
    plain = GPHyperPrior(num_features=2, kernel="matern32")
    warped = GPHyperPrior(num_features=2, kernel="matern32", input_warping=0.75)
    assert plain.sample_hyperparameters(3, 2, generator=gen()).warp is None
    hypers = warped.sample_hyperparameters(20000, 2, generator=gen())
    assert hypers.warp.shape == (20000, 2, 2) and torch.all(hypers.warp > 0)
    log_warp = hypers.warp.log()
    assert abs(log_warp.mean().item()) < 0.02 and abs(log_warp.std().item() - 0.75) < 0.02
    # the covariance is the unwarped kernel at 1 - (1 - x^a)^b
    few = hypers.select(torch.arange(3))
    x = torch.rand(3, 7, 2, generator=gen(1), dtype=torch.float64)
    a, b = few.warp[:, 0, None, :], few.warp[:, 1, None, :]
    unwarped = GPHyperparameters(few.lengthscale, few.outputscale, few.noise, few.slope)
    expected = warped.covariance(1 - (1 - x**a) ** b, unwarped)
    torch.testing.assert_close(warped.covariance(x, few), expected)
    with pytest.raises(ValueError, match="input warping"):
        warped.oracle(few, 0)
    batch = warped.sample(8, 30, generator=gen())
    assert torch.isfinite(batch.y).all()
    with pytest.raises(ValueError, match="input_warping"):
        GPHyperPrior(input_warping=-1.0)
