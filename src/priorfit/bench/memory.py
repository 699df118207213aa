"""``priorfit bench memory``: peak resident memory of prediction against the number of test points.

Each measurement runs in a fresh Python process (``ru_maxrss``, one thread) so that one does not
inherit another's peak:

- ``regressor``: ``PFNRegressor()`` (``gp-hyper``, 8 feature orders) fitted on 300 rows of 5
  features, ``predict(X, return_std=True)`` for 1 000, 20 000 and 100 000 test rows. Summaries
  are reduced chunk by chunk, so memory should stay flat in the number of test rows.
- ``cells``: an untrained ``"cells"`` PFN (d_model 64, 4 layers, 10 classes) conditioned on a
  1 000-row × 100-feature table, predicting 1 000 and 5 000 test rows in chunks of 256.

Rows report ``peak_rss_mib`` (the process's peak), ``baseline_rss_mib`` (after imports and model
loading, before prediction) and seconds.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from priorfit.bench import Result

REGRESSOR_SIZES = (1_000, 20_000, 100_000)
CELLS_SIZES = (1_000, 5_000)


def run(quick: bool, data: Path) -> Result:
    sizes = (1_000, 5_000) if quick else REGRESSOR_SIZES
    n, features, cell_sizes = (200, 20, (200, 1_000)) if quick else (1_000, 100, CELLS_SIZES)
    rows = [_measure("regressor", m) for m in sizes]
    rows += [_measure("cells", n, features, m) for m in cell_sizes]

    def ratio(method: str) -> float:
        peaks = {r["m"]: r["peak_rss_mib"] for r in rows if r["method"] == method}
        return peaks[max(peaks)] / peaks[min(peaks)]

    summary = {
        "regressor_peak_ratio_largest_vs_smallest": ratio("pfn-regressor"),
        "target_ratio<=1.5": ratio("pfn-regressor") <= 1.5,
        "cells_peak_rss_mib": max(r["peak_rss_mib"] for r in rows if r["method"] == "pfn-cells"),
        "cells_peak_ratio_largest_vs_smallest": ratio("pfn-cells"),
    }
    config = {"threads": 1, "regressor": "PFNRegressor() on gp-hyper, 300 x 5 training rows",
              "cells": "untrained cells PFN: d_model 64, 4 heads, 4 layers, d_ff 128, 10 classes"}
    return Result(config, rows, summary, table(rows, summary))


def _measure(case: str, *args: int) -> dict:
    command = [sys.executable, "-m", __name__, case, *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"memory case {case} {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict], summary: dict) -> str:
    lines = [f"{'case':<14} {'train':>11} {'test rows':>9} {'baseline MiB':>12} {'peak MiB':>9} "
             f"{'seconds':>8}"]
    for r in rows:
        lines.append(f"{r['method']:<14} {r['setting']:>11} {r['m']:>9} "
                     f"{r['baseline_rss_mib']:12.0f} {r['peak_rss_mib']:9.0f} {r['seconds']:8.2f}")
    lines.append("PFNRegressor peak, largest vs smallest test set: "
                 f"{summary['regressor_peak_ratio_largest_vs_smallest']:.2f}x (target <= 1.5x); "
                 f"cells: {summary['cells_peak_ratio_largest_vs_smallest']:.2f}x")
    return "\n".join(lines)


def plot(result: Result, out: Path) -> list[Path]:
    from priorfit.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    rows = [r for r in result.rows if r["method"] == "pfn-regressor"]
    ax.plot([r["m"] for r in rows], [r["peak_rss_mib"] for r in rows], marker="o", label="peak")
    ax.plot([r["m"] for r in rows], [r["baseline_rss_mib"] for r in rows], marker="x",
            label="before predict")
    ax.set(xscale="log", xlabel="test rows", ylabel="resident memory (MiB)",
           title="PFNRegressor.predict(return_std=True)")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    path = out / "memory.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _regressor(m: int) -> dict:
    import numpy as np

    import priorfit as pf

    rng = np.random.default_rng(0)
    X, X_test = rng.random((300, 5)), rng.random((m, 5))
    y = np.sin(6 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.standard_normal(300)
    reg = pf.PFNRegressor().fit(X, y)
    reg.predict(X_test[:10], return_std=True)  # warm up at a negligible size
    baseline, start = _peak_mib(), time.perf_counter()
    reg.predict(X_test, return_std=True)
    return {"method": "pfn-regressor", "setting": "300x5", "n": 300, "m": m,
            "baseline_rss_mib": baseline, "peak_rss_mib": _peak_mib(),
            "seconds": time.perf_counter() - start}


def _cells(n: int, features: int, m: int) -> dict:
    import torch

    from priorfit.model import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(arch="cells", head="classes", num_features=features, num_outputs=10,
                         d_model=64, num_heads=4, num_layers=4, d_ff=128)
    model = build_model(config).eval()
    g = torch.Generator().manual_seed(0)
    x, x_test = torch.randn(n, features, generator=g), torch.randn(m, features, generator=g)
    y = torch.randint(0, 10, (n,), generator=g).float()
    model.predict(x[:10], y[:10], x_test[:10])
    baseline, start = _peak_mib(), time.perf_counter()
    probs = model.predict(x, y, x_test).probs
    assert probs.shape == (m, 10)
    return {"method": "pfn-cells", "setting": f"{n}x{features}", "n": n, "m": m,
            "baseline_rss_mib": baseline, "peak_rss_mib": _peak_mib(),
            "seconds": time.perf_counter() - start}


if __name__ == "__main__":  # one measurement: python -m priorfit.bench.memory CASE ARGS...
    import torch

    torch.set_num_threads(1)
    case, numbers = sys.argv[1], [int(a) for a in sys.argv[2:]]
    print(json.dumps({"regressor": _regressor, "cells": _cells}[case](*numbers)))
