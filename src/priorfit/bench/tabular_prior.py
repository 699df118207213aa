"""``priorfit bench tabular-prior``: what the table-classification prior draws, per mechanism.

Samples batches from the default :class:`~priorfit.priors.TablePrior` and reports, for each
mechanism (MLP causal model, tree causal model, BNN, GP): the number of datasets, the mean number
of classes, the share of the majority class, the missing-value rate, the share of categorical
columns, and how learnable the datasets are: held-out accuracy (the first half of each dataset's
rows trains, the second half tests) of a logistic regression (mean-imputed, standardised) and of
a small random forest, against predicting the training rows' majority class. ``learnable`` is
the share of datasets where the better of the two beats the majority class by 10 points. Each
row also has the sampler's speed for that mechanism alone (datasets of ``SPEED_ROWS`` rows per
second, in calls of ``SPEED_BATCH`` datasets, each drawing its width); the summary has it for
the default mixture, and for batches of 100 features. The plot draws a few datasets of two
features per mechanism.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from priorfit.bench import Result
from priorfit.priors import TablePrior, prior_from_config, prior_to_config
from priorfit.priors.tables import MECHANISMS

SPEED_BATCH, SPEED_ROWS = 64, 256
SEED = 20_250_601
LEARNABLE_MARGIN = 0.1  # accuracy above the majority class that counts as learnable


def run(quick: bool, data: Path) -> Result:
    prior = TablePrior()
    batches, batch_size, num_rows = (2, 32, 200) if quick else (16, 64, 400)
    trees, calls = (10, 3) if quick else (25, 20)
    config = {"prior": prior_to_config(prior), "batches": batches, "batch_size": batch_size,
              "rows": num_rows, "forest_trees": trees, "speed_batch": SPEED_BATCH,
              "speed_rows": SPEED_ROWS, "speed_calls": calls, "threads": torch.get_num_threads()}
    generator = torch.Generator().manual_seed(SEED)
    stats = []
    for _ in range(batches):
        batch, info = prior.sample_with_info(batch_size, num_rows, generator=generator)
        stats += dataset_stats(batch.x.numpy(), batch.y.numpy().astype(int), info, trees)

    def speed(**changes) -> float:
        return datasets_per_s(dataclasses.replace(prior, **changes), calls)

    rows = [mechanism_row(name, [s for s in stats if s["mechanism"] == name],
                          speed(mechanisms={name: 1.0}))
            for name in MECHANISMS]
    summary = {
        "datasets": len(stats),
        "learnable": float(np.mean([s["learnable"] for s in stats])),
        "datasets_per_s": speed(),
        "datasets_per_s_100_features": speed(min_features=100),
    }
    return Result(config, rows, summary, table(rows, summary))


def dataset_stats(x: np.ndarray, y: np.ndarray, info, trees: int) -> list[dict]:
    """One dict of statistics per dataset of ``x [B, T, F]``, ``y [B, T]``."""
    stats = []
    half = x.shape[1] // 2
    for i in range(x.shape[0]):
        counts = np.bincount(y[i])
        majority = np.mean(y[i, half:] == np.bincount(y[i, :half]).argmax())
        logreg, forest = (held_out_accuracy(model, x[i], y[i], half)
                          for model in (make_pipeline(SimpleImputer(keep_empty_features=True),
                                                      StandardScaler(),
                                                      LogisticRegression(max_iter=300)),
                                        RandomForestClassifier(trees, random_state=0)))
        stats.append({
            "mechanism": MECHANISMS[int(info.mechanism[i])],
            "num_classes": int(info.num_classes[i]),
            "majority_share": counts.max() / counts.sum(),
            "missing_rate": float(np.isnan(x[i]).mean()),
            "categorical_share": float(info.categorical[i].float().mean()),
            "accuracy_logreg": logreg, "accuracy_forest": forest, "accuracy_majority": majority,
            "learnable": max(logreg, forest) > majority + LEARNABLE_MARGIN,
        })
    return stats


def held_out_accuracy(model, x: np.ndarray, y: np.ndarray, half: int) -> float:
    """Accuracy on rows ``half:`` of ``model`` fitted on rows ``:half`` (the training rows'
    majority class when they hold a single class)."""
    if len(np.unique(y[:half])) < 2:
        return float(np.mean(y[half:] == y[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # heavy tails slow lbfgs down
        fitted = model.fit(x[:half], y[:half])
    return float(np.mean(fitted.predict(x[half:]) == y[half:]))


def mechanism_row(name: str, stats: list[dict], speed: float) -> dict:
    """The mean of each statistic over one mechanism's datasets."""
    keys = ("num_classes", "majority_share", "missing_rate", "categorical_share",
            "accuracy_logreg", "accuracy_forest", "accuracy_majority", "learnable")
    means = {k: float(np.mean([s[k] for s in stats])) if stats else float("nan") for k in keys}
    return {"method": name, "setting": "default", "n": len(stats), **means,
            "datasets_per_s": speed}


def datasets_per_s(prior: TablePrior, calls: int) -> float:
    """Datasets of ``SPEED_ROWS`` rows per second over ``calls`` calls of ``SPEED_BATCH``
    datasets after a warm-up call, each call drawing its own width as in training."""
    generator = torch.Generator().manual_seed(SEED)
    prior.sample(SPEED_BATCH, SPEED_ROWS, generator=generator)
    start = time.perf_counter()
    for _ in range(calls):
        prior.sample(SPEED_BATCH, SPEED_ROWS, generator=generator)
    return calls * SPEED_BATCH / (time.perf_counter() - start)


def table(rows: list[dict], summary: dict) -> str:
    lines = [f"{'mechanism':<10} {'n':>4} {'classes':>7} {'majority':>8} {'missing':>7} "
             f"{'categ.':>6} {'logreg':>6} {'forest':>6} {'major.':>6} {'learnable':>9} "
             f"{'datasets/s':>10}"]
    for r in rows:
        lines.append(
            f"{r['method']:<10} {r['n']:4d} {r['num_classes']:7.2f} {r['majority_share']:8.2f} "
            f"{r['missing_rate']:7.3f} {r['categorical_share']:6.2f} {r['accuracy_logreg']:6.2f} "
            f"{r['accuracy_forest']:6.2f} {r['accuracy_majority']:6.2f} {r['learnable']:9.2f} "
            f"{r['datasets_per_s']:10.0f}"
        )
    lines.append(
        f"{summary['datasets']} datasets, {summary['learnable']:.0%} learnable; default prior "
        f"{summary['datasets_per_s']:.0f} datasets/s ({SPEED_ROWS} rows), 100 features "
        f"{summary['datasets_per_s_100_features']:.0f} datasets/s"
    )
    return "\n".join(lines)


def plot(result: Result, out: Path, per_mechanism: int = 4) -> list[Path]:
    """A grid of sampled two-feature datasets, one row per mechanism, points coloured by class
    and placed by their ranks (heavy tails and outliers would squash a plot in raw units)."""
    from priorfit.plots import pyplot

    plt = pyplot()
    prior = prior_from_config(result.config["prior"])
    fig, axes = plt.subplots(len(MECHANISMS), per_mechanism, figsize=(2.4 * per_mechanism, 9.6))
    for row, name in enumerate(MECHANISMS):
        two = dataclasses.replace(prior, num_features=2, min_features=2, mechanisms={name: 1.0})
        batch = two.sample(per_mechanism, 200, generator=torch.Generator().manual_seed(SEED))
        for ax, x, y in zip(axes[row], batch.x.numpy(), batch.y.numpy(), strict=True):
            seen = ~np.isnan(x).any(1)
            ranks = x[seen].argsort(0).argsort(0)
            ax.scatter(ranks[:, 0], ranks[:, 1], c=y[seen], cmap="tab10", vmin=0, vmax=9, s=6)
            ax.set(xticks=[], yticks=[], title=f"{name}, {int(y.max()) + 1} classes")
    fig.suptitle("TablePrior samples: feature ranks, coloured by class", fontsize=10)
    fig.tight_layout()
    path = out / "tabular-prior.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
