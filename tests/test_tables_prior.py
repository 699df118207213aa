"""TablePrior: synthetic classification tables from causal models, trees, BNNs and GPs."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from priorfit.model import ModelConfig, build_model
from priorfit.priors import LogUniform, TablePrior, prior_from_config, prior_to_config
from priorfit.priors.tables import MECHANISMS, _missing, _Random

# every column corruption switched off: features are the mechanism's, standardised
PLAIN = dict(max_irrelevant_share=0.0, max_duplicate_share=0.0, max_heavy_tail_share=0.0,
             outlier_probability=0.0, max_log10_scale=0.0, shift_std=0.0,
             max_categorical_share=0.0, missing_probability=0.0)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_batches_have_the_protocol_shapes_and_valid_classes():
    prior = TablePrior()
    batch, info = prior.sample_with_info(16, 60, generator=seeded())
    x, y = batch.x, batch.y
    assert x.dtype == y.dtype == torch.float32
    assert x.shape[:2] == (16, 60) and y.shape == (16, 60) and 1 <= x.shape[2] <= 100
    assert not x.isinf().any() and y.isfinite().all()
    assert (y == y.round()).all()
    assert ((info.num_classes >= 2) & (info.num_classes <= prior.max_classes)).all()
    for labels, classes in zip(y.long(), info.num_classes, strict=True):
        assert set(labels.tolist()) == set(range(classes))  # every class holds a row
    assert prior.num_classes == prior.max_classes == 10


def test_short_datasets_have_at_most_one_class_per_row():
    batch, info = TablePrior().sample_with_info(8, 3, generator=seeded())
    assert (info.num_classes <= 3).all() and (batch.y < info.num_classes[:, None]).all()
    assert TablePrior().sample(2, 1, generator=seeded()).y.eq(0).all()


def test_widths_are_drawn_per_batch_favouring_small_tables():
    prior = TablePrior(num_features=100)
    widths = [prior.sample(1, 2, generator=seeded(s)).x.shape[2] for s in range(200)]
    assert min(widths) >= 1 and max(widths) <= 100
    assert np.median(widths) < 25 and max(widths) > 50  # log-uniform: median about 10
    fixed = TablePrior(num_features=7, min_features=7)
    assert {fixed.sample(2, 5, generator=seeded(s)).x.shape[2] for s in range(5)} == {7}


def test_same_seed_same_batch_other_seed_other_batch():
    prior = TablePrior(num_features=20, min_features=10, missing_probability=1.0)
    first, again = (prior.sample(8, 30, generator=seeded(3)) for _ in range(2))
    torch.testing.assert_close(first.x, again.x, equal_nan=True, rtol=0, atol=0)
    assert torch.equal(first.y, again.y)
    other = prior.sample(8, 30, generator=seeded(4))
    assert other.x.shape != first.x.shape or not torch.equal(other.x.nan_to_num(),
                                                             first.x.nan_to_num())
    assert not torch.equal(other.y, first.y)


def test_each_mechanism_can_be_forced_and_a_default_batch_mixes_them():
    _, info = TablePrior(num_features=5).sample_with_info(64, 8, generator=seeded())
    assert set(info.mechanism.tolist()) == set(range(len(MECHANISMS)))
    for index, name in enumerate(MECHANISMS):
        _, info = TablePrior(num_features=5, mechanisms={name: 1.0}).sample_with_info(
            6, 8, generator=seeded()
        )
        assert (info.mechanism == index).all(), name


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_each_mechanism_makes_learnable_targets(mechanism):
    """On at least half of 16 datasets a small model beats the majority class by 10 points on
    held-out rows (over seeds: 8 to 14); with the labels shuffled, so that the features tell
    nothing, on almost none (0 to 3)."""
    prior = TablePrior(num_features=4, min_features=4, mechanisms={mechanism: 1.0},
                       missing_probability=0.0)
    batch = prior.sample(16, 200, generator=seeded(1))
    shuffled = batch.y[:, torch.randperm(200, generator=seeded(2))]
    assert learnable(batch.x, batch.y) >= 8
    assert learnable(batch.x, shuffled) <= 3


def learnable(x: torch.Tensor, y: torch.Tensor) -> int:
    """On how many datasets a logistic regression or a depth-4 tree, trained on the first 100
    rows, classifies the other rows 10 points better than the first 100 rows' majority class."""
    wins = 0
    for features, labels in zip(x.numpy(), y.numpy().astype(int), strict=True):
        train, test = slice(0, 100), slice(100, None)
        majority = np.mean(labels[test] == np.bincount(labels[train]).argmax())
        if len(np.unique(labels[train])) < 2:
            continue
        models = (make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)),
                  DecisionTreeClassifier(max_depth=4, random_state=0))
        best = max(np.mean(m.fit(features[train], labels[train]).predict(features[test])
                           == labels[test]) for m in models)
        wins += bool(best > majority + 0.1)
    return wins


def test_missing_values_appear_only_when_switched_on():
    on = TablePrior(num_features=10, min_features=10, missing_probability=1.0,
                    max_missing_rate=0.3)
    batch = on.sample(16, 100, generator=seeded())
    rate = batch.x.isnan().float().mean()
    assert 0.05 < rate < 0.3 and not batch.y.isnan().any()
    off = TablePrior(num_features=10, min_features=10, missing_probability=0.0)
    assert not off.sample(16, 100, generator=seeded()).x.isnan().any()


def test_missing_not_at_random_hides_large_values_more_often():
    columns = torch.randn(4, 3, 5000, generator=seeded())  # [B, F, T]
    rng = _Random(seeded(1), torch.device("cpu"))
    for mnar_probability in (1.0, 0.0):
        missing = columns.clone()
        _missing(rng, missing, probability=1.0, max_rate=0.3, mnar_probability=mnar_probability)
        large, small = missing[columns > 1].isnan().float(), missing[columns < -1].isnan().float()
        if mnar_probability:
            assert large.mean() > 3 * small.mean()
        else:
            assert abs(large.mean() - small.mean()) < 0.03


def test_categorical_columns_hold_integer_codes():
    prior = TablePrior(num_features=30, min_features=30, max_categorical_share=1.0,
                       max_categories=6, missing_probability=0.0)
    batch, info = prior.sample_with_info(8, 100, generator=seeded())
    columns = batch.x.transpose(1, 2)[info.categorical]  # [categorical columns, T]
    assert 0.2 < info.categorical.float().mean() < 0.8
    assert (columns == columns.round()).all() and columns.min() >= 0 and columns.max() <= 5
    others = batch.x.transpose(1, 2)[~info.categorical]
    assert (others != others.round()).any(1).float().mean() > 0.9
    off = TablePrior(num_features=30, max_categorical_share=0.0)
    assert not off.sample_with_info(8, 100, generator=seeded())[1].categorical.any()


def test_imbalance_zero_gives_balanced_classes():
    batch, info = TablePrior(imbalance=0.0).sample_with_info(16, 200, generator=seeded())
    for labels, classes in zip(batch.y.long(), info.num_classes, strict=True):
        counts = torch.bincount(labels, minlength=int(classes))
        assert counts.max() - counts.min() <= 1
    batch, info = TablePrior(imbalance=1.0).sample_with_info(16, 200, generator=seeded())
    majority = torch.stack([torch.bincount(labels).max() for labels in batch.y.long()]) / 200
    assert (majority > 1 / info.num_classes + 0.2).any()


def test_with_every_column_corruption_off_features_stay_standardised():
    batch, info = TablePrior(num_features=12, min_features=12, **PLAIN).sample_with_info(
        16, 100, generator=seeded()
    )
    std, mean = torch.std_mean(batch.x, dim=1, correction=0)
    assert mean.abs().max() < 1e-4 and ((std - 1).abs() < 1e-3).all()
    assert not info.categorical.any() and not batch.x.isnan().any()


@pytest.mark.parametrize(
    "component",
    [dict(max_irrelevant_share=1.0), dict(max_duplicate_share=1.0),
     dict(max_heavy_tail_share=1.0), dict(outlier_probability=1.0, max_outlier_rate=0.1),
     dict(max_log10_scale=2.0), dict(shift_std=3.0)],
    ids=lambda c: next(iter(c)),
)
def test_switching_one_column_corruption_on_changes_x_not_y(component):
    """Same seed, same draws: switching one component on changes the table; the labels stay."""
    def sample(**changes):
        prior = TablePrior(num_features=12, min_features=12, **{**PLAIN, **changes})
        return prior.sample(8, 100, generator=seeded())

    plain, changed = sample(), sample(**component)
    assert torch.equal(plain.y, changed.y)
    assert not torch.allclose(plain.x, changed.x) and changed.x.isfinite().all()


def test_heavy_tails_and_outliers_stretch_uniform_features():
    uniform = dict(num_features=12, min_features=12, mechanisms={"gp": 1.0},
                   root_causes={"uniform": 1.0}, **PLAIN)
    plain = TablePrior(**uniform).sample(8, 100, generator=seeded()).x
    assert plain.abs().max() < 2.5  # standardised uniforms: about sqrt(3) at most
    for extreme in (dict(max_heavy_tail_share=1.0),
                    dict(outlier_probability=1.0, max_outlier_rate=0.05)):
        x = TablePrior(**{**uniform, **extreme}).sample(8, 100, generator=seeded()).x
        assert x.abs().max() > 5, extreme


def test_duplicated_columns_copy_another_column():
    prior = TablePrior(num_features=12, min_features=12, **{**PLAIN, "max_duplicate_share": 1.0})
    x = prior.sample(8, 100, generator=seeded()).x
    corr = torch.stack([torch.corrcoef(table.T) for table in x]) - torch.eye(12)
    assert (corr > 0.98).any(2).float().mean() > 0.3


def test_prior_round_trips_through_its_config():
    prior = TablePrior(num_features=20, max_classes=5, mechanisms={"tree-scm": 2, "gp": 1},
                       activations=["tanh", "sin"], noise_std=0.05,
                       gp_lengthscale=LogUniform(1.0, 4.0), missing_probability=0.0)
    config = json.loads(json.dumps(prior_to_config(prior)))
    assert config["class"] == "TablePrior" and config["gp_lengthscale"]["class"] == "LogUniform"
    rebuilt = prior_from_config(config)
    assert rebuilt == prior and dataclasses.asdict(rebuilt) == dataclasses.asdict(prior)
    first, second = (p.sample(4, 20, generator=seeded()) for p in (prior, rebuilt))
    assert torch.equal(first.x, second.x) and torch.equal(first.y, second.y)


def test_the_classes_head_reads_the_most_classes():
    small = dict(num_features=1, d_model=8, num_heads=1, num_layers=1, d_ff=8)
    model = build_model(ModelConfig(head="classes", num_outputs=10, **small))
    model.head.check_prior(TablePrior(max_classes=10))
    with pytest.raises(ValueError, match="up to 12 classes"):
        model.head.check_prior(TablePrior(max_classes=12))


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (dict(num_features=0), "num_features"),
        (dict(num_features=2.5), "num_features"),
        (dict(num_features=True), "num_features"),
        (dict(num_features=3, min_features=5), "min_features"),
        (dict(max_classes=1), "max_classes"),
        (dict(missing_probability=1.5), "missing_probability"),
        (dict(max_missing_rate=-0.1), "max_missing_rate"),
        (dict(imbalance=2.0), "imbalance"),
        (dict(max_sparsity=1.0), "max_sparsity"),
        (dict(shift_std=-1.0), "shift_std"),
        (dict(max_categories=1), "max_categories"),
        (dict(mechanisms={"forest": 1.0}), "mechanisms"),
        (dict(mechanisms={"gp": 0.0}), "mechanisms"),
        (dict(root_causes={"normal": -1.0}), "root_causes"),
        (dict(activations=("gelu",)), "activations"),
        (dict(activations=()), "activations"),
        (dict(noise_std=0.0), "noise_std"),
        (dict(gp_lengthscale="long"), "gp_lengthscale"),
    ],
)
def test_bad_arguments_name_the_field(arguments, field):
    with pytest.raises(ValueError, match=rf"TablePrior\.{field} "):
        TablePrior(**arguments)
