"""``priorfit bench bo``: regret curves, the methods' evaluations, rows, summary, table and plot
(the end-to-end run against the shipped surrogate is the --quick smoke test in test_cli.py)."""

import math
from pathlib import Path

import numpy as np
import pytest

from priorfit.bench import Result, bo
from priorfit.bo import Optimizer
from priorfit.bo.problems import PROBLEMS


def test_regret_curve_is_nan_until_the_first_feasible_point_then_the_best_so_far():
    y = [5.0, 1.0, 3.0, 2.0, 0.5, float("nan")]
    feasible = [False, False, True, True, False, False]
    np.testing.assert_array_equal(bo.regret_curve(y, feasible, 1.0),
                                  [np.nan, np.nan, 2.0, 1.0, 1.0, 1.0])


def test_random_search_is_reproducible_by_seed_and_stays_in_the_box():
    problem = PROBLEMS["gardner-1"]
    first, again, other = (bo.random_search(problem, seed, 20) for seed in (3, 3, 4))
    assert first["y"] == again["y"] and first["y"] != other["y"]
    assert len(first["y"]) == len(first["feasible"]) == len(first["seconds"]) == 20
    rng = np.random.default_rng(3)
    x = np.array([rng.uniform(*problem.bounds.T) for _ in range(20)])
    assert ((x >= problem.bounds[:, 0]) & (x <= problem.bounds[:, 1])).all()
    np.testing.assert_allclose(first["y"], problem(x))
    assert first["feasible"] == problem.feasible(x).tolist()


def test_botorch_starts_from_the_design_priorfit_evaluates_first():
    bounds = [tuple(b) for b in PROBLEMS["hartmann-3"].bounds]
    optimizer = Optimizer(bounds, model="gp-hyper", n_initial=5, seed=7)
    asked = []
    for _ in range(5):
        asked.append(optimizer.ask())
        optimizer.tell(asked[-1], 0.0)
    np.testing.assert_array_equal(bo.sobol_design(3, 5, 7), np.array(asked))


@pytest.mark.parametrize("method", ["optuna-tpe", "optuna-gp"])
def test_optuna_starts_from_the_design_and_sees_the_constraints(method):
    pytest.importorskip("optuna", reason="bench bo compares against Optuna ([bo] extra)")
    problem = PROBLEMS["gardner-1"]
    record = bo._optuna(method, problem, 0, 14, 10)
    design = bo._to_box(problem, bo.sobol_design(2, 10, 0))
    np.testing.assert_allclose(record["y"][:10], problem(design))
    assert len(record["y"]) == 14 and len(record["seconds"]) == 4
    assert record["feasible"][:10] == problem.feasible(design).tolist()


def test_a_diverging_constraint_is_a_finite_violation_and_counted():
    problem = PROBLEMS["three-bar-truss"]
    g = bo.constraints(problem, np.array([0.0, 0.5]))
    assert np.isfinite(g).all() and g.max() == bo.VIOLATED
    record = bo._record(problem, np.array([[0.0, 0.5], [0.79, 0.41]]), [], 0)
    assert record["nonfinite"] == 1 and record["feasible"] == [False, True]


def run_record(y, feasible, seconds=(0.1, 0.3), fallbacks=0):
    return {"y": y, "feasible": feasible, "seconds": list(seconds), "fallbacks": fallbacks,
            "nonfinite": 0}


def test_rows_average_over_the_seeds_that_found_a_feasible_point():
    problem = PROBLEMS["gardner-1"]  # optimum -2
    runs = [run_record([0.0, -1.0, -1.9], [False, True, True]),
            run_record([1.0, 1.0, 1.0], [False, False, False], fallbacks=2)]
    row = bo.aggregate(problem, "botorch", runs)
    assert {"method", "setting", "n", "seeds", "regret", "regret_se", "log10_regret",
            "log10_regret_se", "feasibility", "seconds_per_iteration", "best_curve",
            "log10_curve", "seeds_feasible", "fallbacks"} <= set(row)
    assert (row["method"], row["setting"], row["n"], row["seeds"]) == ("botorch", "gardner-1",
                                                                       3, 2)
    assert row["seeds_feasible"] == 1 and row["fallbacks"] == 2
    assert row["regret"] == pytest.approx(0.1) and math.isnan(row["regret_se"])
    assert row["log10_regret"] == pytest.approx(-1.0)
    assert row["feasibility"] == pytest.approx(1 / 3)
    assert row["seconds_per_iteration"] == pytest.approx(0.2)
    assert math.isnan(row["best_curve"][0])
    assert row["best_curve"][1:] == pytest.approx([1.0, 0.1])


def made_up_rows():
    rows = []
    for name, regrets, seconds in (
            ("branin", (0.1, 0.2, 0.3, 0.15, 1.0), (0.05, 0.5, 0.01, 0.3, 1e-5)),
            ("gardner-1", (float("nan"), 0.01, 0.02, 0.05, 0.3), (0.1, 0.4, 0.01, 0.3, 1e-5))):
        for method, regret, s in zip(bo.METHODS, regrets, seconds, strict=True):
            rows.append({"method": method, "setting": name, "n": 4, "seeds": 2,
                         "regret": regret, "regret_se": 0.01, "log10_regret": math.log10(regret),
                         "log10_regret_se": 0.1, "feasibility": 1.0, "seeds_feasible": 2,
                         "seconds_per_iteration": s, "fallbacks": 0,
                         "constraints": int(name == "gardner-1"),
                         "best_curve": [4.0, 2.0, 1.0, regret],
                         "log10_curve": [1.0, 0.5, 0.0, math.log10(regret)]})
    return rows


def test_summary_ranks_a_method_without_a_feasible_point_last():
    summary = bo.summarise(made_up_rows(), n_initial=2)
    assert summary["mean_rank"] == {"pfn": 3.0, "botorch": 2.0, "optuna-tpe": 3.0,
                                    "optuna-gp": 2.5, "random": 4.5}
    assert summary["pfn_regret_at_most_botorch_on"] == ["branin"]
    assert summary["botorch_over_pfn_seconds_per_iteration"] == pytest.approx(
        {"branin": 10.0, "gardner-1": 4.0})
    assert summary["median_botorch_over_pfn_seconds_per_iteration"] == pytest.approx(7.0)


def test_normalised_regret_divides_by_the_worst_regret_after_the_initial_design():
    normalised = bo.summarise(made_up_rows(), n_initial=2)["mean_normalised_regret"]
    # every curve is at 2.0 after two evaluations; no feasible point counts as 1
    assert normalised["unconstrained"] == pytest.approx(
        {"pfn": 0.05, "botorch": 0.1, "optuna-tpe": 0.15, "optuna-gp": 0.075, "random": 0.5})
    assert normalised["constrained"] == pytest.approx(
        {"pfn": 1.0, "botorch": 0.005, "optuna-tpe": 0.01, "optuna-gp": 0.025, "random": 0.15})


def test_table_and_plot(tmp_path):
    rows = made_up_rows()
    assert len(bo.table(rows).splitlines()) == len(rows) + 1
    (path,) = bo.plot(Result({"n_initial": 2}, rows), tmp_path)
    assert path == tmp_path / "bo_regret.png" and path.stat().st_size > 0


def test_botorch_steps_stay_in_the_unit_cube_with_and_without_constraints():
    pytest.importorskip("botorch", reason="bench bo compares against BoTorch ([bo] extra)")
    problem = PROBLEMS["gardner-1"]
    u = bo.sobol_design(2, 6, 0)
    x = bo._to_box(problem, u)
    y = problem(x)
    settings = {"num_restarts": 1, "raw_samples": 16}
    for g in (None, problem.constraints(x)):
        point = bo.botorch_step(u, y, g, settings)
        assert point.shape == (2,) and ((point >= 0) & (point <= 1)).all()


def test_quick_run_gives_pfn_and_botorch_the_same_initial_design():
    pytest.importorskip("botorch", reason="bench bo compares against BoTorch ([bo] extra)")
    result = bo.run(True, Path("."), model_name="gp-hyper", problems=("gardner-2",))
    rows = {r["method"]: r for r in result.rows}
    assert set(rows) == set(bo.METHODS) and result.config["n_trials"] == 12
    n_initial = result.config["n_initial"]
    np.testing.assert_array_equal(rows["pfn"]["best_curve"][:n_initial],
                                  rows["botorch"]["best_curve"][:n_initial])
    assert all(len(r["best_curve"]) == 12 for r in rows.values())
