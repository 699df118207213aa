"""FewShotClassifier: preprocessing, the probabilities it returns and its errors (on a small
untrained network; what a trained one scores is ``priorfit bench fewshot``'s to measure)."""

import numpy as np
import pytest
import torch

import priorfit as pf
from priorfit.fewshot import FewShotClassifier
from priorfit.images import prepare_images
from priorfit.priors import StrokePrior


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    config = pf.ModelConfig(arch="images", head="classes", num_features=20 * 20, num_outputs=5,
                            d_model=32, num_heads=2, num_layers=2, d_ff=64)
    return FewShotClassifier(pf.model.build_model(config).eval(), n_permutations=3)


@pytest.fixture(scope="module")
def episode():
    """A 3-way 2-shot episode at 40 x 40 pixels, ink dark on white as in Omniglot."""
    prior = StrokePrior(image_size=40, min_classes=3, max_classes=3, min_shots=2, max_shots=2)
    batch, support = prior.sample_split(1, 10, generator=torch.Generator().manual_seed(0))
    images = 1 - batch.x[0].reshape(-1, 40, 40).numpy()
    names = np.array(["alpha", "beta", "gamma"])
    return images[:support], names[batch.y[0, :support].long().numpy()], images[support:]


def test_probabilities_in_the_order_of_the_sorted_labels(classifier, episode):
    support, labels, queries = episode
    probabilities = classifier.predict_proba(support, labels, queries)
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-6)
    predicted = classifier.predict(support, labels, queries)
    assert predicted.dtype == labels.dtype
    assert list(predicted) == list(np.array(["alpha", "beta", "gamma"])[probabilities.argmax(1)])


def test_prepared_images_give_the_same_probabilities(classifier, episode):
    support, labels, queries = episode
    prepared = [prepare_images(name, images, classifier.side)[0]
                for name, images in (("support", support), ("queries", queries))]
    np.testing.assert_allclose(classifier.predict_proba_prepared(prepared[0], labels, prepared[1]),
                               classifier.predict_proba(support, labels, queries))
    with pytest.raises(ValueError, match="one label per support image"):
        classifier.predict_proba_prepared(prepared[0], labels[:-1], prepared[1])


def test_support_order_ink_polarity_and_grey_scale_do_not_matter(classifier, episode):
    support, labels, queries = episode
    reference = classifier.predict_proba(support, labels, queries)
    order = np.random.default_rng(0).permutation(len(support))
    np.testing.assert_allclose(classifier.predict_proba(support[order], labels[order], queries),
                               reference, atol=1e-5)
    bright_ink = classifier.predict_proba(1 - support, labels, 1 - queries)
    as_bytes = classifier.predict_proba((support * 255).astype(np.uint8), labels,
                                        (queries * 255).astype(np.uint8))
    np.testing.assert_allclose(bright_ink, reference, atol=1e-5)
    np.testing.assert_allclose(as_bytes, reference, atol=0.02)


def test_images_are_centred_and_resized_as_the_prior_draws_them():
    image = np.ones((60, 90), dtype=bool)  # white page, a dark bar in the corner
    image[5:15, 5:35] = False
    x = prepare_images("query_images", image[None], 28).reshape(28, 28)
    assert x.shape == (28, 28) and x.min() >= 0 and x.max() <= 1
    rows, columns = torch.nonzero(x > 0.5, as_tuple=True)
    assert abs(rows.float().mean() - 13.5) < 1.5 and abs(columns.float().mean() - 13.5) < 1.5
    assert 14 <= columns.max() - columns.min() + 1 <= 20  # the long side ~0.62 of the canvas


@pytest.mark.parametrize("arguments, error, match", [
    ((np.zeros((0, 20, 20)), [], np.zeros((1, 20, 20))), ValueError, "support_images is empty"),
    ((np.zeros((2, 20)), [0, 1], np.zeros((1, 20, 20))), ValueError, "support_images must be"),
    ((np.zeros((2, 20, 20)), [0, 1], np.zeros((1, 24, 24))), ValueError, "same image size"),
    ((np.zeros((2, 20, 20)), [0], np.zeros((1, 20, 20))), ValueError, "support_labels"),
    ((np.zeros((6, 20, 20)), list(range(6)), np.zeros((1, 20, 20))), ValueError,
     "at most 5"),
    ((np.full((2, 20, 20), np.nan), [0, 1], np.zeros((1, 20, 20))), ValueError, "NaN"),
    ((np.array([[["a"] * 20] * 20] * 2), [0, 1], np.zeros((1, 20, 20))), TypeError,
     "numeric"),
])
def test_bad_input_names_the_argument(classifier, arguments, error, match):
    with pytest.raises(error, match=match):
        classifier.predict_proba(*arguments)


def test_a_model_of_another_architecture_is_refused():
    config = pf.ModelConfig(num_features=2, d_model=32, num_heads=2, num_layers=1, d_ff=32)
    with pytest.raises(ValueError, match="'images' architecture"):
        FewShotClassifier(pf.model.build_model(config))


@pytest.mark.slow
def test_bench_fewshot_quick_runs_every_method_on_the_same_episodes(tmp_path):
    """The benchmark's plumbing on a small untrained PFN (the shipped one is measured by the
    full run): every method in every setting, the official runs, plots."""
    from pathlib import Path

    from priorfit.bench import fewshot

    data = Path(__file__).parents[2] / "shared" / "data"
    if not (data / "omniglot").is_dir():
        pytest.skip(f"bench fewshot needs Omniglot in {data / 'omniglot'}")
    torch.manual_seed(0)
    config = pf.ModelConfig(arch="images", head="classes", num_features=28 * 28,
                            num_outputs=20, d_model=32, num_heads=2, num_layers=1, d_ff=32)
    pf.model.build_model(config).save(tmp_path / "tiny.safetensors")
    result = fewshot.run(True, data, model_name=str(tmp_path / "tiny.safetensors"))
    settings = {"5-way 1-shot", "5-way 5-shot", "20-way 1-shot", "official 20-way 1-shot"}
    methods = {"pfn", "nearest-neighbour", "logistic-regression", "protonet"} | (
        {"pfn-omniglot"} if fewshot.FINETUNED in pf.zoo.names() else set())
    assert {(r["method"], r["setting"]) for r in result.rows} == {
        (m, s) for m in methods for s in settings}
    for row in result.rows:
        assert 0 <= row["accuracy"] <= 1 and row["seconds_per_episode"] > 0
    pixels = {r["setting"]: r["accuracy"] for r in result.rows
              if r["method"] == "nearest-neighbour"}
    assert pixels["5-way 1-shot"] > 0.4  # real characters: well above chance (0.2)
    assert [p.name for p in fewshot.plot(result, tmp_path)] == [
        "fewshot_episode_0.png", "fewshot_episode_1.png"]


def test_protonet_trains_and_classifies_by_prototypes():
    from priorfit.baselines.fewshot import train_protonet

    rng = np.random.default_rng(0)
    images = np.zeros((6, 8, 16, 16), dtype=np.float32)  # 6 characters: a bar each, 8 drawings
    for c in range(6):
        images[c, :, 2 + 2 * c: 4 + 2 * c, 3:13] = 1.0
    images += 0.1 * rng.random(images.shape, dtype=np.float32)
    network, record = train_protonet(images.reshape(6, 8, 256), 16, seconds=3.0, ways=4,
                                     shots=2, queries=2)
    assert record["episodes"] > 5 and record["seconds"] >= 3.0
    support, queries = images[:, :2].reshape(12, 256), images[:, 5].reshape(6, 256)
    labels = np.repeat(np.array(list("abcdef")), 2)
    assert (network.predict(support, labels, queries) == np.array(list("abcdef"))).mean() >= 0.8
