"""``priorfit bench bnn``: the PFN on Bayesian neural networks against NUTS and Bayes-by-Backprop
(paper §5.3, Figure 5).

Per setting (the paper's small and wide architectures), ``NUM_TASKS`` held-out datasets are
drawn from the prior the shipped model was trained on; each reveals ``REVEALED`` points and
scores the mean test NLL of ``TEST`` others. NUTS (:class:`~priorfit.baselines.NUTSBNN`, one
chain, ``b`` warm-up steps and ``b`` draws) and SVI (:class:`~priorfit.baselines.SVIBNN`,
``b`` Adam steps) run at several budgets on exactly that BNN's prior and likelihood. Times are
wall seconds per task, one task at a time (compile excluded, reported in the summary); the PFN
is also timed batched over all tasks of a setting. The summary also reports the prior
sampler's datasets (of ``REVEALED + TEST`` points) per second, on the threads torch uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from priorfit.baselines import NUTSBNN, SVIBNN
from priorfit.bench import Result, mean_se, pfn_batched_seconds, score_tasks, seconds_per_call
from priorfit.model import load
from priorfit.priors import BNN, prior_from_config

MODELS = {"small": "bnn-small", "wide": "bnn-wide"}
NUTS_BUDGETS = {"small": (25, 100, 400), "wide": (16, 64)}  # warm-up steps = draws
SVI_BUDGETS = (250, 1000, 4000)  # Adam steps
NUM_TASKS, REVEALED, TEST = 100, 100, 200
SAMPLER_BATCH = 1024  # datasets per call when timing the prior sampler
SEED = 20_221_026  # held-out data: training streams are seeded from their configs' seeds


def run(quick: bool, data: Path, models: dict[str, str] | None = None) -> Result:
    """``models`` maps a setting to a model name or path (default :data:`MODELS`)."""
    models = models or MODELS
    num_tasks = 4 if quick else NUM_TASKS
    nuts_budgets = {s: (8,) if quick else NUTS_BUDGETS[s] for s in models}
    svi_budgets = (50,) if quick else SVI_BUDGETS
    config = {
        "models": models,
        "tasks_per_setting": num_tasks,
        "revealed": REVEALED,
        "test": TEST,
        "nuts_budgets": nuts_budgets,
        "svi_budgets": list(svi_budgets),
        "threads": torch.get_num_threads(),
    }
    rows, compile_seconds, sampler = [], {}, {}
    for setting, model_name in models.items():
        model = load(model_name)
        prior = prior_from_config(model.card["prior"])
        if not isinstance(prior, BNN):
            raise ValueError(f"{model_name} was not trained on a fixed-architecture BNN prior")
        config[f"prior_{setting}"] = model.card["prior"]
        baselines = {
            **{f"nuts-{b}": NUTSBNN(prior, num_warmup=b, num_samples=b)
               for b in nuts_budgets[setting]},
            **{f"svi-{b}": SVIBNN(prior, num_steps=b) for b in svi_budgets},
        }
        rows += setting_rows(setting, model, prior, baselines, num_tasks)
        compile_seconds[setting] = {name: b.compile_seconds for name, b in baselines.items()}
        sampler[setting] = SAMPLER_BATCH / seconds_per_call(
            lambda prior=prior: prior.sample(SAMPLER_BATCH, REVEALED + TEST), 2 if quick else 10
        )
    summary = summarise(rows)
    summary["compile_seconds"] = compile_seconds
    summary["prior_datasets_per_s"] = sampler
    return Result(config, rows, summary, table(rows))


def setting_rows(setting: str, model, prior: BNN, baselines: dict, num_tasks: int) -> list[dict]:
    """One row per method on ``num_tasks`` held-out datasets of ``prior``."""
    generator = torch.Generator().manual_seed(SEED + prior.num_features)
    batch = prior.sample(num_tasks, REVEALED + TEST, generator=generator)
    x, y, n = batch.x, batch.y, REVEALED
    tasks = [(x[i, :n], y[i, :n], x[i, n:], y[i, n:]) for i in range(num_tasks)]
    for baseline in baselines.values():  # compile for this shape outside the timed calls
        baseline(*tasks[0][:3])
    model.predict(*tasks[0][:3])  # warm-up

    methods = {
        "pfn": lambda i, xt, yt, xs: model.predict(xt, yt, xs),
        **{name: (lambda i, xt, yt, xs, b=b: b(xt, yt, xs, seed=i))
           for name, b in baselines.items()},
    }
    rows = []
    for name, predict in methods.items():
        nll, seconds, infos = score_tasks(predict, tasks)
        mean, se = mean_se(nll)
        row = {"method": name, "setting": setting, "n": n, "nll": mean, "nll_se": se,
               "seconds_per_task": seconds}
        if name == "pfn":
            row["seconds_per_task_batched"] = pfn_batched_seconds(model, x, y, n) / num_tasks
        else:
            row["budget"] = int(name.split("-")[1])
        if name.startswith("nuts"):
            r_hat = np.array([info["max_split_r_hat"] for info in infos])
            r_hat_mean = np.array([info["max_split_r_hat_mean"] for info in infos])
            row |= {
                "divergences": int(sum(info["num_divergences"] for info in infos)),
                "tasks_with_divergences": int(sum(info["num_divergences"] > 0 for info in infos)),
                "median_max_split_r_hat": float(np.median(r_hat)),
                "tasks_with_max_r_hat_over_1.1": int((r_hat > 1.1).sum()),
                "median_min_ess": float(np.median([info["min_ess"] for info in infos])),
                "median_max_split_r_hat_mean": float(np.median(r_hat_mean)),
                "tasks_with_max_r_hat_mean_over_1.1": int((r_hat_mean > 1.1).sum()),
            }
        if name.startswith("svi"):
            row["median_final_loss"] = float(np.median([info["final_loss"] for info in infos]))
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per setting: does the PFN reach the best NUTS NLL, and how much faster is it than the
    cheapest budget of each method that reaches the PFN's NLL (or, if none does, than the
    best budget: a lower bound on the speed-up)."""
    summary = {}
    for setting in dict.fromkeys(r["setting"] for r in rows):
        by = {r["method"]: r for r in rows if r["setting"] == setting}
        pfn = by["pfn"]
        entry = {"pfn_nll": pfn["nll"]}
        for family in ("nuts", "svi"):
            runs = sorted((r for m, r in by.items() if m.startswith(family)),
                          key=lambda r: r["budget"])
            best = min(runs, key=lambda r: r["nll"])
            reaching = [r for r in runs if r["nll"] <= pfn["nll"]]
            compared = reaching[0] if reaching else best
            entry[family] = {
                "best_budget": best["budget"],
                "best_nll": best["nll"],
                "pfn_at_least_as_good_as_best": pfn["nll"] <= best["nll"],
                "compared_budget": compared["budget"],
                "compared_reaches_pfn_nll": bool(reaching),
                "speedup_single": compared["seconds_per_task"] / pfn["seconds_per_task"],
                "speedup_batched": compared["seconds_per_task"] / pfn["seconds_per_task_batched"],
            }
        summary[setting] = entry
    return summary


def table(rows: list[dict]) -> str:
    lines = [f"{'setting':>7} {'method':>10} {'NLL':>16} {'s/task':>10} {'s/task batched':>15}"]
    for r in rows:
        batched = r.get("seconds_per_task_batched")
        lines.append(
            f"{r['setting']:>7} {r['method']:>10} {r['nll']:9.3f}±{r['nll_se']:.3f} "
            f"{r['seconds_per_task']:10.2e} {'' if batched is None else f'{batched:15.2e}'}"
        )
    return "\n".join(lines)


def plot(result: Result, out: Path) -> list[Path]:
    from priorfit.plots import pyplot

    plt = pyplot()
    settings = list(dict.fromkeys(r["setting"] for r in result.rows))
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        rows = [r for r in result.rows if r["setting"] == setting]
        pfn = next(r for r in rows if r["method"] == "pfn")
        for label, key in (("PFN, one task", "seconds_per_task"),
                           ("PFN, batched", "seconds_per_task_batched")):
            ax.errorbar([pfn[key]], [pfn["nll"]], yerr=[pfn["nll_se"]], marker="*",
                        markersize=12, linestyle="none", capsize=3, label=label)
        for family, label in (("nuts", "NUTS"), ("svi", "SVI (Bayes-by-Backprop)")):
            runs = sorted((r for r in rows if r["method"].startswith(family)),
                          key=lambda r: r["budget"])
            ax.errorbar([r["seconds_per_task"] for r in runs], [r["nll"] for r in runs],
                        yerr=[r["nll_se"] for r in runs], marker="o", capsize=3, label=label)
            for r in runs:
                ax.annotate(str(r["budget"]), (r["seconds_per_task"], r["nll"]),
                            textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("seconds per task (log)")
        ax.set_ylabel("mean test NLL (nats)")
        ax.set_title(f"BNN {setting}")
        ax.legend()
    fig.tight_layout()
    path = out / "bnn_nll_vs_time.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
