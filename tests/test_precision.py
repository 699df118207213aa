"""Training precision: explicit choices, the measured "auto" choice, and what it leaves alone."""

import pytest
import torch

import priorfit as pf
from priorfit.model import ModelConfig, build_model
from priorfit.train import loop
from priorfit.train.config import TrainConfig
from priorfit.train.precision import choose_precision

PRIOR = pf.priors.GP(num_features=1, lengthscale=0.3, noise=0.01)
MODEL = ModelConfig(num_features=1, num_outputs=16, d_model=16, num_heads=2, num_layers=1,
                    d_ff=32)


def settings(tmp_path, **overrides) -> TrainConfig:
    base = dict(steps=4, batch_size=4, seq_len=12, max_train=8, warmup_steps=1,
                border_datasets=32, val_every=4, val_batches=1, checkpoint_every=1,
                log_every=1, out_dir=str(tmp_path / "run"))
    return TrainConfig(**{**base, **overrides})


def test_explicit_precisions_are_taken_as_given():
    model = build_model(MODEL)
    for precision in ("float32", "bfloat16"):
        chosen, timings = choose_precision(precision, model, torch.device("cpu"),
                                           lambda m: m.head.borders.sum())
        assert chosen == precision and timings == {}


def test_auto_measures_both_and_changes_nothing():
    torch.manual_seed(0)
    model = build_model(MODEL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(4, 12, 1), torch.randn(4, 12)
    rng = torch.get_rng_state()

    def loss(trial):
        return trial(x[:, :8], y[:, :8], x[:, 8:]).logsumexp(-1).mean()

    chosen, timings = choose_precision("auto", model, torch.device("cpu"), loss)
    assert chosen in ("float32", "bfloat16") and set(timings) == {"float32", "bfloat16"}
    assert chosen == min(timings, key=timings.get)
    assert torch.equal(torch.get_rng_state(), rng)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in model.parameters())


def test_card_records_the_choice_and_resume_keeps_it(tmp_path, monkeypatch):
    first = pf.train(PRIOR, settings(tmp_path, steps=2, precision="auto"), MODEL, progress=False)
    assert first.card["precision"] in ("float32", "bfloat16")
    assert set(first.card["precision_s_per_pass"]) == {"float32", "bfloat16"}

    def no_second_measurement(*args, **kwargs):
        raise AssertionError("a resumed run must reuse the recorded precision")

    monkeypatch.setattr(loop, "choose_precision", no_second_measurement)
    resumed = pf.train(PRIOR, settings(tmp_path, steps=4, precision="auto"), MODEL,
                       resume=True, progress=False)
    assert resumed.card["precision"] == first.card["precision"]
    assert resumed.card["precision_s_per_pass"] == first.card["precision_s_per_pass"]


def test_bfloat16_training_runs_and_keeps_float32_logits(tmp_path):
    model = pf.train(PRIOR, settings(tmp_path, precision="bfloat16"), MODEL, progress=False)
    assert model.card["precision"] == "bfloat16"
    assert next(model.parameters()).dtype == torch.float32
    assert torch.isfinite(torch.tensor(model.card["validation"]["val_nll"]))


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match=r"precision must be one of \('auto', 'float32'"):
        TrainConfig(precision="fp8")


def test_reduced_precision_training_attention_equals_the_fused_kernel():
    """In bfloat16 training on a CPU, :func:`attend` takes the explicit path (faster there than
    the fused kernel's backward): the same outputs and gradients as the fused kernel in float32,
    within bfloat16's resolution, with and without a key mask, and zeros for a query with every
    key masked."""
    from priorfit.model import attention

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 8, generator=generator) for _ in range(3))
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [False] * 5])

    def outputs(dtype, key_mask):
        leaves = [t.clone().to(dtype).requires_grad_() for t in (q, k, v)]
        out = attention.attend(*leaves, key_mask)
        (out.float() * torch.linspace(-1, 1, 8)).sum().backward()
        return [out.float(), *(t.grad.float() for t in leaves)]

    assert attention._explicit_for_training(q.bfloat16().requires_grad_(), k)
    assert not attention._explicit_for_training(q.requires_grad_(False), k)
    reduced = {}
    for name, key_mask in (("masked", mask), ("unmasked", None)):
        reference = outputs(torch.float32, key_mask)
        reduced[name] = outputs(torch.bfloat16, key_mask)
        for a, b in zip(reference, reduced[name], strict=True):
            torch.testing.assert_close(b, a, atol=0.05, rtol=0.05)
    assert reduced["masked"][0][2].abs().max() == 0  # no key to attend to
