"""``priorfit bench recipe``: which training recipe gets closest to exact inference per CPU-minute.

For the paper's §5.1 prior (``gp-paper``) and the 1-D prior (``gp-1d``), each at the model size
of its shipped config, one training run per recipe on one thread, stopped at the largest
budget:

- ``baseline``: the recipe these models were first shipped with (:data:`BASELINE`: AdamW,
  cosine over a step count sized to the budget from a measured step time, float32);
- each change alone on top of it (:data:`CHANGES`): ``time-clock`` (the cosine follows wall
  time, so the run anneals at the budget), ``lr-x3``, ``muon``, ``ema`` (weight averaging),
  ``wsd`` (warm-up, stable, decay on the time clock), ``auto-precision`` (float32 or
  bfloat16, timed), ``residual-scale`` (LayerScale gains from 0.1), ``curriculum`` (the first
  quarter of the run on datasets and batches that grow from a quarter of their size),
  ``uniform-cut`` (training-set sizes uniform instead of the paper's weighting) and
  ``per-dataset-cut`` (a training-set size per dataset instead of per batch);
- ``best``: every change that lowered the validation gap at the largest budget, together;
- ``shipped``: the recipe in the shipped model's card, of its first stage when it was trained in
  stages (:func:`~priorfit.train.warm_start.first_stage_card`; its ``configs/*.toml``).

Curves: the validation gap to the exact GP (the loop's own held-out validation batches) against
training wall time, read at each budget; the changes for ``best`` are chosen on it. Final
scores: held-out datasets that no run saw and no choice used (200 per training-set size, one
test point each, as ``bench gp`` but other seeds), gap to the exact posterior.

Compute scaling (``gp-paper``, the shipped recipe): three model sizes (:data:`SIZES`) times three
budgets (:data:`SCALING_BUDGETS_MIN`), one run per cell, each annealed at its own budget, scored
on the same held-out data: which size to train for a given budget.

The machine's load (``os.getloadavg`` before and after each run) and its CPU
(:func:`~priorfit.bench.machine`) are recorded with each run: runs from different CPUs do not
compare like with like. The full protocol trains for about nine and a half hours, more than one
session of a two-core machine, so each finished training run's scores are kept in the score
ledger :data:`RUN_CACHE`, in git (keyed by everything that defines the run, the machine
included), and a rerun on any checkout on the same kind of machine skips them; :func:`run`
also takes subsets. ``--quick`` runs never use the ledger.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from priorfit.bench import Result, cached, machine, mean_se
from priorfit.train.warm_start import first_stage_configs

PRIORS = ("gp-paper", "gp-1d")
BUDGETS_MIN = (2.5, 5.0, 10.0, 20.0)
# the first shipped configs' learning rates and warm-up shares (200 of 10 000 and of 8 000 steps)
BASELINE = {"gp-paper": {"lr": 7e-4, "warmup_fraction": 0.02},
            "gp-1d": {"lr": 5e-4, "warmup_fraction": 0.025}}
CHANGES = {
    "time-clock": {"schedule_clock": "time"},
    "lr-x3": {"lr_scale": 3.0},
    "muon": {"optimizer": "muon"},
    "ema": {"ema_decay": 0.995},
    "wsd": {"lr_schedule": "wsd", "schedule_clock": "time"},
    "auto-precision": {"precision": "auto"},
    "residual-scale": {"model": {"residual_scale": 0.1}},
    "curriculum": {"ramp_fraction": 0.25},
    "uniform-cut": {"train_size_sampling": "uniform"},
    "per-dataset-cut": {"train_size_per_dataset": True},
}
RECIPE_FIELDS = ("optimizer", "lr", "lr_schedule", "schedule_clock", "cooldown_fraction",
                 "ema_decay", "precision")
SIZES = {"small": {"d_model": 64, "num_layers": 4, "d_ff": 128},
         "shipped": {},
         "large": {"d_model": 192, "num_layers": 8, "d_ff": 384}}
SCALING_BUDGETS_MIN = (2.5, 5.0, 10.0)
HELD_OUT_SEED = 31_415_926  # not bench gp's or train-speed's held-out data
RUN_CACHE = Path("benchmarks/recipe-runs.jsonl")  # the score ledger, kept in git
HELD_OUT_SIZES = {"gp-paper": (1, 2, 4, 8, 16, 32, 64, 100), "gp-1d": (1, 2, 4, 8, 16, 32, 50)}


def run(quick: bool, data: Path, budgets_min: tuple[float, ...] | None = None,
        priors: tuple[str, ...] | None = None, changes: dict | None = None,
        scaling_budgets_min: tuple[float, ...] | None = None) -> Result:
    """Train every recipe on every prior, then the compute-scaling table (none with
    ``scaling_budgets_min=()``); ``quick``: 1-D prior, two changes, 3 s and 6 s, scaling at 3 s."""
    budgets = budgets_min or ((0.05, 0.1) if quick else BUDGETS_MIN)
    priors = priors or (("gp-1d",) if quick else PRIORS)
    changes = changes or ({k: CHANGES[k] for k in ("time-clock", "curriculum")} if quick
                          else CHANGES)
    if scaling_budgets_min is None:
        scaling_budgets_min = (0.05,) if quick else SCALING_BUDGETS_MIN
    per_size = 50 if quick else 200
    cache = None if quick else RUN_CACHE
    rows, summary = [], {}
    for name in priors:
        prior, model_config, shipped = first_stage_configs(name)
        base = _baseline(name, shipped)
        held_out = _held_out(prior, HELD_OUT_SIZES[name], per_size)

        def score(overrides, prior=prior, model_config=model_config, base=base,
                  held_out=held_out):
            return _cached(cache, prior, model_config, base, overrides, budgets, held_out)

        results = {}
        for recipe, overrides in [("baseline", {}), *changes.items()]:
            results[recipe] = score(overrides)
        # chosen on the runs' own validation batches at the largest budget, never on held-out data
        final = str(budgets[-1])
        helped = [r for r in changes if _below(results[r], results["baseline"], final)]
        best = _combine(changes[r] for r in helped)
        if len(helped) > 1:
            results["best"] = score(best)
        results["shipped"] = score(_recipe_of(shipped))
        for recipe, result in results.items():
            rows.append({"method": recipe, "setting": name, "n": "all", **result})
        summary[name] = {
            "helped": helped,
            "lowest_held_out_gap": min(results, key=lambda r: results[r]["gap"]),
            "gap_by_recipe": {r: results[r]["gap"] for r in results},
        }
    if scaling_budgets_min:
        scaling = _scaling_rows("gp-1d" if quick else "gp-paper", scaling_budgets_min, per_size,
                                cache)
        rows += scaling
        summary["scaling_best_size"] = {
            str(b): min((r for r in scaling if r["budget_min"] == b), key=lambda r: r["gap"])
            ["method"] for b in scaling_budgets_min}
    config = {"budgets_min": list(budgets), "priors": list(priors), "changes": changes,
              "baseline": BASELINE, "sizes": SIZES,
              "scaling_budgets_min": list(scaling_budgets_min),
              "held_out_per_size": per_size, "threads": torch.get_num_threads()}
    return Result(config, rows, summary, table(rows))


def _baseline(name: str, shipped):
    """The shipped config's batches and validation with the first shipped recipe."""
    settings = BASELINE[name]
    return dataclasses.replace(shipped, optimizer="adamw", lr=settings["lr"],
                               lr_schedule="cosine", schedule_clock="steps", ema_decay=0.0,
                               precision="float32", steps=10_000,
                               warmup_steps=round(10_000 * settings["warmup_fraction"]))


def _recipe_of(config) -> dict:
    """A train config's recipe as overrides of :func:`_train_and_score`."""
    return {k: getattr(config, k) for k in RECIPE_FIELDS}


def _combine(overrides) -> dict:
    """One set of overrides from several (model overrides merged, not replaced)."""
    combined: dict = {}
    for override in overrides:
        for key, value in override.items():
            combined[key] = {**combined.get(key, {}), **value} if key == "model" else value
    return combined


def _held_out(prior, sizes, per_size: int) -> dict:
    data = {}
    for n in sizes:
        generator = torch.Generator().manual_seed(HELD_OUT_SEED + n)
        batch = prior.sample(per_size, n + 1, generator=generator)
        x, y = batch.x, batch.y
        exact = -prior.log_prob(x[:, :n], y[:, :n], x[:, n:], y[:, n:])[:, 0]
        data[n] = (x, y, exact)
    return data


def _cached(cache: Path | None, prior, model_config, base, overrides: dict, budgets,
            held_out) -> dict:
    """:func:`_train_and_score`, or its result from an earlier identical run in ``cache`` on
    the same kind of machine (:func:`~priorfit.bench.machine`: a run's steps per minute, and so
    its scores, depend on the CPU, and the protocol compares recipes within one machine)."""
    from priorfit.priors.base import prior_to_config

    identity = {"prior": prior_to_config(prior), "model": dataclasses.asdict(model_config),
                "base": dataclasses.asdict(base), "overrides": overrides,
                "budgets": list(budgets), "seed": HELD_OUT_SEED,
                "held_out": {str(n): len(x) for n, (x, _, _) in held_out.items()},
                "machine": machine()}
    return cached(cache, identity,
                  lambda: _train_and_score(prior, model_config, base, overrides, budgets,
                                           held_out))


def _train_and_score(prior, model_config, base, overrides: dict, budgets, held_out) -> dict:
    """One run to the largest budget: validation gap at each budget, then held-out scores.

    ``overrides`` are TrainConfig fields, plus ``lr_scale`` (times the base learning rate),
    ``model`` (ModelConfig fields) and ``ramp_fraction`` (the curriculum of
    :func:`priorfit.train.data.config_at_step` over that share of the calibrated steps, from a
    quarter of the batch and of the dataset length)."""
    from priorfit import train

    overrides = dict(overrides)
    lr = overrides.pop("lr", base.lr) * overrides.pop("lr_scale", 1.0)
    model_config = dataclasses.replace(model_config, **overrides.pop("model", {}))
    ramp_fraction = overrides.pop("ramp_fraction", 0.0)
    limit = 60.0 * max(budgets)
    with tempfile.TemporaryDirectory() as tmp:
        quiet = dict(checkpoint_every=10**9, log_every=10, num_workers=0, device="cpu",
                     border_datasets=min(base.border_datasets, 2048), val_batches=4)
        # the steps are timed in the run's own precision and optimizer: timed in float32, a
        # bfloat16 run finished its schedule in 11 of its 20 minutes
        timed = {"precision": overrides.pop("precision", "float32"),
                 "optimizer": overrides.pop("optimizer", base.optimizer)}
        config = dataclasses.replace(base, lr=lr, time_limit_s=limit, **timed, **quiet)
        steps = _steps_for(prior, model_config, config, limit, Path(tmp))
        warmup = max(1, round(steps * base.warmup_steps / base.steps))
        if ramp_fraction:
            overrides.update(ramp_steps=max(1, round(ramp_fraction * steps)),
                             seq_len_start=max(base.min_train + 1, base.seq_len // 4),
                             batch_size_start=max(1, base.batch_size // 4))
        on_clock = overrides.get("schedule_clock", base.schedule_clock) == "time"
        config = dataclasses.replace(config, steps=10**9 if on_clock else steps,
                                     warmup_steps=warmup, val_every=max(1, steps // 40),
                                     out_dir=tmp + "/run", **overrides)
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        model = train(prior, config, model_config, progress=False)
        seconds = time.perf_counter() - start
        records = _records(Path(tmp) / "run")
    curve = [(r["elapsed_s"], r["val_gap"]) for r in records if "val_gap" in r]
    at_budget = {str(b): _last_before(curve, 60.0 * b) for b in budgets}
    gaps, nlls = [], []
    with torch.inference_mode():
        for n, (x, y, exact) in held_out.items():
            nll = -model.predict(x[:, :n], y[:, :n], x[:, n:]).log_prob(y[:, n:])[:, 0].double()
            gaps.append(mean_se((nll - exact).tolist())[0])
            nlls.append(float(nll.mean()))
    return {"gap": sum(gaps) / len(gaps), "nll": sum(nlls) / len(nlls),
            "gap_by_n": dict(zip(map(str, held_out), gaps, strict=True)),
            "val_gap_at_budget_min": at_budget, "curve": curve, "steps": model.card["steps"],
            "datasets_seen": model.card["datasets_seen"], "train_seconds": seconds,
            "precision": model.card["precision"], "parameters": model.num_parameters(),
            "load_before": load_before, "load_after": os.getloadavg()[0], "machine": machine(),
            "recipe": _recipe_of(config), "model": dataclasses.asdict(model_config)}


def _scaling_rows(name: str, budgets_min, per_size: int, cache: Path | None) -> list[dict]:
    """The shipped recipe at each model size of :data:`SIZES` and each budget: one run each."""
    prior, model_config, shipped = first_stage_configs(name)
    base = _baseline(name, shipped)
    held_out = _held_out(prior, HELD_OUT_SIZES[name], per_size)
    rows = []
    for size, fields in SIZES.items():
        for budget in budgets_min:
            result = _cached(cache, prior, model_config, base,
                             {**_recipe_of(shipped), "model": fields}, (budget,), held_out)
            rows.append({"method": size, "setting": f"scaling-{name}", "n": "all",
                         "budget_min": budget, **result})
    return rows


def _steps_for(prior, model_config, config, limit: float, work: Path) -> int:
    """Steps that fit in ``limit`` seconds, from the time of 10 calibration steps."""
    from priorfit import train

    probe = dataclasses.replace(config, steps=12, warmup_steps=1, log_every=1, val_every=10**9,
                                time_limit_s=0.0, out_dir=str(work / "calibration"))
    train(prior, probe, model_config, progress=False)
    times = [r["elapsed_s"] for r in _records(work / "calibration") if "loss" in r]
    return max(1, int(limit / ((times[-1] - times[1]) / (len(times) - 2))))


def _below(result: dict, reference: dict, budget: str) -> bool:
    gap, ref = result["val_gap_at_budget_min"][budget], reference["val_gap_at_budget_min"][budget]
    return gap is not None and ref is not None and gap < ref


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _last_before(curve: list, seconds: float) -> float | None:
    before = [gap for t, gap in curve if t <= seconds]
    return before[-1] if before else None


def table(rows: list[dict]) -> str:
    recipes = [r for r in rows if "budget_min" not in r]
    scaling = [r for r in rows if "budget_min" in r]
    lines = []
    if recipes:
        budgets = list(recipes[0]["val_gap_at_budget_min"])
        lines.append(f"{'prior':<9} {'recipe':<15} " + " ".join(f"{b + ' min':>9}" for b in budgets)
                     + f" {'held-out gap':>12} {'steps':>7} {'precision':>9}  cpu")
        for r in recipes:
            cells = " ".join("      —  " if g is None else f"{g:9.3f}"
                             for g in r["val_gap_at_budget_min"].values())
            lines.append(f"{r['setting']:<9} {r['method']:<15} {cells} {r['gap']:12.3f} "
                         f"{r['steps']:7d} {r['precision']:>9}  {r['machine']['cpu']}")
    if scaling:
        budgets = sorted({r["budget_min"] for r in scaling})
        lines.append(f"\ncompute scaling ({scaling[0]['setting']}): held-out gap")
        lines.append(f"{'size':<8} {'parameters':>10} " + " ".join(f"{f'{b} min':>9}"
                                                                   for b in budgets))
        for size in dict.fromkeys(r["method"] for r in scaling):
            cells = {r["budget_min"]: r for r in scaling if r["method"] == size}
            lines.append(f"{size:<8} {cells[budgets[0]]['parameters']:>10} "
                         + " ".join(f"{cells[b]['gap']:9.3f}" for b in budgets))
    return "\n".join(lines)


def plot(result: Result, out: Path) -> list[Path]:
    from priorfit.plots import pyplot

    plt = pyplot()
    paths = []
    for name in result.config["priors"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in (r for r in result.rows if r["setting"] == name):
            t, gap = zip(*r["curve"], strict=True) if r["curve"] else ((), ())
            ax.plot([s / 60 for s in t], gap, label=f"{r['method']} ({r['gap']:.3f})")
        ax.set(xlabel="training wall time (min)", ylabel="validation gap to exact GP (nats)",
               yscale="log", title=f"{name}: recipes (held-out gap in brackets)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / f"recipe_{name}.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    scaling = [r for r in result.rows if "budget_min" in r]
    if scaling:
        fig, ax = plt.subplots(figsize=(5, 4))
        for size in dict.fromkeys(r["method"] for r in scaling):
            cells = sorted((r["budget_min"], r["gap"]) for r in scaling if r["method"] == size)
            ax.plot(*zip(*cells, strict=True), marker="o", label=size)
        ax.set(xlabel="training budget (CPU minutes)", ylabel="held-out gap to exact GP (nats)",
               xscale="log", yscale="log", title=f"compute scaling, {scaling[0]['setting']}")
        ax.legend()
        fig.tight_layout()
        paths.append(out / "recipe_scaling.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths
