"""``priorfit bench train-speed``: priorfit against ``pfns`` 0.4.2 at equal CPU training time.

Both train a PFN of the size of the shipped ``gp-paper`` model on its GP prior (the sizes in
its model card, those of its first stage, ``configs/stages/gp-paper-stage1.toml``, so an
installed package needs no source tree) with the same batches (32 datasets of 128 points, 0-100
of them training points, paper weighting), each with its own training loop, recipe, prior
sampler, criterion and prediction path (priorfit: :data:`RECIPE`, the best of ``bench recipe``;
pfns: AdamW at :data:`PFNS_LR` with its warm-up + cosine schedule sized from a measured step
time), each in its own process (same ``torch.set_num_threads``, ``OMP_WAIT_POLICY=PASSIVE``,
no data-loader workers), each in both precisions: float32, and
bf16 autocast (pfns's default ``train_mixed_precision``, priorfit's ``precision =
"bfloat16"``); the headline compares each package at its faster one on this machine (more
datasets per second). The two packages of one precision train at the same time, each pinned to
its own cores, when the machine has cores for both (:func:`_pairs_concurrently`): a cloud host's
speed drifts by tens of percent within ten minutes, and runs one after the other would not see
the same machine; otherwise they run one after the other. Each run times a few of its own steps
and is stopped at the budget
(priorfit: ``time_limit_s``; pfns: a KeyboardInterrupt from its batch function, which
``pfns.train.train`` catches, returning the model). All are then scored on the same held-out GP
datasets against the exact GP posterior. pfns runs as its users run it:
``pfns.train.train(MainConfig)``, its gpytorch prior ``priors.fast_gp`` (the same GP), its
``TableTransformer`` in the original one-token-per-row layout, a ``FullSupportBarDistribution``
on ``get_bucket_borders`` of prior samples, ``adamw`` with its per-epoch ``cosine_decay``, and
a ``BatchShapeSamplerConfig`` subclass for the cut.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from priorfit.bench import Result, mean_se, seconds_per_call
from priorfit.train.warm_start import first_stage_configs

SIZES = (1, 2, 4, 8, 16, 32, 64, 100)
SEED = 20_221_024  # held-out data, as in ``priorfit bench gp``
PACKAGES = ("priorfit", "pfns-0.4.2")
# priorfit's recipe for this budget: the changes that lowered the validation gap on this prior
# in ``bench recipe`` (Muon, a warm-up/stable/decay schedule on the wall-time clock) at the
# higher learning rate that Muon took best in a 5-minute sweep (0.7e-3, 2.1e-3, 5.6e-3:
# validation gaps 1.09, 0.57, 0.48). Over 110 minutes the same recipe ended behind the shipped
# gp-paper's AdamW + cosine (docs/benchmarks.md), so it is a short-budget recipe.
RECIPE = {"optimizer": "muon", "lr": 4e-3, "lr_schedule": "wsd", "schedule_clock": "time"}
# pfns trains with AdamW at gp-paper's learning rate from before the recipe work (3x that rate
# did not help AdamW in ``bench recipe``); both use that config's warm-up share (200 of 10 000)
PFNS_LR = 7e-4
WARMUP_FRACTION = 0.02
PRECISIONS = ("float32", "bfloat16")
METHODS = tuple(f"{package}-{precision}" for package in PACKAGES for precision in PRECISIONS)
MODEL = "gp-paper"  # the shipped model whose prior, architecture and recipe are benchmarked


def run(quick: bool, data: Path) -> Result:
    """Train both packages for the budget (600 s; ``quick``: 6 s) and score them."""
    if importlib.util.find_spec("pfns") is None:
        raise ImportError("bench train-speed needs pfns 0.4.2: pip install 'priorfit[bench]'")
    prior, _, train_config = first_stage_configs(MODEL)
    threads, per_size = torch.get_num_threads(), 20 if quick else 200
    settings = {
        "budget_s": 6.0 if quick else 600.0,
        "threads": threads,
        "calibration_steps": 4 if quick else 30,
        "border_datasets": 512 if quick else 4096,
        "warmup_fraction": WARMUP_FRACTION,
        "pfns_lr": PFNS_LR,
        # priorfit compiles its network (torch.compile, dynamic shapes: a bf16 step 0.236 ->
        # 0.178 s on an AMD EPYC for about 100 s of compiling inside the budget; each arm
        # compiles cold, its own inductor cache, as many compile workers as threads). pfns's
        # train(compile=False) is its default, and pfns runs as its users run it. Not --quick:
        # compiling alone would take that budget many times over.
        "compile": not quick,
    }
    config = {
        "config": f"model card of the shipped {MODEL}, its first stage (as "
                  "configs/stages/gp-paper-stage1.toml)",
        "sizes": list(SIZES),
        "datasets_per_size": per_size,
        "omp_wait_policy": "PASSIVE",
        "data_workers": 0,
        "precision": "each package in float32 and in bf16 autocast (priorfit precision, pfns "
        "train_mixed_precision); the headline compares each at its faster one",
        **settings,
        "pfns_setup": "train.train(MainConfig), priors.fast_gp.get_batch, TableTransformer("
        "features_per_group=5, attention_between_features=False), FullSupportBarDistribution"
        "(get_bucket_borders(1000, prior samples)), adamw + cosine_decay, paper-weighted cut",
        "schedule": "priorfit: its RECIPE, the learning rate on the wall-time clock; pfns: "
        "cosine epochs calibrated to end at budget_s; both hard-stopped there",
        "priorfit_recipe": RECIPE,
    }
    core_sets = _pairs_concurrently(threads)
    config["concurrent_pairs"] = [sorted(cores) for cores in core_sets] if core_sets else None
    exact, held_out, runs = {}, {}, {}
    for n in SIZES:
        batch = prior.sample(per_size, n + 1, generator=torch.Generator().manual_seed(SEED + n))
        x, y = held_out[n] = (batch.x, batch.y)
        exact[n] = -prior.log_prob(x[:, :n], y[:, :n], x[:, n:], y[:, n:])[:, 0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.save(held_out, work / "held_out.pt")
        (work / "settings.json").write_text(json.dumps(settings))
        for precision in PRECISIONS:
            pair = [f"{package}-{precision}" for package in PACKAGES]
            # both packages at once, each on its own cores; else one after the other
            waves = [list(zip(pair, core_sets, strict=True))] if core_sets else [
                [(method, None)] for method in pair]
            for wave in waves:
                procs = {method: _start(method, work, threads, cores) for method, cores in wave}
                for proc in procs.values():  # all finish before any is read, even after a failure
                    proc.wait()
                runs |= {method: _finish(method, proc, work) for method, proc in procs.items()}
    rows, summary = score(runs, exact, train_config.batch_size)
    return Result(config, rows, summary, table(rows, summary))


def _pairs_concurrently(threads: int) -> list[set[int]] | None:
    """Disjoint sets of ``threads`` cores, one per package, from the cores this process may use;
    ``None`` (run one after the other) where there are fewer than ``2 * threads``."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < len(PACKAGES) * threads:
        return None
    return [set(cores[i * threads:(i + 1) * threads]) for i in range(len(PACKAGES))]


def _start(method: str, work: Path, threads: int, cores: set[int] | None) -> subprocess.Popen:
    """One run in its own process (pinned to ``cores`` when given), writing ``METHOD.json``."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(threads),
               # compiles cold, in as many processes as the run has threads
               TORCHINDUCTOR_CACHE_DIR=str(work / f"inductor-{method}"),
               TORCHINDUCTOR_COMPILE_THREADS=str(threads))
    command = [sys.executable, "-m", __name__, str(work), *_package_and_precision(method)]
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    with (work / f"{method}.log").open("w") as log:  # the child keeps its own descriptor
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=pin)


def _finish(method: str, proc: subprocess.Popen, work: Path) -> dict:
    """Wait for a run of :func:`_start`; its output, or its log's tail in the error."""
    if proc.wait():
        raise RuntimeError(f"{method} run failed:\n{(work / f'{method}.log').read_text()[-6000:]}")
    return json.loads((work / f"{method}.json").read_text())


def score(runs: dict, exact: dict, batch_size: int) -> tuple[list[dict], dict]:
    """Rows and summary from each run's output and the exact NLLs ``{n: [datasets]}``."""
    rows, summary = [], {"exact_nll_by_n": {n: float(exact[n].mean()) for n in SIZES}}
    pooled = {}
    for method, out in runs.items():
        out = dict(out)
        speed = out["steps"] * batch_size / out["train_seconds"]
        common = dict(method=method, setting="gp-paper-prior", datasets_per_s=speed)
        common |= {key: out[key] for key in ("train_seconds", "steps")}
        raw = out.pop("nll")
        nll = {n: torch.tensor(raw[str(n)], dtype=torch.float64) for n in SIZES}
        pooled[method] = torch.cat(list(nll.values()))
        for n in (*SIZES, "all"):
            pfn = pooled[method] if n == "all" else nll[n]
            ref = torch.cat(list(exact.values())) if n == "all" else exact[n]
            (mean, se), (gap, gap_se) = mean_se(pfn.tolist()), mean_se((pfn - ref).tolist())
            rows.append({**common, "n": n, "nll": mean, "nll_se": se, "gap": gap, "gap_se": gap_se})
        by_n = {r["n"]: r["gap"] for r in rows[-len(SIZES) - 1 : -1]}
        summary[method] = {"datasets_per_s": speed, "mean_gap": gap, "mean_gap_se": gap_se}
        summary[method] |= {"gap_by_n": by_n, **out}
    fastest = {
        package: max((m for m in runs if m.startswith(package)),
                     key=lambda m: summary[m]["datasets_per_s"])
        for package in PACKAGES
    }
    ours, theirs = (fastest[package] for package in PACKAGES)
    difference = mean_se((pooled[ours] - pooled[theirs]).tolist())  # same datasets
    summary["fastest"] = fastest
    summary["gap_difference_priorfit_minus_pfns"] = dict(
        zip(("mean", "se"), difference, strict=True)
    )
    summary["priorfit_gap_smaller"] = bool(difference[0] < 0)
    summary["gap_ratio_priorfit_over_pfns"] = summary[ours]["mean_gap"] / summary[theirs][
        "mean_gap"]
    return rows, summary


def _package_and_precision(method: str) -> tuple[str, str]:
    package, _, precision = method.rpartition("-")
    return package, precision


def table(rows: list[dict], summary: dict) -> str:
    """Gap per n for both packages, then the training-speed figures."""
    by = {(r["method"], r["n"]): r for r in rows}
    lines = [f"{'n':>5} {'exact NLL':>9} " + " ".join(f"{m:>22}" for m in METHODS)]
    for n in (*SIZES, "all"):
        ref = f"{summary['exact_nll_by_n'][n]:9.3f}" if n != "all" else ""
        gaps = (f"{by[m, n]['gap']:.3f}±{by[m, n]['gap_se']:.3f}".rjust(22) for m in METHODS)
        lines.append(f"{n!s:>5} {ref:>9} " + " ".join(gaps))
    lines.append(
        f"{'method':<19} {'datasets/s':>10} {'steps':>6} {'of sched.':>9} {'train s':>8} "
        f"{'calib. s/step':>13} {'prior s/batch':>13}"
    )
    for m in METHODS:
        s = summary[m]
        lines.append(
            f"{m:<19} {s['datasets_per_s']:10.1f} {s['steps']:6d} {s['schedule_steps']:9d} "
            f"{s['train_seconds']:8.1f} {s['calibrated_s_per_step']:13.3f} "
            f"{s['prior_s_per_batch']:13.4f}"
        )
    d, fastest = summary["gap_difference_priorfit_minus_pfns"], summary["fastest"]
    lines.append(
        f"each at its faster precision ({fastest['priorfit']} vs {fastest['pfns-0.4.2']}): "
        f"mean gap, priorfit minus pfns (paired): {d['mean']:.3f}±{d['se']:.3f} nats, ratio "
        f"{summary['gap_ratio_priorfit_over_pfns']:.2f}; priorfit reaches the smaller gap: "
        f"{summary['priorfit_gap_smaller']}"
    )
    return "\n".join(lines)


def plot(result: Result, out: Path) -> list[Path]:
    from priorfit.plots import pyplot

    plt = pyplot()
    fig, (gap_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for method in METHODS:
        rows = [r for r in result.rows if r["method"] == method and r["n"] != "all"]
        n, gap, se = ([r[key] for r in rows] for key in ("n", "gap", "gap_se"))
        gap_ax.errorbar(n, gap, yerr=se, marker="o", capsize=3, label=method)
        curve = result.summary[method]["loss_curve"]
        loss_ax.plot([t for t, _ in curve], [loss for _, loss in curve], label=method)
    gap_ax.axhline(0, color="black", lw=0.8)
    gap_ax.set(xscale="log", xlabel="training points n", ylabel="NLL gap to exact GP (nats)")
    gap_ax.set_title(f"after {result.config['budget_s']:.0f} s of CPU training each")
    loss_ax.set(xlabel="training wall time (s)", ylabel="training loss (NLL, own logs)")
    gap_ax.legend()
    loss_ax.legend()
    fig.tight_layout()
    path = out / "train_speed.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def _held_out_nll(work: Path, nll_fn) -> dict:
    """Per-dataset NLL of the single test point of each held-out dataset, through ``nll_fn``."""
    held_out = torch.load(work / "held_out.pt")
    with torch.no_grad():
        return {
            n: nll_fn(x[:, :n], y[:, :n], x[:, n:], y[:, n:]).reshape(-1).tolist()
            for n, (x, y) in held_out.items()
        }


def _train_priorfit(s: dict, work: Path, precision: str) -> dict:
    from priorfit.train import train

    prior, model_config, base = first_stage_configs(MODEL)
    quiet = dict(val_every=10**9, val_batches=1, checkpoint_every=10**9)
    base = replace(base, num_workers=0, device="cpu", precision=precision,
                   border_datasets=s["border_datasets"], **quiet)

    def warmup_for(steps: int) -> int:
        return max(1, round(steps * s["warmup_fraction"]))

    def fit(steps: int, name: str, limit: float = 0.0, **kw):
        kw = {"steps": steps, "warmup_steps": warmup_for(steps), "time_limit_s": limit,
              "schedule_clock": "steps", **kw}  # the recipe under test may set the time clock
        config = replace(base, out_dir=str(work / name), **kw)
        model = train(prior, config, model_config, progress=False)
        log = [json.loads(line) for line in (work / name / "metrics.jsonl").open()]
        return model, [(r["elapsed_s"], r["loss"]) for r in log if "loss" in r]

    # timed with the recipe's optimizer (Muon's step costs more than AdamW's), eagerly: the
    # run's compiling is inside its budget
    _, calibration = fit(s["calibration_steps"], "calibration", log_every=1,
                         optimizer=RECIPE["optimizer"])
    s_per_step = (calibration[-1][0] - calibration[0][0]) / (len(calibration) - 1)
    steps = max(1, int(s["budget_s"] / s_per_step))
    log_every = max(1, round(steps / 100))  # as often as pfns logs its loss (once per epoch)
    # the schedule follows the clock: a step ceiling out of reach, warm-up from the calibration
    model, curve = fit(10**9, "run", s["budget_s"], log_every=log_every,
                       warmup_steps=warmup_for(steps), compile=s["compile"], **RECIPE)
    gen = torch.Generator().manual_seed(1)
    return {
        "calibrated_s_per_step": s_per_step,
        "schedule_steps": steps,
        "steps": model.card["steps"],
        "train_seconds": model.card["wall_time_s"],
        "loss_curve": curve,
        "prior_s_per_batch": seconds_per_call(partial(prior.sample, 32, 128, generator=gen), 5),
        "nll": _held_out_nll(work, lambda xt, yt, xs, ys: -model.predict(xt, yt, xs).log_prob(ys)),
    }


def _train_pfns(s: dict, work: Path, precision: str) -> dict:
    from pfns.batch_shape_sampler import BatchShape, BatchShapeSamplerConfig
    from pfns.model.bar_distribution import BarDistributionConfig, get_bucket_borders
    from pfns.model.transformer_config import TransformerConfig
    from pfns.optimizer import OptimizerConfig
    from pfns.priors import fast_gp
    from pfns.priors.prior import AdhocPriorConfig
    from pfns.train import MainConfig, train

    from priorfit.train.data import train_size_probs

    prior, mc, tc = first_stage_configs(MODEL)
    hps = {"noise": prior.noise, "outputscale": prior.outputscale, "lengthscale": prior.lengthscale}
    weights = train_size_probs(tc).tolist()

    class PaperCut(BatchShapeSamplerConfig):
        """pfns' shape sampler, with priorfit's cut: n in [min_train, max_train], seq_len fixed."""

        def sample_batch_shape(self, epoch: int, step: int) -> BatchShape:
            rng = random.Random(self.seed + epoch * 10000 + step)  # seeded like pfns' own
            n = tc.min_train + rng.choices(range(len(weights)), weights)[0]
            return BatchShape(self.batch_size, tc.seq_len, prior.num_features, n)

    def gp_batch():
        return fast_gp.get_batch(
            tc.batch_size, tc.seq_len, prior.num_features, device="cpu", hyperparameters=hps
        )

    batches = math.ceil(s["border_datasets"] / tc.batch_size)
    ys = torch.cat([gp_batch().target_y.flatten() for _ in range(batches)])
    borders = get_bucket_borders(mc.num_outputs, ys=ys).tolist()

    sizes = dict(emsize=mc.d_model, nhid=mc.d_ff, nlayers=mc.num_layers, nhead=mc.num_heads)
    layout = dict(features_per_group=prior.num_features, attention_between_features=False)
    criterion = BarDistributionConfig(borders, full_support=True)
    prior_kwargs = {"hyperparameters": hps}
    fixed = dict(
        optimizer=OptimizerConfig("adamw", lr=s["pfns_lr"], weight_decay=tc.weight_decay),
        model=TransformerConfig(criterion=criterion, **layout, **sizes),
        batch_shape_sampler=PaperCut(batch_size=tc.batch_size, max_seq_len=tc.seq_len),
        scheduler="cosine_decay",
        train_mixed_precision=precision == "bfloat16",  # pfns' default is True: bf16 autocast
        num_workers=0,
    )

    def fit(epochs: int, steps_per_epoch: int, warmup: int, limit: float = 0.0):
        stamps = []  # start time of every batch request, i.e. of every step

        def get_batch(**kwargs):
            stamps.append(time.perf_counter())
            if limit and stamps[-1] - stamps[0] >= limit:
                raise KeyboardInterrupt  # pfns.train.train stops and returns the model
            return fast_gp.get_batch(**kwargs)

        prior_config = AdhocPriorConfig(get_batch_methods=get_batch, prior_kwargs=prior_kwargs)
        schedule = dict(epochs=epochs, steps_per_epoch=steps_per_epoch, warmup_epochs=warmup)
        config = MainConfig(priors=[prior_config], **schedule, **fixed)
        with contextlib.redirect_stdout(log := io.StringIO()):
            model = train(config, device="cpu", reusable_config=False)["model"]
        seconds = time.perf_counter() - stamps[0]
        epoch_log = re.findall(
            r"end of epoch .*? time:\s*([\d.]+)s \| mean loss\s*(\S+)", log.getvalue()
        )
        times = torch.tensor([float(t) for t, _ in epoch_log]).cumsum(0).tolist()
        curve = [(t, float(loss)) for t, (_, loss) in zip(times, epoch_log, strict=True)]
        interrupted = bool(limit) and stamps[-1] - stamps[0] >= limit
        return model, stamps, seconds, len(stamps) - interrupted, curve

    _, stamps, *_ = fit(1, s["calibration_steps"], 0)  # the first step is left out
    s_per_step = (stamps[-1] - stamps[1]) / (len(stamps) - 2)
    steps = max(1, int(s["budget_s"] / s_per_step))
    per_epoch = max(1, round(steps / 100))  # ~100 epochs: pfns updates the lr once per epoch
    epochs = max(1, steps // per_epoch)
    warmup = max(1, round(epochs * s["warmup_fraction"]))
    model, _, seconds, steps, curve = fit(epochs, per_epoch, warmup, s["budget_s"])
    return {
        "calibrated_s_per_step": s_per_step,
        "schedule_steps": epochs * per_epoch,
        "steps": steps,
        "train_seconds": seconds,
        "loss_curve": curve,
        "prior_s_per_batch": seconds_per_call(gp_batch, 5),
        "nll": _held_out_nll(
            work, lambda xt, yt, xs, ys: model.criterion(model(x=xt, y=yt, test_x=xs), ys)
        ),
    }


if __name__ == "__main__":  # one run: python -m priorfit.bench.train_speed WORK PACKAGE PRECISION
    work_dir, package, precision = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    knobs = json.loads((work_dir / "settings.json").read_text())
    torch.set_num_threads(knobs["threads"])
    torch.manual_seed(0)
    trainer = _train_priorfit if package == "priorfit" else _train_pfns
    result = trainer(knobs, work_dir, precision)
    (work_dir / f"{package}-{precision}.json").write_text(json.dumps(result))
