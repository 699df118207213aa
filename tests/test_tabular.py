"""PFNRegressor: the scikit-learn estimator on a regression PFN."""

import itertools

import numpy as np
import pytest
import torch

import priorfit as pf
from priorfit.model import ModelConfig, build_model


def tiny_model(path, num_features=2, max_train=10):
    """An untrained regression PFN with the transforms of gp-hyper, saved to ``path``."""
    torch.manual_seed(0)
    config = ModelConfig(num_features=num_features, num_outputs=32, d_model=16, num_heads=2,
                         num_layers=2, d_ff=32, x_transform="unit_cube",
                         y_transform="standardize")
    model = build_model(config).eval()  # borders linspace(-3, 3, 33)
    model.card = {"prior": {"class": "GPHyperPrior"}, "train": {"max_train": max_train}}
    model.save(path)
    return str(path)


@pytest.fixture
def model_path(tmp_path):
    return tiny_model(tmp_path / "tiny.safetensors")


def data(n=8, m=5, features=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n + m, features))
    y = np.sin(4 * X[:, 0]) + 0.1 * rng.standard_normal(n + m)
    return X[:n], y[:n], X[n:], y[n:]


def test_matches_the_model_on_data_it_takes(model_path):
    X, y, Xs, ys = data()
    reg = pf.PFNRegressor(model_path, ensemble_size=1).fit(X, y)
    direct = pf.load(model_path).predict(X, y, Xs)
    mean, std = reg.predict(Xs, return_std=True)
    assert mean.shape == std.shape == (5,) and isinstance(mean, np.ndarray)
    np.testing.assert_allclose(mean, direct.mean.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(std, direct.stddev.numpy(), rtol=1e-4)
    expected = direct.log_prob(torch.from_numpy(ys).float()).mean().item()
    assert reg.log_likelihood(Xs, ys) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(("scale", "shift"), [(1e-8, 0.0), (1e8, -3e8), (2.5, 7.0)])
def test_predictions_follow_the_units_of_the_data(model_path, scale, shift):
    X, y, Xs, ys = data()
    base = pf.PFNRegressor(model_path).fit(X, y)
    scaled = pf.PFNRegressor(model_path).fit(X * 1e6 - 5e8, y * scale + shift)
    Xs_scaled = Xs * 1e6 - 5e8
    mean, std = base.predict(Xs, return_std=True)
    mean_s, std_s = scaled.predict(Xs_scaled, return_std=True)
    np.testing.assert_allclose(mean_s, mean * scale + shift, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(std_s, std * scale, rtol=1e-5)
    log_lik = scaled.log_likelihood(Xs_scaled, ys * scale + shift)
    assert log_lik == pytest.approx(base.log_likelihood(Xs, ys) - np.log(scale), abs=1e-4)


def test_quantiles_are_ordered_and_consistent_with_the_distribution(model_path):
    X, y, Xs, _ = data()
    reg = pf.PFNRegressor(model_path).fit(X, y)
    q = reg.predict_quantiles(Xs, [0.1, 0.5, 0.9])
    assert q.shape == (5, 3) and (np.diff(q, axis=1) > 0).all()
    np.testing.assert_allclose(reg.predict_quantiles(Xs, 0.5), q[:, 1])
    cdf = reg.predict_dist(Xs).cdf(torch.from_numpy(q[:, 2])).numpy()
    np.testing.assert_allclose(cdf, 0.9, atol=1e-6)
    with pytest.raises(ValueError, match="q must be"):
        reg.predict_quantiles(Xs, [0.5, 1.0])


def test_the_ensemble_mixes_every_feature_order_and_ignores_the_column_order(tmp_path):
    path = tiny_model(tmp_path / "three.safetensors", num_features=3)
    X, y, Xs, ys = data(features=3)
    reg = pf.PFNRegressor(path, ensemble_size=6).fit(X, y)
    assert sorted(tuple(f) for _, f in reg.members_) == sorted(itertools.permutations(range(3)))
    model = pf.load(path)
    mixture = torch.stack([model.predict(X[:, f], y, Xs[:, f]).probs for _, f in reg.members_])
    torch.testing.assert_close(
        reg.predict_dist(Xs).probs, mixture.mean(0).double(), rtol=1e-4, atol=1e-6
    )
    columns = [2, 0, 1]
    shuffled = pf.PFNRegressor(path, ensemble_size=6).fit(X[:, columns], y)
    np.testing.assert_allclose(shuffled.predict(Xs[:, columns]), reg.predict(Xs), rtol=1e-10)
    assert shuffled.log_likelihood(Xs[:, columns], ys) == pytest.approx(
        reg.log_likelihood(Xs, ys), rel=1e-10
    )
    few = pf.PFNRegressor(path, ensemble_size=4).fit(X, y)
    orders = [tuple(f) for _, f in few.members_]
    assert len(orders) == 4 and orders[0] == (0, 1, 2)


def test_more_features_than_the_model_takes_ensembles_feature_subsets(model_path):
    X, y, Xs, _ = data(features=5)
    with pytest.warns(UserWarning, match="5 features .*at most 2.*ensemble of 3"):
        reg = pf.PFNRegressor(model_path, ensemble_size=3).fit(X, y)
    assert len(reg.members_) == 3
    assert all(len(rows) == 8 and len(features) == 2 for rows, features in reg.members_)
    model = pf.load(model_path)
    members = [model.predict(X[:, f], y, Xs[:, f]).probs for _, f in reg.members_]
    mixture = torch.stack(members).mean(0).double()
    torch.testing.assert_close(reg.predict_dist(Xs).probs, mixture, rtol=1e-4, atol=1e-6)


def test_more_points_than_the_model_takes_ensembles_subsamples(model_path):
    X, y, Xs, _ = data(n=25)
    with pytest.warns(UserWarning, match="25 training points .*at most 10"):
        reg = pf.PFNRegressor(model_path, ensemble_size=4, random_state=1).fit(X, y)
    rows = [r for r, _ in reg.members_]
    assert all(len(r) == 10 and len(set(r)) == 10 for r in rows)
    assert len({tuple(r) for r in rows}) > 1
    assert np.isfinite(reg.predict(Xs)).all()


def test_pandas_in_numpy_out(model_path):
    pd = pytest.importorskip("pandas")
    X, y, Xs, _ = data()
    frame = pd.DataFrame(X, columns=["a", "b"])
    reg = pf.PFNRegressor(model_path).fit(frame, pd.Series(y))
    assert list(reg.feature_names_in_) == ["a", "b"]
    out = reg.predict(pd.DataFrame(Xs, columns=["a", "b"]))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, pf.PFNRegressor(model_path).fit(X, y).predict(Xs))


@pytest.mark.parametrize(
    "case", ["constant_y", "duplicates", "one_point", "constant_feature", "integers"]
)
def test_degenerate_data_give_finite_predictions(model_path, case):
    X, y, Xs, _ = data()
    if case == "constant_y":
        y = np.full_like(y, 3.0)
    elif case == "duplicates":
        X, y = np.repeat(X[:2], 4, axis=0), np.repeat(y[:2], 4)
    elif case == "one_point":
        X, y = X[:1], y[:1]
    elif case == "constant_feature":
        X[:, 1] = 0.5
    else:
        X, y = (X * 10).astype(int), (y * 10).astype(int)
    reg = pf.PFNRegressor(model_path).fit(X, y)
    mean, std = reg.predict(Xs, return_std=True)
    assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    if case == "constant_y":  # the targets' scale is unknown: it is taken to be 1
        assert np.all(np.abs(mean - 3.0) < 3 * std)


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), np.zeros(2), "NaN"),
        (np.zeros((2, 2)), np.array([np.inf, 0.0]), "infinity"),
        (np.arange(4.0), np.zeros(4), "2D array"),
        (np.array([["a", "b"], ["c", "d"]]), np.zeros(2), "could not convert"),
        (np.zeros((3, 2)), np.zeros(4), "inconsistent numbers of samples"),
        (np.zeros((0, 2)), np.zeros(0), "0 sample"),
    ],
)
def test_bad_training_data_are_named(model_path, X, y, match):
    with pytest.raises(ValueError, match=match):
        pf.PFNRegressor(model_path).fit(X, y)


def test_bad_settings_and_models_are_named(model_path):
    X, y, _, _ = data()
    with pytest.raises(ValueError, match="ensemble_size"):
        pf.PFNRegressor(model_path, ensemble_size=0).fit(X, y)
    with pytest.raises(ValueError, match="shipped models"):
        pf.PFNRegressor("no-such-model").fit(X, y)
    config = ModelConfig(num_features=2, num_outputs=3, d_model=16, num_heads=2, num_layers=1,
                         d_ff=32, head="classes")
    with pytest.raises(ValueError, match="Riemann head"):
        pf.PFNRegressor(build_model(config)).fit(X, y)
    reg = pf.PFNRegressor(model_path).fit(X, y)
    with pytest.raises(ValueError, match="3 features"):
        reg.predict(np.zeros((2, 3)))


@pytest.mark.slow
def test_the_shipped_regressor_passes_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(pf.PFNRegressor())  # raises on the first failing check


@pytest.mark.slow
def test_the_feature_order_ensemble_lowers_the_nll_on_held_out_prior_data():
    """gp-hyper's prior is symmetric in the features; mixing over orders should help."""
    model = pf.load("gp-hyper")
    prior = pf.priors.prior_from_config(model.card["prior"])
    prior.min_features = 4  # every dataset has several features to order
    batch = prior.sample(16, 150, generator=torch.Generator().manual_seed(5))
    x, y = batch.x.double().numpy(), batch.y.double().numpy()

    def log_likelihood(i, ensemble_size):
        reg = pf.PFNRegressor(model, ensemble_size=ensemble_size).fit(x[i, :50], y[i, :50])
        return reg.log_likelihood(x[i, 50:], y[i, 50:])

    gain = [log_likelihood(i, 8) - log_likelihood(i, 1) for i in range(16)]
    print(f"mean gain {np.mean(gain):.4f} ± {np.std(gain) / 4:.4f} nats")
    assert np.mean(gain) > 0.01, gain
