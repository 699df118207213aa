"""``priorfit bench train-speed``: scoring, table and plot without pfns; a slow smoke test of each
package's training process (the pfns one skips when pfns is not installed)."""

import ast
import builtins
import importlib.util
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from priorfit.bench import Result, train_speed
from priorfit.priors.gp import GP
from priorfit.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def fake_runs(offsets: dict, per_size: int = 4, steps: dict | None = None) -> dict:
    """Run outputs whose per-dataset NLL is the exact NLL (zero here) plus an offset; 50 steps
    in 40 s unless ``steps`` says otherwise."""
    runs = {}
    for method, offset in offsets.items():
        nll = {str(n): [offset + 0.01 * i for i in range(per_size)] for n in train_speed.SIZES}
        runs[method] = {
            "steps": (steps or {}).get(method, 50),
            "train_seconds": 40.0,
            "schedule_steps": 50,
            "nll": nll,
            "calibrated_s_per_step": 0.8,
            "prior_s_per_batch": 0.01,
            "loss_curve": [[1.0, 1.5], [40.0, 1.2]],
        }
    return runs


def test_gp_paper_configs_are_those_of_its_first_stage():
    """The card of the shipped gp-paper model (two stages on one prior) holds the recipe of its
    first stage, configs/stages/gp-paper-stage1.toml: what a run from scratch trains."""
    prior, model_config, train_config = train_speed.first_stage_configs("gp-paper")
    expected_prior, expected_model, expected_train = load_config(
        ROOT / "configs" / "stages" / "gp-paper-stage1.toml")
    assert prior == expected_prior
    assert model_config == expected_model
    # out_dir is where the run was written (stage 1 ran as runs/gp-paper), not what it trained
    assert replace(train_config, out_dir=expected_train.out_dir) == expected_train


def test_bench_does_not_need_the_source_tree(monkeypatch):
    """Installed, the package has no configs/ folder: the bench neither builds paths from its
    own location nor reads a config file."""
    tree = ast.parse(Path(train_speed.__file__).read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert "__file__" not in names and "load_config" not in names
    assert not hasattr(train_speed, "CONFIG")
    configs = (ROOT / "configs").resolve()
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and configs in Path(file).resolve().parents:
            raise AssertionError(f"the bench read {file} from the source tree")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: guarded_open(self).read())
    prior, model_config, train_config = train_speed.first_stage_configs("gp-paper")
    assert prior.num_features == model_config.num_features == 5
    assert train_config.batch_size == 32


def test_missing_pfns_points_to_the_bench_extra(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "pfns" else find_spec(name, *args),
    )
    with pytest.raises(ImportError, match=r"pip install 'priorfit\[bench\]'"):
        train_speed.run(quick=True, data=Path("."))


OFFSETS = {"priorfit-float32": 0.1, "priorfit-bfloat16": 0.2, "pfns-0.4.2-float32": 0.3,
           "pfns-0.4.2-bfloat16": 0.5}


def test_score_rows_summary_and_table():
    """Each package is compared at its faster precision (more steps in the same time), whatever
    its gap; both precisions are reported."""
    exact = {n: torch.zeros(4, dtype=torch.float64) for n in train_speed.SIZES}
    runs = fake_runs(OFFSETS, steps={"priorfit-bfloat16": 80, "pfns-0.4.2-float32": 60})
    rows, summary = train_speed.score(runs, exact, batch_size=32)
    assert len(rows) == 4 * (len(train_speed.SIZES) + 1)
    for row in rows:
        assert row["method"] in train_speed.METHODS and row["setting"] == "gp-paper-prior"
        assert row["datasets_per_s"] == pytest.approx(runs[row["method"]]["steps"] * 32 / 40.0)
        assert {"n", "nll", "nll_se", "gap", "gap_se", "train_seconds", "steps"} <= set(row)
    all_rows = {r["method"]: r for r in rows if r["n"] == "all"}
    assert all_rows["priorfit-float32"]["gap"] == pytest.approx(0.115)
    assert all_rows["pfns-0.4.2-bfloat16"]["gap"] == pytest.approx(0.515)
    assert summary["fastest"] == {"priorfit": "priorfit-bfloat16",
                                  "pfns-0.4.2": "pfns-0.4.2-float32"}
    assert summary["priorfit_gap_smaller"] is True
    assert summary["gap_difference_priorfit_minus_pfns"]["mean"] == pytest.approx(-0.1)
    assert summary["gap_ratio_priorfit_over_pfns"] == pytest.approx(0.215 / 0.315)
    assert summary["priorfit-float32"]["gap_by_n"][100] == pytest.approx(0.115)
    assert "nll" not in summary["priorfit-float32"] and "nll" in runs["priorfit-float32"]
    json.dumps(summary)  # the runner writes it as JSON
    text = train_speed.table(rows, summary)
    assert "pfns-0.4.2-float32" in text and "priorfit reaches the smaller gap: True" in text


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    exact = {n: torch.zeros(4, dtype=torch.float64) for n in train_speed.SIZES}
    rows, summary = train_speed.score(fake_runs(OFFSETS), exact, 32)
    result = Result({"budget_s": 40.0}, rows, summary, train_speed.table(rows, summary))
    (path,) = train_speed.plot(result, tmp_path)
    assert path.exists() and path.stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("method", train_speed.METHODS)
def test_training_process_trains_and_scores(tmp_path, method):
    package, precision = train_speed._package_and_precision(method)
    if package != "priorfit":
        pytest.importorskip("pfns")
    prior = GP(num_features=5, lengthscale=0.6, noise=1e-4)
    held_out = {}
    for n in (1, 8):
        batch = prior.sample(3, n + 1, generator=torch.Generator().manual_seed(n))
        held_out[n] = (batch.x, batch.y)
    torch.save(held_out, tmp_path / "held_out.pt")
    settings = {
        "budget_s": 2.0,
        "threads": 1,
        "calibration_steps": 3,
        "border_datasets": 64,
        "warmup_fraction": 0.025,
        "pfns_lr": 7e-4,
        "compile": False,  # compiling alone would take the budget many times over
    }
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    command = [sys.executable, "-m", "priorfit.bench.train_speed", str(tmp_path), package,
               precision]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    out = json.loads((tmp_path / f"{method}.json").read_text())
    # pfns runs the schedule it was sized for; priorfit's follows the clock (a step estimate)
    most = out["schedule_steps"] if package != "priorfit" else math.inf
    assert 1 <= out["steps"] <= most and out["schedule_steps"] >= 1 and out["train_seconds"] > 0
    assert out["calibrated_s_per_step"] > 0 and out["prior_s_per_batch"] > 0
    assert sorted(out["nll"]) == ["1", "8"]
    assert all(len(v) == 3 and all(math.isfinite(x) for x in v) for v in out["nll"].values())


@pytest.mark.parametrize(("cores", "threads", "expected"), [
    ({0}, 1, None),  # one core: the packages run one after the other
    ({0, 1, 2}, 2, None),
    ({3, 1}, 1, [{1}, {3}]),
    ({0, 1, 2, 3, 4}, 2, [{0, 1}, {2, 3}]),
])
def test_packages_train_concurrently_only_on_disjoint_cores(monkeypatch, cores, threads,
                                                             expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores, raising=False)
    assert train_speed._pairs_concurrently(threads) == expected


def test_a_failed_run_reports_its_log(tmp_path):
    with (tmp_path / "priorfit-float32.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-c", "print('the log line'); exit(3)"],
                                stdout=log, stderr=subprocess.STDOUT)
    with pytest.raises(RuntimeError, match=r"priorfit-float32 run failed:\n(?s:.*)the log line"):
        train_speed._finish("priorfit-float32", proc, tmp_path)
