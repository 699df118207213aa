"""Training: configs, the data stream, checkpoints and exact resumption, DDP, learning."""

import dataclasses
import inspect
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import priorfit as pf
from priorfit.train import loop
from priorfit.train.config import TrainConfig, load_config
from priorfit.train.data import micro_batches, train_size_probs
from priorfit.train.optim import param_groups

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = pf.ModelConfig(num_features=1, num_outputs=32, d_model=16, num_heads=2,
                            num_layers=2, d_ff=32)


def tiny_train(tmp_path, **overrides) -> TrainConfig:
    settings = dict(steps=6, batch_size=4, seq_len=12, max_train=8, warmup_steps=2,
                    border_datasets=64, val_every=3, val_batches=2, checkpoint_every=2,
                    log_every=1, precision="float32", out_dir=str(tmp_path / "run"))
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
    torch.testing.assert_close(loaded.head.borders, model.head.borders)


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


class Killed(BaseException):
    """Stands for the process being killed (SIGKILL, Ctrl-C) just after writing a checkpoint."""


def test_resume_after_a_kill_mid_run_is_exact(tmp_path, monkeypatch):
    """Killed after step 3 of 7 and resumed, a run with dropout, a data worker and gradient
    accumulation ends with the weights of the uninterrupted run: model, optimiser, schedule,
    data stream and the random state that draws dropout masks all continue where they were."""
    model_config = dataclasses.replace(TINY_MODEL, dropout=0.3)
    settings = dict(steps=7, accumulation=2, num_workers=1, checkpoint_every=1)
    straight = pf.train(PRIOR, tiny_train(tmp_path / "a", **settings), model_config,
                        progress=False)

    save = loop._save_checkpoint
    signature = inspect.signature(save)

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        if signature.bind(*args, **kwargs).arguments["step"] == 3:
            raise Killed

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        pf.train(PRIOR, tiny_train(tmp_path / "b", **settings), model_config, progress=False)
    monkeypatch.undo()
    checkpoint = torch.load(tmp_path / "b" / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 3
    resumed = pf.train(PRIOR, tiny_train(tmp_path / "b", **settings), model_config,
                       resume=True, progress=False)
    assert resumed.card["steps"] == 7
    pairs = zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert metric_steps(tmp_path / "b") == metric_steps(tmp_path / "a")


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


def test_weight_decay_skips_norms_and_biases(tmp_path):
    """Weight matrices and embeddings are decayed; norm gains and biases never are, and the
    training loop's optimiser is built from these groups."""
    config = tiny_train(tmp_path, steps=1, weight_decay=0.5)
    model = pf.train(PRIOR, config, TINY_MODEL, progress=False)
    decay, no_decay = param_groups(model, 0.5)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.5, 0.0)
    decayed, kept = ({id(p) for p in group["params"]} for group in (decay, no_decay))
    named = dict(model.named_parameters())
    assert decayed.isdisjoint(kept) and decayed | kept == {id(p) for p in named.values()}
    norms = {prefix for prefix, m in model.named_modules() if "Norm" in type(m).__name__}
    assert norms, "the model has no norm layers to check"
    in_norms = [name for name in named if name.rpartition(".")[0] in norms]
    biases = [name for name in named if name.endswith("bias")]
    assert in_norms and biases
    assert [name for name in in_norms + biases if id(named[name]) not in kept] == []
    assert [name for name, p in named.items() if p.dim() >= 2 and id(p) not in decayed] == []
    # the optimiser of the run (as its checkpoint saved it) has the same two groups
    state = torch.load(Path(config.out_dir) / "checkpoint.pt", weights_only=True)["optimizers"][0]
    groups = [(g["weight_decay"], len(g["params"])) for g in state["param_groups"]]
    assert groups == [(0.5, len(decay["params"])), (0.0, len(no_decay["params"]))]


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


def test_a_config_sets_its_keys_over_its_base(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "first.toml").write_text(GOOD)
    second = tmp_path / "second.toml"
    second.write_text('base = "stages/first.toml"\n[train]\nlr = 0.5\ninit_from = "a.safetensors"\n'
                      "[model]\nnum_layers = 2\n")
    prior, model, train = load_config(second)
    assert prior == pf.priors.GP(num_features=2, lengthscale=[0.2, 0.4])  # inherited whole
    assert (model.d_model, model.num_layers) == (32, 2)  # one key changed, the rest inherited
    assert (train.steps, train.lr, train.init_from) == (10, 0.5, "a.safetensors")
    third = tmp_path / "third.toml"  # a base of a base, and a prior of another class
    third.write_text('base = "second.toml"\n[prior]\nclass = "BNN"\nnum_features = 2\n')
    prior, model, train = load_config(third)
    assert prior == pf.priors.BNN(num_features=2) and train.lr == 0.5


@pytest.mark.parametrize(
    ("base", "match"),
    [
        ('"missing.toml"', r"missing.toml \(the base of .*c.toml\) does not exist"),
        ('"c.toml"', r"the base chain of config files loops: .*c.toml -> .*c.toml"),
        ("3", "base in .* must be the path of a config file, got 3"),
    ],
)
def test_bad_bases_are_named(tmp_path, base, match):
    with pytest.raises(ValueError, match=match):
        load_config(write(tmp_path, f"base = {base}\n" + GOOD))


def test_shipped_configs_load():
    for path in sorted((ROOT / "configs").glob("*.toml")):
        prior, model, _ = load_config(path)
        assert prior.num_features <= model.num_features


DDP_SCRIPT = """
import json, os, sys, time, torch, priorfit as pf
sys.path.insert(0, {tests!r})
from test_train import PRIOR, TINY_MODEL, tiny_train
from pathlib import Path
rank, slept = int(os.environ.get("RANK", "0")), []
if {sgd!r}:
    # plain SGD, called like AdamW (param groups, lr): its step is proportional to the
    # gradient, so a gradient off by a factor changes the weights (AdamW's would not)
    torch.optim.AdamW = torch.optim.SGD
if rank == 1 and {slow_rank_s!r}:
    # rank 1 sleeps once a step between the gradient all-reduce and reading its clock, so
    # its clock runs a step ahead of rank 0's
    clip = torch.nn.utils.clip_grad_norm_
    def slow_clip(*args, **kwargs):
        time.sleep({slow_rank_s!r})
        slept.append(1)
        return clip(*args, **kwargs)
    torch.nn.utils.clip_grad_norm_ = slow_clip
config = tiny_train(Path({out!r}), **{overrides!r})
model = pf.train(PRIOR, config, TINY_MODEL, progress=False)
result = {{"steps": model.card["steps"], "slept": len(slept)}}
Path({out!r}, f"rank-{{rank}}.json").write_text(json.dumps(result))
if rank == 0:
    torch.save(model.state_dict(), {out!r} + "/weights.pt")
"""
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def run_script(launcher: list[str], tmp_path: Path, name: str, *, sgd: bool = False,
               slow_rank_s: float = 0.0, timeout: float = 90, **overrides) -> Path:
    """Train in a subprocess (``launcher``: python, or torchrun with 2 CPU processes) with
    :func:`tiny_train` settings ``overrides``; returns its output folder. A run that does not
    finish in ``timeout`` seconds (a hang) is stopped, its training processes included, and
    fails the test."""
    out = tmp_path / name
    out.mkdir()
    script = tmp_path / f"{name}.py"
    script.write_text(DDP_SCRIPT.format(tests=str(ROOT / "tests"), out=str(out), sgd=sgd,
                                        slow_rank_s=slow_rank_s, overrides=overrides))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    log = tmp_path / f"{name}.log"  # a file, not a pipe: stray workers cannot block reading it
    with open(log, "wb") as sink:
        proc = subprocess.Popen([*launcher, str(script)], env=env, cwd=tmp_path, stdout=sink,
                                stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(proc, script)
            pytest.fail(f"{name} hung (stopped after {timeout} s):\n{log.read_text()[-3000:]}")
    assert proc.returncode == 0, f"{name} failed:\n{log.read_text()[-3000:]}"
    return out


def stop(proc: subprocess.Popen, script: Path) -> None:
    """Stop a hung run: SIGTERM lets torchrun stop its workers (which run in sessions of their
    own); any worker of ``script`` still alive after that is killed by its process id."""
    workers = [int(p.name) for p in Path("/proc").glob("[0-9]*") if _runs(p, script)]
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in workers:
        if _runs(Path("/proc", str(pid)), script):
            os.kill(pid, signal.SIGKILL)


def _runs(proc_dir: Path, script: Path) -> bool:
    """Whether the process of ``/proc/<pid>`` runs ``script``."""
    try:
        return str(script) in (proc_dir / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo) equals 1 process accumulating both shares.

    Trained with plain SGD and no clipping, so that a gradient scaled wrongly (by the number of
    processes or of accumulation steps) shows in the weights: AdamW's normalised step and
    clipping would hide it."""
    settings = dict(steps=3, lr=0.05, grad_clip=0.0, sgd=True)
    single = run_script([sys.executable], tmp_path, "single", accumulation=2, **settings)
    ddp = run_script(TORCHRUN, tmp_path, "ddp", accumulation=1, **settings)
    for out in (single, ddp):  # the loop did use SGD
        state = torch.load(out / "run" / "checkpoint.pt", weights_only=True)["optimizers"][0]
        assert all("momentum" in g and "betas" not in g for g in state["param_groups"])
    single, ddp = (torch.load(out / "weights.pt", weights_only=True) for out in (single, ddp))
    for name, value in single.items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_two_process_time_limit_stops_every_rank_at_the_same_step(tmp_path):
    """Under a time limit, ranks whose clocks disagree still stop together (no hang)."""
    out = run_script(TORCHRUN, tmp_path, "ddp", slow_rank_s=0.5, timeout=60, steps=1000,
                     time_limit_s=1.2, grad_clip=1.0, val_every=10**6, checkpoint_every=10**6)
    ranks = [json.loads((out / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["slept"] == 0 and ranks[1]["slept"] >= 1  # rank 1 was the slow one
    assert ranks[0]["steps"] == ranks[1]["steps"], ranks
    assert 1 <= ranks[0]["steps"] < 1000
    checkpoint = torch.load(out / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == ranks[0]["steps"]


@pytest.mark.slow
def test_pfn_learns_beta_bernoulli_posterior(tmp_path):
    """A small PFN trained briefly on coin flips approaches the exact Beta posterior."""
    prior = pf.priors.BetaBernoulli(a=1.0, b=1.0)
    config = pf.ModelConfig(num_features=1, num_outputs=2, head="classes", d_model=32,
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


def test_compiled_forward_runs_fewer_than_two_training_points_eagerly():
    """torch.compile would specialise the sizes 0 and 1 and compile twice more."""
    class Probe(torch.nn.Module):
        def forward(self, x_train, y_train, x_test, train_mask=None):
            return x_test * 0 + float(torch.compiler.is_compiling())

    forward = loop._compiled(Probe())
    for n, compiled in ((0, 0.0), (1, 0.0), (3, 1.0), (7, 1.0)):
        out = forward(torch.zeros(2, n, 1), torch.zeros(2, n), torch.zeros(2, 4, 1))
        assert out.unique().tolist() == [compiled], n


def test_compile_refuses_the_cells_architecture(tmp_path):
    cells = dataclasses.replace(TINY_MODEL, arch="cells", head="classes", num_outputs=2)
    with pytest.raises(ValueError, match="'cells' architecture"):
        pf.train(pf.priors.TablePrior(num_features=1), tiny_train(tmp_path, compile=True),
                 cells, progress=False)


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    # one training-set size, so the dynamic-shape graph compiles once (compiling dominates)
    settings = dict(steps=3, min_train=8, val_every=3)
    eager = pf.train(PRIOR, tiny_train(tmp_path / "eager", **settings), TINY_MODEL,
                     progress=False)
    compiled = pf.train(PRIOR, tiny_train(tmp_path / "compiled", compile=True, **settings),
                        TINY_MODEL, progress=False)
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
