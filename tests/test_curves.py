"""CurveExtrapolator: batching of curves of different lengths, metric maps, horizons, errors."""

import math

import numpy as np
import pytest
import torch

from priorfit.curves import CurveExtrapolator, to_metric, to_prior
from priorfit.model import ModelConfig, build_model
from priorfit.priors import CurvePrior, prior_to_config


@pytest.fixture(scope="module")
def model():
    """An untrained curve PFN (rows network, head bounded on [0, 1]) with a CurvePrior card."""
    torch.manual_seed(0)
    config = ModelConfig(num_features=1, head="bounded", bounds=[0.0, 1.0], num_outputs=40,
                         d_model=16, num_heads=2, num_layers=2, d_ff=32)
    pfn = build_model(config).eval()
    pfn.card = {"prior": prior_to_config(CurvePrior(num_epochs=50)), "train": {"max_train": 49}}
    return pfn


def curves():
    t = np.arange(1, 31)
    return [0.8 - 0.5 * t[:12] ** -0.5, 0.6 - 0.3 * t[:30] ** -0.8, 0.9 - 0.6 * t[:5] ** -1.0]


def test_curves_of_different_lengths_predict_together_as_alone(model):
    ex = CurveExtrapolator(model)
    together = ex.predict(curves(), at=[40, 50])
    assert together.mean.shape == (3, 2)
    for i, curve in enumerate(curves()):
        alone = ex.predict([curve], at=[40, 50])
        torch.testing.assert_close(together.mean[i], alone.mean[0], rtol=1e-5, atol=1e-6)
    padded = np.full((3, 30), np.nan)
    for i, curve in enumerate(curves()):
        padded[i, : len(curve)] = curve
    torch.testing.assert_close(ex.predict(padded, at=[40, 50]).mean, together.mean)


def test_percent_error_and_loss_are_the_same_posterior_in_other_units(model):
    accuracy = CurveExtrapolator(model).predict(curves(), at=[45])
    percent = CurveExtrapolator(model, metric="percent").predict(
        [100 * c for c in curves()], at=[45])
    torch.testing.assert_close(percent.icdf(0.9), 100 * accuracy.icdf(0.9))
    torch.testing.assert_close(percent.log_prob(70.0), accuracy.log_prob(0.7) - math.log(100))
    error = CurveExtrapolator(model, metric="error").predict([1 - c for c in curves()], at=[45])
    torch.testing.assert_close(error.icdf(0.1), 1 - accuracy.icdf(0.9), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(error.cdf(0.3), 1 - accuracy.cdf(0.7), rtol=1e-5, atol=1e-6)
    ex = CurveExtrapolator(model, metric="loss")
    losses = [2.0 * np.exp(-np.arange(len(c)) / 10) + 0.1 for c in curves()]
    loss = ex.predict(losses, at=[45])
    samples = loss.sample((4000,))
    torch.testing.assert_close(loss.mean, samples.mean(0), rtol=0.05, atol=0.02)
    grid = torch.logspace(-4, 2, 8001)  # the loss; u = exp(-loss / scale) covers (0, 1)
    density = loss.log_prob(grid[:, None, None]).exp()[..., 0]
    mass = torch.trapezoid(density, grid, dim=0)
    torch.testing.assert_close(mass, torch.ones(3), atol=0.02, rtol=0)  # Jacobian included


def test_metric_maps_are_inverse():
    scale = torch.tensor([[2.0]])
    v = torch.tensor([[0.3, 1.5]])
    for metric in ("accuracy", "percent", "error", "error_percent", "loss"):
        s = scale if metric == "loss" else torch.tensor([[100.0 if "percent" in metric else 1.0]])
        torch.testing.assert_close(to_metric(metric, s, to_prior(metric, s, v)), v)


def test_prob_above_is_one_minus_the_cdf(model):
    ex = CurveExtrapolator(model)
    above = ex.prob_above(curves(), at=50, threshold=0.7)
    assert above.shape == (3,)
    np.testing.assert_allclose(above, 1 - ex.predict(curves(), [50]).cdf(0.7)[:, 0].numpy())


def test_horizon_rescales_epochs(model):
    """With horizon H, epoch e is the model's input e / H: a run of 25 epochs is read as the
    prior's whole curve."""
    curve = curves()[0][:10]
    got = CurveExtrapolator(model, horizon=25).predict([curve], at=[20, 25]).prior_values
    direct = model.predict(torch.arange(1, 11)[:, None] / 25, torch.tensor(curve).float(),
                           torch.tensor([[20 / 25], [1.0]]))
    torch.testing.assert_close(got.logits[0], direct.logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="more than the horizon"):
        CurveExtrapolator(model, horizon=8).predict([curves()[0]], at=[8])


@pytest.mark.parametrize(("kwargs", "data", "at", "match"), [
    ({}, [np.array([0.2, 1.3])], [40], r"outside \[0, 1\]"),
    ({"metric": "percent"}, [np.array([20.0, 130.0])], [40], r"outside \[0, 100\]"),
    ({}, [np.array([0.2, np.nan, 0.4])], [40], "NaN or infinite values inside"),
    ({}, [np.array([0.2, 0.3])], [0], "at must be epoch numbers"),
    ({}, [np.array([0.2, 0.3])], [51], "at must be epoch numbers"),
    ({}, [], [40], "curves is empty"),
    ({}, np.array([0.2, 0.3]), [40], "for one curve pass"),
    ({"metric": "loss"}, [np.array([0.0, 0.3])], [40], "first value > 0"),
])
def test_bad_input_is_named(model, kwargs, data, at, match):
    with pytest.raises(ValueError, match=match):
        CurveExtrapolator(model, **kwargs).predict(data, at)


def test_bad_settings_and_models_are_named(model):
    with pytest.raises(ValueError, match="metric must be one of"):
        CurveExtrapolator(model, metric="f1")
    with pytest.raises(ValueError, match="horizon"):
        CurveExtrapolator(model, horizon=1)
    other = build_model(ModelConfig(num_features=1, num_outputs=8, d_model=16, num_heads=2,
                                    num_layers=1, d_ff=16))
    with pytest.raises(ValueError, match="trained on a CurvePrior"):
        CurveExtrapolator(other)


class LastValueExtrapolator:
    """A stand-in with a known predictive: the final value ~ N(last observed value, 0.01²)."""

    horizon, metric = 20, "accuracy"

    def predict(self, curves, at):
        last = torch.tensor([c[-1] for c in curves], dtype=torch.float64)[:, None]

        class Final:
            def cdf(self, v):
                return torch.special.ndtr((v - last) / 0.01)

        return Final()


def test_early_stopping_stops_hopeless_runs_and_counts_what_it_saved():
    from priorfit.curves import simulate_early_stopping

    t = np.arange(1, 21)
    good, bad, better = 0.8 - 0.3 / t, 0.5 - 0.3 / t, 0.7 + 0.01 * t
    result = simulate_early_stopping(LastValueExtrapolator(), [good, bad, better], delta=0.05,
                                     min_epochs=3)
    # after 3 epochs, bad (0.4) and better (0.73) both sit over 5 sd below good's final (0.785)
    # under the stand-in's predictive, so both stop there; better would have ended at 0.9:
    # the regret of a predictive that cannot see a curve's rise
    np.testing.assert_array_equal(result.epochs, [20, 3, 3])
    assert result.best_found == pytest.approx(good[-1])
    assert result.best_overall == pytest.approx(better[-1])
    assert result.regret == pytest.approx(better[-1] - good[-1])
    assert result.saving == pytest.approx(60 / 26)
    with pytest.raises(ValueError, match="delta"):
        simulate_early_stopping(LastValueExtrapolator(), [good], delta=1.5)
    with pytest.raises(ValueError, match="horizon = 20"):
        simulate_early_stopping(LastValueExtrapolator(), [good[:10]])


def test_cli_predicts_a_csv_of_runs_and_plots_them(model, tmp_path, capsys):
    from priorfit.cli import main

    path = tmp_path / "curves.safetensors"
    model.save(path)
    runs = tmp_path / "runs.csv"
    rows = ["a,b"] + [f"{0.5 + 0.01 * e:.3f},{0.3 + 0.02 * e:.3f}" if e < 6 else
                      f"{0.5 + 0.01 * e:.3f}," for e in range(10)]
    runs.write_text("\n".join(rows) + "\n")
    assert main(["curves", "predict", str(runs), "--model", str(path), "--horizon", "40",
                 "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "run,observed_epochs,last_value,mean_at_40,q05_at_40,q95_at_40"
    assert lines[1].startswith("a,10,0.59,") and lines[2].startswith("b,6,0.4,")
    assert (tmp_path / "curves.png").stat().st_size > 0
    runs.write_text("a\n0.5\n?\n")
    assert main(["curves", "predict", str(runs), "--model", str(path)]) == 2
    assert "'?' is not a number" in capsys.readouterr().err
