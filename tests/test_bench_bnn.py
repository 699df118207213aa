"""``priorfit bench bnn``: the summary's comparisons, the table and the plot on made-up rows (the
end-to-end run is the --quick smoke test in test_cli.py)."""

import pytest

from priorfit.bench import Result, bnn


def row(method, nll, seconds, **extra):
    r = {"method": method, "setting": "small", "n": 100, "nll": nll, "nll_se": 0.01,
         "seconds_per_task": seconds, **extra}
    if method != "pfn":
        r["budget"] = int(method.split("-")[1])
    return r


ROWS = [
    row("pfn", -0.5, 0.01, seconds_per_task_batched=0.001),
    row("nuts-25", 0.2, 1.0),
    row("nuts-100", -0.6, 4.0),
    row("nuts-400", -0.8, 16.0),
    row("svi-250", 0.5, 0.1),
    row("svi-1000", 0.1, 0.4),
]


def test_speedups_are_against_the_cheapest_budget_that_reaches_the_pfn():
    summary = bnn.summarise(ROWS)["small"]
    nuts = summary["nuts"]
    assert nuts["best_budget"] == 400 and not nuts["pfn_at_least_as_good_as_best"]
    assert nuts["compared_budget"] == 100 and nuts["compared_reaches_pfn_nll"]
    assert nuts["speedup_single"] == pytest.approx(400) and nuts["speedup_batched"] == 4000
    svi = summary["svi"]  # no SVI budget reaches the PFN: the best one gives a lower bound
    assert svi["pfn_at_least_as_good_as_best"] and not svi["compared_reaches_pfn_nll"]
    assert svi["compared_budget"] == 1000 and svi["speedup_single"] == pytest.approx(40)


def test_table_and_plot(tmp_path):
    table = bnn.table(ROWS)
    assert "nuts-400" in table and len(table.splitlines()) == len(ROWS) + 1
    (path,) = bnn.plot(Result({}, ROWS), tmp_path)
    assert path.name == "bnn_nll_vs_time.png" and path.stat().st_size > 0
