"""Plots shared by the demo and the benchmarks (matplotlib, imported lazily)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot with a non-interactive backend, or a clear error."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'priorfit[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_posterior_1d(path: Path, x_train, y_train, x_grid, pfn, exact, title: str) -> None:
    """PFN posterior (mean, 95% interval) against the exact GP's, as in the paper's Figure 3.

    Args:
        x_train, y_train: ``[n]`` observations; ``x_grid`` ``[m]`` query points.
        pfn: ``(mean, lower, upper)`` of the PFN, each ``[m]``.
        exact: ``(mean, lower, upper)`` of the exact posterior, each ``[m]``.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for (mean, lower, upper), label, color, style in (
        (exact, "exact GP", "black", "--"),
        (pfn, "PFN", "tab:blue", "-"),
    ):
        ax.plot(x_grid, mean, style, color=color, label=f"{label} mean")
        ax.fill_between(x_grid, lower, upper, color=color, alpha=0.15 if label == "PFN" else 0.0,
                        label=f"{label} 95% interval")
        if label != "PFN":
            ax.plot(x_grid, lower, ":", color=color)
            ax.plot(x_grid, upper, ":", color=color)
    ax.scatter(np.asarray(x_train), np.asarray(y_train), color="tab:red", zorder=3, s=18,
               label="observations")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(path: Path, names, observed, epochs, mean, lower, upper, metric: str) -> None:
    """Observed learning curves and their predicted 90% bands, one colour per run.

    Args:
        names: ``[R]`` run names. observed: ``[R, T]`` values, NaN after a run's last epoch.
        epochs: ``[E]`` the epochs predicted; mean, lower, upper: ``[R, E]``.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for j, name in enumerate(names):
        seen = ~np.isnan(observed[j])
        line = ax.plot(epochs, mean[j], lw=1)[0]
        ax.fill_between(epochs, lower[j], upper[j], color=line.get_color(), alpha=0.15)
        ax.plot(np.flatnonzero(seen) + 1, observed[j][seen], "o", ms=3, color=line.get_color(),
                label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("observed epochs (points), predicted mean and 90% band")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
