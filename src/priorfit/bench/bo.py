"""``priorfit bench bo``: Bayesian optimisation with the PFN surrogate against BoTorch, Optuna and
random search on the test problems of :mod:`priorfit.bo.problems`.

Every problem of :data:`~priorfit.bo.problems.PROBLEMS` (unconstrained and constrained) is
minimised from :data:`SEEDS` seeds by each method, :data:`N_TRIALS` evaluations of which the
first :data:`N_INITIAL` are an initial design:

- ``pfn``: :func:`priorfit.bo.minimize` with the surrogate ``model_name`` (the shipped ``bo``),
  log EI (times the probability of feasibility, with constraints), its own scrambled Sobol
  design;
- ``botorch``: the standard BoTorch loop on the same Sobol design (the same points: the design
  is rebuilt as :class:`~priorfit.bo.Optimizer` builds it), inputs mapped to the unit cube,
  outcomes standardised (``Standardize``), a ``SingleTaskGP`` fitted by ``fit_gpytorch_mll``
  each step, ``LogExpectedImprovement`` on ``-f`` or, with constraints, one GP output per
  constraint and ``LogConstrainedExpectedImprovement`` (every ``g_j <= 0``; before any feasible
  point, ``best_f`` is the worst value observed, so the probability of feasibility leads),
  maximised by ``optimize_acqf(q=1)``. A failed fit or acquisition optimisation falls back to
  a uniform random point, counted in the row's ``fallbacks``;
- ``optuna-tpe``, ``optuna-gp``: Optuna's ``TPESampler`` and ``GPSampler`` (seeded, constraints
  set on each trial), the same Sobol design enqueued as their first trials;
- ``random``: uniform points in the box (numpy ``default_rng(seed)``).

Every method treats the problems as continuous (the pressure vessel rounds its plate
thicknesses inside its objective and constraints). A failed evaluation (a non-finite objective,
as Keane's bump gives at the origin) is infeasible; BoTorch sees it as the worst finite value
observed, as priorfit does; Optuna records it as a failed trial. A non-finite constraint value
(the three-bar truss divides by zero on the edge ``x1 = 0``) is recorded as :data:`VIOLATED`,
for every method alike, since a GP takes finite values only; the row counts such evaluations
in ``nonfinite``.

Measured per problem, method and seed: the best feasible value after each evaluation (NaN
until the first feasible one) minus the problem's known optimum, i.e. the simple regret; the
fraction of evaluations that were feasible; and the wall seconds of each model-based step (the
``ask`` of priorfit and of Optuna; BoTorch's fit plus acquisition optimisation; drawing the
random point).
Each run is kept in the score ledger ``runs/bench-bo.jsonl`` by problem, method, seed, settings
and (for ``pfn``) the model file's digest, so an interrupted run resumes. Per problem and
method, over seeds: the final regret and its log10 (floored at :data:`LOG_FLOOR`) as mean ±
standard error over the seeds that found a feasible point (``seeds_feasible`` of them), the
mean regret curves, the mean feasibility rate and the median seconds per step. The summary
ranks the methods by final regret on each problem, counts the problems where the PFN's regret
is at most BoTorch's, and takes the median over problems of BoTorch's seconds per step over the
PFN's (the goal: the regret of a GP at a tenth of the time per step).
"""

from __future__ import annotations

import hashlib
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from priorfit import zoo
from priorfit.bench import Result, cached, mean_se
from priorfit.bo import minimize, optimizer
from priorfit.bo.problems import PROBLEMS, Problem
from priorfit.model import PFN, load

MODEL = "bo"
SEEDS, N_TRIALS, N_INITIAL = 10, 50, 10
METHODS = ("pfn", "botorch", "optuna-tpe", "optuna-gp", "random")
PFN_SETTINGS = {"raw_samples": 256, "restarts": 4, "polish_iterations": 15}  # Optimizer defaults
BOTORCH_SETTINGS = {"num_restarts": 4, "raw_samples": 256}
QUICK = {"problems": ("branin", "gardner-1"), "seeds": 1, "n_trials": 12, "n_initial": 6,
         "pfn": {"raw_samples": 64, "restarts": 1},
         "botorch": {"num_restarts": 1, "raw_samples": 32}}
LOG_FLOOR = 1e-8  # regrets below it (or at most 0: an optimum known to a few digits) count as it
VIOLATED = 1e6  # a non-finite constraint value is recorded as this violation
CACHE = Path("runs/bench-bo.jsonl")  # score ledger (:func:`priorfit.bench.cached`)


def run(quick: bool, data: Path, model_name: str = MODEL,
        problems: tuple[str, ...] | None = None, cache: Path | None = CACHE) -> Result:
    """``data`` is unused (the problems are synthetic). ``model_name``: the PFN surrogate, a zoo
    name or a path; ``problems``: names in :data:`PROBLEMS` (default: all of them, or the quick
    pair); ``cache``: the score ledger of finished runs (``None``, and always in quick mode:
    none)."""
    problems = problems or (QUICK["problems"] if quick else tuple(PROBLEMS))
    seeds = QUICK["seeds"] if quick else SEEDS
    n_trials, n_initial = (QUICK["n_trials"], QUICK["n_initial"]) if quick else (N_TRIALS,
                                                                                N_INITIAL)
    settings = {"pfn": QUICK["pfn"] if quick else PFN_SETTINGS,
                "botorch": QUICK["botorch"] if quick else BOTORCH_SETTINGS,
                "optuna-tpe": {}, "optuna-gp": {}, "random": {}}
    model = load(model_name)
    digest = _model_digest(model_name)
    config = {"model": model_name, "model_sha256": digest, "problems": list(problems),
              "seeds": seeds, "n_trials": n_trials, "n_initial": n_initial,
              "methods": list(METHODS), "pfn": settings["pfn"], "botorch": settings["botorch"],
              "log_floor": LOG_FLOOR, "violated": VIOLATED, "threads": torch.get_num_threads()}
    cache = None if quick else cache
    rows = []
    for name in problems:
        for method in METHODS:
            runs = [cached_run(cache, name, method, seed, n_trials, n_initial, settings[method],
                               model, {"name": model_name, "sha256": digest})
                    for seed in range(seeds)]
            rows.append(aggregate(PROBLEMS[name], method, runs))
    return Result(config, rows, summarise(rows, n_initial), table(rows))


def cached_run(cache: Path | None, name: str, method: str, seed: int, n_trials: int,
               n_initial: int, settings: dict, model: PFN | None,
               model_identity: dict | None) -> dict:
    """One run of ``method`` on problem ``name`` from ``seed`` (:func:`run_method`), from
    ``cache`` if it was run before with the same settings (and, for ``pfn``, the same model,
    ``model_identity``: its name and digest); only ``pfn`` reads ``model``."""
    identity = {"problem": name, "method": method, "seed": seed, "n_trials": n_trials,
                "n_initial": n_initial, "settings": settings}
    if method == "pfn":
        identity["model"] = model_identity
    return cached(cache, identity, lambda: run_method(method, PROBLEMS[name], seed, n_trials,
                                                      n_initial, settings, model))


def _model_digest(model_name: str) -> str:
    """The first 16 hex digits of the model file's SHA-256, so a retrained model reruns."""
    path = Path(model_name) if Path(model_name).is_file() else zoo.path(model_name)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# -- evaluations ---------------------------------------------------------------------------------


def objective(problem: Problem, x: np.ndarray) -> float:
    """The objective at ``x [d]`` (NaN or inf: a failed evaluation)."""
    with np.errstate(all="ignore"):
        return problem(x)


def constraints(problem: Problem, x: np.ndarray) -> np.ndarray:
    """The constraint values ``[J]`` at ``x [d]``, a non-finite one as :data:`VIOLATED`."""
    with np.errstate(all="ignore"):
        g = problem.constraints(np.asarray(x, dtype=np.float64)[None])[0]
    return np.where(np.isfinite(g), g, VIOLATED)


def sobol_design(dim: int, n: int, seed: int) -> np.ndarray:
    """The first ``n`` points ``[n, dim]`` (unit cube) that :class:`~priorfit.bo.Optimizer`
    evaluates first with this ``seed``."""
    return optimizer.sobol_design(dim, n, seed)[:n]


def _to_box(problem: Problem, u: np.ndarray) -> np.ndarray:
    low, high = problem.bounds.T
    return low + u * (high - low)


def _record(problem: Problem, x: np.ndarray, seconds: list[float], fallbacks: int) -> dict:
    """A run as JSON: ``y [n]``, ``feasible [n]``, ``seconds`` of each model-based step, the
    BoTorch ``fallbacks`` and the evaluations with a non-finite value (``nonfinite``)."""
    y = np.array([objective(problem, point) for point in x])
    ok = np.isfinite(y)
    nonfinite = ~ok
    if problem.constraints is not None:
        with np.errstate(all="ignore"):
            g = problem.constraints(x)
        nonfinite |= ~np.isfinite(g).all(1)
        ok &= (np.where(np.isfinite(g), g, VIOLATED) <= 0).all(1)
    return {"y": y.tolist(), "feasible": ok.tolist(), "seconds": [float(s) for s in seconds],
            "fallbacks": fallbacks, "nonfinite": int(nonfinite.sum())}


# -- methods -------------------------------------------------------------------------------------


def run_method(method: str, problem: Problem, seed: int, n_trials: int, n_initial: int,
               settings: dict, model: PFN) -> dict:
    """One optimisation run of ``method`` (see :func:`_record` for what it returns)."""
    if method == "pfn":
        return _pfn(problem, seed, n_trials, n_initial, settings, model)
    if method == "botorch":
        return _botorch(problem, seed, n_trials, n_initial, settings)
    if method in ("optuna-tpe", "optuna-gp"):
        return _optuna(method, problem, seed, n_trials, n_initial)
    if method == "random":
        return random_search(problem, seed, n_trials)
    raise ValueError(f"unknown method {method!r}; methods: {', '.join(METHODS)}")


def _pfn(problem: Problem, seed: int, n_trials: int, n_initial: int, settings: dict,
         model: PFN) -> dict:
    g = None if problem.constraints is None else (lambda x: constraints(problem, x))
    result = minimize(lambda x: objective(problem, x), [tuple(b) for b in problem.bounds],
                      n_trials=n_trials, n_initial=n_initial, constraints=g, seed=seed,
                      model=model, **settings)
    seconds = [h["ask_seconds"] for h in result.history[n_initial:]]
    return _record(problem, result.x, seconds, 0)


def _optuna(method: str, problem: Problem, seed: int, n_trials: int, n_initial: int) -> dict:
    """Optuna's TPE or GP sampler (each with its own ``seed``), constraints set on each trial
    (``Trial.set_constraint``); the first ``n_initial`` trials are the Sobol design, enqueued."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kind = optuna.samplers.TPESampler if method == "optuna-tpe" else optuna.samplers.GPSampler
    sampler = kind(seed=seed, n_startup_trials=n_initial)
    study = optuna.create_study(sampler=sampler)
    names = [f"x{i}" for i in range(problem.dim)]
    for point in _to_box(problem, sobol_design(problem.dim, n_initial, seed)):
        study.enqueue_trial(dict(zip(names, point.tolist(), strict=True)))
    x, seconds = [], []
    for trial_number in range(n_trials):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask()
            point = np.array([trial.suggest_float(n, float(lo), float(hi))
                              for n, (lo, hi) in zip(names, problem.bounds, strict=True)])
        if trial_number >= n_initial:
            seconds.append(time.perf_counter() - start)
        value = objective(problem, point)
        if problem.constraints is not None:
            for j, value_j in enumerate(constraints(problem, point)):
                trial.set_constraint(f"g{j}", float(value_j))
        if np.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        x.append(point)
    return _record(problem, np.array(x), seconds, 0)


def random_search(problem: Problem, seed: int, n_trials: int) -> dict:
    """``n_trials`` uniform points in the box, one per step, from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    low, high = problem.bounds.T
    x, seconds = [], []
    for _ in range(n_trials):
        start = time.perf_counter()
        x.append(rng.uniform(low, high))
        seconds.append(time.perf_counter() - start)
    return _record(problem, np.array(x), seconds, 0)


def _botorch(problem: Problem, seed: int, n_trials: int, n_initial: int, settings: dict) -> dict:
    from botorch.exceptions import ModelFittingError

    rng = np.random.default_rng(seed)  # fallback points
    units = list(sobol_design(problem.dim, n_initial, seed))
    y = [objective(problem, x) for x in _to_box(problem, np.array(units))]
    g = None if problem.constraints is None else [
        constraints(problem, x) for x in _to_box(problem, np.array(units))]
    seconds, fallbacks = [], 0
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        while len(units) < n_trials:
            start = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    u = botorch_step(np.array(units), np.array(y),
                                     None if g is None else np.array(g), settings)
            except (ModelFittingError, RuntimeError):  # incl. linear_operator's NotPSDError
                u = rng.random(problem.dim)
                fallbacks += 1
            seconds.append(time.perf_counter() - start)
            units.append(u)
            x = _to_box(problem, u)
            y.append(objective(problem, x))
            if g is not None:
                g.append(constraints(problem, x))
    return _record(problem, _to_box(problem, np.array(units)), seconds, fallbacks)


def botorch_step(u: np.ndarray, y: np.ndarray, g: np.ndarray | None, settings: dict
                 ) -> np.ndarray:
    """BoTorch's next point ``[d]`` in the unit cube, from the observed ``u [n, d]`` (unit
    cube), objective values ``y [n]`` (minimised; non-finite ones as the worst finite one) and
    constraint values ``g [n, J]`` (feasible: all ``<= 0``) or ``None``. ``settings``:
    ``num_restarts`` and ``raw_samples`` of ``optimize_acqf``."""
    from botorch.acquisition.analytic import (
        LogConstrainedExpectedImprovement,
        LogExpectedImprovement,
    )
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood

    finite = np.isfinite(y)
    gain = -np.where(finite, y, y[finite].max())  # maximised
    outcomes = gain[:, None] if g is None else np.column_stack([gain, g])
    train_x = torch.from_numpy(u).double()
    train_y = torch.from_numpy(outcomes).double()
    model = SingleTaskGP(train_x, train_y, outcome_transform=Standardize(m=train_y.shape[1]))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    if g is None:
        acquisition = LogExpectedImprovement(model, best_f=float(gain.max()))
    else:
        feasible = finite & (g <= 0).all(1)
        best = float(gain[feasible].max()) if feasible.any() else float(gain.min())
        acquisition = LogConstrainedExpectedImprovement(
            model, best_f=best, objective_index=0,
            constraints={j + 1: (None, 0.0) for j in range(g.shape[1])})
    bounds = torch.stack([torch.zeros(u.shape[1]), torch.ones(u.shape[1])]).double()
    candidate, _ = optimize_acqf(acquisition, bounds=bounds, q=1, **settings)
    return candidate[0].detach().numpy().clip(0.0, 1.0)


# -- aggregation ---------------------------------------------------------------------------------


def regret_curve(y, feasible, optimal_value: float) -> np.ndarray:
    """``[n]`` the best feasible ``y [n]`` after each evaluation minus ``optimal_value``; NaN
    until the first feasible evaluation (``feasible [n]`` bool)."""
    values = np.where(np.asarray(feasible, dtype=bool), np.asarray(y, dtype=np.float64), np.inf)
    best = np.minimum.accumulate(values)
    return np.where(np.isfinite(best), best - optimal_value, np.nan)


def _mean_over_seeds(curves: np.ndarray) -> list[float]:
    """``[n]`` the mean of ``curves [seeds, n]`` over the seeds that are not NaN there."""
    found = np.isfinite(curves)
    total = np.where(found, curves, 0.0).sum(0)
    count = found.sum(0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan).tolist()


def _mean_se_finite(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    return mean_se(finite) if len(finite) else (float("nan"), float("nan"))


def aggregate(problem: Problem, method: str, runs: list[dict]) -> dict:
    """One row from the runs (one per seed) of ``method`` on ``problem``."""
    curves = np.array([regret_curve(r["y"], r["feasible"], problem.optimal_value)
                       for r in runs])  # [seeds, n]
    log_curves = np.log10(np.maximum(curves, LOG_FLOOR))  # NaN stays NaN
    regret, regret_se = _mean_se_finite(curves[:, -1])
    log10, log10_se = _mean_se_finite(log_curves[:, -1])
    return {
        "method": method, "setting": problem.name, "n": curves.shape[1], "seeds": len(runs),
        "dim": problem.dim, "constraints": problem.num_constraints,
        "regret": regret, "regret_se": regret_se,
        "log10_regret": log10, "log10_regret_se": log10_se,
        "seeds_feasible": int(np.isfinite(curves[:, -1]).sum()),
        "feasibility": float(np.mean([np.mean(r["feasible"]) for r in runs])),
        "seconds_per_iteration": float(np.median([s for r in runs for s in r["seconds"]])),
        "fallbacks": sum(r["fallbacks"] for r in runs),
        "nonfinite": sum(r["nonfinite"] for r in runs),
        "best_curve": _mean_over_seeds(curves),
        "log10_curve": _mean_over_seeds(log_curves),
    }


def summarise(rows: list[dict], n_initial: int) -> dict:
    """Mean rank of each method's final regret over problems (1 best; a method that found no
    feasible point ranks last, ties share their mean rank), its mean normalised regret (see
    :func:`_normalised_regret`; ``n_initial``: the evaluations of the initial design), the
    problems where the PFN found a feasible point with a mean regret at most BoTorch's, and
    BoTorch's seconds per step over the PFN's (per problem, and their median)."""
    problems = list(dict.fromkeys(r["setting"] for r in rows))
    by = {(r["setting"], r["method"]): r for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    ranks = {m: [] for m in methods}
    for name in problems:
        regrets = [by[name, m]["regret"] for m in methods]
        for m, rank in zip(methods, rankdata(np.nan_to_num(regrets, nan=np.inf)), strict=True):
            ranks[m].append(float(rank))
    normalised = _normalised_regret(problems, methods, by, n_initial)
    pfn_wins, ratios = [], {}
    for name in problems:
        pfn, gp = by[name, "pfn"], by[name, "botorch"]
        if np.isfinite(pfn["regret"]) and pfn["regret"] <= np.nan_to_num(gp["regret"],
                                                                         nan=np.inf):
            pfn_wins.append(name)
        ratios[name] = gp["seconds_per_iteration"] / pfn["seconds_per_iteration"]
    return {
        "mean_rank": {m: float(np.mean(r)) for m, r in ranks.items()},
        "problems": len(problems),
        "mean_normalised_regret": normalised,
        "pfn_regret_at_most_botorch": len(pfn_wins),
        "pfn_regret_at_most_botorch_on": pfn_wins,
        "botorch_over_pfn_seconds_per_iteration": ratios,
        "median_botorch_over_pfn_seconds_per_iteration": float(np.median(list(ratios.values()))),
    }


def _normalised_regret(problems: list[str], methods: list[str], by: dict,
                       n_initial: int) -> dict:
    """Each method's final regret over a per-problem scale, the largest mean regret any method
    had at the end of the initial design (evaluation ``n_initial``: where every method is still
    guessing), averaged over the ``unconstrained`` and the ``constrained`` problems. A method
    with no feasible point on a problem scores 1 there (no better than a guess)."""
    groups = {"unconstrained": {m: [] for m in methods}, "constrained": {m: [] for m in methods}}
    for name in problems:
        at_initial = [by[name, m]["best_curve"][n_initial - 1] for m in methods]
        finals = [by[name, m]["regret"] for m in methods]
        scale = np.nanmax(at_initial + finals)
        group = groups["constrained" if by[name, methods[0]]["constraints"] else "unconstrained"]
        for m, final in zip(methods, finals, strict=True):
            group[m].append(min(final / scale, 1.0) if np.isfinite(final) else 1.0)
    return {kind: {m: float(np.mean(v)) for m, v in scores.items()}
            for kind, scores in groups.items() if any(scores.values())}


def table(rows: list[dict]) -> str:
    lines = [f"{'problem':>16} {'method':>8} {'regret':>21} {'log10':>13} {'feasible':>8} "
             f"{'seeds ok':>8} {'s/iter':>9}"]
    for r in rows:
        lines.append(
            f"{r['setting']:>16} {r['method']:>8} {r['regret']:11.4g}±{r['regret_se']:<9.3g} "
            f"{r['log10_regret']:6.2f}±{r['log10_regret_se']:<6.2f} {r['feasibility']:8.2f} "
            f"{r['seeds_feasible']:>4}/{r['seeds']:<3} {r['seconds_per_iteration']:9.2e}"
            + (f"  ({r['fallbacks']} fallbacks)" if r["fallbacks"] else "")
        )
    return "\n".join(lines)


def plot(result: Result, out: Path) -> list[Path]:
    from priorfit.plots import pyplot

    plt = pyplot()
    problems = list(dict.fromkeys(r["setting"] for r in result.rows))
    columns = min(4, len(problems))
    grid = -(-len(problems) // columns)
    fig, axes = plt.subplots(grid, columns, figsize=(4 * columns, 3.2 * grid), squeeze=False)
    for ax, name in zip(axes.flat, problems, strict=False):
        for r in (r for r in result.rows if r["setting"] == name):
            ax.plot(np.arange(1, r["n"] + 1), r["log10_curve"], label=r["method"])
        ax.axvline(result.config["n_initial"], color="grey", linestyle=":", linewidth=1)
        ax.set_title(name)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("mean log10 simple regret")
    for ax in axes.flat[len(problems):]:
        ax.set_visible(False)
    axes.flat[0].legend()
    fig.tight_layout()
    path = out / "bo_regret.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
