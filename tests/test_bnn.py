"""Bayesian neural network priors: the network, its prior and likelihood, the hyperprior."""

import itertools
import math

import pytest
import torch
from scipy import stats

from priorfit.priors import (
    BNN,
    BNNHyperPrior,
    MLPWeights,
    Uniform,
    prior_from_config,
    prior_to_config,
)
from priorfit.priors.bnn import mlp


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("features", "hidden"), [(3, (5, 5)), (8, (64, 64)), (2, ())])
def test_shapes_reproducibility_and_parameter_count(features, hidden):
    prior = BNN(num_features=features, hidden=hidden)
    batch = prior.sample(4, 30, generator=gen())
    assert batch.x.shape == (4, 30, features) and batch.y.shape == (4, 30)
    assert batch.x.dtype == batch.y.dtype == torch.float32
    assert torch.equal(batch.y, prior.sample(4, 30, generator=gen()).y)
    widths = (features, *hidden, 1)
    expected = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    assert prior.num_parameters == expected


REFERENCE_ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "gelu": torch.nn.functional.gelu,
}


@pytest.mark.parametrize("activation", sorted(REFERENCE_ACTIVATIONS))
def test_the_batched_network_is_each_dataset_own_mlp(activation):
    prior = BNN(num_features=3, hidden=(5, 4), activation=activation)
    params = prior.sample_weights(37, generator=gen())  # more than one block of networks
    x = torch.randn(37, 7, 3, generator=gen(1))
    out = prior.function(x, params)
    assert out.shape == (37, 7)
    for i in range(37):
        h = x[i]
        for layer, (w, b) in enumerate(zip(params.weights, params.biases, strict=True)):
            h = h @ w[i] + b[i]
            h = REFERENCE_ACTIVATIONS[activation](h) if layer < 2 else h
        torch.testing.assert_close(out[i], h[:, 0])


def test_gradients_flow_through_the_network():
    prior = BNN(num_features=2, hidden=(6,))
    params = prior.sample_weights(3, generator=gen())
    for w in params.weights:
        w.requires_grad_(True)
    x = torch.randn(3, 5, 2, generator=gen(1))
    prior.function(x, params).sum().backward()
    reference = x @ params.weights[0].detach() + params.biases[0][:, None]
    expected = ((1 - torch.tanh(reference) ** 2) * params.weights[1].detach()[:, :, 0][:, None])
    torch.testing.assert_close(params.weights[0].grad, x.transpose(1, 2) @ expected)


def test_a_network_without_hidden_layers_has_the_closed_form_prior_variance():
    prior = BNN(num_features=4, hidden=(), weight_std=2.0, bias_std=0.5, noise_std=0.3)
    x = torch.tensor([[[0.5, -1.0, 2.0, 0.0]]]).expand(20000, 1, 4)
    batch, params = prior.sample_with_weights(20000, 1, generator=gen())
    f = prior.function(x, params)  # f = w·x + b, w ~ N(0, 4 / 4 per weight), b ~ N(0, 0.25)
    expected = 2.0**2 / 4 * (0.25 + 1 + 4) + 0.25
    assert f.var().item() == pytest.approx(expected, rel=0.03)
    noise = batch.y - prior.function(batch.x, params)
    assert noise.std().item() == pytest.approx(0.3, rel=0.03)


def test_log_prior_and_likelihood_match_torch_distributions():
    prior = BNN(num_features=2, hidden=(3,), weight_std=1.5, bias_std=0.7, noise_std=0.2)
    batch, params = prior.sample_with_weights(2, 5, generator=gen())
    expected = sum(
        torch.distributions.Normal(0, 1.5 / math.sqrt(w.shape[1])).log_prob(w).sum((1, 2))
        + torch.distributions.Normal(0, 0.7).log_prob(b).sum(1)
        for w, b in zip(params.weights, params.biases, strict=True)
    )
    torch.testing.assert_close(prior.log_prior(params), expected)
    mean = prior.function(batch.x, params)
    torch.testing.assert_close(prior.log_likelihood(batch.x, batch.y, params),
                               torch.distributions.Normal(mean, 0.2).log_prob(batch.y).sum(1))


def test_hyperprior_with_one_fixed_architecture_is_that_bnn():
    fixed = BNNHyperPrior(num_features=2, max_layers=1, min_width=6, max_width=6,
                          activations=("tanh",), weight_std=1.3, noise_std=0.1, max_sparsity=0.0,
                          inputs=Uniform())
    bnn = BNN(num_features=2, hidden=(6,), weight_std=1.3, bias_std=1.3, noise_std=0.1,
              inputs=Uniform())
    a = fixed.sample(4000, 1, generator=gen(1)).y[:, 0].numpy()
    b = bnn.sample(4000, 1, generator=gen(2)).y[:, 0].numpy()
    assert stats.ks_2samp(a, b).pvalue > 1e-3


def test_hyperprior_varies_the_networks_and_stays_finite():
    prior = BNNHyperPrior(num_features=8, min_features=2)
    widths = set()
    for seed in range(5):
        batch = prior.sample(64, 100, generator=gen(seed))
        widths.add(batch.x.shape[2])
        assert 2 <= batch.x.shape[2] <= 8 and torch.isfinite(batch.y).all()
        scales = batch.y.std(1)
        assert scales.max() / scales.min() > 5  # weight scales and noise differ per dataset
    assert len(widths) > 1
    assert prior_from_config(prior_to_config(prior)) == prior


def test_mlp_weights_are_a_plain_container():
    params = MLPWeights([torch.ones(1, 2, 1)], [torch.zeros(1, 1)])
    torch.testing.assert_close(mlp(torch.ones(1, 3, 2), params, "tanh"), torch.full((1, 3), 2.0))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: BNN(hidden=(5, 0)), "hidden widths"),
        (lambda: BNN(activation="swish"), "activation"),
        (lambda: BNN(noise_std=0.0), "noise_std"),
        (lambda: BNNHyperPrior(min_width=10, max_width=5), "min_width"),
        (lambda: BNNHyperPrior(activations=()), "at least one"),
        (lambda: BNNHyperPrior(weight_std=-1.0), "weight_std"),
        (lambda: BNNHyperPrior(max_sparsity=1.0), "max_sparsity"),
    ],
)
def test_bad_settings_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()
