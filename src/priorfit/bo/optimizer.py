"""Bayesian optimisation with a PFN surrogate: ask/tell and :func:`minimize`.

Each step conditions the PFN once on everything observed — the objective and each black-box
constraint as datasets of one batch — then maximises the acquisition over the box: a scrambled
Sobol sample of candidates, then L-BFGS-B from the best few with gradients through the PFN.

- Inputs are mapped to the unit cube; integer dimensions (and categorical ones, as integer
  codes ``0..k-1``) are optimised as continuous and rounded, and a rounded candidate that was
  already evaluated gives way to the best untried one.
- Observed values go through a Yeo-Johnson power transform, standardised (as PFNs4BO does), the
  constraints each through their own; ``g_j <= 0`` becomes the transformed bound.
- A failed evaluation (NaN or infinite objective or constraint value) is recorded as it came,
  and conditioned on as the worst finite value observed of that output, so the search moves
  away from it.
- With constraints, the acquisition is the objective's over the best *feasible* value times the
  probability that every constraint holds; before any feasible point, the probability of
  feasibility alone.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize as scipy_minimize
from scipy.stats import qmc
from sklearn.preprocessing import PowerTransformer

from priorfit.bo.acquisition import ACQUISITIONS, Acquisition
from priorfit.model import PFN, load

DEFAULT_MODEL = "bo"  # the shipped BO surrogate (configs/bo.toml)


@dataclass
class Result:
    """What :func:`minimize` found.

    Attributes:
        x: ``[n, d]`` every evaluated point, in order. y: ``[n]`` their objective values
            (NaN or inf where an evaluation failed).
        constraints: ``[n, J]`` constraint values (``J = 0`` without constraints).
        best_x, best_y: the best feasible evaluation (``None`` if none was feasible).
        history: one dict per evaluation (trial, x, y, feasible, seconds of the step).
    """

    x: np.ndarray
    y: np.ndarray
    constraints: np.ndarray
    best_x: np.ndarray | None
    best_y: float | None
    history: list[dict] = field(default_factory=list)


class Optimizer:
    """Ask/tell Bayesian optimisation of a black box over a box (see the module).

    Parameters:
        bounds: ``(low, high)`` per dimension.
        model: a zoo name, a path or a loaded regression PFN (Riemann head).
        acquisition: a name in :data:`~priorfit.bo.acquisition.ACQUISITIONS`.
        n_initial: evaluations from a scrambled Sobol design before the model takes over.
        integer: dimensions that take integer values (within their bounds).
        categorical: ``{dimension: number of categories}``; values are codes ``0..k-1``.
        raw_samples, restarts: Sobol candidates per step, and how many of the best start
            L-BFGS-B (all polished together, see :meth:`_polish`).
        polish_iterations: the most L-BFGS-B iterations per step (and at most twice as many
            evaluations: a line search that fails on the piecewise-smooth acquisition of a
            Riemann distribution otherwise costs a hundred passes).
        seed: seeds the design and the candidates; same seed, same sequence of asks.
    """

    def __init__(self, bounds: Sequence[tuple[float, float]], *,
                 model: str | PFN = DEFAULT_MODEL, acquisition: str = "log_ei",
                 n_initial: int = 10, integer: Sequence[int] = (),
                 categorical: dict[int, int] | None = None, raw_samples: int = 256,
                 restarts: int = 4, polish_iterations: int = 15, ucb_beta: float = 2.0,
                 seed: int = 0) -> None:
        self.bounds = _check_bounds(bounds, categorical or {})
        dim = len(self.bounds)
        self.model = model if isinstance(model, PFN) else load(model)
        if self.model.config.head == "classes":
            raise ValueError("the BO surrogate must be a regression PFN, got a classifier")
        if dim > self.model.config.num_features:
            raise ValueError(f"{dim} dimensions, but this PFN takes at most "
                             f"{self.model.config.num_features}")
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
        for name, value in (("n_initial", n_initial), ("raw_samples", raw_samples),
                            ("restarts", restarts), ("polish_iterations", polish_iterations)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        rounded = sorted({*integer, *(categorical or {})})
        if any(not 0 <= d < dim for d in rounded):
            raise ValueError(f"integer and categorical dimensions must be in 0..{dim - 1}, got "
                             f"{rounded}")
        self.rounded = np.array(rounded, dtype=int)
        self.acquisition, self.n_initial, self.ucb_beta = acquisition, n_initial, ucb_beta
        self.raw_samples, self.restarts, self.seed = raw_samples, restarts, seed
        self.polish_iterations = polish_iterations
        self.design = sobol_design(dim, n_initial, seed)  # the initial design, in order
        self.x = np.zeros((0, dim))
        self.y = np.zeros(0)
        self.constraints: np.ndarray | None = None
        self.steps = 0

    # -- observations -----------------------------------------------------------------------

    def tell(self, x, y, constraints=None) -> None:
        """Record evaluations: ``x [d]`` or ``[n, d]``, ``y`` a number or ``[n]``, and, if the
        problem has constraints, their values ``[J]`` / ``[n, J]`` (feasible: all ``<= 0``) for
        every observation. A NaN or infinite constraint value is a failed evaluation of that
        constraint: the observation counts as infeasible."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        y = np.atleast_1d(np.asarray(y, dtype=np.float64))
        if x.shape[1:] != (len(self.bounds),) or y.shape != (len(x),):
            raise ValueError(f"tell takes x [n, {len(self.bounds)}] and y [n]; got x "
                             f"{x.shape} and y {y.shape}")
        if constraints is None:
            if self.constraints is not None:
                raise ValueError("constraints were given for earlier observations: give them "
                                 "for every observation")
        else:
            g = np.asarray(constraints, dtype=np.float64).reshape(len(x), -1)
            if self.constraints is None and len(self.y):
                raise ValueError("constraints must be given for every observation, also the "
                                 "earlier ones")
            if self.constraints is not None and g.shape[1] != self.constraints.shape[1]:
                raise ValueError(f"expected {self.constraints.shape[1]} constraint values per "
                                 f"observation, got {g.shape[1]}")
            self.constraints = g if self.constraints is None else np.vstack([self.constraints, g])
        self.x, self.y = np.vstack([self.x, x]), np.concatenate([self.y, y])

    def feasible(self) -> np.ndarray:
        """``[n]`` bool: finite objective and every constraint finite and satisfied."""
        ok = np.isfinite(self.y)
        if self.constraints is None:
            return ok
        return ok & (np.isfinite(self.constraints) & (self.constraints <= 0)).all(1)

    # -- proposals --------------------------------------------------------------------------

    def ask(self) -> np.ndarray:
        """The next point to evaluate, ``[d]``."""
        self.steps += 1
        if len(self.y) < self.n_initial or not np.isfinite(self.y).any():
            return self._round(self._to_box(self.design[len(self.y) % len(self.design)][None]))[0]
        acquisition = self._acquisition()
        sobol = qmc.Sobol(len(self.bounds), scramble=True, seed=self.seed * 100_003 + self.steps)
        raw = torch.from_numpy(sobol.random_base2(_log2_ceil(self.raw_samples))).float()
        with torch.no_grad():
            raw = raw[torch.argsort(acquisition(raw), descending=True)]
        polished = self._polish(acquisition, raw[: self.restarts].numpy())
        with torch.no_grad():
            scores = acquisition(torch.from_numpy(polished).float()).numpy()
        for u in np.vstack([polished[np.argsort(-scores)], raw.numpy()]):
            point = self._round(self._to_box(u[None]))[0]
            if not self._seen(point):
                return point
        return point

    def _acquisition(self) -> Acquisition:
        unit = torch.from_numpy(self._to_unit(self.x)).float()
        objective = _transform_observations(self.y)
        columns = [objective]
        thresholds = []
        if self.constraints is not None:
            for g in self.constraints.T:
                transformed, threshold = _transform_constraint(g)
                columns.append(transformed)
                thresholds.append(threshold)
        y_train = torch.from_numpy(np.stack(columns)).float()
        conditioned = self.model.condition_on(unit.expand(len(columns), *unit.shape), y_train)
        feasible = self.feasible()
        best = float(objective[feasible].min()) if feasible.any() else None
        return Acquisition(conditioned, self.acquisition, best,
                           torch.tensor(thresholds, dtype=torch.float32), self.ucb_beta)

    def _polish(self, acquisition: Acquisition, starts: np.ndarray) -> np.ndarray:
        """L-BFGS-B from every row of ``starts [r, d]`` (unit cube) at once, as BoTorch's
        ``gen_candidates_scipy`` does: one variable vector of ``r * d`` entries whose objective
        is the sum of the acquisition values, so each iteration is one forward and backward pass
        over all ``r`` candidates (gradients through the PFN). Returns ``[r, d]``."""
        shape = starts.shape

        def negative(flat):
            x = torch.tensor(flat.reshape(shape), dtype=torch.float32).requires_grad_(True)
            values = acquisition(x)
            finite = torch.isfinite(values)
            total = torch.where(finite, values, torch.zeros_like(values)).sum()
            (grad,) = torch.autograd.grad(total, x)
            penalty = 1e10 * float((~finite).sum())  # a non-finite value is never chosen
            return -float(total) + penalty, -grad.double().numpy().ravel()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = scipy_minimize(negative, starts.astype(np.float64).ravel(), jac=True,
                                   method="L-BFGS-B", bounds=[(0.0, 1.0)] * starts.size,
                                   options={"maxiter": self.polish_iterations,
                                            "maxfun": 2 * self.polish_iterations})
        return np.clip(found.x.reshape(shape), 0.0, 1.0)

    def _to_unit(self, x: np.ndarray) -> np.ndarray:
        low, high = self.bounds.T
        return (x - low) / (high - low)

    def _to_box(self, u: np.ndarray) -> np.ndarray:
        low, high = self.bounds.T
        return low + u * (high - low)

    def _round(self, x: np.ndarray) -> np.ndarray:
        x = x.copy()
        if len(self.rounded):
            low, high = self.bounds[self.rounded].T
            x[:, self.rounded] = np.clip(np.round(x[:, self.rounded]), np.ceil(low),
                                         np.floor(high))
        return x

    def _seen(self, point: np.ndarray) -> bool:
        if not len(self.x):
            return False
        scale = self.bounds[:, 1] - self.bounds[:, 0]
        return bool((np.abs(self.x - point) / scale < 1e-9).all(1).any())


def minimize(f: Callable, bounds: Sequence[tuple[float, float]], n_trials: int = 50,
             constraints: Callable | None = None, seed: int = 0, **options) -> Result:
    """Minimise ``f(x [d]) -> float`` over ``bounds`` in ``n_trials`` evaluations, subject to
    ``constraints(x [d]) -> [J]`` (feasible: all ``<= 0``) if given. ``options`` go to
    :class:`Optimizer`. An evaluation that raises is recorded as NaN (a failure), not fatal."""
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be an int >= 1, got {n_trials!r}")
    optimizer = Optimizer(bounds, seed=seed, **options)
    history = []
    for trial in range(n_trials):
        start = time.perf_counter()
        x = optimizer.ask()
        seconds = time.perf_counter() - start
        try:
            y = float(f(x))
        except Exception as error:  # a failed evaluation is recorded, not fatal
            warnings.warn(f"trial {trial}: f raised {error!r}; recorded as a failure",
                          stacklevel=2)
            y = float("nan")
        g = None if constraints is None else np.atleast_1d(np.asarray(constraints(x), float))
        optimizer.tell(x, y, g)
        history.append({"trial": trial, "x": x.tolist(), "y": y,
                        "feasible": bool(optimizer.feasible()[-1]), "ask_seconds": seconds})
    feasible = optimizer.feasible()
    best = int(np.flatnonzero(feasible)[np.argmin(optimizer.y[feasible])]) if feasible.any() \
        else None
    g = optimizer.constraints if optimizer.constraints is not None else np.zeros((n_trials, 0))
    return Result(optimizer.x, optimizer.y, g,
                  None if best is None else optimizer.x[best],
                  None if best is None else float(optimizer.y[best]), history)


def _check_bounds(bounds, categorical: dict[int, int]) -> np.ndarray:
    array = np.asarray(bounds, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or not len(array):
        raise ValueError(f"bounds must be a list of (low, high) pairs, got {bounds!r}")
    array = array.copy()
    for d, count in categorical.items():
        if not 0 <= d < len(array) or isinstance(count, bool) or not isinstance(count, int) \
                or count < 2:
            raise ValueError(f"categorical must map dimensions to category counts >= 2, got "
                             f"{categorical!r}")
        array[d] = (0, count - 1)
    if not np.isfinite(array).all() or (array[:, 0] >= array[:, 1]).any():
        bad = int(np.flatnonzero(~(array[:, 0] < array[:, 1]))[0]) if (
            array[:, 0] >= array[:, 1]).any() else None
        raise ValueError("bounds must be finite with low < high"
                         + (f"; dimension {bad} has {tuple(array[bad])}" if bad is not None
                            else ""))
    return array


def sobol_design(dim: int, n: int, seed: int) -> np.ndarray:
    """The initial design of :class:`Optimizer`: the scrambled Sobol points ``[2^k, dim]``
    (unit cube, ``2^k >= n`` the next power of two) of ``seed``, in the order it asks them."""
    return qmc.Sobol(dim, scramble=True, seed=seed).random_base2(_log2_ceil(n))


def _log2_ceil(n: int) -> int:
    return max(0, (n - 1).bit_length())


def _transform_observations(y: np.ndarray) -> np.ndarray:
    """Yeo-Johnson + standardisation of the finite values; failures as the worst of them."""
    finite = np.isfinite(y)
    return _power_transform(np.where(finite, y, y[finite].max()), 0.0)[0]


def _transform_constraint(g: np.ndarray) -> tuple[np.ndarray, float]:
    """A constraint's values ``[n]``, transformed like the objective's, and its bound 0 in those
    units. Failures (NaN, inf) count as violated: the worst finite value when that one is
    violated, else the best finite value mirrored to the violated side (1 if none is finite)."""
    finite = np.isfinite(g)
    if not finite.any():
        return _power_transform(np.ones_like(g), 0.0)
    worst = g[finite].max()
    failed = worst if worst > 0 else (-g[finite].min() or 1.0)
    return _power_transform(np.where(finite, g, failed), 0.0)


def _power_transform(values: np.ndarray, bound: float) -> tuple[np.ndarray, float]:
    """``values [n]`` and ``bound`` through a Yeo-Johnson transform fitted on the values and
    standardised; constant values become 0 and the bound ``bound - value``, on the same side."""
    if np.ptp(values) == 0:
        return values - values, float(bound - values[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformer = PowerTransformer().fit(values[:, None])
        return (transformer.transform(values[:, None])[:, 0],
                float(transformer.transform(np.array([[bound]]))[0, 0]))
