"""Warm starts (TrainConfig.init_from): a new network begins from a trained one's weights."""

import dataclasses

import pytest
import torch

import priorfit as pf
from priorfit.model import build_model
from priorfit.train.warm_start import first_stage_card, first_stage_configs, warm_start

SOURCE_CONFIG = pf.ModelConfig(num_features=2, num_outputs=32, d_model=16, num_heads=2,
                               num_layers=2, d_ff=32)
PRIOR = pf.priors.GP(num_features=2, lengthscale=0.3, noise=0.01)


def source_model(tmp_path):
    config = pf.TrainConfig(steps=2, batch_size=4, seq_len=12, max_train=8, warmup_steps=1,
                            border_datasets=64, val_every=2, val_batches=1, checkpoint_every=2,
                            precision="float32", out_dir=str(tmp_path / "source"))
    pf.train(PRIOR, config, SOURCE_CONFIG, progress=False)
    return tmp_path / "source" / "model.safetensors"


def test_same_shapes_are_copied_whole_and_predict_as_the_source(tmp_path):
    path = source_model(tmp_path)
    source = pf.load(path)
    torch.manual_seed(1)
    model = build_model(SOURCE_CONFIG)
    model.head.borders.copy_(source.head.borders)
    report = warm_start(model, str(path))
    assert report["partly"] == [] and report["kept"] == []
    x, y = torch.rand(1, 6, 2), torch.randn(1, 6)
    torch.testing.assert_close(model(x, y, x), source(x, y, x))


def test_a_wider_encoder_gets_the_overlapping_block(tmp_path):
    source = pf.load(source_model(tmp_path))
    torch.manual_seed(1)
    wider = build_model(dataclasses.replace(SOURCE_CONFIG, num_features=5))
    fresh = wider.x_encoder.linear.weight[:, 2:].clone()
    report = warm_start(wider, source)
    assert report["partly"] == ["x_encoder.linear.weight"] and report["kept"] == []
    weight = wider.x_encoder.linear.weight
    torch.testing.assert_close(weight[:, :2], source.x_encoder.linear.weight)
    torch.testing.assert_close(weight[:, 2:], fresh)


def test_a_training_run_starts_from_the_source(tmp_path):
    path = source_model(tmp_path)
    config = pf.TrainConfig(steps=1, batch_size=4, seq_len=12, max_train=8, warmup_steps=1,
                            lr=1e-12, border_datasets=64, val_every=1, val_batches=1,
                            checkpoint_every=1, precision="float32", init_from=str(path),
                            out_dir=str(tmp_path / "warm"))
    model = pf.train(PRIOR, config, SOURCE_CONFIG, progress=False)
    source = pf.load(path)
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight,
                               atol=1e-6, rtol=0)
    assert pf.load(tmp_path / "warm" / "model.safetensors").card["train"]["init_from"] == str(path)


def test_a_continuation_on_the_same_prior_keeps_the_borders(tmp_path):
    """Borders fitted again from another seed would move; the same prior keeps the source's,
    another prior gets its own."""
    path = source_model(tmp_path)
    source = pf.load(path)
    runs = {}
    for name, prior in (("same", PRIOR), ("other", dataclasses.replace(PRIOR, noise=0.5))):
        config = pf.TrainConfig(steps=1, batch_size=4, seq_len=12, max_train=8, warmup_steps=1,
                                lr=1e-12, border_datasets=64, val_every=1, val_batches=1,
                                checkpoint_every=1, precision="float32", init_from=str(path),
                                seed=7, out_dir=str(tmp_path / name))
        runs[name] = pf.train(prior, config, SOURCE_CONFIG, progress=False)
    torch.testing.assert_close(runs["same"].head.borders, source.head.borders, rtol=0, atol=0)
    assert not torch.equal(runs["other"].head.borders, source.head.borders)
    x, y = torch.rand(1, 6, 2), torch.randn(1, 6)
    torch.testing.assert_close(runs["same"].predict(x, y, x).mean, source.predict(x, y, x).mean,
                               atol=1e-5, rtol=0)


def test_only_a_source_of_the_same_prior_hands_over_its_buffers(tmp_path):
    source = pf.load(source_model(tmp_path))
    model = build_model(SOURCE_CONFIG)
    prior_config = pf.priors.prior_to_config(PRIOR)
    assert warm_start(model, source, prior_config)["buffers"] == ["head.borders"]
    for foreign in ({**source.card, "prior": {"class": "NoSuchPrior"}},
                    {k: v for k, v in source.card.items() if k != "prior"}):
        source.card = foreign
        assert warm_start(build_model(SOURCE_CONFIG), source, prior_config)["buffers"] == []


def test_incompatible_sources_are_refused(tmp_path):
    source = pf.load(source_model(tmp_path))
    cells = build_model(dataclasses.replace(SOURCE_CONFIG, arch="cells"))
    with pytest.raises(ValueError, match="'rows' network cannot start a 'cells' one"):
        warm_start(cells, source)
    classes = build_model(dataclasses.replace(SOURCE_CONFIG, head="classes", num_outputs=3))
    with pytest.raises(ValueError, match="head cannot start"):
        warm_start(classes, source)


def test_a_staged_model_carries_its_chain_and_names_its_first_stage(tmp_path):
    """Stage 2 on the same prior records stage 1's card; a model warm-started from another
    prior's begins its own chain."""
    path = source_model(tmp_path)
    common = dict(steps=1, batch_size=4, seq_len=12, max_train=8, warmup_steps=1, lr=1e-4,
                  border_datasets=64, val_every=1, val_batches=1, checkpoint_every=1,
                  precision="float32", init_from=str(path))
    pf.train(PRIOR, pf.TrainConfig(**common, out_dir=str(tmp_path / "stage2")), SOURCE_CONFIG,
             progress=False)
    other = dataclasses.replace(PRIOR, noise=0.5)
    pf.train(other, pf.TrainConfig(**common, out_dir=str(tmp_path / "other")), SOURCE_CONFIG,
             progress=False)
    stage1 = pf.load(path).card
    stage2 = pf.load(tmp_path / "stage2" / "model.safetensors").card
    assert stage2["warm_start"] == {"from": str(path), "card": stage1}
    assert first_stage_card(stage2) == stage1 and first_stage_card(stage1) == stage1
    elsewhere = pf.load(tmp_path / "other" / "model.safetensors").card
    assert first_stage_card(elsewhere) == elsewhere
    prior, model_config, train_config = first_stage_configs(str(tmp_path / "stage2" /
                                                                "model.safetensors"))
    assert prior == PRIOR and model_config == SOURCE_CONFIG
    assert train_config.init_from == "" and train_config.lr == stage1["train"]["lr"]
