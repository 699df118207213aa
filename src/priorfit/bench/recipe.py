"""``priorfit bench recipe``: which training recipe gets closest to exact inference per CPU-minute.

For the paper's §5.1 prior (``gp-paper``) and the 1-D prior (``gp-1d``), each at the model size
of its shipped config, one training run per recipe on one thread, stopped at the largest
budget:

- ``today``: the shipped config (AdamW, cosine over a step count sized to the budget from a
  measured step time, float32);
- each change alone on top of it: ``time-clock`` (the cosine follows wall time, so the run
  anneals at the budget), ``lr-x3``, ``muon``, ``ema`` (weight averaging), ``wsd``
  (warm-up, stable, decay on the time clock), ``auto-precision`` (float32 or bfloat16, timed);
- ``best``: every change that lowered the validation gap at the largest budget, together.

Curves: the validation gap to the exact GP (the loop's own held-out validation batches) against
training wall time, read at each budget; the changes for ``best`` are chosen on it. Final
scores: held-out datasets that no run saw and no choice used (200 per training-set size, one
test point each, as ``bench gp`` but other seeds), gap to the exact posterior. The
machine's load is recorded (``os.getloadavg`` before and after each run).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from priorfit.bench import Result, mean_se

PRIORS = ("gp-paper", "gp-1d")
BUDGETS_MIN = (2.5, 5.0, 10.0, 20.0)
CHANGES = {
    "time-clock": {"schedule_clock": "time"},
    "lr-x3": {"lr_scale": 3.0},
    "muon": {"optimizer": "muon"},
    "ema": {"ema_decay": 0.995},
    "wsd": {"lr_schedule": "wsd", "schedule_clock": "time"},
    "auto-precision": {"precision": "auto"},
}
HELD_OUT_SEED = 31_415_926  # not bench gp's or train-speed's held-out data
SIZES = {"gp-paper": (1, 2, 4, 8, 16, 32, 64, 100), "gp-1d": (1, 2, 4, 8, 16, 32, 50)}


def run(quick: bool, data: Path, budgets_min: tuple[float, ...] | None = None,
        priors: tuple[str, ...] | None = None, changes: dict | None = None) -> Result:
    """Train every recipe on every prior; ``quick``: 1-D prior, two changes, 6 s and 12 s."""
    budgets = budgets_min or ((0.1, 0.2) if quick else BUDGETS_MIN)
    priors = priors or (("gp-1d",) if quick else PRIORS)
    changes = changes or ({k: CHANGES[k] for k in ("time-clock", "ema")} if quick else CHANGES)
    per_size = 50 if quick else 200
    rows, summary = [], {}
    for name in priors:
        prior, model_config, base = _shipped(name)
        held_out = _held_out(prior, SIZES[name], per_size)
        results = {}
        for recipe, overrides in [("today", {}), *changes.items()]:
            results[recipe] = _train_and_score(prior, model_config, base, overrides, budgets,
                                               held_out)
        # chosen on the runs' own validation batches at the largest budget, never on held-out data
        final = str(budgets[-1])
        helped = [r for r in changes if _below(results[r], results["today"], final)]
        best = {k: v for r in helped for k, v in changes[r].items()}
        if len(helped) > 1:
            results["best"] = _train_and_score(prior, model_config, base, best, budgets,
                                               held_out)
        for recipe, result in results.items():
            rows.append({"method": recipe, "setting": name, "n": "all", **result})
        summary[name] = {
            "helped": helped,
            "lowest_held_out_gap": min(results, key=lambda r: results[r]["gap"]),
            "gap_by_recipe": {r: results[r]["gap"] for r in results},
        }
    config = {"budgets_min": list(budgets), "priors": list(priors), "changes": changes,
              "held_out_per_size": per_size, "threads": torch.get_num_threads()}
    return Result(config, rows, summary, table(rows))


def _shipped(name: str):
    """(prior, ModelConfig, TrainConfig) of a shipped model, from its card."""
    from priorfit import load
    from priorfit.priors.base import prior_from_config
    from priorfit.train.config import train_config_from_card

    model = load(name)
    return (prior_from_config(model.card["prior"]), model.config,
            train_config_from_card(model.card["train"], f"{name} card train"))


def _held_out(prior, sizes, per_size: int) -> dict:
    data = {}
    for n in sizes:
        generator = torch.Generator().manual_seed(HELD_OUT_SEED + n)
        batch = prior.sample(per_size, n + 1, generator=generator)
        x, y = batch.x, batch.y
        exact = -prior.log_prob(x[:, :n], y[:, :n], x[:, n:], y[:, n:])[:, 0]
        data[n] = (x, y, exact)
    return data


def _train_and_score(prior, model_config, base, overrides: dict, budgets, held_out) -> dict:
    """One run to the largest budget: validation gap at each budget, then held-out scores."""
    from priorfit import train

    overrides = dict(overrides)
    lr = base.lr * overrides.pop("lr_scale", 1.0)
    limit = 60.0 * max(budgets)
    with tempfile.TemporaryDirectory() as tmp:
        quiet = dict(checkpoint_every=10**9, log_every=10, num_workers=0, device="cpu",
                     border_datasets=min(base.border_datasets, 2048), val_batches=4)
        config = dataclasses.replace(base, precision="float32", lr=lr, time_limit_s=limit,
                                     **quiet)
        steps = _steps_for(prior, model_config, config, limit, Path(tmp))
        warmup = max(1, round(steps * base.warmup_steps / base.steps))
        config = dataclasses.replace(config, steps=steps if "schedule_clock" not in overrides
                                     else 10**9, warmup_steps=warmup,
                                     val_every=max(1, steps // 40), out_dir=tmp + "/run",
                                     **overrides)
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
    recipe = {k: getattr(config, k) for k in ("optimizer", "lr", "lr_schedule", "schedule_clock",
                                               "ema_decay", "precision", "steps")}
    return {"gap": sum(gaps) / len(gaps), "nll": sum(nlls) / len(nlls),
            "gap_by_n": dict(zip(map(str, held_out), gaps, strict=True)),
            "val_gap_at_budget_min": at_budget, "curve": curve, "steps": model.card["steps"],
            "train_seconds": seconds, "precision": model.card["precision"],
            "load_before": load_before, "load_after": os.getloadavg()[0], "recipe": recipe}


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
    budgets = list(rows[0]["val_gap_at_budget_min"])
    lines = [f"{'prior':<9} {'recipe':<15} " + " ".join(f"{b + ' min':>9}" for b in budgets)
             + f" {'held-out gap':>12} {'steps':>7} {'precision':>9}"]
    for r in rows:
        cells = " ".join("      —  " if g is None else f"{g:9.3f}"
                         for g in r["val_gap_at_budget_min"].values())
        lines.append(f"{r['setting']:<9} {r['method']:<15} {cells} {r['gap']:12.3f} "
                     f"{r['steps']:7d} {r['precision']:>9}")
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
        path = out / f"recipe_{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
