"""``priorfit bench gp-hyper``: the PFN on a GP prior with hyperpriors against MLE-II, MAP-II and
NUTS over the hyperparameters (paper §5.2, Figure 4b).

Held-out datasets come from the paper's App. F prior at each width d and training-set size n,
each with ``TEST_POINTS`` test points. Every method is scored by its mean test NLL per dataset;
the gap to the oracle (the GP with the true hyperparameters) is paired per dataset. Times are
per dataset, one dataset at a time (NUTS: compile time excluded and reported separately), and
for the PFN also batched over all datasets of a cell.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from priorfit.baselines import NUTSGP, map2, mle2
from priorfit.bench import Result, mean_se, pfn_batched_seconds, score_tasks
from priorfit.model import load
from priorfit.priors import GPHyperPrior, prior_from_config

WIDTHS = (1, 3, 5)
SIZES = (2, 5, 10, 20, 50, 100, 200)
NUTS_BUDGETS = (64, 256)  # warm-up steps = samples
TEST_POINTS = 10
SEED = 20_221_025  # held-out data: training streams are seeded from their configs' seeds


def run(quick: bool, data: Path, model_name: str = "gp-hyper-paper") -> Result:
    model = load(model_name)
    widths, sizes = ((1,), (5, 20)) if quick else (WIDTHS, SIZES)
    budgets = (16,) if quick else NUTS_BUDGETS
    num_datasets = 6 if quick else 40
    trained_on = prior_from_config(model.card["prior"])
    config = {
        "model": model_name,
        "prior": model.card["prior"],
        "widths": list(widths),
        "sizes": list(sizes),
        "nuts_budgets": list(budgets),
        "datasets_per_cell": num_datasets,
        "test_points": TEST_POINTS,
        "threads": torch.get_num_threads(),
    }
    rows, compile_seconds = [], dict.fromkeys((f"nuts-{b}" for b in budgets), 0.0)
    for d in widths:
        prior = trained_on.at_width(d)
        nuts = {b: NUTSGP(prior, num_warmup=b, num_samples=b) for b in budgets}
        for n in sizes:
            rows += cell_rows(model, prior, nuts, d, n, num_datasets)
        for b, sampler in nuts.items():
            compile_seconds[f"nuts-{b}"] += sampler.compile_seconds
    summary = summarise(rows)
    summary["nuts_compile_seconds"] = compile_seconds
    return Result(config, rows, summary, table(rows))


def cell_rows(model, prior: GPHyperPrior, nuts: dict, d: int, n: int, num_datasets: int):
    """One row per method for ``num_datasets`` held-out datasets of width d and size n."""
    generator = torch.Generator().manual_seed(SEED + 1000 * d + n)
    batch, hypers = prior.sample_with_hyperparameters(
        num_datasets, n + TEST_POINTS, generator=generator
    )
    x, y = batch.x.double(), batch.y.double()
    data = [(x[i, :n], y[i, :n], x[i, n:], y[i, n:]) for i in range(num_datasets)]

    methods = {
        "oracle": lambda i, xt, yt, xs: _Oracle(prior.oracle(hypers, i), xt, yt, xs),
        "pfn": lambda i, xt, yt, xs: model.predict(xt.float(), yt.float(), xs.float()),
        "mle2": lambda i, xt, yt, xs: mle2(xt, yt, xs, kernel=prior.kernel, seed=i),
        "map2": lambda i, xt, yt, xs: map2(xt, yt, xs, prior, seed=i),
        **{
            f"nuts-{b}": (lambda i, xt, yt, xs, s=s: s(xt, yt, xs, seed=i)) for b, s in nuts.items()
        },
    }
    for sampler in nuts.values():  # compile for this shape outside the timed calls
        sampler(*data[0][:3])
    model.predict(*(t.float() for t in data[0][:3]))  # warm-up

    results = {name: score_tasks(fn, data) for name, fn in methods.items()}
    oracle_nll = results["oracle"][0]
    rows = []
    for name, (nll, seconds, extras) in results.items():
        gap = nll - oracle_nll
        mean, se = mean_se(nll)
        gap_mean, gap_se = mean_se(gap)
        row = {
            "method": name,
            "setting": f"d={d}",
            "d": d,
            "n": n,
            "nll": mean,
            "nll_se": se,
            "gap": gap_mean,
            "gap_se": gap_se,
            "gap_median": float(np.median(gap)),
            "over_1_nat": int((gap > 1).sum()),
            "seconds_per_task": seconds,
        }
        if name == "pfn":
            row["datasets_per_s_batched"] = num_datasets / pfn_batched_seconds(model, x, y, n)
        if name.startswith("nuts"):
            row["divergences"] = int(sum(e["num_divergences"] for e in extras))
            row["max_split_r_hat"] = float(max(e["max_split_r_hat"] for e in extras))
            row["min_ess"] = float(min(e["min_ess"] for e in extras))
        rows.append(row)
    return rows


class _Oracle:
    """The exact predictive with the true hyperparameters, with the interface of the others."""

    def __init__(self, gp, x_train, y_train, x_test):
        self.gp, self.data = gp, (x_train, y_train, x_test)

    def log_prob(self, y_test):
        return self.gp.log_prob(*self.data, y_test).numpy()


def summarise(rows: list[dict]) -> dict:
    """Per method the worst gap over cells, and the issue's targets, checked in every cell."""
    by = {(r["method"], (r["d"], r["n"])): r for r in rows}
    methods = sorted({m for m, _ in by})
    cells = sorted({c for _, c in by})
    nuts = [m for m in methods if m.startswith("nuts")]

    def pfn(c, key):
        return by["pfn", c][key]

    def best_nuts(c, key):
        return min(by[m, c][key] for m in nuts)

    return {
        "worst_gap": {m: max(by[m, c]["gap"] for c in cells) for m in methods},
        "pfn_within_nuts_plus_0.02_every_cell": all(
            pfn(c, "gap") <= best_nuts(c, "gap") + 0.02 for c in cells
        ),
        "pfn_below_mle2_and_map2_every_cell": all(
            pfn(c, "gap") < min(by["mle2", c]["gap"], by["map2", c]["gap"]) for c in cells
        ),
        "min_speedup_vs_mle2": min(
            by["mle2", c]["seconds_per_task"] / pfn(c, "seconds_per_task") for c in cells
        ),
        "min_speedup_vs_fastest_nuts": min(
            best_nuts(c, "seconds_per_task") / pfn(c, "seconds_per_task") for c in cells
        ),
        "min_batched_speedup_vs_fastest_nuts": min(
            best_nuts(c, "seconds_per_task") * pfn(c, "datasets_per_s_batched") for c in cells
        ),
    }


def table(rows: list[dict]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [
        f"{'d':>2} {'n':>4} "
        + " ".join(f"{m:>15}" for m in methods)
        + "   (mean gap to the oracle, nats; s/dataset below)"
    ]
    by = {(r["method"], r["d"], r["n"]): r for r in rows}
    for d, n in dict.fromkeys((r["d"], r["n"]) for r in rows):
        gaps = " ".join(
            f"{by[m, d, n]['gap']:+8.3f}±{by[m, d, n]['gap_se']:.3f}"[:15].rjust(15)
            for m in methods
        )
        secs = " ".join(f"{by[m, d, n]['seconds_per_task']:15.2e}" for m in methods)
        lines += [f"{d:2d} {n:4d} {gaps}", f"{'':7} {secs}"]
    return "\n".join(lines)


def plot(result: Result, out: Path) -> list[Path]:
    from priorfit.plots import pyplot

    plt = pyplot()
    widths = result.config["widths"]
    methods = list(dict.fromkeys(r["method"] for r in result.rows))
    paths = []
    for kind in ("n", "time"):
        fig, axes = plt.subplots(1, len(widths), figsize=(5 * len(widths), 4), squeeze=False)
        for ax, d in zip(axes[0], widths, strict=True):
            for method in methods:
                rows = [r for r in result.rows if r["method"] == method and r["d"] == d]
                xs = [r["n"] if kind == "n" else r["seconds_per_task"] for r in rows]
                ax.errorbar(
                    xs,
                    [r["nll"] for r in rows],
                    yerr=[r["nll_se"] for r in rows],
                    marker="o",
                    capsize=3,
                    label=method,
                )
            ax.set_xscale("log")
            ax.set_xlabel("training points n" if kind == "n" else "seconds per dataset")
            ax.set_ylabel("mean test NLL (nats)")
            ax.set_title(f"d = {d}")
        axes[0][0].legend()
        fig.tight_layout()
        path = out / f"gp_hyper_nll_vs_{kind}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
