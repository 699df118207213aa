"""Training: configs, the data stream, checkpoints and exact resumption, DDP, learning."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import priorfit as pf
from priorfit.train.config import TrainConfig, load_config
from priorfit.train.data import micro_batches, train_size_probs

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = pf.ModelConfig(num_features=1, num_outputs=32, d_model=16, num_heads=2,
                            num_layers=2, d_ff=32)


def tiny_train(tmp_path, **overrides) -> TrainConfig:
    settings = dict(steps=6, batch_size=4, seq_len=12, max_train=8, warmup_steps=2,
                    border_datasets=64, val_every=3, val_batches=2, checkpoint_every=2,
                    log_every=1, out_dir=str(tmp_path / "run"))
    return TrainConfig(**{**settings, **overrides})


PRIOR = pf.priors.GP(num_features=1, lengthscale=0.3, noise=0.01)


def test_train_writes_model_metrics_and_card(tmp_path):
    model = pf.train(PRIOR, tiny_train(tmp_path), TINY_MODEL, progress=False)
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "datasets_per_s"} <= set(records[0])
    assert any("val_gap" in r for r in records)
    loaded = pf.load(run / "model.safetensors")
    assert loaded.card["steps"] == 6
    assert loaded.card["prior"] == pf.priors.prior_to_config(PRIOR)
    assert set(loaded.card["validation"]) >= {"val_nll", "val_exact_nll", "val_gap"}
    torch.testing.assert_close(loaded.borders, model.borders)


def test_resume_continues_exactly(tmp_path):
    straight = pf.train(PRIOR, tiny_train(tmp_path / "a"), TINY_MODEL, progress=False)
    # A run interrupted after its first step (checkpointed as a time limit or a kill leaves
    # it), then resumed, ends with the same weights as the uninterrupted run.
    interrupted = pf.train(PRIOR, tiny_train(tmp_path / "b", time_limit_s=1e-9), TINY_MODEL,
                           progress=False)
    assert interrupted.card["steps"] == 1
    resumed = pf.train(PRIOR, tiny_train(tmp_path / "b"), TINY_MODEL, resume=True,
                       progress=False)
    pairs = zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        torch.testing.assert_close(a, b, msg=name)
    # the resumed run's metrics log lists every step once, as the uninterrupted run's does
    assert metric_steps(tmp_path / "b") == metric_steps(tmp_path / "a")
    # a fresh run into the same directory starts a new log
    pf.train(PRIOR, tiny_train(tmp_path / "b", steps=2), TINY_MODEL, progress=False)
    assert metric_steps(tmp_path / "b") == [(1, "loss"), (2, "loss"), (2, "val")]


def metric_steps(path: Path) -> list[tuple[int, str]]:
    lines = (path / "run" / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], "loss" if "loss" in r else "val") for r in map(json.loads, lines)]


def test_resume_refuses_a_different_prior(tmp_path):
    pf.train(PRIOR, tiny_train(tmp_path, steps=2), TINY_MODEL, progress=False)
    other = dataclasses.replace(PRIOR, lengthscale=0.9)
    with pytest.raises(ValueError, match="different prior"):
        pf.train(other, tiny_train(tmp_path), TINY_MODEL, resume=True, progress=False)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    config = tiny_train(tmp_path, steps=2)
    pf.train(PRIOR, config, TINY_MODEL, progress=False)
    checkpoint = Path(config.out_dir) / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(ValueError, match="unreadable"):
        pf.train(PRIOR, config, TINY_MODEL, resume=True, progress=False)


def test_data_stream_does_not_depend_on_workers(tmp_path):
    config = tiny_train(tmp_path, steps=3, accumulation=2)
    serial = [(m.num_train, m.batch.y) for m in micro_batches(PRIOR, config, 0, 0)]
    parallel = [(m.num_train, m.batch.y)
                for m in micro_batches(PRIOR, dataclasses.replace(config, num_workers=2), 0, 0)]
    assert len(serial) == 6
    for (n_a, y_a), (n_b, y_b) in zip(serial, parallel, strict=True):
        assert n_a == n_b
        torch.testing.assert_close(y_a, y_b)
    later = [m.batch.y for m in micro_batches(PRIOR, config, 1, 0)]
    torch.testing.assert_close(later[0], serial[2][1])


def test_paper_train_size_weighting():
    probs = train_size_probs(TrainConfig(seq_len=10, min_train=0, max_train=9))
    expected = 1 / (10 - torch.arange(10.0, dtype=torch.float64))
    torch.testing.assert_close(probs, expected / expected.sum())
    uniform = train_size_probs(TrainConfig(seq_len=10, max_train=4, train_size_sampling="uniform"))
    torch.testing.assert_close(uniform, torch.full((5,), 0.2, dtype=torch.float64))


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


GOOD = """
[prior]
class = "GP"
num_features = 2
lengthscale = [0.2, 0.4]
[model]
num_features = 2
d_model = 32
[train]
steps = 10
lr = 1
"""


def test_config_file_round_trip(tmp_path):
    prior, model, train = load_config(write(tmp_path, GOOD))
    assert prior == pf.priors.GP(num_features=2, lengthscale=[0.2, 0.4])
    assert model.d_model == 32 and train.steps == 10 and train.lr == 1.0


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (("steps = 10", "stpes = 10"), "unknown key 'stpes' in \\[train\\]"),
        (("steps = 10", 'steps = "ten"'), "\\[train\\] steps must be int"),
        (("d_model = 32", "d_model = 32.5"), "\\[model\\] d_model must be int"),
        (('class = "GP"', 'class = "Nope"'), "unknown prior class"),
        (("num_features = 2\nlengthscale", "colour = 2\nlengthscale"), "\\[prior\\]"),
        (("[train]", "[trian]"), "unknown table"),
        (("steps = 10", "steps = 10 ="), "not valid TOML"),
        (("steps = 10", "steps = 0"), "steps must be at least 1"),
    ],
)
def test_bad_config_files(tmp_path, edit, match):
    with pytest.raises(ValueError, match=match):
        load_config(write(tmp_path, GOOD.replace(*edit)))


def test_shipped_configs_load():
    for path in sorted((ROOT / "configs").glob("*.toml")):
        prior, model, _ = load_config(path)
        assert prior.num_features <= model.num_features


DDP_SCRIPT = """
import sys, torch, priorfit as pf
sys.path.insert(0, {tests!r})
from test_train import PRIOR, TINY_MODEL, tiny_train
from pathlib import Path
config = tiny_train(Path({out!r}), steps=3, accumulation={accumulation})
model = pf.train(PRIOR, config, TINY_MODEL, progress=False)
if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
    sys.exit(0)
torch.save(model.state_dict(), {out!r} + "/weights.pt")
"""


def run_python(args, tmp_path, name, accumulation):
    out = str(tmp_path / name)
    Path(out).mkdir()
    script = tmp_path / f"{name}.py"
    script.write_text(DDP_SCRIPT.format(tests=str(ROOT / "tests"), out=out,
                                        accumulation=accumulation))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([*args, str(script)], check=True, env=env, cwd=tmp_path, timeout=300,
                   capture_output=True)
    return torch.load(Path(out) / "weights.pt", weights_only=True)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo) equals 1 process accumulating both shares."""
    single = run_python([sys.executable], tmp_path, "single", accumulation=2)
    ddp = run_python([sys.executable, "-m", "torch.distributed.run", "--standalone",
                      "--nproc_per_node=2"], tmp_path, "ddp", accumulation=1)
    for name, value in single.items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_pfn_learns_beta_bernoulli_posterior(tmp_path):
    """A small PFN trained briefly on coin flips approaches the exact Beta posterior."""
    prior = pf.priors.BetaBernoulli(a=1.0, b=1.0)
    config = pf.ModelConfig(num_features=1, num_outputs=2, task="classification", d_model=32,
                            num_heads=2, num_layers=2, d_ff=64)
    train = tiny_train(tmp_path, steps=400, batch_size=32, seq_len=24, max_train=20, lr=3e-3,
                       warmup_steps=20, val_every=400, val_batches=8, checkpoint_every=400,
                       log_every=100)
    model = pf.train(prior, train, config, progress=False)
    validation = model.card["validation"]
    assert validation["val_gap"] < 0.02, validation
    flips = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    post = model.predict(torch.zeros(6, 1), flips, torch.zeros(1, 1))
    exact = (1 + 5) / (2 + 6)
    assert abs(post.probs[0, 1].item() - exact) < 0.05


@pytest.mark.slow
def test_pfn_learns_gp_posterior(tmp_path):
    """Trained for a minute on a 1-D GP prior, the gap to the exact posterior shrinks from about
    2 nats at initialisation to a fraction of one."""
    train = tiny_train(tmp_path, steps=600, batch_size=16, seq_len=40, max_train=30, lr=2e-3,
                       warmup_steps=30, border_datasets=512, val_every=600, val_batches=8,
                       checkpoint_every=600, log_every=100)
    config = dataclasses.replace(TINY_MODEL, d_model=64, num_heads=4, d_ff=128,
                                 num_outputs=100)
    model = pf.train(PRIOR, train, config, progress=False)
    first = json.loads((Path(train.out_dir) / "metrics.jsonl").read_text().splitlines()[0])
    gap = model.card["validation"]["val_gap"]
    assert gap < 0.5, model.card["validation"]
    assert model.card["validation"]["val_nll"] < first["loss"] - 0.5


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    eager = pf.train(PRIOR, tiny_train(tmp_path / "eager", steps=3), TINY_MODEL, progress=False)
    compiled = pf.train(PRIOR, tiny_train(tmp_path / "compiled", steps=3, compile=True),
                        TINY_MODEL, progress=False)
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
