"""Reference inference for the hyperparameters of a :class:`~priorfit.priors.GPHyperPrior`.

A PFN trained on a GP prior with hyperpriors approximates the posterior predictive that
integrates over the kernel hyperparameters. The standard ways to handle them, run here on data
of one dataset (``x_train [n, d]``, ``y_train [n]``, ``x_test [m, d]``):

- :func:`mle2`: type-II maximum likelihood (scikit-learn), one point estimate;
- :func:`map2`: type-II MAP with the true hyperpriors (BoTorch's default), one point estimate;
- :class:`NUTSGP`: NUTS over the hyperparameters (NumPyro, jitted), a mixture over samples.

Each returns a :class:`GaussianMixturePredictive` of the noisy target at ``x_test``; every
component is the exact GP predictive given one setting of the hyperparameters.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any

import numpy as np
import torch

from priorfit.baselines.data import GaussianMixturePredictive, check_data
from priorfit.baselines.jax_inference import JittedNUTS, import_jax
from priorfit.priors.gp import GP, KERNELS
from priorfit.priors.hyper import (
    HYPERPRIORS,
    Gamma,
    GPHyperparameters,
    GPHyperPrior,
    LogNormal,
    LogUniform,
)

HYPERS = ("lengthscale", "outputscale", "noise")

# mle2's box for the optimiser, wide enough that only a genuinely degenerate fit (noise -> 0,
# lengthscale -> inf) reaches it: on x in [0, 1] and y of the App. F prior (variance ~ 35).
MLE2_BOUNDS = {"outputscale": (1e-5, 1e5), "lengthscale": (1e-5, 1e5), "noise": (1e-10, 1e5)}


# ------------------------------------------------------------------------------- MLE-II


def mle2(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    *,
    kernel: str = "matern52",
    restarts: int = 5,
    seed: int = 0,
) -> GaussianMixturePredictive:
    """Type-II maximum likelihood: the GP with the hyperparameters that maximise the marginal
    likelihood (scikit-learn's ``GaussianProcessRegressor``, L-BFGS-B within
    :data:`MLE2_BOUNDS`, ``restarts`` extra starts drawn log-uniformly in the box).

    ``x_train [n, d]``, ``y_train [n]``, ``x_test [m, d]`` (numpy or torch) -> S = 1 predictive
    of the noisy target. The model is ``outputscale * k + noise * I`` with ARD lengthscales and
    zero mean (no normalisation of y: the prior has zero mean). At small n the noise often
    collapses to the lower bound and the predictive is overconfident: that is the baseline.
    """
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process import kernels as sk
    except ImportError as error:
        raise ImportError("mle2 needs scikit-learn: pip install 'priorfit[bench]'") from error
    x, y, xs = check_data(x_train, y_train, x_test)
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
        raise ValueError(f"restarts must be an int >= 0, got {restarts!r}")
    d = x.shape[1]
    ls = {"length_scale": np.ones(d), "length_scale_bounds": MLE2_BOUNDS["lengthscale"]}
    nu = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}
    k = sk.RBF(**ls) if kernel == "rbf" else sk.Matern(nu=nu[kernel], **ls)
    k = sk.ConstantKernel(1.0, MLE2_BOUNDS["outputscale"]) * k
    k = k + sk.WhiteKernel(1.0, MLE2_BOUNDS["noise"])
    model = GaussianProcessRegressor(
        k, normalize_y=False, n_restarts_optimizer=restarts, random_state=seed
    )
    with warnings.catch_warnings():  # optima on the box edge are expected at small n
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    fitted = model.kernel_
    gp = GP(
        num_features=d,
        kernel=kernel,
        lengthscale=np.broadcast_to(fitted.k1.k2.length_scale, (d,)).tolist(),
        outputscale=float(fitted.k1.k1.constant_value),
        noise=float(fitted.k2.noise_level),
    )
    info = {"log_marginal_likelihood": float(model.log_marginal_likelihood_value_)}
    return _plug_in(gp, x, y, xs, info)


# ------------------------------------------------------------------------------- MAP-II


def map2(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    prior: GPHyperPrior,
    *,
    restarts: int = 5,
    seed: int = 0,
    max_iter: int = 200,
) -> GaussianMixturePredictive:
    """Type-II MAP: the GP with the hyperparameters that maximise log marginal likelihood plus
    the log hyperprior density of their values (BoTorch's default).

    ``x_train [n, d]``, ``y_train [n]``, ``x_test [m, d]`` -> S = 1 predictive of the noisy
    target. L-BFGS (torch, float64, strong Wolfe, ``max_iter`` iterations) over
    log-hyperparameters (for a :class:`LogUniform`, the logit of the position in
    ``[log low, log high]``), from the hyperprior means and from ``restarts`` more starts drawn
    from the hyperprior (seeded by ``seed``), all optimised together as one batch; the best one
    wins. Fixed hyperparameters stay fixed.
    """
    x, y, xs = check_data(x_train, y_train, x_test)
    _check_prior(prior)
    prior = prior.at_width(x.shape[1])
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
        raise ValueError(f"restarts must be an int >= 0, got {restarts!r}")
    (n, d), batch = x.shape, restarts + 1
    starts = prior.sample_hyperparameters(batch, d, generator=torch.Generator().manual_seed(seed))
    free = {}  # unconstrained parameters [batch, ...] of the hyperparameters that are not fixed
    for name in HYPERS:
        spec, value = getattr(prior, name), getattr(starts, name)
        if isinstance(spec, HYPERPRIORS):
            value[0] = _typical(spec)
            free[name] = _to_free(spec, value).requires_grad_()
    xb, yb = (
        torch.from_numpy(x).expand(batch, n, d),
        torch.from_numpy(y)[:, None].expand(batch, n, 1),
    )

    def hyperparameters() -> GPHyperparameters:
        values = {h: _to_value(getattr(prior, h), free[h]) for h in free}
        return GPHyperparameters(**{**vars(starts), **values})

    def log_posterior() -> torch.Tensor:  # [batch]
        hypers = hyperparameters()
        L = _cholesky(prior.covariance(xb, hypers))
        w = torch.linalg.solve_triangular(L, yb, upper=False)
        log_det = L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        lml = -0.5 * w.square().sum((-2, -1)) - log_det - 0.5 * n * math.log(2 * math.pi)
        log_priors = (getattr(prior, h).log_prob(getattr(hypers, h)) for h in free)
        return lml + sum(p.reshape(batch, -1).sum(-1) for p in log_priors)

    if free:
        optimizer = torch.optim.LBFGS(
            list(free.values()),
            max_iter=max_iter,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = -log_posterior().sum()
            loss.backward()
            return loss

        # torch's strong-Wolfe search raises IndexError on a non-finite objective; the
        # parameters reached so far are scored below, and the best start still wins
        with contextlib.suppress(IndexError):
            optimizer.step(closure)
    with torch.no_grad():
        objective, hypers = log_posterior(), hyperparameters()
    best = int(torch.where(objective.isfinite(), objective, -math.inf).argmax())
    hypers = hypers.select([best])
    info = {"log_posterior": float(objective[best]), "start_log_posteriors": objective.tolist()}
    return _plug_in(prior.oracle(hypers, 0), x, y, xs, info)


def _typical(spec: Gamma | LogUniform | LogNormal) -> float:
    """A start for the optimiser: the mean (the median of a heavy-tailed LogNormal)."""
    if isinstance(spec, Gamma):
        return spec.concentration / spec.rate
    if isinstance(spec, LogNormal):
        return math.exp(spec.loc)
    return (spec.high - spec.low) / math.log(spec.high / spec.low)


def _to_value(spec: Gamma | LogUniform | LogNormal, free: torch.Tensor) -> torch.Tensor:
    """Hyperparameter values from unconstrained parameters (kept within e^±30 for safety)."""
    if isinstance(spec, LogUniform):
        low, high = math.log(spec.low), math.log(spec.high)
        return (low + (high - low) * torch.sigmoid(free)).exp().clamp(spec.low, spec.high)
    return free.clamp(-30, 30).exp()


def _to_free(spec: Gamma | LogUniform | LogNormal, value: torch.Tensor) -> torch.Tensor:
    if isinstance(spec, LogUniform):
        low, high = math.log(spec.low), math.log(spec.high)
        return torch.logit(((value.log() - low) / (high - low)).clamp(1e-6, 1 - 1e-6))
    return value.log()


def _cholesky(K: torch.Tensor, tries: int = 6) -> torch.Tensor:
    """Lower Cholesky factors of ``K [B, n, n]``, differentiably; a matrix that fails is retried
    with diagonal jitter from 1e-10 of its mean diagonal, growing 100-fold per try."""
    L, info = torch.linalg.cholesky_ex(K)
    eye = torch.eye(K.shape[-1], dtype=K.dtype)
    scale = K.detach().diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None]
    jitter = 1e-10
    for _ in range(tries):
        if not (info > 0).any():
            break
        K = K + ((info > 0)[:, None, None] * jitter * scale) * eye
        L, info = torch.linalg.cholesky_ex(K)
        jitter *= 100
    return L


def _plug_in(
    gp: GP, x: np.ndarray, y: np.ndarray, xs: np.ndarray, info: dict[str, Any]
) -> GaussianMixturePredictive:
    """The S = 1 predictive of the exact ``gp`` (its hyperparameters as ``[1, ...]`` arrays)."""
    mean, var = gp.posterior(*(torch.from_numpy(v) for v in (x, y, xs)))
    hypers = {
        "lengthscale": np.broadcast_to(gp.lengthscale, (1, gp.num_features)).astype(np.float64),
        "outputscale": np.array([gp.outputscale], dtype=np.float64),
        "noise": np.array([gp.noise], dtype=np.float64),
    }
    return GaussianMixturePredictive(mean.numpy()[None], var.numpy()[None], hypers, info)


# ------------------------------------------------------------------------------- NUTS


class NUTSGP(JittedNUTS):
    """NUTS over the hyperparameters of ``prior`` (NumPyro on JAX, CPU, float64).

    Calling returns the mixture over at most ``max_components`` evenly thinned draws of the
    exact GP predictive of the noisy target; its ``hyperparameters`` are the kept draws. See
    :class:`~priorfit.baselines.nuts.JittedNUTS` for the chain, its compilation per data shape
    and the diagnostics in ``info``.
    """

    def __init__(self, prior: GPHyperPrior, **chain: Any) -> None:
        _check_prior(prior)
        if all(isinstance(getattr(prior, h), (int, float)) for h in HYPERS):
            raise ValueError("every hyperparameter of prior is fixed: use its exact GP instead")
        super().__init__(**chain)
        self.prior = prior

    def _model(self, x, y):  # traced; x [n, d], y [n]
        _, jnp, numpyro = import_jax()
        n, d = x.shape
        prior = self.prior.at_width(d)

        def site(name: str, shape: tuple[int, ...]):
            spec = getattr(prior, name)
            if isinstance(spec, (int, float)):
                return jnp.full(shape, float(spec))
            if isinstance(spec, Gamma):
                dist = numpyro.distributions.Gamma(spec.concentration, spec.rate)
            elif isinstance(spec, LogNormal):
                dist = numpyro.distributions.LogNormal(spec.loc, spec.scale)
            else:
                dist = numpyro.distributions.LogUniform(spec.low, spec.high)
            return numpyro.sample(name, dist.expand(shape).to_event(len(shape)))

        ls, os_, noise = site("lengthscale", (d,)), site("outputscale", ()), site("noise", ())
        K = os_ * _jax_correlation(prior.kernel, x / ls, x / ls) + noise * jnp.eye(n)
        normal = numpyro.distributions.MultivariateNormal(scale_tril=jnp.linalg.cholesky(K))
        numpyro.sample("y", normal, obs=y)

    def _predict(self, draws, x, y, xs):  # traced; draws: sampled sites, [S, ...] each
        jax, jnp, _ = import_jax()
        n, d = x.shape
        prior = self.prior.at_width(d)
        count = len(next(iter(draws.values())))
        kept = {}
        for h, shape in (("lengthscale", (d,)), ("outputscale", ()), ("noise", ())):
            value = jnp.full(shape, float(getattr(prior, h))) if h not in draws else draws[h]
            kept[h] = jnp.broadcast_to(value, (count, *shape))

        def predict(ls, os_, noise):  # exact predictive of the noisy target, as GP.posterior
            L = jnp.linalg.cholesky(
                os_ * _jax_correlation(prior.kernel, x / ls, x / ls) + noise * jnp.eye(n)
            )
            solve = jax.scipy.linalg.solve_triangular
            v = solve(L, os_ * _jax_correlation(prior.kernel, x / ls, xs / ls), lower=True)
            mean = v.T @ solve(L, y, lower=True)
            return mean, jnp.maximum(os_ + noise - (v**2).sum(0), noise)

        mean, var = jax.vmap(predict)(kept["lengthscale"], kept["outputscale"], kept["noise"])
        return mean, var, kept


def _jax_correlation(kernel: str, a, b):
    """Unit-variance kernel between the scaled inputs ``a [n, d]`` and ``b [m, d]`` -> ``[n, m]``
    in JAX: :func:`priorfit.priors.gp.correlation`, with a zero gradient where points coincide."""
    import jax.numpy as jnp

    r2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    if kernel == "rbf":
        return jnp.exp(-0.5 * r2)
    r = jnp.sqrt(jnp.maximum(r2, 1e-30))
    if kernel == "matern12":
        return jnp.exp(-r)
    s = r * (math.sqrt(3.0) if kernel == "matern32" else math.sqrt(5.0))
    if kernel == "matern32":
        return (1 + s) * jnp.exp(-s)
    return (1 + s + s**2 / 3) * jnp.exp(-s)


def _check_prior(prior: Any) -> None:
    if not isinstance(prior, GPHyperPrior):
        raise TypeError(f"prior must be a GPHyperPrior, got {type(prior).__name__}")
    if prior.irrelevant_prob != 0 or prior.trend_std != 0 or prior.input_warping != 0:
        raise ValueError(
            "only GPHyperPrior with irrelevant_prob=0, trend_std=0 and input_warping=0 is "
            f"supported, got irrelevant_prob={prior.irrelevant_prob}, "
            f"trend_std={prior.trend_std}, input_warping={prior.input_warping}"
        )
