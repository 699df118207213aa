"""Recipe options: Muon, weight averaging, schedule shapes and clocks, the curriculum of batch
shapes, residual scaling."""

import copy
import dataclasses
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

import priorfit as pf
from priorfit.model import ModelConfig, build_model
from priorfit.train.config import TrainConfig
from priorfit.train.data import config_at_step, micro_batches
from priorfit.train.optim import build_optimizers
from priorfit.train.schedule import lr_factor

PRIOR = pf.priors.GP(num_features=1, lengthscale=0.3, noise=0.01)
MODEL = ModelConfig(num_features=1, num_outputs=16, d_model=16, num_heads=2, num_layers=2,
                    d_ff=32)


def settings(tmp_path, name="run", **overrides) -> TrainConfig:
    base = dict(steps=6, batch_size=4, seq_len=12, max_train=8, warmup_steps=2,
                border_datasets=32, val_every=3, val_batches=2, checkpoint_every=1,
                log_every=1, precision="float32", out_dir=str(tmp_path / name))
    return TrainConfig(**{**base, **overrides})


def test_muon_takes_the_block_matrices_and_adamw_the_rest():
    model = build_model(MODEL)
    muon, adamw = build_optimizers(model, settings(Path("."), optimizer="muon"))
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    in_muon = {id(p) for group in muon.param_groups for p in group["params"]}
    for name, param in model.named_parameters():
        expected = name.startswith("blocks.") and param.dim() == 2
        assert (id(param) in in_muon) == expected, name
    in_adamw = {id(p) for group in adamw.param_groups for p in group["params"]}
    assert len(in_muon) + len(in_adamw) == len(list(model.parameters()))


@pytest.mark.parametrize("overrides", [{"optimizer": "muon"}, {"ema_decay": 0.9},
                                       {"optimizer": "muon", "ema_decay": 0.5},
                                       {"ramp_steps": 5, "seq_len_start": 6,
                                        "batch_size_start": 2}])
def test_recipe_runs_resume_exactly(tmp_path, overrides, monkeypatch):
    """Stopped after step 3 (a kill right after its checkpoint) and resumed, the run ends with
    the weights of the uninterrupted one: Muon's momentum and the average are checkpointed."""
    from priorfit.train import loop

    straight = pf.train(PRIOR, settings(tmp_path, "a", **overrides), MODEL, progress=False)
    original = loop._save_checkpoint

    def kill_after_step_3(path, model, optimizers, averaged, step, *args):
        original(path, model, optimizers, averaged, step, *args)
        if step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save_checkpoint", kill_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        pf.train(PRIOR, settings(tmp_path, "b", **overrides), MODEL, progress=False)
    monkeypatch.setattr(loop, "_save_checkpoint", original)
    resumed = pf.train(PRIOR, settings(tmp_path, "b", **overrides), MODEL, resume=True,
                       progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_ema_weights_are_the_average_of_the_trajectory(tmp_path, monkeypatch):
    """With ema_decay, the returned and saved model is the exponential moving average of the
    weights after each step (the first step's weights starting it)."""
    from priorfit.train import loop

    decay, trajectory = 0.7, []
    original = loop._save_checkpoint

    def record(path, model, *args):
        trajectory.append({k: v.detach().clone() for k, v in model.named_parameters()})
        original(path, model, *args)

    monkeypatch.setattr(loop, "_save_checkpoint", record)  # checkpoint_every=1: every step
    model = pf.train(PRIOR, settings(tmp_path, ema_decay=decay), MODEL, progress=False)
    expected = dict(trajectory[0])
    for weights in trajectory[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    for name, param in model.named_parameters():
        torch.testing.assert_close(param, expected[name], rtol=1e-5, atol=1e-6, msg=name)
    saved = pf.load(tmp_path / "run" / "model.safetensors")
    torch.testing.assert_close(saved.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)
    last = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert last[-1]["val_nll"] == model.card["validation"]["val_nll"]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [("cosine", lambda p: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))),
     ("linear", lambda p: 0.1 + 0.9 * (1 - p)),
     ("wsd", lambda p: 0.1 + 0.9 * min(1.0, (1 - p) / 0.25))],
)
def test_schedule_shapes(shape, expected):
    config = TrainConfig(steps=110, warmup_steps=10, lr_schedule=shape, min_lr_ratio=0.1,
                         cooldown_fraction=0.25)
    assert lr_factor(config, 0, 0.0) == pytest.approx(0.1)  # warm-up: (step + 1) / warmup
    assert lr_factor(config, 9, 0.0) == pytest.approx(1.0)
    for step in (10, 35, 60, 85, 100, 110, 500):
        progress = min((step - 10) / 100, 1.0)
        assert lr_factor(config, step, 0.0) == pytest.approx(expected(progress)), step


def test_time_clock_anneals_by_the_budget_whatever_the_step_count():
    config = TrainConfig(steps=10**6, warmup_steps=1, time_limit_s=100.0, schedule_clock="time",
                         min_lr_ratio=0.0)
    assert lr_factor(config, 5, 50.0) == pytest.approx(0.5)
    assert lr_factor(config, 5, 100.0) == pytest.approx(0.0)
    assert lr_factor(config, 10**5, 25.0) == pytest.approx(lr_factor(config, 7, 25.0))


def test_time_clock_run_ends_annealed(tmp_path):
    model = pf.train(PRIOR, settings(tmp_path, steps=10**6, time_limit_s=3.0,
                                     schedule_clock="time", min_lr_ratio=0.0), MODEL,
                     progress=False)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if "lr" in r]
    assert model.card["steps"] == len(lrs) and lrs[-1] < 0.1 * max(lrs)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"optimizer": "sgd"}, r"optimizer must be one of \('adamw', 'muon'\)"),
     ({"lr_schedule": "step"}, "lr_schedule must be one of"),
     ({"schedule_clock": "time"}, "needs a time_limit_s"),
     ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\)"),
     ({"cooldown_fraction": 0.0}, "cooldown_fraction"),
     ({"seq_len_start": 200}, r"seq_len_start must be 0 \(off\) or in"),
     ({"min_train": 4, "max_train": 10, "seq_len_start": 4}, "seq_len_start"),
     ({"batch_size_start": 65}, "batch_size_start must be"),
     ({"ramp_steps": -1}, "ramp_steps must be >= 0")],
)
def test_bad_recipe_options_are_named(overrides, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**overrides)


def test_checkpoint_of_another_optimizer_is_refused(tmp_path):
    pf.train(PRIOR, settings(tmp_path, steps=2), MODEL, progress=False)
    config = dataclasses.replace(settings(tmp_path, steps=4), optimizer="muon")
    with pytest.raises(ValueError, match="another optimizer"):
        pf.train(PRIOR, config, MODEL, resume=True, progress=False)


def test_curriculum_grows_batches_and_datasets_to_full_size():
    config = TrainConfig(batch_size=32, seq_len=128, max_train=100, min_train=2, ramp_steps=10,
                         seq_len_start=32, batch_size_start=8)
    shapes = [(c.batch_size, c.seq_len, c.max_train)
              for c in map(lambda s: config_at_step(config, s), range(12))]
    assert shapes[0] == (8, 32, 25)  # max_train keeps its share (100 of 128) of the length
    assert shapes[5] == (20, 80, 62)
    assert shapes[10] == shapes[11] == (32, 128, 100)
    assert all(a <= b for a, b in itertools.pairwise(shapes))  # never shrinks
    # each dimension alone; and short datasets never cut below min_train test points
    only_length = dataclasses.replace(config, batch_size_start=0)
    assert config_at_step(only_length, 0).batch_size == 32
    tiny = TrainConfig(seq_len=128, min_train=10, max_train=100, ramp_steps=4, seq_len_start=11)
    first = config_at_step(tiny, 0)
    assert first.seq_len == 11 and first.min_train == first.max_train == 10


def test_curriculum_run_trains_on_the_ramped_shapes(tmp_path):
    config = settings(tmp_path, steps=4, ramp_steps=4, seq_len_start=6, batch_size_start=2)
    shapes = [tuple(m.batch.x.shape[:2]) for m in micro_batches(PRIOR, config, 0, 0)]
    assert shapes == [(2, 6), (2, 7), (3, 9), (3, 10)]
    model = pf.train(PRIOR, config, MODEL, progress=False)
    assert model.card["datasets_seen"] == 2 + 2 + 3 + 3


def test_residual_scale_starts_blocks_near_the_identity_and_loads_back(tmp_path):
    x, y = torch.rand(2, 7, 1), torch.randn(2, 7)

    def block_weights_matter(model) -> bool:
        changed = copy.deepcopy(model)
        with torch.no_grad():
            for name, param in changed.blocks.named_parameters():
                if not name.endswith(".gain"):
                    param.add_(torch.randn_like(param))
        logits = [m(x[:, :5], y[:, :5], x[:, 5:]) for m in (model, changed)]
        return not torch.allclose(*logits, atol=1e-4)

    for arch in ("rows", "cells"):
        config = dataclasses.replace(MODEL, arch=arch, residual_scale=1e-9)
        model = build_model(config).eval()
        gains = [n for n, _ in model.named_parameters() if n.endswith(".gain")]
        assert len(gains) == (2 if arch == "rows" else 3) * config.num_layers
        # at a tiny gain every block adds (almost) nothing to the residual stream
        assert not block_weights_matter(model)
        assert block_weights_matter(build_model(dataclasses.replace(config, residual_scale=1.0)))
        model.save(tmp_path / f"{arch}.safetensors")
        loaded = pf.load(tmp_path / f"{arch}.safetensors")
        torch.testing.assert_close(loaded(x[:, :5], y[:, :5], x[:, 5:]),
                                   model(x[:, :5], y[:, :5], x[:, 5:]))
    # without residual scaling there are no gains at all (older models load unchanged)
    assert not [n for n, _ in build_model(MODEL).named_parameters() if n.endswith(".gain")]
    with pytest.raises(ValueError, match=r"residual_scale must be in \(0, 1\]"):
        dataclasses.replace(MODEL, residual_scale=0.0)


def test_bench_recipe_keeps_finished_runs_and_skips_them_on_a_rerun(tmp_path, monkeypatch):
    """A full ``bench recipe`` trains for hours: each finished run's scores are stored, and a
    rerun of the same run (same prior, model, base config, overrides, budgets, held-out data,
    kind of machine) takes them instead of training again; any other run trains."""
    from priorfit.bench import recipe

    calls = []

    def fake_train_and_score(prior, model_config, base, overrides, budgets, held_out):
        calls.append(overrides)
        return {"gap": 0.1 * len(calls), "curve": [[1.0, 0.5]]}

    monkeypatch.setattr(recipe, "_train_and_score", fake_train_and_score)
    prior, model_config, shipped = recipe.first_stage_configs("gp-1d")
    base = recipe._baseline("gp-1d", shipped)
    held_out = recipe._held_out(prior, (1, 2), 3)
    args = (prior, model_config, base)
    ledger = tmp_path / "runs.jsonl"
    first = recipe._cached(ledger, *args, {"optimizer": "muon"}, (1.0,), held_out)
    again = recipe._cached(ledger, *args, {"optimizer": "muon"}, (1.0,), held_out)
    assert first == again == {"gap": 0.1, "curve": [[1.0, 0.5]]} and len(calls) == 1
    recipe._cached(ledger, *args, {"optimizer": "adamw"}, (1.0,), held_out)
    recipe._cached(ledger, *args, {"optimizer": "muon"}, (2.0,), held_out)
    recipe._cached(None, *args, {"optimizer": "muon"}, (1.0,), held_out)  # no ledger: trains
    assert len(calls) == 4 and len(ledger.read_text().splitlines()) == 3
    # the same run on another kind of machine is another run: steps per minute differ
    monkeypatch.setattr(recipe, "machine", lambda: {"cpu": "Other CPU", "cores": 64,
                                                     "bf16_native": False, "amx": False})
    recipe._cached(ledger, *args, {"optimizer": "muon"}, (1.0,), held_out)
    assert len(calls) == 5 and len(ledger.read_text().splitlines()) == 4


def test_bench_recipe_times_the_steps_in_the_run_s_own_precision_and_optimizer(monkeypatch):
    """The calibrated schedule fits the budget only if the step time it is sized from is the
    run's own: a bfloat16 run sized from float32 steps finished in 11 of its 20 minutes."""
    from priorfit.bench import recipe

    class Calibrated(Exception):
        pass

    timed = []

    def fake_steps_for(prior, model_config, config, limit, work):
        timed.append((config.precision, config.optimizer))
        raise Calibrated

    monkeypatch.setattr(recipe, "_steps_for", fake_steps_for)
    prior, model_config, shipped = recipe.first_stage_configs("gp-1d")
    base = recipe._baseline("gp-1d", shipped)
    for overrides in ({"precision": "auto", "optimizer": "muon"}, {}):
        with pytest.raises(Calibrated):
            recipe._train_and_score(prior, model_config, base, overrides, (1.0,), {})
    assert timed == [("auto", "muon"), ("float32", base.optimizer)] and base.optimizer == "adamw"
