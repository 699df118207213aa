"""Benchmarks: ``priorfit bench NAME [--quick] [--out DIR] [--data DIR]``.

Each benchmark module has ``run(quick: bool, data: Path) -> Result`` and
``plot(result: Result, out: Path) -> list[Path]``. The runner writes ``OUT/NAME.json`` as
``{"bench", "machine", "config", "rows", "summary"}`` (``machine``: :func:`machine`) and prints
the result's table.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
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
    document = {"bench": name, "machine": machine(), "config": {**result.config, "quick": quick},
                "rows": result.rows, "summary": result.summary}
    path.write_text(json.dumps(document, indent=2, default=float) + "\n")
    plots = module.plot(result, out)
    print(result.table)
    print(f"wrote {path}" + "".join(f", {p}" for p in plots))
    return path


def machine() -> dict:
    """The machine a figure came from: ``{"cpu": model name, "cores": logical CPUs,
    "bf16_native": avx512_bf16 or AMX present, "amx": AMX tiles present}``, read from
    ``/proc/cpuinfo`` (elsewhere ``platform.processor()``, and ``None`` for the flags). Timings
    and the precision ``"auto"`` chooses differ between CPU models: every benchmark records it."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    fields = dict(line.split(":", 1) for line in lines if ":" in line)  # the last CPU's values
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields["flags"].split()) if "flags" in fields else None
    return {
        "cpu": fields.get("model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "bf16_native": None if flags is None else bool(flags & {"avx512_bf16", "amx_bf16"}),
        "amx": None if flags is None else "amx_tile" in flags,
    }


def cached(ledger: Path | None, identity: dict, compute: Callable[[], dict]) -> dict:
    """``compute()``, or its result from an earlier run of the same ``identity`` (a JSON-able
    dict) recorded in the score ledger ``ledger``; ``None`` computes without recording.

    A ledger is a JSON-lines file, one ``{"identity", "result"}`` per line. Each new result is
    appended as one line, flushed and synced, so an interrupted benchmark loses at most the
    computation under way and resumes where it stopped (a line torn by a kill is skipped), two
    processes may append to one ledger, and a ledger kept in git carries scores that took
    CPU-hours to a fresh checkout (``benchmarks/``)."""
    if ledger is None:
        return compute()
    key = json.dumps(identity, sort_keys=True)
    entries = _ledger_entries(ledger)
    if key in entries:
        return entries[key]
    result = compute()
    line = json.dumps({"identity": identity, "result": result}, sort_keys=True) + "\n"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with open(ledger, "a+b") as file:
        torn = file.tell() > 0 and (file.seek(-1, 2), file.read(1))[1] != b"\n"
        file.write((b"\n" if torn else b"") + line.encode())
        file.flush()
        os.fsync(file.fileno())
    entries[key] = result
    _LEDGERS[ledger.resolve()] = (ledger.stat().st_size, entries)  # no re-read for our own line
    return result


_LEDGERS: dict[Path, tuple[int, dict]] = {}  # ledger -> (its size when read, its entries)


def _ledger_entries(ledger: Path) -> dict:
    """``{identity as sorted JSON: result}`` of a ledger, read again when it has grown (another
    process appended) since this process last read it."""
    path = ledger.resolve()
    size = path.stat().st_size if path.exists() else 0
    known = _LEDGERS.get(path)
    if known is None or known[0] != size:
        entries = {}
        for line in path.read_text().splitlines() if size else ():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn by an interrupted write
            entries[json.dumps(record["identity"], sort_keys=True)] = record["result"]
        known = (size, entries)
    _LEDGERS[path] = known
    return known[1]


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
