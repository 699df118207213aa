"""The command line, the demo (main job) and the benchmark smoke tests (--quick)."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from priorfit import load, zoo
from priorfit.bench import BENCHES, cached, machine
from priorfit.cli import main
from priorfit.priors import prior_from_config, prior_to_config
from priorfit.train.config import load_config


def test_models_lists_the_shipped_models_one_per_config(capsys):
    configs = {path.stem for path in (Path(__file__).parents[1] / "configs").glob("*.toml")}
    assert set(zoo.names()) == configs  # every shipped model is retrained by its config
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in configs:
        assert name in out


# cards written before the precision was chosen per machine name it by amp/cpu_amp (both off on
# the CPU, i.e. float32)
LEGACY_PRECISION = {"amp": True, "cpu_amp": False}
RUN_CONTROL = {"out_dir", "time_limit_s", "num_workers", "compile", "device", "log_every",
               "val_every", "checkpoint_every"}  # where and how a run is driven, not its result


@pytest.mark.parametrize("name", zoo.names())
def test_each_shipped_model_is_what_its_config_trains(name):
    prior, model_config, train_config = load_config(
        Path(__file__).parents[1] / "configs" / f"{name}.toml"
    )
    card = load(name).card
    assert prior_to_config(prior_from_config(card["prior"])) == prior_to_config(prior)
    assert card["model"] == dataclasses.asdict(model_config)
    if train_config.schedule_clock == "time":  # annealed over its budget, and ran all of it
        assert card["wall_time_s"] >= train_config.time_limit_s
        assert card["train"]["time_limit_s"] == train_config.time_limit_s
    else:  # trained to the end, not stopped by a limit
        assert card["steps"] == train_config.steps
    expected = dataclasses.asdict(train_config)
    for key, value in card["train"].items():
        if key in LEGACY_PRECISION:
            assert value == LEGACY_PRECISION[key], key
        elif key not in RUN_CONTROL:
            assert value == expected[key], key


@pytest.mark.xfail(
    strict=True,  # an XPASS fails: once a better gp-1d ships, drop this mark
    raises=AssertionError,  # a demo that crashes or writes no plot is a real failure
    reason="the shipped gp-1d departs from the exact GP in the gap x in 0.45-0.62 (measured: "
    "at x=0.5 PFN mean -1.66, 95% [-2.28, -1.06], exact -2.31, 95% [-2.78, -1.85]; largest "
    "|mean difference| 0.80 at x=0.545; mean |difference| 0.19 over the grid); the bundled "
    "points are far outside what its prior draws (log evidence -18.7, below all of 2000 prior "
    "datasets of 12 points)",
)
def test_demo_prints_pfn_next_to_exact_gp(tmp_path, capsys):
    """The demo writes its plot and table, and over the whole grid x in [0, 1] the shipped gp-1d
    model matches the exact GP posterior: each mean inside the other's 95% interval everywhere,
    mean |difference| of the means under 0.1 and of the interval widths under 15%."""
    from priorfit.demo import run_demo

    result = run_demo("gp-1d", tmp_path)
    if not (tmp_path / "demo.png").stat().st_size > 0:  # pytest.fail: not the expected failure
        pytest.fail("the demo wrote an empty plot")
    if "95% interval" not in capsys.readouterr().out:
        pytest.fail("the demo printed no table")
    x, pfn, exact = result["x"], result["pfn_mean"], result["exact_mean"]
    outside = (pfn < result["exact_lower"]) | (pfn > result["exact_upper"])
    outside |= (exact < result["pfn_lower"]) | (exact > result["pfn_upper"])
    assert not outside.any(), (
        f"a mean outside the other's 95% interval at {outside.sum()} of {len(x)} grid points, "
        f"x in [{x[outside].min():.3f}, {x[outside].max():.3f}]"
    )
    assert np.abs(pfn - exact).mean() < 0.1
    exact_width = result["exact_upper"] - result["exact_lower"]
    pfn_width = result["pfn_upper"] - result["pfn_lower"]
    assert np.abs(pfn_width / exact_width - 1).mean() < 0.15


def test_predict_command_reads_csv(tmp_path, capsys):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("x,y\n0.1,0.5\n0.4,-0.2\n0.8,0.3\n")
    test.write_text("x\n0.2\n0.6\n")
    assert main(["predict", "gp-1d", "--train", str(train), "--test", str(test)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("mean,std,lower_0.95,upper_0.95") and len(lines) == 3
    mean, std, lower, upper = map(float, lines[1].split(","))
    assert lower < mean < upper and std > 0


def test_export_half_precision(tmp_path):
    import priorfit as pf

    out = tmp_path / "half.safetensors"
    assert main(["export", "gp-1d", str(out), "--half"]) == 0
    assert pf.load(out).card["prior"] == pf.load("gp-1d").card["prior"]


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["predict", "no-such-model", "--train", "a", "--test", "b"]) == 2
    assert "neither a file nor a shipped model" in capsys.readouterr().err
    assert main(["bench", "nope"]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nstpes = 3\n")
    assert main(["train", str(bad)]) == 2
    assert "no [prior] table" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("bench", sorted(BENCHES))
def test_bench_quick_smoke(bench, tmp_path):
    """Each benchmark runs with --quick and writes its JSON and plots. The real datasets (for
    bench regression and tabular) are read from $PRIORFIT_DATA, else from ../shared/data next to the
    repository. A directory named by PRIORFIT_DATA must hold them (else the test fails); the
    default missing (a clone outside the workspace), the test is skipped with the path it tried,
    which `make test` lists (pytest -rs)."""
    if bench == "train-speed":
        pytest.importorskip("pfns", reason="train-speed compares against pfns ([bench] extra)")
    if bench in ("bnn", "gp-hyper"):
        pytest.importorskip("numpyro", reason=f"{bench} runs NUTS with numpyro ([bench] extra)")
    if bench == "bo":
        pytest.importorskip("botorch", reason="bo compares against BoTorch ([bo] extra)")
        if "bo" not in zoo.names():
            pytest.skip("bench bo runs the shipped BO surrogate `bo`, which is not shipped yet")
    if bench == "fewshot" and "fewshot" not in zoo.names():  # its plumbing: tests/test_fewshot.py
        pytest.skip("bench fewshot runs the shipped stroke-prior PFN `fewshot`, not shipped yet")
    named = os.environ.get("PRIORFIT_DATA")
    data = Path(named or Path(__file__).parents[2] / "shared" / "data")
    folder = {"regression": "regression", "tabular": "cc18", "curves": "curves",
              "fewshot": "omniglot"}.get(bench)
    if folder and not (data / folder).is_dir():
        (pytest.fail if named else pytest.skip)(
            f"bench {bench} needs the real datasets in {data / folder}, which does not exist: "
            f"set PRIORFIT_DATA to the data directory that holds {folder}/ (default "
            "../shared/data relative to the repository root)"
        )
    assert main(["bench", bench, "--quick", "--out", str(tmp_path), "--data", str(data)]) == 0
    result = json.loads((tmp_path / f"{bench}.json").read_text())
    assert result["bench"] == bench and result["rows"] and result["summary"]
    assert result["config"]["quick"] is True
    assert result["machine"] == machine()
    for row in result["rows"]:
        assert {"method", "setting", "n"} <= set(row)
    assert list(tmp_path.glob("*.png"))


def test_the_score_ledger_resumes_and_survives_a_torn_line(tmp_path):
    ledger, calls = tmp_path / "scores.jsonl", []

    def compute(value):
        calls.append(value)
        return {"score": value}

    assert cached(ledger, {"table": "a", "split": 0}, lambda: compute(1.0)) == {"score": 1.0}
    assert cached(ledger, {"split": 0, "table": "a"}, lambda: compute(2.0)) == {"score": 1.0}
    with ledger.open("a") as file:  # a kill in mid-write, then another process's line
        file.write('{"identity": {"table": "b"}, "res')
    with ledger.open("a") as file:
        file.write('\n{"identity": {"table": "c"}, "result": {"score": 3.0}}\n')
    assert cached(ledger, {"table": "c"}, lambda: compute(4.0)) == {"score": 3.0}
    with ledger.open("a") as file:
        file.write('{"identity": {"table": "d"}, "res')  # torn last line
    assert cached(ledger, {"table": "d"}, lambda: compute(5.0)) == {"score": 5.0}
    assert calls == [1.0, 5.0]
    lines = ledger.read_text().splitlines()
    assert json.loads(lines[-1]) == {"identity": {"table": "d"}, "result": {"score": 5.0}}
    assert cached(None, {"table": "a", "split": 0}, lambda: compute(6.0)) == {"score": 6.0}


def test_machine_names_the_cpu_and_its_bf16_support():
    """Every benchmark's JSON names the CPU its figures came from (timings and the precision
    "auto" chooses differ between CPU models)."""
    record = machine()
    assert set(record) == {"cpu", "cores", "bf16_native", "amx"}
    assert isinstance(record["cpu"], str) and record["cores"] >= 1
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags"))
        assert record["amx"] == ("amx_tile" in flags.split())
        assert record["bf16_native"] == bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def test_demo_gap_is_the_kl_divergence_to_the_exact_posterior():
    """The demo's gap per x is KL(exact || PFN), checked against two Gaussians' closed form."""
    import torch

    from priorfit.demo import expected_nll_gap

    mean, std = torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([1.0, 0.5],
                                                                            dtype=torch.float64)
    other = torch.distributions.Normal(torch.tensor([0.5, 1.0]), torch.tensor([2.0, 0.5]))
    exact = torch.distributions.kl_divergence(torch.distributions.Normal(mean, std),
                                              torch.distributions.Normal(other.loc.double(),
                                                                         other.scale.double()))
    np.testing.assert_allclose(expected_nll_gap(other, mean, std), exact.numpy(), atol=1e-6)


def test_demo_evidence_is_the_gp_marginal_likelihood_ranked_among_prior_draws():
    """The chain rule over the exact predictive equals the closed-form log N(y; 0, K + noise I);
    flat data are typical of a smooth prior, the bundled data with their steep drop are not."""
    import torch
    from scipy.stats import multivariate_normal

    from priorfit.demo import bundled_dataset, evidence_quantile

    prior = prior_from_config(load("gp-1d").card["prior"])
    x, y = bundled_dataset()
    covariance = prior.covariance(torch.from_numpy(x)).numpy()
    evidence, quantile = evidence_quantile(prior, x, y, draws=500)
    assert evidence == pytest.approx(multivariate_normal(np.zeros(len(y)), covariance).logpdf(y),
                                     abs=1e-9)
    assert quantile < 0.01
    _, flat_quantile = evidence_quantile(prior, x, np.zeros_like(y), draws=500)
    assert flat_quantile > 0.99
