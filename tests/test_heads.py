"""Output heads: fitting, losses, predictive distributions, and the errors they raise."""

import dataclasses
import math

import pytest
import torch

import priorfit as pf
from priorfit.model import ModelConfig, build_model
from priorfit.transforms import fit_transform

SMALL = dict(num_features=1, d_model=16, num_heads=2, num_layers=1, d_ff=32)


def identity(batch=1, n=0):
    return fit_transform("none", "none", torch.zeros(batch, n, 1), torch.zeros(batch, n))


def test_bounded_head_puts_all_mass_on_its_interval():
    model = build_model(ModelConfig(head="bounded", bounds=[0.0, 1.0], num_outputs=8, **SMALL))
    targets = torch.rand(1000) ** 2
    model.head.fit(targets)
    borders = model.head.borders
    assert borders[0] == 0.0 and borders[-1] == 1.0 and bool((borders.diff() > 0).all())
    logits = torch.randn(1, 3, 8)
    dist = model.head.distribution(logits, identity(), torch.zeros(1, 0))
    torch.testing.assert_close(dist.cdf(torch.ones(1, 3)), torch.ones(1, 3))
    torch.testing.assert_close(dist.cdf(torch.zeros(1, 3)), torch.zeros(1, 3))
    grid = torch.linspace(0, 1, 20001)[:, None, None]
    density = dist.log_prob(grid.clamp(0, 1)).exp()
    torch.testing.assert_close(torch.trapezoid(density, grid, dim=0), torch.ones(1, 3),
                               rtol=2e-3, atol=2e-3)


def test_bounded_head_refuses_targets_outside_and_bad_configs():
    model = build_model(ModelConfig(head="bounded", bounds=[0.0, 1.0], num_outputs=8, **SMALL))
    with pytest.raises(ValueError, match=r"outside the bounded head's interval \[0, 1\]"):
        model.head.fit(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="outside the bounded head"):
        model.predict([[0.0], [1.0]], [0.2, 1.2], [[0.5]])
    with pytest.raises(ValueError, match="low < high"):
        ModelConfig(head="bounded", bounds=[1.0, 0.0], **SMALL)
    with pytest.raises(ValueError, match="y_transform = 'none'"):
        ModelConfig(head="bounded", y_transform="standardize", **SMALL)


def test_classes_head_ignores_classes_a_dataset_does_not_use():
    model = build_model(ModelConfig(head="classes", num_outputs=5, **SMALL))
    logits = torch.randn(2, 3, 5)
    y_train = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 3.0, 1.0]])
    loss = model.head.loss(logits, target, y_train)
    # dataset 0 uses classes 0..1, dataset 1 uses 0..3 (its test points have a 3)
    expected = torch.stack([
        torch.nn.functional.cross_entropy(logits[0, :, :2], target[0].long(), reduction="none"),
        torch.nn.functional.cross_entropy(logits[1, :, :4], target[1].long(), reduction="none"),
    ])
    torch.testing.assert_close(loss, expected)
    dist = model.head.distribution(logits, identity(2, 3), y_train)
    assert dist.probs.shape == (2, 3, 5)
    assert (dist.probs[0, :, 2:] == 0).all() and (dist.probs[1, :, 3:] == 0).all()
    torch.testing.assert_close(dist.probs.sum(-1), torch.ones(2, 3))


def test_classes_head_validates_labels_and_the_prior():
    model = build_model(ModelConfig(head="classes", num_outputs=2, **SMALL))
    with pytest.raises(ValueError, match=r"class indices 0\.\.1"):
        model.predict([[0.0], [1.0]], [0, 2], [[0.5]])
    with pytest.raises(ValueError, match="class indices"):
        model.predict([[0.0], [1.0]], [0, 0.5], [[0.5]])

    @dataclasses.dataclass
    class ManyClasses(pf.priors.BetaBernoulli):
        num_classes = 3

    with pytest.raises(ValueError, match=r"up to 3 classes but ModelConfig\.num_outputs"):
        model.head.check_prior(ManyClasses())
    model.head.check_prior(pf.priors.BetaBernoulli())


def test_riemann_head_loss_is_the_distribution_nll():
    model = build_model(ModelConfig(num_outputs=10, **SMALL))
    model.head.fit(torch.randn(500))
    logits, target = torch.randn(2, 4, 10), torch.randn(2, 4)
    dist = model.head.distribution(logits, identity(2), torch.zeros(2, 0))
    torch.testing.assert_close(model.head.loss(logits, target, torch.zeros(2, 0)),
                               -dist.log_prob(target))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"head": "ranking"}, r"head must be one of \['bounded', 'classes', 'riemann'\]"),
        ({"arch": "graph"}, r"arch must be one of \['cells', 'images', 'rows'\]"),
        ({"head": "classes", "y_transform": "standardize"}, "y_transform = 'none'"),
        ({"num_outputs": 1}, "at least 2"),
    ],
)
def test_bad_head_or_arch_names(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{**SMALL, **kwargs})


def test_log_prob_of_padded_classes_is_minus_infinity():
    model = build_model(ModelConfig(head="classes", num_outputs=4, **SMALL))
    post = model.predict([[0.0], [1.0]], [0, 1], [[0.5]])
    assert post.log_prob(torch.tensor([3])).item() == -math.inf


def test_classes_head_keeps_two_classes_when_training_labels_are_all_zero():
    """A coin-flip dataset whose flips so far are all 0 can still show a 1 (Beta-Bernoulli)."""
    model = build_model(ModelConfig(head="classes", num_outputs=4, **SMALL))
    post = model.predict([[0.0], [0.0]], [0, 0], [[0.0]])
    assert post.probs[0, 1] > 0 and (post.probs[0, 2:] == 0).all()
