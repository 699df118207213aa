"""Prediction on user data (units, transforms, chunking, bad input) and saving/loading."""

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import priorfit as pf
from priorfit import zoo
from priorfit.model import PFN, ModelConfig, build_model
from priorfit.transforms import fit_transform


def make_model(**overrides) -> PFN:
    torch.manual_seed(0)
    config = ModelConfig(num_features=2, num_outputs=16, d_model=16, num_heads=2, num_layers=2,
                         d_ff=32, **overrides)
    model = build_model(config).eval()
    model.head.borders.copy_(torch.linspace(-2, 2, 17))
    model.card = {"prior": {"class": "GP"}, "note": "test"}
    return model


@pytest.fixture
def model() -> PFN:
    return make_model()


def dataset(n=6, m=4, features=2):
    rng = np.random.default_rng(0)
    return rng.random((n, features)), rng.standard_normal(n), rng.random((m, features))


def test_single_and_batched_agree(model):
    x_train, y_train, x_test = dataset()
    single = model.predict(x_train, y_train, x_test)
    batched = model.predict(x_train[None], y_train[None], x_test[None])
    assert single.mean.shape == (4,) and batched.mean.shape == (1, 4)
    torch.testing.assert_close(single.mean, batched.mean[0])


def test_numpy_torch_int_float64_give_the_same_answer(model):
    x_train, y_train, x_test = dataset()
    reference = model.predict(x_train, y_train, x_test).mean
    as_torch = model.predict(torch.tensor(x_train), torch.tensor(y_train), torch.tensor(x_test))
    torch.testing.assert_close(reference, as_torch.mean)
    ints = model.predict(np.round(x_train * 3).astype(int), np.round(y_train).astype(int),
                         np.round(x_test * 3).astype(int))
    assert ints.mean.shape == (4,)


def test_chunking_does_not_change_predictions(model):
    x_train, y_train, _ = dataset()
    x_test = np.random.default_rng(1).random((50, 2))
    full = model.predict(x_train, y_train, x_test)
    chunked = model.predict(x_train, y_train, x_test, chunk_size=7)
    torch.testing.assert_close(full.logits, chunked.logits, rtol=1e-5, atol=1e-5)


def test_empty_test_set_gives_empty_result(model):
    x_train, y_train, _ = dataset()
    post = model.predict(x_train, y_train, np.zeros((0, 2)))
    assert post.mean.shape == (0,)


def test_empty_training_set_is_the_prior_predictive(model):
    post = model.predict(np.zeros((0, 2)), np.zeros(0), dataset()[2])
    assert torch.isfinite(post.mean).all()


def test_standardize_transform_returns_user_units_with_jacobian():
    model = make_model(y_transform="standardize", x_transform="unit_cube")
    x_train, y_train, x_test = dataset()
    base = model.predict(x_train, y_train, x_test)
    loc, scale = 1000.0, 50.0
    moved = model.predict(x_train * 7 - 3, loc + scale * y_train, x_test * 7 - 3)
    torch.testing.assert_close(moved.mean, loc + scale * base.mean, rtol=1e-4, atol=1e-3)
    y = torch.tensor([0.3, -0.1, 1.0, 2.0])
    torch.testing.assert_close(moved.log_prob(loc + scale * y),
                               base.log_prob(y) - np.log(scale), rtol=1e-4, atol=1e-4)


def test_fit_transform_degenerate_statistics_are_safe():
    x = torch.ones(2, 5, 3)
    y = torch.full((2, 5), 4.0)
    t = fit_transform("unit_cube", "standardize", x, y)
    assert torch.isfinite(t.x(x)).all() and torch.isfinite(t.y(y)).all()
    empty = fit_transform("unit_cube", "standardize", x[:, :0], y[:, :0])
    torch.testing.assert_close(empty.y(y), y)


def test_standardize_features_skips_missing_values_and_padding():
    x = torch.tensor([[[1.0, 5.0], [3.0, float("nan")], [5.0, 7.0], [1e6, 1e6]]])
    mask = torch.tensor([[True, True, True, False]])
    t = fit_transform("standardize", "none", x, torch.zeros(1, 4), mask)
    torch.testing.assert_close(t.x_loc, torch.tensor([[[3.0, 6.0]]]))
    torch.testing.assert_close(t.x_scale, torch.tensor([[[(8 / 3) ** 0.5, 1.0]]]))
    z = t.x(x[:, :3])
    assert z[0, 1, 1].isnan() and torch.isfinite(z[0, [0, 2]]).all()
    unmasked = fit_transform("standardize", "none", x[:, :3], torch.zeros(1, 3))
    torch.testing.assert_close(unmasked.x_loc, t.x_loc)
    all_missing = fit_transform("standardize", "none", torch.full((1, 3, 1), float("nan")),
                                torch.zeros(1, 3))
    assert all_missing.x_loc.item() == 0.0 and all_missing.x_scale.item() == 1.0


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.full((3, 2), np.nan), np.zeros(3), np.zeros((2, 2))), ValueError, "x_train.*NaN"),
        ((np.zeros((3, 2)), np.array([0, np.inf, 1]), np.zeros((2, 2))), ValueError, "y_train"),
        ((np.zeros((3, 2)), np.zeros(4), np.zeros((2, 2))), ValueError, "3 points.*4"),
        ((np.zeros(3), np.zeros(3), np.zeros(2)), ValueError, "reshape"),
        ((np.zeros((3, 5)), np.zeros(3), np.zeros((2, 5))), ValueError, "1 to 2"),
        ((np.zeros((3, 2)), np.zeros(3), np.zeros((2, 1))), ValueError, "x_test has 1 features"),
        ((np.array([["a", "b"]]), np.zeros(1), np.zeros((2, 2))), TypeError, "numbers"),
        ((np.zeros((3, 2)), np.array([None, 1, 2]), np.zeros((2, 2))), TypeError, "y_train"),
        ((np.zeros((3, 2)), np.zeros((1, 3)), np.zeros((2, 2))), ValueError, "y_train must be"),
    ],
)
def test_bad_input_is_named(model, args, error, match):
    with pytest.raises(error, match=match):
        model.predict(*args)


def test_save_load_round_trip(model, tmp_path):
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = pf.load(path)
    assert path.stat().st_mode & 0o044 == 0o044 or os.umask(os.umask(0)) & 0o044
    assert loaded.card["note"] == "test"
    assert loaded.config == model.config
    x_train, y_train, x_test = dataset()
    torch.testing.assert_close(loaded.predict(x_train, y_train, x_test).logits,
                               model.predict(x_train, y_train, x_test).logits)


def test_half_precision_save(model, tmp_path):
    model.save(tmp_path / "h.safetensors", half=True)
    loaded = pf.load(tmp_path / "h.safetensors")
    assert loaded.head.borders.dtype == torch.float32
    torch.testing.assert_close(loaded.head.borders, model.head.borders)
    x_train, y_train, x_test = dataset()
    torch.testing.assert_close(loaded.predict(x_train, y_train, x_test).mean,
                               model.predict(x_train, y_train, x_test).mean, rtol=0, atol=2e-2)


def test_pickle_is_refused_and_never_executed(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle was executed')",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError, match="not a priorfit safetensors"):
        pf.load(path)
    torch.save({"w": torch.zeros(2)}, tmp_path / "torch.pt")
    with pytest.raises(ValueError, match="safetensors"):
        pf.load(tmp_path / "torch.pt")


def test_foreign_and_truncated_files_are_refused(model, tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a priorfit model"):
        pf.load(foreign)
    good = tmp_path / "good.safetensors"
    model.save(good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated"):
        pf.load(truncated)
    with pytest.raises(ValueError, match="neither a file nor a shipped model"):
        pf.load(tmp_path / "missing.safetensors")


def saved_parts(model, path) -> tuple[dict, dict]:
    """``model`` saved to ``path``, read back as (tensors, header metadata)."""
    from safetensors import safe_open

    model.save(path)
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        return tensors, f.metadata()


def test_card_must_match_weights(model, tmp_path):
    tensors, metadata = saved_parts(model, tmp_path / "m.safetensors")
    card = json.loads(metadata["card"])
    card["model"]["num_layers"] = 3
    save_file(tensors, tmp_path / "lying.safetensors", {**metadata, "card": json.dumps(card)})
    with pytest.raises(ValueError, match="does not match its model card"):
        pf.load(tmp_path / "lying.safetensors")
    card["model"]["colour"] = "red"
    save_file(tensors, tmp_path / "odd.safetensors", {**metadata, "card": json.dumps(card)})
    with pytest.raises(ValueError, match="unknown key 'colour' in \\[model card\\]"):
        pf.load(tmp_path / "odd.safetensors")


REFERENCE = Path(__file__).parent / "data" / "shipped_outputs.safetensors"


@pytest.mark.parametrize("name", zoo.names())
def test_shipped_models_predict_exactly_as_before(name):
    """Logits of every shipped model on fixed inputs, stored by the code before architectures
    and heads became pluggable, or for a model retrained since by the code it shipped with
    (one thread, float32): the files load and predict the same, to float32 rounding, scaled to
    the logits' size (the matrix kernels of different CPUs round differently: up to 1.1e-4 on
    logits of size ~2 to 10 between an Intel Xeon and an AMD EPYC, 9.7e-4 on gp-1d's logits of
    size 11 and 5.1e-5 on its mean after 7 points; a change to the network moves them by far
    more)."""
    reference = load_file(REFERENCE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the stored outputs were computed on one thread
    try:
        model = pf.load(name)
        for n in (0, 7):
            key = f"{name}/n{n}/"
            post = model.predict(reference[key + "x_train"], reference[key + "y_train"],
                                 reference[key + "x_test"])
            expected = reference[key + "logits"]
            # the size of the finite logits: classes a model does not hold are -inf
            scale = max(1.0, expected[expected.isfinite()].abs().max().item())
            torch.testing.assert_close(post.logits, expected, rtol=0, atol=2e-4 * scale)
            if key + "mean" in reference:  # a classifier's predictive is its logits
                torch.testing.assert_close(post.mean, reference[key + "mean"], rtol=0, atol=1e-4)
    finally:
        torch.set_num_threads(threads)


def test_card_of_an_unknown_architecture_or_task_is_refused(model, tmp_path):
    tensors, metadata = saved_parts(model, tmp_path / "m.safetensors")
    card = json.loads(metadata["card"])
    for edit, match in (({"arch": "graph"}, r"arch 'graph' is not an architecture.*'cells'"),
                        ({"task": "ranking"}, r"task must be one of"),
                        ({"head": "ranking"}, r"head must be one of")):
        odd = {**card, "model": {**card["model"], **edit}}
        save_file(tensors, tmp_path / "odd.safetensors", {**metadata, "card": json.dumps(odd)})
        with pytest.raises(ValueError, match=match):
            pf.load(tmp_path / "odd.safetensors")


def test_files_written_before_heads_still_load(model, tmp_path):
    """Old files name the task instead of the head and store the borders at the top level."""
    old_names = {"head.borders": "borders", ".feed_forward.": "."}
    tensors = {}
    for name, tensor in model.state_dict().items():
        for new, old in old_names.items():
            name = name.replace(new, old)
        tensors[name] = tensor
    card = {**model.card, "model": {k: v for k, v in vars(model.config).items()
                                    if k not in ("arch", "head", "bounds", "features_per_group",
                                                 "thinking_rows")} | {"task": "regression"}}
    metadata = {"format": "priorfit-pfn", "format_version": "1", "card": json.dumps(card)}
    save_file(tensors, tmp_path / "old.safetensors", metadata)
    loaded = pf.load(tmp_path / "old.safetensors")
    assert loaded.config == model.config
    x_train, y_train, x_test = dataset()
    torch.testing.assert_close(loaded.predict(x_train, y_train, x_test).logits,
                               model.predict(x_train, y_train, x_test).logits)


def test_batched_datasets_of_different_sizes_equal_each_alone(model):
    x_train, y_train, x_test = dataset(n=6, m=3)
    xs = np.stack([x_train, x_train * 0.5])
    ys = np.stack([y_train, y_train + 1])
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2])
    ys[1, 4:] = np.nan  # padding may hold anything
    batched = model.predict(xs, ys, np.stack([x_test, x_test]), train_mask=mask)
    for b, size in enumerate((6, 4)):
        alone = model.predict(xs[b, :size], ys[b, :size], x_test)
        torch.testing.assert_close(batched.mean[b], alone.mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(batched.logits[b], alone.logits, rtol=1e-5, atol=1e-5)


def test_bad_train_masks_are_named(model):
    x_train, y_train, x_test = dataset()
    with pytest.raises(TypeError, match="train_mask must be booleans"):
        model.predict(x_train, y_train, x_test, train_mask=np.ones(6))
    with pytest.raises(ValueError, match="train_mask must have the shape of y_train"):
        model.predict(x_train, y_train, x_test, train_mask=np.ones(5, dtype=bool))
    y_bad = y_train.copy()
    y_bad[0] = np.nan
    with pytest.raises(ValueError, match="y_train contains 1 NaN"):
        model.predict(x_train, y_bad, x_test, train_mask=np.ones(6, dtype=bool))


def test_differentiable_prediction_conditions_once():
    model = make_model(y_transform="standardize", x_transform="unit_cube")
    x_train, y_train, _ = dataset()
    conditioned = model.condition_on(x_train, y_train)
    x = torch.tensor([[0.3, 0.6], [0.9, 0.1]], dtype=torch.float32, requires_grad=True)
    value = conditioned.distribution(x).log_ei(torch.tensor(0.5)).sum()
    (grad,) = torch.autograd.grad(value, x)
    assert torch.isfinite(grad).all() and (grad != 0).any()
    eps = 1e-2
    for i, j in ((0, 0), (1, 1)):
        step = torch.zeros_like(x)
        step[i, j] = eps
        with torch.no_grad():
            up = conditioned.distribution(x + step).log_ei(torch.tensor(0.5)).sum()
            down = conditioned.distribution(x - step).log_ei(torch.tensor(0.5)).sum()
        torch.testing.assert_close(grad[i, j], (up - down) / (2 * eps), rtol=5e-2, atol=1e-3)
    reference = model.predict(x_train, y_train, x.detach())
    torch.testing.assert_close(conditioned.distribution(x).mean.detach(), reference.mean)


def test_reduce_in_chunks_equals_the_full_distribution(model):
    x_train, y_train, _ = dataset()
    x_test = np.random.default_rng(2).random((37, 2))
    conditioned = model.condition_on(x_train, y_train)
    full = conditioned.distribution(x_test)
    stds = conditioned.reduce(x_test, lambda d: d.stddev, chunk_size=5)
    torch.testing.assert_close(stds.detach(), full.stddev.detach(), rtol=1e-5, atol=1e-6)
