"""``priorfit bench curves``: learning-curve extrapolation, the shipped ``curves`` PFN against
MCMC over the same parametric model, the last value and a pow3 fit (LC-PFN's evaluation).

Three kinds of curves, each cut after its first ``n`` points; every method predicts the rest:

- ``prior``: held-out curves of the model's own :class:`~priorfit.priors.CurvePrior` (seeded
  apart from training), cut at :data:`PRIOR_CUTS` epochs of 100;
- ``mlp``: real runs of ``curves/mlp_epochwise.csv.gz`` (validation accuracy, 50 epochs; the
  PFN reads them with ``horizon = 50``), :data:`MLP_RUNS_PER_DATASET` runs of every dataset,
  cut at :data:`MLP_CUTS`;
- ``lcdb``: ``curves/lcdb_valid_accuracy.csv.gz`` (accuracy against training-set size, a
  different kind of curve), :data:`LCDB_CURVES` curves with at least :data:`LCDB_MIN_ANCHORS`
  anchors, anchor ``i`` read as epoch ``i`` and ``horizon`` = the curve's anchors, cut at
  :data:`LCDB_CUTS`.

Per method and cut: the mean log density of the remaining points (``ll_rest``) and of the final
one (``ll_final``), the absolute error of the predicted mean at the final point, and seconds per
curve (the PFN also batched over all curves of a cut; MCMC one curve at a time, as emcee runs).
MCMC uses the model's prior; on the real curves with the run's own epochs
(``num_epochs = horizon``), as Domhan et al. fit curves. MCMC results are kept in
the score ledger ``runs/bench-curves.jsonl`` by curve and settings, so an interrupted run resumes.

Early stopping (``mlp``, every run): per dataset, its runs trained in order, a run stopped when
``P(final accuracy > best final so far) < δ`` for δ in :data:`DELTAS`; epochs saved and regret
per dataset (``per_dataset``) and averaged over datasets.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from priorfit.baselines.curves import last_value, mcmc, pow3_fit
from priorfit.bench import Result, cached, mean_se
from priorfit.curves import CurveExtrapolator, simulate_early_stopping
from priorfit.model import load
from priorfit.priors import CurvePrior, prior_from_config, prior_to_config

MODEL = "curves"
PRIOR_CUTS, MLP_CUTS, LCDB_CUTS = (5, 10, 20, 40, 80), (5, 10, 20, 30), (4, 8)
PRIOR_CURVES, MLP_RUNS_PER_DATASET, LCDB_CURVES, LCDB_MIN_ANCHORS = 20, 1, 20, 12
DELTAS = (0.01, 0.05, 0.1)
MCMC_SETTINGS = {"walkers": 100, "burn_in": 500, "steps": 2500}  # Domhan et al. (2015)
QUICK_MCMC_SETTINGS = {"walkers": 32, "burn_in": 50, "steps": 100}
SEED = 20_231_210  # held-out: the training stream is seeded from the config's seed
CACHE = Path("runs/bench-curves.jsonl")  # score ledger (:func:`priorfit.bench.cached`)
METHODS = ("pfn", "mcmc", "last-value", "pow3")


def run(quick: bool, data: Path, model_name: str = MODEL, cache: Path | None = CACHE) -> Result:
    model = load(model_name)
    prior = prior_from_config(model.card["prior"])
    mcmc_settings = QUICK_MCMC_SETTINGS if quick else MCMC_SETTINGS
    sizes = (3, 1, 3) if quick else (PRIOR_CURVES, MLP_RUNS_PER_DATASET, LCDB_CURVES)
    config = {"model": model_name, "prior": model.card["prior"], "mcmc": mcmc_settings,
              "prior_curves": sizes[0], "mlp_runs_per_dataset": sizes[1],
              "lcdb_curves": sizes[2], "seed": SEED, "threads": torch.get_num_threads()}
    generator = torch.Generator().manual_seed(SEED)
    prior_curves = prior.sample(sizes[0], prior.num_epochs, generator=generator).y.double()
    settings = {"prior": ([c.numpy() for c in prior_curves], (2, 10) if quick else PRIOR_CUTS)}
    mlp = _mlp_runs(data)
    chosen = mlp.groupby("dataset", sort=True).head(sizes[1])
    if quick:
        chosen = chosen.head(3)
    settings["mlp"] = (list(chosen["curve"]), (5,) if quick else MLP_CUTS)
    lcdb = _lcdb_curves(data, sizes[2])
    settings["lcdb"] = (lcdb, (4,) if quick else LCDB_CUTS)
    rows, examples = [], {}
    for setting, (curves, cuts) in settings.items():
        for cut in cuts:
            scores = _score_cut(model, prior, setting, curves, cut, mcmc_settings,
                                None if quick else cache)
            rows += _rows(setting, cut, scores)
        examples[setting] = _example(model, curves[: 4], cuts[0])
    mlp_runs = mlp if not quick else mlp[mlp["dataset"] == mlp["dataset"].iloc[0]]
    stopping = _early_stopping(model, mlp_runs, (0.05,) if quick else DELTAS)
    rows += stopping
    result = Result(config, rows, {**_summary(rows), "examples": examples})
    result.table = _table(result)
    return result


def _mlp_runs(data: Path) -> pd.DataFrame:
    """One row per run: ``dataset``, ``run`` and ``curve`` (validation accuracy ``[50]``)."""
    frame = pd.read_csv(data / "curves" / "mlp_epochwise.csv.gz")
    frame = frame.sort_values(["dataset", "run", "epoch"])
    runs = frame.groupby(["dataset", "run"], sort=True)["val_accuracy"].apply(np.asarray)
    runs = runs.reset_index().rename(columns={"val_accuracy": "curve"})
    return runs[[np.isfinite(c).all() for c in runs["curve"]]].reset_index(drop=True)


def _lcdb_curves(data: Path, count: int) -> list[np.ndarray]:
    """``count`` LCDB curves (scores by increasing training size) with enough anchors, drawn
    with the bench's seed."""
    frame = pd.read_csv(data / "curves" / "lcdb_valid_accuracy.csv.gz")
    frame = frame.sort_values(["openmlid", "learner", "size_train"])
    curves = frame.groupby(["openmlid", "learner"], sort=True)["score_valid"].apply(np.asarray)
    curves = [c for c in curves if len(c) >= LCDB_MIN_ANCHORS and np.isfinite(c).all()
              and (c >= 0).all() and (c <= 1).all()]
    picked = np.random.default_rng(SEED).choice(len(curves), min(count, len(curves)),
                                                replace=False)
    return [curves[i] for i in sorted(picked)]


def _score_cut(model, prior: CurvePrior, setting: str, curves: list[np.ndarray], cut: int,
               mcmc_settings: dict, cache: Path | None) -> dict[str, dict[str, np.ndarray | float]]:
    """Per method: ``ll_rest``, ``ll_final``, ``final_error`` ``[n_curves]`` and seconds."""
    scores = {m: {"ll_rest": [], "ll_final": [], "final_error": [], "seconds": []}
              for m in METHODS}
    by_length: dict[int, list[int]] = {}
    for i, curve in enumerate(curves):
        by_length.setdefault(len(curve), []).append(i)
    pfn, pfn_seconds, batched_seconds = {}, [], 0.0  # pfn: curve -> (log_prob, mean, rest)
    for length, members in by_length.items():
        extrapolator = CurveExtrapolator(model, horizon=length)
        prefixes = [curves[i][:cut] for i in members]
        at = np.arange(cut + 1, length + 1)
        extrapolator.predict(prefixes, at=at)  # warm-up
        start = time.perf_counter()
        predictive = extrapolator.predict(prefixes, at=at)
        batched_seconds += time.perf_counter() - start
        rest = np.stack([curves[i][cut:] for i in members])
        log_prob = predictive.log_prob(torch.tensor(rest, dtype=torch.float32)).double().numpy()
        mean = predictive.mean.double().numpy()
        pfn.update({i: (log_prob[j], mean[j], rest[j]) for j, i in enumerate(members)})
        start = time.perf_counter()
        extrapolator.predict(prefixes[:1], at=at)
        pfn_seconds.append(time.perf_counter() - start)
    for i in range(len(curves)):
        _record(scores["pfn"], *pfn[i])
    scores["pfn"]["seconds"] = float(np.median(pfn_seconds))
    scores["pfn"]["seconds_batched"] = batched_seconds / len(curves)
    for curve in curves:
        length, rest, at = len(curve), curve[cut:], np.arange(cut + 1, len(curve) + 1)
        for name, baseline in (("last-value", last_value), ("pow3", pow3_fit)):
            start = time.perf_counter()
            predictive = baseline(curve[:cut], at)
            scores[name]["seconds"].append(time.perf_counter() - start)
            _record(scores[name], predictive.log_prob(rest).numpy(), predictive.mean.numpy(), rest)
        identity = {"setting": setting, "curve": curve.round(6).tolist(), "cut": cut,
                    "mcmc": mcmc_settings, "prior": prior_to_config(prior), "num_epochs": length}
        curve_prior = dataclasses.replace(prior, num_epochs=length)
        result = cached(cache, identity,
                        lambda c=curve, p=curve_prior: _mcmc_scores(p, c, cut, mcmc_settings))
        scores["mcmc"]["seconds"].append(result["seconds"])
        _record(scores["mcmc"], np.array(result["log_prob"]), np.array(result["mean"]), rest)
    for name in ("last-value", "pow3", "mcmc"):
        scores[name]["seconds"] = float(np.median(scores[name]["seconds"]))
    return scores


def _mcmc_scores(prior: CurvePrior, curve: np.ndarray, cut: int, settings: dict) -> dict:
    start = time.perf_counter()
    predictive, info = mcmc(prior, curve[:cut], np.arange(cut + 1, len(curve) + 1), **settings)
    seconds = time.perf_counter() - start
    return {"log_prob": predictive.log_prob(curve[cut:]).tolist(),
            "mean": predictive.mean.tolist(), "seconds": seconds,
            "acceptance": info.acceptance}


def _record(score: dict, log_prob: np.ndarray, mean: np.ndarray, rest: np.ndarray) -> None:
    score["ll_rest"].append(float(np.mean(log_prob)))
    score["ll_final"].append(float(log_prob[-1]))
    score["final_error"].append(float(abs(mean[-1] - rest[-1])))


def _rows(setting: str, cut: int, scores: dict) -> list[dict]:
    rows = []
    for method, score in scores.items():
        row = {"method": method, "setting": setting, "n": cut, "curves": len(score["ll_rest"])}
        for key in ("ll_rest", "ll_final", "final_error"):
            row[key], row[f"{key}_se"] = mean_se(score[key])
        row["seconds_per_curve"] = score["seconds"]
        if "seconds_batched" in score:
            row["seconds_per_curve_batched"] = score["seconds_batched"]
        rows.append(row)
    return rows


def _early_stopping(model, runs: pd.DataFrame, deltas) -> list[dict]:
    """Rows of the early-stopping simulation per δ, averaged over datasets."""
    extrapolator = CurveExtrapolator(model, horizon=len(runs["curve"].iloc[0]))
    rows = []
    for delta in deltas:
        savings, regrets, stopped, per_dataset = [], [], [], []
        for dataset, group in runs.groupby("dataset", sort=True):
            outcome = simulate_early_stopping(extrapolator, list(group["curve"]), delta=delta)
            savings.append(outcome.saving)
            regrets.append(100 * outcome.regret)
            stopped.append(float(outcome.stopped.mean()))
            per_dataset.append({"dataset": dataset, "runs": len(group), "saving": savings[-1],
                                "regret_points": regrets[-1], "stopped_fraction": stopped[-1]})
        row = {"method": "pfn-early-stopping", "setting": "mlp", "n": extrapolator.horizon,
               "delta": delta, "datasets": len(savings)}
        row["saving"], row["saving_se"] = mean_se(savings)
        row["regret_points"], row["regret_points_se"] = mean_se(regrets)
        row["max_regret_points"] = max(regrets)
        row["stopped_fraction"] = float(np.mean(stopped))
        row["per_dataset"] = per_dataset
        rows.append(row)
    return rows


def _example(model, curves: list[np.ndarray], cut: int) -> dict:
    """Bands of the PFN for a few curves cut at ``cut`` (for the plot)."""
    length = len(curves[0])
    same = [c for c in curves if len(c) == length]
    extrapolator = CurveExtrapolator(model, horizon=length)
    at = np.arange(cut + 1, length + 1)
    predictive = extrapolator.predict([c[:cut] for c in same], at=at)
    return {"curves": [c.tolist() for c in same], "cut": cut, "at": at.tolist(),
            "mean": predictive.mean.tolist(), "lower": predictive.icdf(0.05).tolist(),
            "upper": predictive.icdf(0.95).tolist()}


def _summary(rows: list[dict]) -> dict:
    summary = {}
    for setting in dict.fromkeys(r["setting"] for r in rows if "ll_rest" in r):
        cuts = sorted({r["n"] for r in rows if r["setting"] == setting and "ll_rest" in r})
        by = {(r["method"], r["n"]): r for r in rows if r["setting"] == setting and "ll_rest" in r}
        summary[setting] = {
            "pfn_above_mcmc_every_cut": all(by["pfn", c]["ll_rest"] > by["mcmc", c]["ll_rest"]
                                            for c in cuts),
            "pfn_best_ll_and_error_every_cut": all(
                by["pfn", c][key] == (max if key == "ll_rest" else min)(
                    by[m, c][key] for m in METHODS)
                for c in cuts for key in ("ll_rest", "final_error")),
            "mcmc_over_pfn_seconds_per_curve": {
                c: by["mcmc", c]["seconds_per_curve"] / by["pfn", c]["seconds_per_curve"]
                for c in cuts},
            "mcmc_over_pfn_batched_seconds_per_curve": {
                c: by["mcmc", c]["seconds_per_curve"] / by["pfn", c]["seconds_per_curve_batched"]
                for c in cuts},
        }
    stopping = [r for r in rows if r["method"] == "pfn-early-stopping"]
    if stopping:
        summary["early_stopping"] = {r["delta"]: {"saving": r["saving"],
                                                  "regret_points": r["regret_points"]}
                                     for r in stopping}
    return summary


def _table(result: Result) -> str:
    lines = [f"{'setting':8} {'n':>3} {'method':11} {'ll rest':>15} {'ll final':>15} "
             f"{'|final err|':>17} {'s/curve':>9} {'batched':>9}"]
    for r in result.rows:
        if "ll_rest" not in r:
            continue
        batched = r.get("seconds_per_curve_batched")
        lines.append(
            f"{r['setting']:8} {r['n']:>3} {r['method']:11} "
            f"{r['ll_rest']:7.3f} ± {r['ll_rest_se']:5.3f} "
            f"{r['ll_final']:7.3f} ± {r['ll_final_se']:5.3f} "
            f"{r['final_error']:7.4f} ± {r['final_error_se']:6.4f} {r['seconds_per_curve']:9.4f} "
            + (f"{batched:9.5f}" if batched is not None else ""))
    for r in result.rows:
        if r["method"] == "pfn-early-stopping":
            lines.append(f"early stopping δ={r['delta']:<5}: {r['saving']:.2f}× fewer epochs, "
                         f"regret {r['regret_points']:.2f} ± {r['regret_points_se']:.2f} points "
                         f"(max {r['max_regret_points']:.2f}) over {r['datasets']} datasets")
    return "\n".join(lines)


def plot(result: Result, out: Path) -> list[Path]:
    from priorfit.plots import plot_curves, pyplot

    paths = []
    for setting, example in result.summary["examples"].items():
        curves = example["curves"]
        length = max(len(c) for c in curves)
        observed = np.full((len(curves), length), np.nan)
        for i, c in enumerate(curves):
            observed[i, : example["cut"]] = c[: example["cut"]]
        path = out / f"curves_examples_{setting}.png"
        plot_curves(path, [f"{setting} {i}" for i in range(len(curves))], observed,
                    np.array(example["at"]), np.array(example["mean"]),
                    np.array(example["lower"]), np.array(example["upper"]), "accuracy")
        paths.append(path)
    plt = pyplot()
    settings = list(dict.fromkeys(r["setting"] for r in result.rows if "ll_rest" in r))
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        for method in METHODS:
            rows = [r for r in result.rows if r["setting"] == setting and r["method"] == method]
            ax.errorbar([r["n"] for r in rows], [r["ll_rest"] for r in rows],
                        yerr=[r["ll_rest_se"] for r in rows], marker="o", capsize=3,
                        label=method)
        ax.set_xscale("log")
        ax.set_xlabel("points observed (cut)")
        ax.set_ylabel("mean log density of the remaining points")
        ax.set_title(setting)
        ax.legend()
    fig.tight_layout()
    path = out / "curves_ll_vs_cut.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [*paths, path]
