"""The stroke prior of few-shot episodes and the ``"images"`` architecture."""

import pytest
import torch

import priorfit as pf
from priorfit.priors import StrokePrior, prior_from_config, prior_to_config
from priorfit.train import TrainConfig
from priorfit.train.data import sample_micro_batch


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_episodes_have_k_shots_of_n_classes_first_then_queries_of_those_classes():
    prior = StrokePrior(image_size=20, min_classes=3, max_classes=6, min_shots=1, max_shots=4)
    sizes = set()
    for seed in range(6):
        batch, support = prior.sample_split(5, 40, generator=gen(seed))
        assert batch.x.shape == (5, 40, 400) and batch.y.shape == (5, 40)
        assert batch.x.dtype == torch.float32 and batch.x.min() >= 0 and batch.x.max() <= 1
        counts = torch.stack([torch.bincount(row.long(), minlength=6)
                              for row in batch.y[:, :support]])
        classes = int((counts[0] > 0).sum())
        shots = support // classes
        assert 3 <= classes <= 6 and 1 <= shots <= 4 and classes * shots == support
        assert (counts[:, :classes] == shots).all() and (counts[:, classes:] == 0).all()
        assert batch.y[:, support:].max() < classes
        sizes.add(support)
    assert len(sizes) > 1  # N and K drawn per batch
    again, _ = prior.sample_split(5, 40, generator=gen(5))
    assert torch.equal(again.x, batch.x) and torch.equal(again.y, batch.y)


def test_examples_of_a_class_look_alike():
    """Pixel nearest neighbour is well above chance at 5-way 1-shot (the class template
    shows through the per-example distortion) but far from perfect (the distortion is real)."""
    prior = StrokePrior(min_classes=5, max_classes=5, min_shots=1, max_shots=1)
    batch, support = prior.sample_split(64, 30, generator=gen())
    nearest = torch.cdist(batch.x[:, support:], batch.x[:, :support]).argmin(-1)
    accuracy = (batch.y[:, :support].gather(1, nearest) == batch.y[:, support:]).float().mean()
    assert 0.4 < accuracy < 0.9
    ink = (batch.x > 0.5).float().mean()
    assert 0.03 < ink < 0.25  # strokes, not blank canvases or blots


def test_training_takes_the_cut_from_the_prior_and_the_prior_round_trips():
    prior = StrokePrior(image_size=16, max_classes=4, max_shots=2)
    config = TrainConfig(batch_size=3, seq_len=20, max_train=5)
    micro = sample_micro_batch(prior, config, 0, 0, 0)
    counts = torch.bincount(micro.batch.y[0, :micro.num_train].long())
    assert micro.train_mask is None and (counts == counts[0]).all()
    assert micro.num_train == len(counts) * int(counts[0])
    assert prior_from_config(prior_to_config(prior)) == prior


@pytest.mark.parametrize("kwargs, match", [
    ({"min_classes": 1}, "min_classes"),
    ({"min_shots": 3, "max_shots": 2}, "min_shots"),
    ({"image_size": 4}, "image_size"),
    ({"thickness": (0.05, 0.01)}, "thickness"),
    ({"noise": -1.0}, "noise"),
    ({"max_strokes": 0}, "max_strokes"),
])
def test_bad_prior_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StrokePrior(**kwargs)


def test_seq_len_must_leave_room_for_queries():
    with pytest.raises(ValueError, match="seq_len"):
        StrokePrior(max_classes=5, max_shots=2).sample(2, 10)


@pytest.fixture(scope="module")
def image_model():
    torch.manual_seed(0)
    config = pf.ModelConfig(arch="images", head="classes", num_features=16 * 16, num_outputs=5,
                            d_model=32, num_heads=2, num_layers=2, d_ff=64)
    return pf.model.build_model(config).eval()


def test_image_model_predicts_queries_invariant_to_support_order(image_model):
    batch, support = StrokePrior(image_size=16, max_classes=5, max_shots=2).sample_split(
        2, 16, generator=gen())
    x_train, y_train, x_test = batch.x[:, :support], batch.y[:, :support], batch.x[:, support:]
    with torch.no_grad():
        logits = image_model(x_train, y_train, x_test)
        order = torch.randperm(support, generator=gen(1))
        shuffled = image_model(x_train[:, order], y_train[:, order], x_test)
        cached = image_model.predict_logits(image_model.condition(x_train, y_train), x_test)
    assert logits.shape == (2, 16 - support, 5)
    torch.testing.assert_close(shuffled, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached, logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_features": 200, "head": "classes"}, "side"),
    ({"num_features": 256, "head": "riemann"}, "classes"),
])
def test_image_model_needs_square_images_and_the_classes_head(kwargs, match):
    config = pf.ModelConfig(arch="images", num_outputs=5, d_model=32, num_heads=2, **kwargs)
    with pytest.raises(ValueError, match=match):
        pf.model.build_model(config)
