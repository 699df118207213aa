"""The BoTorch adapter: a PFN's posterior inside BoTorch's acquisition functions."""

import pytest
import torch

pytest.importorskip("botorch", reason="the BoTorch adapter needs botorch ([bo] extra)")

from botorch.acquisition import LogExpectedImprovement, qLogExpectedImprovement
from botorch.optim import optimize_acqf

import priorfit as pf
from priorfit.bo.botorch import PFNModel

BOUNDS = torch.tensor([[0.0], [1.0]], dtype=torch.double)


@pytest.fixture(scope="module")
def model():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(6, 1, generator=g, dtype=torch.double)
    return PFNModel("gp-1d", X, torch.sin(12 * X))


def test_posterior_is_the_pfns_predictive(model):
    X = torch.rand(3, 2, 1, dtype=torch.double)
    posterior = model.posterior(X)
    direct = pf.load("gp-1d").predict(model.train_inputs[0].float(), model.train_targets.float(),
                                      X.reshape(-1, 1).float())
    assert posterior.mean.shape == posterior.variance.shape == (3, 2, 1)
    torch.testing.assert_close(posterior.mean.reshape(-1), direct.mean)
    torch.testing.assert_close(posterior.variance.reshape(-1), direct.variance)
    samples = posterior.rsample(torch.Size([4000]))
    assert samples.shape == (4000, 3, 2, 1)
    torch.testing.assert_close(samples.mean(0), posterior.mean, atol=0.05, rtol=0)
    torch.testing.assert_close(posterior.quantile(torch.tensor([0.5]))[0].reshape(-1),
                               direct.icdf(torch.tensor(0.5)), rtol=1e-5, atol=1e-5)


def test_samples_are_differentiable_in_the_candidates(model):
    X = torch.rand(4, 1, 1, dtype=torch.double, requires_grad=True)
    base = torch.randn(8, 4, 1, 1, dtype=torch.float32)
    model.posterior(X).rsample_from_base_samples(torch.Size([8]), base).sum().backward()
    assert X.grad is not None and torch.isfinite(X.grad).all() and X.grad.abs().sum() > 0


def test_botorch_acquisitions_optimise_on_it(model):
    best = model.train_targets.max()
    for acquisition, q in ((LogExpectedImprovement(model, best_f=best), 1),
                           (qLogExpectedImprovement(model, best_f=best), 2)):
        candidate, value = optimize_acqf(acquisition, bounds=BOUNDS, q=q, num_restarts=2,
                                         raw_samples=32)
        assert candidate.shape == (q, 1) and ((candidate >= 0) & (candidate <= 1)).all()
        assert torch.isfinite(value)
    assert next(model.pfn.parameters()).dtype == torch.float32  # BoTorch's casts leave it be


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"train_Y \[n, 1\]"):
        PFNModel("gp-1d", torch.rand(4, 1), torch.rand(4))
