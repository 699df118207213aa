"""The learning-curve prior: LC-PFN's families, parameter priors, noise and rejection rule."""

import math

import pytest
import torch

import priorfit as pf
from priorfit.priors import prior_from_config, prior_to_config
from priorfit.priors.curves import DEFAULT_FAMILIES, FAMILIES, CurvePrior, _draw, _log_density


def test_batches_are_curves_in_epoch_order_and_reproducible():
    prior = CurvePrior(num_epochs=50)
    batch, _, sigma = prior.sample_with_curves(64, 40, generator=torch.Generator().manual_seed(1))
    assert batch.x.shape == (64, 40, 1) and batch.y.shape == (64, 40) and sigma.shape == (64,)
    torch.testing.assert_close(batch.x[0, :, 0], torch.arange(1, 41) / 50)
    assert (batch.x == batch.x[:1]).all()  # every curve on the same epochs
    again = prior.sample(64, 40, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again.y, batch.y, rtol=0, atol=0)
    assert batch.y.dtype == torch.float32


def test_every_noiseless_curve_passes_the_rejection_rule():
    """LC-PFN's rule on the whole curve (all num_epochs, not just the returned prefix): final
    value above the first, inside [0, 1]."""
    prior = CurvePrior(families=tuple(FAMILIES), normalize_weights=True)
    full = prior._noiseless(500, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert ((full >= 0) & (full <= 1)).all() and (full[:, -1] > full[:, 0]).all()


def test_observations_are_clipped_to_the_unit_interval_unless_asked_not_to():
    g = torch.Generator().manual_seed(5)
    clipped = CurvePrior().sample(2000, 100, generator=g).y
    assert clipped.min() >= 0 and clipped.max() <= 1 and (clipped == 1).any()
    free = CurvePrior(clip_observations=False).sample(2000, 100, generator=g).y
    assert free.max() > 1


def test_noise_has_the_prior_of_lc_pfn():
    prior = CurvePrior(clip_observations=False)
    batch, curves, sigma = prior.sample_with_curves(4000, 100,
                                                    generator=torch.Generator().manual_seed(2))
    log_sigma = sigma.double().log()
    assert abs(log_sigma.mean().item() + 4.0) < 0.1 and abs(log_sigma.std().item() - 1.0) < 0.05
    standardised = (batch.y - curves).double() / sigma[:, None].double()
    assert abs(standardised.mean().item()) < 0.01 and abs(standardised.std().item() - 1) < 0.01


@pytest.mark.parametrize(("name", "params", "t", "value"), [
    ("pow3", {"c": 0.9, "a": 0.5, "alpha": 1.0}, 2.0, 0.9 - 0.5 / 2),
    ("ilog2", {"c": 0.8, "a": 0.3}, 3.0, 0.8 - 0.3 / math.log(4)),
    ("janoschek", {"a": 0.9, "beta": 0.1, "k": 0.2, "delta": 1.0}, 2.0,
     0.9 - 0.8 * math.exp(-0.4)),
    ("weibull", {"alpha": 0.9, "beta": 0.1, "kappa": 0.5, "delta": 2.0}, 2.0,
     0.9 - 0.8 * math.exp(-1.0)),
    ("mmf", {"alpha": 0.9, "beta": 0.1, "kappa": 0.5, "delta": 2.0}, 2.0, 0.9 - 0.8 / 2),
    ("dr_hill", {"theta": 0.8, "eta": 2.0, "kappa": 2.0}, 2.0, 0.4),
    ("pow4", {"c": 0.9, "a": 1.0, "b": 1.0, "alpha": 1.0}, 3.0, 0.9 - 0.25),
    ("exp4", {"c": 0.9, "a": 1.0, "b": 0.0, "alpha": 1.0}, 1.0, 0.9 - math.exp(-1.0)),
    ("vap", {"a": -0.1, "b": -1.0, "c": 0.0}, 2.0, math.exp(-0.1 - 0.5)),
    ("loglog_linear", {"a": 1.0, "b": 1.0}, math.e, math.log(2.0)),
    ("log_power", {"a": 0.8, "b": 0.0, "c": -1.0}, 1.0, 0.4),
])
def test_families_are_the_published_formulas(name, params, t, value):
    tensors = {k: torch.tensor([[v]], dtype=torch.float64) for k, v in params.items()}
    got = FAMILIES[name].function(torch.tensor([[t]], dtype=torch.float64), **tensors)
    assert got.item() == pytest.approx(value, rel=1e-12)


def test_parameter_priors_have_their_distributions():
    g = torch.Generator().manual_seed(3)
    uniform = _draw(("uniform", -0.6, 0.6), 20000, g, "cpu")
    assert uniform.min() >= -0.6 and uniform.max() <= 0.6 and abs(uniform.mean()) < 0.01
    lognormal = _draw(("lognormal", -2.0, 1.0), 20000, g, "cpu").log()
    assert abs(lognormal.mean() + 2) < 0.03 and abs(lognormal.std() - 1) < 0.03
    one_minus = _draw(("one_minus_exp_uniform", -5.0, 0.0), 20000, g, "cpu")
    assert (one_minus >= 0).all() and (one_minus < 1 - math.exp(-5) + 1e-12).all()


def test_rejection_gives_up_with_advice(monkeypatch):
    monkeypatch.setattr("priorfit.priors.curves.MAX_ROUNDS", 1)
    with pytest.raises(RuntimeError, match="normalize_weights=True"):
        CurvePrior(families=tuple(FAMILIES)).sample(200, 10)


def test_default_families_are_lc_pfns_and_the_prior_round_trips_its_config():
    assert CurvePrior().families == DEFAULT_FAMILIES == ("pow3", "ilog2", "janoschek")
    prior = CurvePrior(families=("weibull", "mmf"), num_epochs=50)
    assert prior_from_config(prior_to_config(prior)) == prior
    assert isinstance(pf.priors.CurvePrior(), CurvePrior)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"families": ("pow3", "nope")}, "families"),
    ({"families": ()}, "families"),
    ({"families": ("pow3", "pow3")}, "families"),
    ({"num_epochs": 1}, "num_epochs"),
    ({"log_noise_std": -1.0}, "log_noise_std"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CurvePrior(**kwargs)


def test_more_points_than_epochs_is_an_error():
    with pytest.raises(ValueError, match=r"seq_len must be in 1\.\.num_epochs"):
        CurvePrior(num_epochs=10).sample(2, 11)


def test_parameter_densities_integrate_to_one_and_match_the_sampler():
    """Each parameter prior's log density (the MCMC baseline's prior) is normalised and is the
    density the sampler draws from."""
    specs = {spec for family in FAMILIES.values() for spec in family.parameters.values()}
    g = torch.Generator().manual_seed(4)
    for spec in sorted(specs):
        draws = _draw(spec, 200_000, g, "cpu")[:, 0]
        low, high = torch.quantile(draws, 0.001).item(), torch.quantile(draws, 0.999).item()
        grid = (torch.logspace(math.log10(low), math.log10(high), 20_001, dtype=torch.float64)
                if low > 0 else torch.linspace(low, high, 20_001, dtype=torch.float64))
        density = _log_density(spec, grid).exp()
        mass = torch.trapezoid(density, grid).item()
        inside = ((draws >= low) & (draws <= high)).double().mean().item()
        assert mass == pytest.approx(inside, abs=5e-3), spec
        half = grid[grid <= draws.median()]
        assert torch.trapezoid(_log_density(spec, half).exp(), half).item() == pytest.approx(
            0.5 - 0.001, abs=5e-3), spec


def test_curves_are_a_function_of_the_parameter_vector():
    prior = CurvePrior(families=("pow3", "weibull"), normalize_weights=True)
    t = torch.arange(1, 21, dtype=torch.float64)[None]
    theta = prior.draw_parameters(5, torch.Generator().manual_seed(0))
    assert theta.shape == (5, len(prior.parameter_names())) == (5, 2 + 3 + 4)
    assert prior.parameter_names()[:4] == ["pow3.weight", "pow3.c", "pow3.a", "pow3.alpha"]
    w = theta[:, [0, 4]] / theta[:, [0, 4]].sum(1, keepdim=True)
    pow3 = theta[:, 1:2] - theta[:, 2:3] * t ** (-theta[:, 3:4])
    weibull = theta[:, 5:6] - (theta[:, 5:6] - theta[:, 6:7]) * torch.exp(
        -((theta[:, 7:8] * t) ** theta[:, 8:9]))
    torch.testing.assert_close(prior.curves(theta, t), w[:, :1] * pow3 + w[:, 1:] * weibull)
    assert torch.isfinite(prior.log_parameter_density(theta)).all()
    outside = theta.clone()
    outside[0, 2] = 5.0  # pow3.a ~ U(-0.6, 0.6)
    assert prior.log_parameter_density(outside)[0] == -torch.inf
