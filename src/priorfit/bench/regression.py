"""``priorfit bench regression``: PFNRegressor on real regression datasets.

The 35 PMLB datasets of ``DATA/regression`` (at most 1000 rows each), 5 random 80/20 splits
each, training sets capped at the PFN's ``max_train`` (the same capped set for every method).
Methods, all fitted on the same data:

- ``pfn``: :class:`priorfit.PFNRegressor` on ``gp-hyper``;
- ``gpr``: scikit-learn's GaussianProcessRegressor, Matérn-5/2 ARD times a constant plus white
  noise, ``normalize_y``, 3 optimiser restarts, inputs scaled to the training range;
- ``map2``: a GP with type-II MAP hyperparameters under gp-hyper's own hyperpriors (without its
  trend and irrelevant features), on the PFN's transformed data;
- ``bayesian-ridge``: scikit-learn's BayesianRidge on standardised inputs;
- ``gbm``: scikit-learn's GradientBoostingRegressor (point predictions: RMSE only).

Scores: test NLL (mean per point, units of y), RMSE, and fit + predict seconds per split.
Datasets differ in scale, so methods are compared by mean rank over datasets (NLL among the
probabilistic methods, RMSE among all), and by the NLL and RMSE of standardised targets (NLL minus
the log standard deviation of the dataset's targets; RMSE divided by it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import norm, rankdata

from priorfit.baselines import map2
from priorfit.bench import Result, mean_se
from priorfit.model import load
from priorfit.priors import prior_from_config
from priorfit.tabular import PFNRegressor

SPLITS = 5
TEST_FRACTION = 0.2
SEED = 20_221_125
PROBABILISTIC = ("pfn", "gpr", "map2", "bayesian-ridge")
METHODS = (*PROBABILISTIC, "gbm")


def run(quick: bool, data: Path, model_name: str = "gp-hyper") -> Result:
    folder = data / "regression"
    if not (folder / "manifest.json").exists():
        raise ValueError(f"no regression datasets in {folder} (pass --data DIR)")
    manifest = json.loads((folder / "manifest.json").read_text())
    if quick:
        manifest = sorted(manifest, key=lambda entry: entry["n_rows"])[:2]
    model = load(model_name)
    max_train = model.card["train"]["max_train"]
    splits = 1 if quick else SPLITS
    config = {"model": model_name, "datasets": [e["name"] for e in manifest], "splits": splits,
              "test_fraction": TEST_FRACTION, "max_train": max_train}
    rows = []
    for entry in manifest:
        table = np.loadtxt(folder / entry["file"], delimiter=",", skiprows=1, ndmin=2)
        X, y = table[:, :-1], table[:, -1]
        scores = [score_split(model, X, y, split, max_train, quick) for split in range(splits)]
        y_std = float(y.std())
        for method in METHODS:
            nll = [s[method]["nll"] for s in scores]
            rmse = [s[method]["rmse"] for s in scores]
            row = {"method": method, "setting": entry["name"], "n": len(scores[0]["train"]),
                   "features": X.shape[1], "rmse": float(np.mean(rmse)),
                   "rmse_standardized": float(np.mean(rmse)) / y_std,
                   "seconds_per_task": float(np.mean([s[method]["seconds"] for s in scores]))}
            if method in PROBABILISTIC:
                row["nll"], row["nll_se"] = mean_se(nll)
                row["nll_standardized"] = row["nll"] - math.log(y_std)
            rows.append(row)
    summary = summarise(rows)
    return Result(config, rows, summary, table_of(summary))


def score_split(model, X, y, split: int, max_train: int, quick: bool) -> dict:
    """Fit every method on one random split; NLL, RMSE and seconds per method."""
    rng = np.random.default_rng(SEED + split)
    order = rng.permutation(len(y))
    num_test = max(1, round(TEST_FRACTION * len(y)))
    test, train = order[:num_test], order[num_test:][:max_train]
    X_train, y_train, X_test, y_test = X[train], y[train], X[test], y[test]
    scores = {"train": train}
    for method in METHODS:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence and ensembling warnings
            mean, _, nll = FIT_PREDICT[method](model, X_train, y_train, X_test, y_test, quick)
        seconds = time.perf_counter() - start
        scores[method] = {"nll": nll, "rmse": float(np.sqrt(np.mean((mean - y_test) ** 2))),
                          "seconds": seconds}
    return scores


def _pfn(model, X, y, Xs, ys, quick):
    regressor = PFNRegressor(model).fit(X, y)
    dist = regressor.predict_dist(Xs)
    return dist.mean.numpy(), dist.stddev.numpy(), -regressor.log_likelihood(Xs, ys)


def _gaussian(mean, std, ys):
    return mean, std, float(-norm.logpdf(ys, mean, np.maximum(std, 1e-300)).mean())


def _gpr(model, X, y, Xs, ys, quick):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
    from sklearn.preprocessing import MinMaxScaler

    scaler = MinMaxScaler().fit(X)
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        np.ones(X.shape[1]), (1e-3, 1e3), nu=2.5
    ) + WhiteKernel(0.1, (1e-6, 10.0))
    gpr = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=0 if quick else 3,
                                   random_state=0).fit(scaler.transform(X), y)
    return _gaussian(*gpr.predict(scaler.transform(Xs), return_std=True), ys)


def _map2(model, X, y, Xs, ys, quick):
    import torch

    from priorfit.transforms import fit_transform

    prior = dataclasses.replace(
        prior_from_config(model.card["prior"]), irrelevant_prob=0.0, trend_std=0.0
    )
    config = model.config
    tensors = [torch.from_numpy(a)[None] for a in (X, y, Xs)]
    transform = fit_transform(config.x_transform, config.y_transform, *tensors[:2])
    x, yt, xs = transform.x(tensors[0])[0], transform.y(tensors[1])[0], transform.x(tensors[2])[0]
    predictive = map2(x.numpy(), yt.numpy(), xs.numpy(), prior, restarts=1 if quick else 3)
    loc, scale = float(transform.y_loc), float(transform.y_scale)
    mean = loc + scale * predictive.mean[0]
    std = scale * np.sqrt(predictive.var[0])
    return _gaussian(mean, std, ys)


def _bayesian_ridge(model, X, y, Xs, ys, quick):
    from sklearn.linear_model import BayesianRidge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ridge = make_pipeline(StandardScaler(), BayesianRidge()).fit(X, y)
    return _gaussian(*ridge.predict(Xs, return_std=True), ys)


def _gbm(model, X, y, Xs, ys, quick):
    from sklearn.ensemble import GradientBoostingRegressor

    mean = GradientBoostingRegressor(random_state=0).fit(X, y).predict(Xs)
    return mean, None, None


FIT_PREDICT = {"pfn": _pfn, "gpr": _gpr, "map2": _map2, "bayesian-ridge": _bayesian_ridge,
               "gbm": _gbm}


def summarise(rows: list[dict]) -> dict:
    """Mean ranks over datasets and means of the standardised scores, per method."""
    datasets = sorted({r["setting"] for r in rows})
    by = {(r["setting"], r["method"]): r for r in rows}

    def ranks(methods, key):
        table = np.array([[by[d, m][key] for m in methods] for d in datasets])
        return dict(zip(methods, rankdata(table, axis=1).mean(0).tolist(), strict=True))

    nll_rank, rmse_rank = ranks(PROBABILISTIC, "nll"), ranks(METHODS, "rmse")
    summary = {"datasets": len(datasets), "methods": {}}
    for method in METHODS:
        entry = {"rmse_rank": rmse_rank[method],
                 "rmse_standardized": mean_se([by[d, method]["rmse_standardized"]
                                               for d in datasets]),
                 "seconds_per_task": float(np.mean([by[d, method]["seconds_per_task"]
                                                    for d in datasets]))}
        if method in PROBABILISTIC:
            entry["nll_rank"] = nll_rank[method]
            entry["nll_standardized"] = mean_se([by[d, method]["nll_standardized"]
                                                 for d in datasets])
        summary["methods"][method] = entry
    best = min(PROBABILISTIC, key=lambda m: nll_rank[m])
    summary["target_best_nll_rank"] = {"best": best, "met": best == "pfn"}
    return summary


def table_of(summary: dict) -> str:
    lines = [f"{summary['datasets']} datasets",
             f"{'method':<15}{'NLL rank':>9}{'std. NLL':>16}{'RMSE rank':>10}"
             f"{'std. RMSE':>16}{'s/split':>9}"]
    for method, e in summary["methods"].items():
        nll = e.get("nll_standardized")
        lines.append(
            f"{method:<15}{e.get('nll_rank', float('nan')):>9.2f}"
            + (f"{nll[0]:>9.3f} ± {nll[1]:.3f}" if nll else f"{'':>16}")
            + f"{e['rmse_rank']:>10.2f}{e['rmse_standardized'][0]:>9.3f} ± "
            f"{e['rmse_standardized'][1]:.3f}{e['seconds_per_task']:>9.3f}"
        )
    return "\n".join(lines)


def plot(result: Result, out: Path) -> list[Path]:
    """Per dataset, the standardised NLL of each baseline against the PFN's."""
    from priorfit.plots import pyplot

    plt = pyplot()
    by = {(r["setting"], r["method"]): r for r in result.rows}
    datasets = sorted({r["setting"] for r in result.rows})
    pfn = np.array([by[d, "pfn"]["nll_standardized"] for d in datasets])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for method in PROBABILISTIC[1:]:
        other = np.array([by[d, method]["nll_standardized"] for d in datasets])
        ax.scatter(pfn, np.clip(other, None, pfn.max() + 3), s=14, label=method)
    low, high = pfn.min() - 0.3, pfn.max() + 3
    ax.plot([low, high], [low, high], "k--", lw=1)
    ax.set_xlabel("PFN test NLL (standardised targets)")
    ax.set_ylabel("baseline test NLL (clipped)")
    ax.set_title("above the diagonal: the PFN is better")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "regression_nll.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
