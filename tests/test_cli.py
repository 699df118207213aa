"""The command line, the demo (main job) and the benchmark smoke tests (--quick)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from priorfit import load, zoo
from priorfit.bench import BENCHES
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
    assert card["steps"] == train_config.steps  # trained to the end, not stopped by a limit
    expected = dataclasses.asdict(train_config)
    for key, value in card["train"].items():
        if key not in RUN_CONTROL:
            assert value == expected[key], key


def test_demo_prints_pfn_next_to_exact_gp(tmp_path, capsys):
    from priorfit.demo import run_demo

    result = run_demo("gp-1d", tmp_path)
    assert (tmp_path / "demo.png").stat().st_size > 0
    assert "95% interval" in capsys.readouterr().out
    # Near the observations the shipped 1-D model tracks the exact posterior closely; in the
    # wide gap (x in 0.45-0.7) after a steep descent it extrapolates more cautiously than the
    # exact GP, but the two 95% intervals still overlap everywhere.
    x = result["x"]
    near = np.abs(x[:, None] - np.loadtxt(_demo_csv(), delimiter=",", skiprows=2)[:, 0]).min(1)
    close = near < 0.03
    assert np.abs(result["pfn_mean"] - result["exact_mean"])[close].mean() < 0.1
    exact_width = result["exact_upper"] - result["exact_lower"]
    pfn_width = result["pfn_upper"] - result["pfn_lower"]
    assert np.abs(pfn_width / exact_width - 1)[close].mean() < 0.15
    assert (result["pfn_lower"] < result["exact_upper"]).all()
    assert (result["exact_lower"] < result["pfn_upper"]).all()


def _demo_csv():
    from importlib import resources

    return resources.files("priorfit.data").joinpath("demo_1d.csv")


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
    if bench == "train-speed":
        pytest.importorskip("pfns", reason="train-speed compares against pfns ([bench] extra)")
    if bench in ("bnn", "gp-hyper"):
        pytest.importorskip("numpyro", reason=f"{bench} runs NUTS with numpyro ([bench] extra)")
    data = Path(__file__).parents[2] / "shared" / "data"  # real data, outside the repository
    if bench == "regression" and not (data / "regression").is_dir():
        pytest.skip(f"bench regression needs the real datasets in {data}")
    assert main(["bench", bench, "--quick", "--out", str(tmp_path), "--data", str(data)]) == 0
    result = json.loads((tmp_path / f"{bench}.json").read_text())
    assert result["bench"] == bench and result["rows"] and result["summary"]
    assert result["config"]["quick"] is True
    for row in result["rows"]:
        assert {"method", "setting", "n"} <= set(row)
    assert list(tmp_path.glob("*.png"))
