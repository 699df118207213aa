"""The "cells" architecture: attention structure, invariances, cache, chunks, thinking rows."""

import dataclasses
from typing import ClassVar

import pytest
import torch

import priorfit as pf
from priorfit.model import ModelConfig, build_model
from priorfit.priors.base import Batch

CONFIG = ModelConfig(arch="cells", num_features=6, num_outputs=12, d_model=32, num_heads=4,
                     num_layers=2, d_ff=64)


def cells_model(**overrides):
    torch.manual_seed(0)
    return build_model(dataclasses.replace(CONFIG, **overrides)).eval()


def table(batch=2, n=9, m=5, features=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, n, features, generator=g), torch.randn(batch, n, generator=g),
            torch.randn(batch, m, features, generator=g))


def reference_forward(model, x_train, y_train, x_test):
    """The same network as one pass over all rows with an explicit column-attention mask."""
    n, m = x_train.shape[1], x_test.shape[1]
    cells = model._cells(torch.cat([x_train, x_test], 1))
    target = torch.cat([model.y_encoder(y_train[..., None]),
                        model.test_target.expand(x_train.shape[0], m, -1)], 1)
    h = torch.cat([cells, target[:, :, None]], 2)
    allowed = torch.zeros(n + m, n + m, dtype=torch.bool)
    allowed[:, :n] = True  # every row attends to the training rows only
    for block in model.blocks:
        h = block.across_row(h)
        q, k, v = block.col_attn.split(block.norm_col(h).transpose(1, 2))
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        h = block.feed_forward(h + block.col_attn.merge(attended).transpose(1, 2))
    return model.decoder(model.norm(h[:, n:, -1]))


@pytest.mark.parametrize("group", [1, 4])
def test_cached_path_equals_one_masked_pass(group):
    model = cells_model(features_per_group=group)
    x_train, y_train, x_test = table()
    torch.testing.assert_close(model(x_train, y_train, x_test),
                               reference_forward(model, x_train, y_train, x_test),
                               rtol=1e-5, atol=1e-5)


def test_invariant_to_training_row_order_and_test_rows_independent():
    model = cells_model(thinking_rows=3)
    x_train, y_train, x_test = table()
    out = model(x_train, y_train, x_test)
    perm = torch.randperm(x_train.shape[1])
    torch.testing.assert_close(model(x_train[:, perm], y_train[:, perm], x_test), out,
                               rtol=1e-5, atol=1e-5)
    alone = torch.cat([model(x_train, y_train, x_test[:, i : i + 1]) for i in range(5)], 1)
    torch.testing.assert_close(alone, out, rtol=1e-5, atol=1e-5)


def test_feature_order_invariance():
    """Exactly invariant to the order of features with one feature per token; with groups of
    features, to the order of whole groups (the shared embedding sees no column index)."""
    x_train, y_train, x_test = table()
    model = cells_model()
    perm = torch.randperm(6)
    torch.testing.assert_close(model(x_train[..., perm], y_train, x_test[..., perm]),
                               model(x_train, y_train, x_test), rtol=1e-5, atol=1e-5)
    grouped = cells_model(features_per_group=2)
    swap = torch.tensor([2, 3, 0, 1, 4, 5])  # swaps the first two groups
    torch.testing.assert_close(grouped(x_train[..., swap], y_train, x_test[..., swap]),
                               grouped(x_train, y_train, x_test), rtol=1e-5, atol=1e-5)


def test_any_number_of_features_and_empty_training_set():
    model = cells_model(features_per_group=4)
    for features in (1, 3, 6):
        x_train, y_train, x_test = table(features=features)
        assert model(x_train, y_train, x_test).shape == (2, 5, 12)
    x_train, y_train, x_test = table(n=0)
    out = model(x_train, y_train, x_test)
    assert torch.isfinite(out).all()
    thinking = cells_model(thinking_rows=2)
    assert torch.isfinite(thinking(x_train, y_train, x_test)).all()


def test_thinking_rows_are_used():
    model = cells_model(thinking_rows=2)
    x_train, y_train, x_test = table()
    before = model(x_train, y_train, x_test)
    with torch.no_grad():
        model.thinking.add_(torch.randn_like(model.thinking))  # a constant shift is normed away
    assert (model(x_train, y_train, x_test) - before).abs().max() > 1e-3


def test_padded_batch_equals_each_dataset_alone():
    model = cells_model(thinking_rows=2)
    x_train, y_train, x_test = table(batch=3, n=8)
    sizes = torch.tensor([8, 3, 0])
    mask = torch.arange(8) < sizes[:, None]
    garbage = x_train.masked_fill(~mask[..., None], 1e3)
    batched = model(garbage, y_train.masked_fill(~mask, -1e3), x_test, mask)
    for b, size in enumerate(sizes.tolist()):
        alone = model(x_train[b : b + 1, :size], y_train[b : b + 1, :size], x_test[b : b + 1])
        torch.testing.assert_close(batched[b : b + 1], alone, rtol=1e-5, atol=1e-5)


def test_prediction_in_chunks_matches_one_pass():
    model = cells_model()
    x_train, y_train, x_test = table(batch=1, m=23)
    full = model.predict(x_train, y_train, x_test, chunk_size=100).logits
    chunked = model.predict(x_train, y_train, x_test, chunk_size=4).logits
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-5)


@dataclasses.dataclass
class LinearClasses:
    """A toy table prior: y = 1[w·x > 0] with w ~ N(0, I) per dataset, x ~ N(0, I)."""

    num_features: int = 4
    num_classes: ClassVar[int] = 2

    def sample(self, batch_size, seq_len, *, generator=None, device=None):
        x = torch.randn(batch_size, seq_len, self.num_features, generator=generator)
        w = torch.randn(batch_size, self.num_features, generator=generator)
        return Batch(x, ((x @ w[..., None])[..., 0] > 0).float())


@pytest.mark.slow
def test_cells_pfn_learns_a_toy_table_prior(tmp_path):
    """With thinking rows and per-dataset training-set sizes (masked), 800 CPU steps take the
    held-out NLL from chance (log 2 = 0.693) to about 0.32."""
    config = ModelConfig(arch="cells", head="classes", num_features=4, num_outputs=2,
                         d_model=32, num_heads=2, num_layers=2, d_ff=64, thinking_rows=2)
    train = pf.TrainConfig(steps=800, batch_size=16, seq_len=40, min_train=5, max_train=30,
                           train_size_per_dataset=True, lr=3e-3, warmup_steps=20,
                           val_every=800, val_batches=8, checkpoint_every=800, log_every=100,
                           out_dir=str(tmp_path / "run"))
    model = pf.train(LinearClasses(), train, config, progress=False)
    assert model.card["validation"]["val_nll"] < 0.45, model.card["validation"]


def test_missing_values_are_encoded_not_rejected():
    """NaN cells get the learned missing embedding: finite logits that differ from a 0 there,
    and prediction accepts NaN for this architecture (inf stays an error)."""
    model = cells_model()
    x_train, y_train, x_test = table(batch=1)
    holes = x_train.clone()
    holes[0, :4, 2] = torch.nan
    out = model(holes, y_train, x_test)
    assert torch.isfinite(out).all()
    zeros = holes.nan_to_num(0.0)
    assert not torch.allclose(out, model(zeros, y_train, x_test))
    with torch.no_grad():
        model.missing_encoder.weight.zero_()
    torch.testing.assert_close(model(holes, y_train, x_test), model(zeros, y_train, x_test))
    test_holes = x_test.clone()
    test_holes[0, 1, 0] = torch.nan
    assert torch.isfinite(model.predict(holes[0], y_train[0], test_holes[0]).logits).all()
    holes[0, 5, 1] = torch.inf
    with pytest.raises(ValueError, match="x_train contains 1 infinite"):
        model.predict(holes[0], y_train[0], x_test[0])


def test_rows_architecture_still_rejects_missing_values():
    model = build_model(ModelConfig(num_features=2, num_outputs=8, d_model=16, num_heads=2,
                                    num_layers=1, d_ff=16)).eval()
    x = torch.randn(5, 2)
    x[0, 0] = torch.nan
    with pytest.raises(ValueError, match="x_train contains 1 NaN or infinite"):
        model.predict(x, torch.randn(5), torch.randn(3, 2))
