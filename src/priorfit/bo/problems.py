"""Test problems of Bayesian optimisation, with their literature definitions and known optima.

Every problem is minimised over a box. Constrained problems return constraint values
``g [n, J]``, feasible where every ``g_j(x) <= 0``. Functions take ``x [n, d]`` (numpy, float64)
and are vectorised over rows.

Unconstrained (Surjanovic & Bingham's library; BoTorch's definitions): Branin, Hartmann-3 and -6,
Ackley (2, 6, 10-D, on [-32.768, 32.768]^d), Rosenbrock (on [-5, 10]^d), Levy (on [-10, 10]^d).

Constrained engineering designs, from the papers that define them:

- pressure vessel (Coello Coello 2002): shell and head thicknesses in steps of 0.0625 inch (both
  the cost and the constraints see the rounded values), radius and length; best known 6059.714;
- welded beam (Coello Coello 2002; Deb 1991's constants): the buckling load
  ``P_c = 4.013 E sqrt(t² b⁶ / 36) / L² (1 - t / (2L) sqrt(E / 4G))`` as published (BoTorch's
  ``WeldedBeamSO`` multiplies by 6 where the formula divides: 36 times the load); best 1.724852;
- tension-compression spring (Arora 1989; Coello Coello 2002), on the published bounds
  d in [0.05, 2], D in [0.25, 1.3], N in [2, 15]; best known 0.012665;
- speed reducer (Golinski 1973; the 11 constraints of Lemonge et al. 2010), on the published
  bounds (x5 >= 7.8, so not the 2994.47 reported with x5 = 7.715); best known 2996.348;
- three-bar truss (Ray & Saini 2001); best 263.8958;
- Keane's bump (Keane 1994), 2-D, maximised in the literature, so minimised here as its
  negative; best -0.364980;
- Gardner et al. (2014)'s two toys on [0, 6]²: ``cos(2x)cos(y) + sin(x)`` with
  ``cos(x)cos(y) - sin(x)sin(y) <= 0.5`` (best -2 at (3π/2, 0)), and ``sin(x) + y`` with
  ``sin(x)sin(y) <= -0.95`` (best ``arcsin(0.95) - 1`` at (3π/2, arcsin(0.95))).

The public engineering benchmark's cantilever beam is infeasible everywhere as coded, so it is
not here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class Problem:
    """A minimisation problem over a box.

    Attributes:
        name: its key in :data:`PROBLEMS`.
        bounds: ``[d, 2]`` lower and upper bounds per dimension.
        objective: ``x [n, d] -> [n]``.
        optimal_value: the best known (or exact) minimum, feasible for constrained problems.
        optimizer: a point ``[d]`` attaining it (as published).
        constraints: ``x [n, d] -> [n, J]`` (feasible where all <= 0), or ``None``.
        steps: per dimension, the grid step a value is rounded to (0: continuous).
    """

    name: str
    bounds: Array
    objective: Callable[[Array], Array]
    optimal_value: float
    optimizer: Array
    constraints: Callable[[Array], Array] | None = None
    steps: tuple[float, ...] = ()

    @property
    def dim(self) -> int:
        return self.bounds.shape[0]

    @property
    def num_constraints(self) -> int:
        if self.constraints is None:
            return 0
        return self.constraints(self.optimizer[None]).shape[1]

    def __call__(self, x) -> Array:
        """The objective ``[n]`` at ``x [n, d]`` (or a float at one point ``[d]``)."""
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1
        values = self.objective(np.atleast_2d(x))
        return float(values[0]) if single else values

    def feasible(self, x) -> Array:
        """``[n]`` bool: every constraint satisfied (always, for unconstrained problems)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if self.constraints is None:
            return np.ones(len(x), dtype=bool)
        return (self.constraints(x) <= 0).all(1)


def _box(*pairs) -> Array:
    return np.array(pairs, dtype=np.float64)


def branin(x: Array) -> Array:
    x1, x2 = x[:, 0], x[:, 1]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
HARTMANN = {
    3: (np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]]),
        1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547],
                         [381, 5743, 8828]])),
    6: (np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]),
        1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886],
                         [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650],
                         [4047, 8828, 8732, 5743, 1091, 381]])),
}


def hartmann(x: Array) -> Array:
    A, P = HARTMANN[x.shape[1]]
    inner = (A * (x[:, None, :] - P) ** 2).sum(-1)  # [n, 4]
    return -(HARTMANN_ALPHA * np.exp(-inner)).sum(-1)


def ackley(x: Array) -> Array:
    d = x.shape[1]
    return (-20 * np.exp(-0.2 * np.sqrt((x**2).sum(1) / d))
            - np.exp(np.cos(2 * math.pi * x).sum(1) / d) + 20 + math.e)


def rosenbrock(x: Array) -> Array:
    return (100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (x[:, :-1] - 1) ** 2).sum(1)


def levy(x: Array) -> Array:
    w = 1 + (x - 1) / 4
    middle = ((w[:, :-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:, :-1] + 1) ** 2)).sum(1)
    last = (w[:, -1] - 1) ** 2 * (1 + np.sin(2 * math.pi * w[:, -1]) ** 2)
    return np.sin(math.pi * w[:, 0]) ** 2 + middle + last


THICKNESS_STEP = 0.0625  # pressure vessel plates come in 1/16 inch


def _vessel_plates(x: Array) -> tuple[Array, Array, Array, Array]:
    steps = np.round(x[:, :2] / THICKNESS_STEP) * THICKNESS_STEP
    return steps[:, 0], steps[:, 1], x[:, 2], x[:, 3]


def pressure_vessel(x: Array) -> Array:
    shell, head, radius, length = _vessel_plates(x)
    return (0.6224 * shell * radius * length + 1.7781 * head * radius**2
            + 3.1661 * shell**2 * length + 19.84 * shell**2 * radius)


def pressure_vessel_constraints(x: Array) -> Array:
    shell, head, radius, length = _vessel_plates(x)
    return np.stack([
        -shell + 0.0193 * radius,
        -head + 0.00954 * radius,
        -math.pi * radius**2 * length - 4 / 3 * math.pi * radius**3 + 1_296_000,
        length - 240,
    ], 1)


def welded_beam(x: Array) -> Array:
    h, weld, t, b = x.T  # weld thickness and length, bar height and thickness
    return 1.10471 * h**2 * weld + 0.04811 * t * b * (14 + weld)


def welded_beam_constraints(x: Array) -> Array:
    h, weld, t, b = x.T
    load, length, E, G = 6000.0, 14.0, 30e6, 12e6
    moment = load * (length + weld / 2)
    radius = np.sqrt(weld**2 / 4 + ((h + t) / 2) ** 2)
    inertia = 2 * (math.sqrt(2) * h * weld * (weld**2 / 12 + ((h + t) / 2) ** 2))
    primary = load / (math.sqrt(2) * h * weld)
    secondary = moment * radius / inertia
    shear = np.sqrt(primary**2 + 2 * primary * secondary * weld / (2 * radius) + secondary**2)
    bending = 6 * load * length / (b * t**2)
    deflection = 4 * load * length**3 / (E * t**3 * b)
    buckling = (4.013 * E * np.sqrt(t**2 * b**6 / 36) / length**2
                * (1 - t / (2 * length) * math.sqrt(E / (4 * G))))
    return np.stack([
        shear - 13600, bending - 30000, h - b,
        0.10471 * h**2 + 0.04811 * t * b * (14 + weld) - 5, 0.125 - h,
        deflection - 0.25, load - buckling,
    ], 1)


def spring(x: Array) -> Array:
    d, D, N = x.T
    return (N + 2) * D * d**2


def spring_constraints(x: Array) -> Array:
    d, D, N = x.T
    return np.stack([
        1 - D**3 * N / (71785 * d**4),
        (4 * D**2 - d * D) / (12566 * (D * d**3 - d**4)) + 1 / (5108 * d**2) - 1,
        1 - 140.45 * d / (D**2 * N),
        (D + d) / 1.5 - 1,
    ], 1)


def speed_reducer(x: Array) -> Array:
    x1, x2, x3, x4, x5, x6, x7 = x.T
    return (0.7854 * x1 * x2**2 * (3.3333 * x3**2 + 14.9334 * x3 - 43.0934)
            - 1.508 * x1 * (x6**2 + x7**2) + 7.4777 * (x6**3 + x7**3)
            + 0.7854 * (x4 * x6**2 + x5 * x7**2))


def speed_reducer_constraints(x: Array) -> Array:
    x1, x2, x3, x4, x5, x6, x7 = x.T
    return np.stack([
        27 / (x1 * x2**2 * x3) - 1,
        397.5 / (x1 * x2**2 * x3**2) - 1,
        1.93 * x4**3 / (x2 * x3 * x6**4) - 1,
        1.93 * x5**3 / (x2 * x3 * x7**4) - 1,
        np.sqrt((745 * x4 / (x2 * x3)) ** 2 + 16.9e6) / (0.1 * x6**3) - 1100,
        np.sqrt((745 * x5 / (x2 * x3)) ** 2 + 157.5e6) / (0.1 * x7**3) - 850,
        x2 * x3 - 40,
        5 - x1 / x2,
        x1 / x2 - 12,
        (1.5 * x6 + 1.9) / x4 - 1,
        (1.1 * x7 + 1.9) / x5 - 1,
    ], 1)


def three_bar_truss(x: Array) -> Array:
    x1, x2 = x.T
    return (2 * math.sqrt(2) * x1 + x2) * 100


def three_bar_truss_constraints(x: Array) -> Array:
    x1, x2 = x.T
    load = stress = 2.0
    r2 = math.sqrt(2)
    return np.stack([
        (r2 * x1 + x2) / (r2 * x1**2 + 2 * x1 * x2) * load - stress,
        x2 / (r2 * x1**2 + 2 * x1 * x2) * load - stress,
        1 / (r2 * x2 + x1) * load - stress,
    ], 1)


def keane_bump(x: Array) -> Array:
    cos = np.cos(x)
    numerator = np.abs((cos**4).sum(1) - 2 * (cos**2).prod(1))
    index = np.arange(1, x.shape[1] + 1)
    return -numerator / np.sqrt((index * x**2).sum(1))


def keane_bump_constraints(x: Array) -> Array:
    return np.stack([0.75 - x.prod(1), x.sum(1) - 7.5 * x.shape[1]], 1)


def gardner_1(x: Array) -> Array:
    return np.cos(2 * x[:, 0]) * np.cos(x[:, 1]) + np.sin(x[:, 0])


def gardner_1_constraints(x: Array) -> Array:
    return (np.cos(x[:, 0]) * np.cos(x[:, 1]) - np.sin(x[:, 0]) * np.sin(x[:, 1]) - 0.5)[:, None]


def gardner_2(x: Array) -> Array:
    return np.sin(x[:, 0]) + x[:, 1]


def gardner_2_constraints(x: Array) -> Array:
    return (np.sin(x[:, 0]) * np.sin(x[:, 1]) + 0.95)[:, None]


def _problems() -> dict[str, Problem]:
    problems = [
        Problem("branin", _box((-5, 10), (0, 15)), branin, 0.397887,
                np.array([math.pi, 2.275])),
        Problem("hartmann-3", _box(*[(0, 1)] * 3), hartmann, -3.86278,
                np.array([0.114614, 0.555649, 0.852547])),
        Problem("hartmann-6", _box(*[(0, 1)] * 6), hartmann, -3.32237,
                np.array([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])),
        *(Problem(f"ackley-{d}", _box(*[(-32.768, 32.768)] * d), ackley, 0.0, np.zeros(d))
          for d in (2, 6, 10)),
        Problem("rosenbrock-2", _box((-5, 10), (-5, 10)), rosenbrock, 0.0, np.ones(2)),
        Problem("levy-2", _box((-10, 10), (-10, 10)), levy, 0.0, np.ones(2)),
        Problem("pressure-vessel", _box((0.0625, 6.1875), (0.0625, 6.1875), (10, 200),
                                        (10, 200)),
                pressure_vessel, 6059.714335,
                np.array([0.8125, 0.4375, 42.098446, 176.636596]),
                pressure_vessel_constraints, steps=(THICKNESS_STEP, THICKNESS_STEP, 0.0, 0.0)),
        Problem("welded-beam", _box((0.1, 2), (0.1, 10), (0.1, 10), (0.1, 2)), welded_beam,
                1.724852, np.array([0.205730, 3.470489, 9.036624, 0.205730]),
                welded_beam_constraints),
        Problem("spring", _box((0.05, 2), (0.25, 1.3), (2, 15)), spring, 0.012665,
                np.array([0.051689, 0.356718, 11.288965]), spring_constraints),
        Problem("speed-reducer", _box((2.6, 3.6), (0.7, 0.8), (17, 28), (7.3, 8.3), (7.8, 8.3),
                                      (2.9, 3.9), (5, 5.5)),
                speed_reducer, 2996.348165,
                np.array([3.5, 0.7, 17, 7.3, 7.8, 3.350215, 5.286683]),
                speed_reducer_constraints),
        Problem("three-bar-truss", _box((0, 1), (0, 1)), three_bar_truss, 263.8958,
                np.array([0.788675, 0.408248]), three_bar_truss_constraints),
        Problem("keane-bump-2", _box((0, 10), (0, 10)), keane_bump, -0.364980,
                np.array([1.600860, 0.468498]), keane_bump_constraints),
        Problem("gardner-1", _box((0, 6), (0, 6)), gardner_1, -2.0,
                np.array([1.5 * math.pi, 0.0]), gardner_1_constraints),
        Problem("gardner-2", _box((0, 6), (0, 6)), gardner_2, math.asin(0.95) - 1,
                np.array([1.5 * math.pi, math.asin(0.95)]), gardner_2_constraints),
    ]
    return {p.name: p for p in problems}


PROBLEMS: dict[str, Problem] = _problems()
UNCONSTRAINED = tuple(name for name, p in PROBLEMS.items() if p.constraints is None)
CONSTRAINED = tuple(name for name, p in PROBLEMS.items() if p.constraints is not None)
