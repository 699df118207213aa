"""BO test problems against their published optima."""

import numpy as np
import pytest
from scipy.optimize import minimize

from priorfit.bo.problems import CONSTRAINED, PROBLEMS, UNCONSTRAINED


@pytest.mark.parametrize("name", PROBLEMS)
def test_the_published_optimizer_attains_the_published_value_and_is_feasible(name):
    problem = PROBLEMS[name]
    assert problem.optimizer.shape == (problem.dim,)
    assert ((problem.bounds[:, 0] <= problem.optimizer)
            & (problem.optimizer <= problem.bounds[:, 1])).all()
    assert problem(problem.optimizer) == pytest.approx(problem.optimal_value, rel=1e-5,
                                                      abs=1e-5)
    if problem.constraints is not None:
        g = problem.constraints(problem.optimizer[None])[0]
        assert g.max() <= 2e-4, g  # published points are rounded: active constraints ~ 0


@pytest.mark.parametrize("name", PROBLEMS)
def test_no_sampled_or_locally_improved_point_beats_the_optimum(name):
    """100 000 uniform points, and a local optimiser started at the best of them and at the
    published optimizer, find nothing feasible below the optimum (beyond rounding)."""
    problem = PROBLEMS[name]
    rng = np.random.default_rng(0)
    low, high = problem.bounds.T
    x = low + (high - low) * rng.random((100_000, problem.dim))
    with np.errstate(all="ignore"):
        values = np.where(problem.feasible(x), problem(x), np.inf)
    tolerance = 1e-3 * max(1.0, abs(problem.optimal_value))
    assert values.min() >= problem.optimal_value - tolerance
    constraints = [] if problem.constraints is None else [
        {"type": "ineq", "fun": lambda z, j=j: -problem.constraints(z[None])[0, j]}
        for j in range(problem.num_constraints)
    ]
    starts = [problem.optimizer] + ([x[np.argmin(values)]] if np.isfinite(values.min()) else [])
    for start in starts:
        with np.errstate(all="ignore"):
            local = minimize(lambda z: problem(z), start, bounds=problem.bounds,
                             constraints=constraints, method="SLSQP")
        if problem.feasible(local.x)[0] and (
                problem.constraints is None
                or problem.constraints(local.x[None]).max() <= 0):
            assert local.fun >= problem.optimal_value - tolerance, (start, local.x)


def test_registry_and_interface():
    assert set(UNCONSTRAINED) == {"branin", "hartmann-3", "hartmann-6", "ackley-2", "ackley-6",
                                  "ackley-10", "rosenbrock-2", "levy-2"}
    assert PROBLEMS["speed-reducer"].num_constraints == 11
    assert PROBLEMS["welded-beam"].num_constraints == 7
    assert len(CONSTRAINED) == 8
    branin = PROBLEMS["branin"]
    assert isinstance(branin([0.0, 0.0]), float) and branin(np.zeros((3, 2))).shape == (3,)
    vessel = PROBLEMS["pressure-vessel"]
    # plate thicknesses are rounded to 1/16 inch in the cost and in the constraints
    assert vessel([0.8125 + 0.02, 0.4375, 42.1, 176.6]) == vessel([0.8125, 0.4375, 42.1, 176.6])
