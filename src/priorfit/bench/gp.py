"""``priorfit bench gp``: the shipped GP PFN against the exact GP posterior (paper §5.1).

Protocol (Müller et al. 2022): for each training-set size ``n``, held-out datasets from the
model's own prior with one test point each; mean NLL of the PFN and of the exact posterior
predictive, with standard errors, the paired gap, and the time per dataset of both (one
dataset at a time, and batched). Also times conditioning on 1000 points and predicting 1000
(d = 5), and draws the paper's Figure 3 with the 1-D model, whose gap is also measured over
the training-set sizes it was trained for (:data:`ONE_D_SIZES`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from priorfit.bench import Result, mean_se, seconds_per_call
from priorfit.model import load
from priorfit.priors.base import prior_from_config

SIZES = (1, 2, 4, 8, 16, 32, 64, 100)
ONE_D_MODEL, ONE_D_SIZES = "gp-1d", (1, 2, 4, 8, 16, 32, 50)  # gp-1d saw up to 50 points
SEED = 20_221_024  # held-out data: training streams are seeded from their configs' seeds


def run(quick: bool, data: Path, model_name: str = "gp-paper") -> Result:
    model = load(model_name)
    prior = prior_from_config(model.card["prior"])
    sizes = (1, 8, 64) if quick else SIZES
    num_datasets = 100 if quick else 1000
    timed = 10 if quick else 50
    config = {"model": model_name, "prior": model.card["prior"], "sizes": list(sizes),
              "datasets_per_size": num_datasets, "timed_one_at_a_time": timed,
              "threads": torch.get_num_threads()}
    rows, gaps = [], {}
    for n in sizes:
        size_rows = size_rows_for(model, prior, model_name, n, num_datasets, timed)
        gaps[n] = size_rows[0]["gap"]
        rows += size_rows
    rows += inference_rows(model, prior, model_name, repeats=3 if quick else 10)
    one_d = load(ONE_D_MODEL)
    one_d_prior = prior_from_config(one_d.card["prior"])
    one_d_gaps = {}
    for n in (1, 8, 50) if quick else ONE_D_SIZES:
        size_rows = size_rows_for(one_d, one_d_prior, ONE_D_MODEL, n, num_datasets, timed)
        one_d_gaps[n] = size_rows[0]["gap"]
        rows += size_rows
    bf16 = {r["n"]: r for r in rows
            if r["method"] == "pfn-bf16" and r["setting"] == model_name and "gap" in r}
    summary = {
        "bfloat16": {
            "mean_gap": float(np.mean([r["gap"] for r in bf16.values()])),
            "nll_change_vs_float32_by_n": {n: r["nll_change"] for n, r in bf16.items()},
        },
        "mean_gap": float(np.mean(list(gaps.values()))),
        "max_gap": float(max(gaps.values())),
        "gap_by_n": gaps,
        "targets": {"mean_gap<=0.05": bool(np.mean(list(gaps.values())) <= 0.05),
                    "every_gap<=0.1": bool(max(gaps.values()) <= 0.1),
                    f"{ONE_D_MODEL}_mean_gap<=0.01": bool(np.mean(list(one_d_gaps.values()))
                                                          <= 0.01)},
        ONE_D_MODEL: {"mean_gap": float(np.mean(list(one_d_gaps.values()))),
                      "max_gap": float(max(one_d_gaps.values())), "gap_by_n": one_d_gaps},
        "inference_1000x1000_s": {r["method"]: r["seconds_per_task"] for r in rows
                                  if r["setting"] == "inference-1000x1000"},
    }
    return Result(config, rows, summary, table(rows, summary))


def size_rows_for(model, prior, model_name: str, n: int, num_datasets: int, timed: int):
    """PFN and exact rows for ``num_datasets`` held-out datasets of ``n`` training points."""
    batch = prior.sample(num_datasets, n + 1, generator=torch.Generator().manual_seed(SEED + n))
    x_train, y_train = batch.x[:, :n], batch.y[:, :n]
    x_test, y_test = batch.x[:, n:], batch.y[:, n:]

    def pfn(i=slice(None)):
        return model.predict(x_train[i], y_train[i], x_test[i]).log_prob(y_test[i])

    def exact(i=slice(None)):
        return prior.log_prob(x_train[i], y_train[i], x_test[i], y_test[i])

    def pfn_bf16(i=slice(None)):
        return model.predict(x_train[i], y_train[i], x_test[i], precision="bfloat16").log_prob(
            y_test[i]
        )

    exact_nll = -exact()[:, 0]
    pfn_nll, bf16_nll = -pfn()[:, 0].double(), -pfn_bf16()[:, 0].double()
    rows = []
    for method, nll, fn in (("pfn", pfn_nll, pfn), ("exact", exact_nll, exact),
                            ("pfn-bf16", bf16_nll, pfn_bf16)):
        mean, se = mean_se(nll.tolist())
        extra = {}
        if method != "exact":
            extra = dict(zip(("gap", "gap_se"), mean_se((nll - exact_nll).tolist()), strict=True))
        if method == "pfn-bf16":
            extra["nll_change"] = mean - rows[0]["nll"]
        rows.append({
            "method": method, "setting": model_name, "n": n, "nll": mean, "nll_se": se,
            "seconds_per_task": seconds_per_call(lambda fn=fn: fn(0), timed),
            "seconds_per_task_batched": seconds_per_call(fn, 3) / num_datasets, **extra,
        })
    return rows


def inference_rows(model, prior, model_name: str, repeats: int) -> list[dict]:
    """Condition on 1000 points and predict 1000: the PFN against the exact GP."""
    generator = torch.Generator().manual_seed(SEED)
    batch = prior.sample(1, 2000, generator=generator)
    x_train, y_train, x_test = batch.x[0, :1000], batch.y[0, :1000], batch.x[0, 1000:]

    y_test = batch.y[0, 1000:]
    exact_nll = -prior.log_prob(x_train[None], y_train[None], x_test[None], y_test[None]).mean()

    def pfn(precision: str):
        post = model.predict(x_train, y_train, x_test, precision=precision)
        return post.mean, post.variance

    rows = [
        {"method": method, "setting": "inference-1000x1000", "n": 1000, "m": 1000,
         "seconds_per_task": seconds_per_call(lambda p=precision: pfn(p), repeats),
         "model": model_name,
         "nll": -float(model.predict(x_train, y_train, x_test, precision=precision)
                       .log_prob(y_test).mean())}
        for method, precision in (("pfn", "float32"), ("pfn-bf16", "bfloat16"))
    ]
    exact_seconds = seconds_per_call(lambda: prior.posterior(x_train, y_train, x_test), repeats)
    return [*rows, {"method": "exact", "setting": "inference-1000x1000", "n": 1000, "m": 1000,
                    "seconds_per_task": exact_seconds, "nll": float(exact_nll)}]


def table(rows: list[dict], summary: dict) -> str:
    lines = [f"{'n':>5} {'PFN NLL':>16} {'exact NLL':>16} {'gap':>14} {'PFN s/task':>11} "
             f"{'exact s/task':>12}"]
    for setting in dict.fromkeys(r["setting"] for r in rows
                                 if r["setting"] != "inference-1000x1000"):
        lines += _size_lines(rows, setting)
    one_d = summary[ONE_D_MODEL]
    lines.append(f"{ONE_D_MODEL}: mean gap {one_d['mean_gap']:.4f} nats over n = "
                 f"{', '.join(map(str, one_d['gap_by_n']))}")
    times = summary["inference_1000x1000_s"]
    lines.append(f"{rows[0]['setting']}: mean gap {summary['mean_gap']:.3f} nats, max gap "
                 f"{summary['max_gap']:.3f}")
    change = summary["bfloat16"]["nll_change_vs_float32_by_n"]
    lines.append(f"bfloat16: mean gap {summary['bfloat16']['mean_gap']:.3f} nats; NLL change vs "
                 "float32 " + ", ".join(f"n={n}: {d:+.4f}" for n, d in change.items()))
    lines.append(f"condition on 1000 + predict 1000: PFN {times['pfn']:.3f} s (bfloat16 "
                 f"{times['pfn-bf16']:.3f} s), exact GP {times['exact']:.3f} s")
    return "\n".join(lines)


def _size_lines(rows: list[dict], setting: str) -> list[str]:
    lines = [f"{setting}:"]
    by_key = {(r["method"], r["n"]): r for r in rows if r["setting"] == setting}
    for n in sorted({n for _, n in by_key}):
        pfn, exact = by_key["pfn", n], by_key["exact", n]
        lines.append(
            f"{n:5d} {pfn['nll']:9.3f}±{pfn['nll_se']:.3f} "
            f"{exact['nll']:9.3f}±{exact['nll_se']:.3f} {pfn['gap']:7.3f}±{pfn['gap_se']:.3f} "
            f"{pfn['seconds_per_task']:11.2e} "
            f"{exact['seconds_per_task']:12.2e}"
        )
    return lines


def plot(result: Result, out: Path) -> list[Path]:
    from priorfit.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, label in (("exact", "exact GP posterior"), ("pfn", "PFN")):
        rows = [r for r in result.rows if r["method"] == method
                and r["setting"] == result.config["model"]]
        ax.errorbar([r["n"] for r in rows], [r["nll"] for r in rows],
                    yerr=[r["nll_se"] for r in rows], marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("number of training points n")
    ax.set_ylabel("mean test NLL (nats)")
    ax.set_title(f"{result.config['model']}: PFN vs exact GP")
    ax.legend()
    fig.tight_layout()
    nll_path = out / "gp_nll.png"
    fig.savefig(nll_path, dpi=120)
    plt.close(fig)
    return [nll_path, figure3(out)]


def figure3(out: Path, model_name: str = "gp-1d") -> Path:
    """The paper's Figure 3: a 1-D PFN posterior against the exact GP's (mean, 95%)."""
    from priorfit.plots import plot_posterior_1d

    model = load(model_name)
    prior = prior_from_config(model.card["prior"])
    batch = prior.sample(1, 8, generator=torch.Generator().manual_seed(SEED))
    x_train, y_train = batch.x[0], batch.y[0]
    x_grid = torch.linspace(0, 1, 301)[:, None]
    post = model.predict(x_train, y_train, x_grid)
    mean, var = prior.posterior(x_train, y_train, x_grid)
    std = var.sqrt()
    path = out / "gp_figure3.png"
    plot_posterior_1d(
        path, x_train[:, 0], y_train, x_grid[:, 0],
        (post.mean, post.icdf(torch.tensor(0.025)), post.icdf(torch.tensor(0.975))),
        (mean, mean - 1.96 * std, mean + 1.96 * std),
        f"{model_name} posterior vs exact GP (8 points)",
    )
    return path
