"""Few-shot episodes of real images (ImageEpisodes): layout, classes, drawings, loading."""

import numpy as np
import pytest
import torch

from priorfit.priors import ImageEpisodes, prior_from_config, prior_to_config
from priorfit.train import TrainConfig
from priorfit.train.data import sample_micro_batch

UNDISTORTED = {"rotation": 0.0, "scale": 0.0, "shear": 0.0, "translation": 0.0}


def coded_collection(characters: int, drawings: int, size: int = 12) -> torch.Tensor:
    """``[characters, drawings, size, size]`` whose pixel (0, 0) codes the character and
    (0, 1) the drawing; the rest is an L-shape, not symmetric under any turn."""
    images = torch.zeros(characters, drawings, size, size)
    images[..., 3:9, 4] = 1.0
    images[..., 8, 4:8] = 1.0
    images[..., 0, 0] = (torch.arange(characters)[:, None] + 1) / 100
    images[..., 0, 1] = (torch.arange(drawings) + 1) / 100
    return images


def episodes(collection: torch.Tensor, **kwargs) -> ImageEpisodes:
    prior = ImageEpisodes(path="unused.npz", image_size=collection.shape[-1], **kwargs)
    prior.__dict__["images"] = collection  # what the cached property would have loaded
    return prior


def test_a_label_is_one_character_and_queries_are_other_drawings_than_its_support():
    prior = episodes(coded_collection(30, 9), rotate_classes=False, min_classes=3,
                     max_classes=6, max_shots=4, **UNDISTORTED)
    for seed in range(5):
        batch, support = prior.sample_split(4, 40, generator=torch.Generator().manual_seed(seed))
        assert batch.x.shape == (4, 40, 144) and batch.y.shape == (4, 40)
        character = (batch.x[..., 0] * 100).round().long() - 1
        drawing = (batch.x[..., 1] * 100).round().long() - 1
        for b in range(4):
            labels = batch.y[b].long()
            ways = int(labels[:support].max()) + 1
            assert support % ways == 0
            assert len(set(character[b, :support].tolist())) == ways
            for label in range(ways):
                mine = labels == label
                assert len(set(character[b, mine].tolist())) == 1  # one character per label
                shots = drawing[b, :support][mine[:support]].tolist()
                assert len(shots) == support // ways and len(set(shots)) == len(shots)
                assert not set(drawing[b, support:][mine[support:]].tolist()) & set(shots)


def test_turned_characters_are_classes_of_their_own():
    prior = episodes(coded_collection(1, 6), min_classes=4, max_classes=4, max_shots=1,
                     **UNDISTORTED)
    batch, support = prior.sample_split(2, 12, generator=torch.Generator().manual_seed(0))
    x = batch.x.reshape(2, 12, 12, 12)
    for b in range(2):
        turns = set()
        for label in range(4):
            image = x[b, int((batch.y[b, :support] == label).nonzero()[0])]
            turned = [torch.rot90(coded_collection(1, 6)[0, 0], k) for k in range(4)]
            turn = [k for k in range(4)  # the codes in the border turn too: compare inside
                    if torch.allclose(turned[k][1:-1, 1:-1], image[1:-1, 1:-1], atol=1e-5)]
            turns.update(turn)
        assert turns == {0, 1, 2, 3}


def test_distortion_moves_the_ink_and_keeps_it():
    collection = coded_collection(10, 6)
    plain = episodes(collection, rotate_classes=False, max_classes=8, **UNDISTORTED)
    distorted = episodes(collection, rotate_classes=False, max_classes=8, translation=0.1)
    a, _ = plain.sample_split(3, 110, generator=torch.Generator().manual_seed(1))
    b, _ = distorted.sample_split(3, 110, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a.x, b.x)
    assert float(b.x.sum(-1).mean()) == pytest.approx(float(a.x.sum(-1).mean()), rel=0.2)


def test_loads_and_prepares_an_npz_collection_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    raw = np.ones((3, 7, 30, 30), dtype=bool)  # dark ink on white, as Omniglot's files
    raw[..., 8:22, 12:16] = rng.random((3, 7, 14, 4)) < 0.1
    path = tmp_path / "collection.npz"
    np.savez(path, images=raw)
    prior = ImageEpisodes(path=str(path), image_size=16, max_classes=12, max_shots=2)
    assert prior.images.shape == (3, 7, 16, 16)
    assert prior.images.max() <= 1 and prior.images.mean() < 0.5  # ink bright now
    micro = sample_micro_batch(prior, TrainConfig(batch_size=2, seq_len=30, max_train=24), 0, 1)
    assert micro.batch.x.shape == (2, 30, 256) and micro.num_train <= 24
    assert prior_from_config(prior_to_config(prior)) == prior


def test_bad_collections_and_settings_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        _ = ImageEpisodes(path=str(tmp_path / "missing.npz")).images
    np.savez(tmp_path / "flat.npz", images=np.zeros((5, 28, 28)))
    with pytest.raises(ValueError, match=r"\[characters, drawings, H, W\]"):
        _ = ImageEpisodes(path=str(tmp_path / "flat.npz")).images
    np.savez(tmp_path / "few.npz", images=np.zeros((2, 8, 28, 28)))
    with pytest.raises(ValueError, match="fewer than max_classes"):
        _ = ImageEpisodes(path=str(tmp_path / "few.npz"), max_classes=10).images
    np.savez(tmp_path / "other.npz", pixels=np.zeros((2, 8, 28, 28)))
    with pytest.raises(ValueError, match="no 'images' array"):
        _ = ImageEpisodes(path=str(tmp_path / "other.npz")).images
    with pytest.raises(ValueError, match="path"):
        ImageEpisodes()
    with pytest.raises(ValueError, match="shear"):
        ImageEpisodes(path="x.npz", shear=-1.0)
    with pytest.raises(ValueError, match="min_classes"):
        ImageEpisodes(path="x.npz", min_classes=1)
