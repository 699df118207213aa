"""The PFN transformer: attention structure, invariances, cached versus uncached paths."""

import pytest
import torch

from priorfit.model import PFN, ModelConfig, build_model


@pytest.fixture
def model() -> PFN:
    torch.manual_seed(0)
    return build_model(ModelConfig(num_features=3, num_outputs=20, d_model=32, num_heads=4,
                           num_layers=3, d_ff=64)).eval()


def data(batch=2, n=7, m=5, features=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, n, features, generator=g), torch.randn(batch, n, generator=g),
            torch.rand(batch, m, features, generator=g))


def reference_forward(model: PFN, x_train, y_train, x_test):
    """The same network through one masked attention over all tokens (no cache)."""
    n, m = x_train.shape[1], x_test.shape[1]
    h = torch.cat([model.x_encoder(x_train) + model.y_encoder(y_train), model.x_encoder(x_test)], 1)
    allowed = torch.zeros(n + m, n + m, dtype=torch.bool)
    allowed[:, :n] = True
    allowed[n:, n:] = torch.eye(m, dtype=torch.bool)
    for block in model.blocks:
        q, k, v = block.attn.split(block.norm_attn(h))
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        h = block.feed_forward(h + block.attn.merge(attended))
    return model.decoder(model.norm(h[:, n:]))


def test_output_shape(model):
    x_train, y_train, x_test = data()
    assert model(x_train, y_train, x_test).shape == (2, 5, 20)


@pytest.mark.parametrize("n", [7, 0])
def test_joint_and_cached_paths_equal_one_masked_pass(model, n):
    x_train, y_train, x_test = data(n=n)
    reference = reference_forward(model, x_train, y_train, x_test)
    cached = model.predict_logits(model.condition(x_train, y_train), x_test)
    torch.testing.assert_close(model(x_train, y_train, x_test), reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached, reference, rtol=1e-5, atol=1e-5)


def test_gradients_equal_those_of_one_masked_pass(model):
    x_train, y_train, x_test = data()
    grads = []
    for forward in (model, lambda *a: reference_forward(model, *a)):
        model.zero_grad()
        forward(x_train, y_train, x_test).square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for fast, reference in zip(*grads, strict=True):
        torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-6)


def test_invariant_to_order_of_training_points(model):
    x_train, y_train, x_test = data()
    perm = torch.randperm(x_train.shape[1])
    torch.testing.assert_close(model(x_train, y_train, x_test),
                               model(x_train[:, perm], y_train[:, perm], x_test),
                               rtol=1e-5, atol=1e-5)


def test_test_points_do_not_see_each_other(model):
    x_train, y_train, x_test = data(m=6)
    full = model(x_train, y_train, x_test)
    alone = torch.cat([model(x_train, y_train, x_test[:, i : i + 1]) for i in range(6)], 1)
    torch.testing.assert_close(full, alone, rtol=1e-5, atol=1e-5)
    permuted = model(x_train, y_train, x_test.flip(1)).flip(1)
    torch.testing.assert_close(full, permuted, rtol=1e-5, atol=1e-5)


def test_empty_training_set(model):
    x_train, y_train, x_test = data(n=0)
    out = model(x_train, y_train, x_test)
    assert out.shape == (2, 5, 20) and torch.isfinite(out).all()
    torch.testing.assert_close(out, reference_forward(model, x_train, y_train, x_test))


def test_fewer_features_are_padded(model):
    x_train, y_train, x_test = data(features=2)
    padded = torch.nn.functional.pad
    scale = (3 / 2) ** 0.5
    torch.testing.assert_close(
        model(x_train, y_train, x_test),
        model(padded(x_train, (0, 1)) * scale, y_train, padded(x_test, (0, 1)) * scale),
    )


def test_datasets_in_a_batch_are_independent(model):
    x_train, y_train, x_test = data(batch=3)
    batched = model(x_train, y_train, x_test)
    for b in range(3):
        torch.testing.assert_close(batched[b], model(x_train[b:b+1], y_train[b:b+1],
                                                     x_test[b:b+1])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_model": 30, "num_heads": 4}, "divisible"),
        ({"head": "ranking"}, "head must be one of"),
        ({"arch": "graph"}, "arch must be one of"),
        ({"num_layers": 0}, "num_layers"),
        ({"num_outputs": 1}, "num_outputs"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_model_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_padded_batch_equals_each_dataset_alone(model):
    """A key-padding mask lets datasets with different numbers of training points share one
    forward pass, in the joint (training) and in the cached (prediction) path."""
    x_train, y_train, x_test = data(batch=3, n=7)
    sizes = torch.tensor([7, 2, 0])
    mask = torch.arange(7) < sizes[:, None]
    garbage_x = x_train.masked_fill(~mask[..., None], 1e3)
    garbage_y = y_train.masked_fill(~mask, -1e3)
    joint = model(garbage_x, garbage_y, x_test, mask)
    cached = model.predict_logits(model.condition(garbage_x, garbage_y, mask), x_test)
    for b, size in enumerate(sizes.tolist()):
        alone = model(x_train[b : b + 1, :size], y_train[b : b + 1, :size], x_test[b : b + 1])
        torch.testing.assert_close(joint[b : b + 1], alone, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cached[b : b + 1], alone, rtol=1e-5, atol=1e-5)


def test_padding_gets_no_gradient(model):
    x_train, y_train, x_test = data(batch=2, n=5)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    x_train.requires_grad_(True)
    model(x_train, y_train, x_test, mask).sum().backward()
    assert (x_train.grad[1, 2:] == 0).all() and (x_train.grad[1, :2] != 0).any()
