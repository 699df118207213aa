"""Benchmarks: ``priorfit bench NAME [--quick] [--out DIR] [--data DIR]``.

Each benchmark module has ``run(quick: bool, data: Path) -> Result`` and
``plot(result: Result, out: Path) -> list[Path]``. The runner writes ``OUT/NAME.json`` as
``{"bench", "config", "rows", "summary"}`` and prints the result's table.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCHES = {
    "bnn": "priorfit.bench.bnn",
    "bo": "priorfit.bench.bo",
    "curves": "priorfit.bench.curves",
    "fewshot": "priorfit.bench.fewshot",
    "gp": "priorfit.bench.gp",
    "gp-hyper": "priorfit.bench.gp_hyper",
    "memory": "priorfit.bench.memory",
    "recipe": "priorfit.bench.recipe",
    "regression": "priorfit.bench.regression",
    "tabular": "priorfit.bench.tabular",
    "tabular-prior": "priorfit.bench.tabular_prior",
    "train-speed": "priorfit.bench.train_speed",
}


@dataclass
class Result:
    """What a benchmark measured: one row per measurement, plus a summary and a table."""

    config: dict
    rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    table: str = ""


def run_bench(name: str, *, quick: bool = False, out: str | Path = "results",
              data: str | Path = "../shared/data") -> Path:
    """Run benchmark ``name`` and write its JSON and plots to ``out``; returns the JSON path."""
    if name not in BENCHES:
        raise ValueError(f"unknown benchmark {name!r}; available: {', '.join(sorted(BENCHES))}")
    module = importlib.import_module(BENCHES[name])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = module.run(quick=quick, data=Path(data))
    path = out / f"{name}.json"
    document = {"bench": name, "config": {**result.config, "quick": quick}, "rows": result.rows,
                "summary": result.summary}
    path.write_text(json.dumps(document, indent=2, default=float) + "\n")
    plots = module.plot(result, out)
    print(result.table)
    print(f"wrote {path}" + "".join(f", {p}" for p in plots))
    return path


def cached(cache: Path | None, identity: dict, compute: Callable[[], dict]) -> dict:
    """``compute()``, or its result from an earlier run of the same ``identity`` (a JSON-able
    dict) stored in the folder ``cache``; ``None`` computes without storing. Results are written
    atomically, so an interrupted benchmark resumes where it stopped."""
    if cache is None:
        return compute()
    from priorfit.io import atomic_write

    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    path = cache / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())["result"]
    result = compute()
    text = json.dumps({"identity": identity, "result": result})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return result


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error of a sequence of numbers."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


def seconds_per_call(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def score_tasks(predict: Callable, tasks: Sequence[tuple]) -> tuple[np.ndarray, float, list]:
    """Scores ``predict(i, x_train, y_train, x_test) -> predictive`` one task at a time.

    ``tasks`` holds ``(x_train [n, d], y_train [n], x_test [m, d], y_test [m])`` per task.
    Returns the mean test NLL per task ``[len(tasks)]``, the median seconds per call, and each
    predictive's ``info`` (``{}`` when it has none).
    """
    nlls, seconds, infos = [], [], []
    for i, (x_train, y_train, x_test, y_test) in enumerate(tasks):
        start = time.perf_counter()
        predictive = predict(i, x_train, y_train, x_test)
        seconds.append(time.perf_counter() - start)
        nlls.append(-float(np.mean(np.asarray(predictive.log_prob(y_test)))))
        infos.append(getattr(predictive, "info", {}))
    return np.array(nlls), float(np.median(seconds)), infos


def pfn_batched_seconds(model, x, y, n: int) -> float:
    """Best of three: ``model`` predicting all datasets ``x [B, T, d]``, ``y [B, T]`` in one call,
    the first ``n`` points revealed and the rest scored."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.predict(x[:, :n].float(), y[:, :n].float(), x[:, n:].float()).log_prob(
            y[:, n:].float()
        )
        times.append(time.perf_counter() - start)
    return min(times)
