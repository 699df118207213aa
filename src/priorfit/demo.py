"""The main job: a shipped GP PFN conditioned on a bundled dataset, next to the exact GP."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch

from priorfit.model import load
from priorfit.plots import plot_posterior_1d
from priorfit.priors.base import prior_from_config

Z95 = 1.959963984540054
EVIDENCE_DRAWS = 2000  # prior datasets the bundled data's evidence is ranked among


def bundled_dataset() -> tuple[np.ndarray, np.ndarray]:
    """The bundled 1-D demo data: ``x [n, 1]``, ``y [n]``."""
    with resources.files("priorfit.data").joinpath("demo_1d.csv").open() as f:
        data = np.loadtxt(f, delimiter=",", skiprows=2, ndmin=2)
    return data[:, :1], data[:, 1]


def run_demo(model_name: str = "gp-1d", out: str | Path = "results") -> dict:
    """Print the PFN's and the exact GP's posterior predictive at query points; plot both.

    Returns the printed numbers as ``{"x", "pfn_mean", "pfn_lower", "pfn_upper", "exact_*"}``
    and how typical the data are of the prior (``"log_evidence"``, ``"evidence_quantile"``:
    :func:`evidence_quantile`); a PFN learns the posterior where its prior puts datasets.
    """
    model = load(model_name)
    prior = prior_from_config(model.card["prior"])
    x_train, y_train = bundled_dataset()
    x_grid = np.linspace(0.0, 1.0, 201)[:, None]
    post = model.predict(x_train, y_train, x_grid)
    mean, var = prior.posterior(torch.from_numpy(x_train), torch.from_numpy(y_train),
                                torch.from_numpy(x_grid))
    exact_mean, exact_std = mean.squeeze(0).numpy(), var.squeeze(0).sqrt().numpy()
    gap = expected_nll_gap(post, torch.from_numpy(exact_mean), torch.from_numpy(exact_std))
    result = {
        "x": x_grid[:, 0],
        "gap": gap,
        "pfn_mean": post.mean.numpy(),
        "pfn_lower": post.icdf(torch.tensor(0.025)).numpy(),
        "pfn_upper": post.icdf(torch.tensor(0.975)).numpy(),
        "exact_mean": exact_mean,
        "exact_lower": exact_mean - Z95 * exact_std,
        "exact_upper": exact_mean + Z95 * exact_std,
    }
    result["log_evidence"], result["evidence_quantile"] = evidence_quantile(prior, x_train,
                                                                            y_train)
    print(f"{model_name}: conditioned on {len(y_train)} bundled points; "
          f"prior {model.card['prior']['class']} {_prior_summary(model.card['prior'])}")
    interval = "95% interval"
    print(f"{'x':>5} | {'PFN mean':>8}  {interval:>17} | {'GP mean':>8}  {interval:>17}")
    for i in range(0, len(x_grid), 20):
        print(f"{result['x'][i]:5.2f} | {result['pfn_mean'][i]:8.3f}  "
              f"[{result['pfn_lower'][i]:7.3f}, {result['pfn_upper'][i]:7.3f}] | "
              f"{result['exact_mean'][i]:8.3f}  "
              f"[{result['exact_lower'][i]:7.3f}, {result['exact_upper'][i]:7.3f}]")
    outside = (result["pfn_mean"] < result["exact_lower"]) | (
        result["pfn_mean"] > result["exact_upper"]
    )
    print(f"gap to the exact posterior, KL(exact || PFN) per x: mean {gap.mean():.3f} nats, "
          f"largest {gap.max():.3f} at x = {result['x'][gap.argmax()]:.2f}; PFN mean outside "
          f"the exact 95% interval at {int(outside.sum())} of {len(gap)} grid points")
    print(f"the {len(y_train)} points under the prior: log evidence "
          f"{result['log_evidence']:.1f}, above {100 * result['evidence_quantile']:.1f}% of "
          f"{EVIDENCE_DRAWS} prior datasets of {len(y_train)} points (the PFN is trained on "
          "such datasets; its posterior is least exact on data the prior rarely draws)")
    path = Path(out) / "demo.png"
    plot_posterior_1d(path, x_train[:, 0], y_train, result["x"],
                      (result["pfn_mean"], result["pfn_lower"], result["pfn_upper"]),
                      (result["exact_mean"], result["exact_lower"], result["exact_upper"]),
                      f"{model_name} vs exact GP posterior (mean gap {gap.mean():.3f} nats)")
    print(f"plot written to {path}")
    return result


def evidence_quantile(prior, x_train: np.ndarray, y_train: np.ndarray,
                      draws: int | None = None, seed: int = 0) -> tuple[float, float]:
    """The log evidence ``log p(y_train | x_train)`` of ``x_train [n, F]``, ``y_train [n]``
    under ``prior`` (the chain rule over its exact predictive ``prior.log_prob``), and the
    fraction of ``draws`` (default :data:`EVIDENCE_DRAWS`) datasets of ``n`` points from the
    prior whose log evidence is lower."""
    draws = draws or EVIDENCE_DRAWS
    batch = prior.sample(draws, len(y_train), generator=torch.Generator().manual_seed(seed))
    xs = torch.cat([torch.as_tensor(x_train, dtype=torch.float64)[None], batch.x.double()])
    ys = torch.cat([torch.as_tensor(y_train, dtype=torch.float64)[None], batch.y.double()])
    evidence = sum(prior.log_prob(xs[:, :i], ys[:, :i], xs[:, i:i + 1], ys[:, i:i + 1])[:, 0]
                   for i in range(len(y_train)))
    return float(evidence[0]), float((evidence[1:] < evidence[0]).double().mean())


def expected_nll_gap(post, mean: torch.Tensor, std: torch.Tensor, nodes: int = 64) -> np.ndarray:
    """``KL(N(mean, std²) || post)`` per point ``[m]``: how many nats the PFN loses on average
    on data from the exact posterior predictive (Gauss–Hermite quadrature, ``nodes`` nodes)."""
    z, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-z²/2)
    z, w = torch.from_numpy(z)[:, None], torch.from_numpy(w / w.sum())[:, None]
    y = mean[None] + std[None] * z  # [nodes, m]
    exact = torch.distributions.Normal(mean, std).log_prob(y)
    return (w * (exact - post.log_prob(y.float()).double())).sum(0).numpy()


def _prior_summary(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("class", "inputs"))
