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

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp

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


@dataclass
class GaussianMixturePredictive:
    """Equally weighted mixture of S Gaussians at each of m test points.

    Attributes:
        mean: ``[S, m]`` component means (float64).
        var: ``[S, m]`` component variances (float64, positive); S = 1 for point estimates.
        hyperparameters: the hyperparameters of the components: ``lengthscale [S, d]``,
            ``outputscale [S]``, ``noise [S]``.
        info: method details (optimum, timings, chain diagnostics).
    """

    mean: np.ndarray
    var: np.ndarray
    hyperparameters: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.var = np.asarray(self.var, dtype=np.float64)
        if self.mean.ndim != 2 or self.mean.shape != self.var.shape or self.mean.shape[0] < 1:
            raise ValueError(
                f"mean and var must both be [S, m] with S >= 1, got {self.mean.shape} and "
                f"{self.var.shape}"
            )
        if not (np.isfinite(self.mean).all() and np.isfinite(self.var).all()):
            raise ValueError("mean and var must be finite")
        if not (self.var > 0).all():
            raise ValueError("var must be positive")

    @property
    def num_components(self) -> int:
        return self.mean.shape[0]

    def mean_prediction(self) -> np.ndarray:
        """Mean of the mixture ``[m]``."""
        return self.mean.mean(0)

    def total_variance(self) -> np.ndarray:
        """Variance of the mixture ``[m]``: mean of the variances plus variance of the means."""
        return self.var.mean(0) + self.mean.var(0)

    def log_prob(self, y_test: Any) -> np.ndarray:
        """Log density ``[m]`` of ``y_test [m]`` (one value per test point), via logsumexp."""
        y = _as_numpy(y_test, "y_test")
        if y.shape != self.mean.shape[1:]:
            raise ValueError(f"y_test must be [m] = [{self.mean.shape[1]}], got {y.shape}")
        log_comp = -0.5 * (np.log(2 * math.pi * self.var) + (y - self.mean) ** 2 / self.var)
        return logsumexp(log_comp, axis=0) - math.log(self.num_components)


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
    x, y, xs = _check_data(x_train, y_train, x_test)
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
    x, y, xs = _check_data(x_train, y_train, x_test)
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

        optimizer.step(closure)
    with torch.no_grad():
        objective, hypers = log_posterior(), hyperparameters()
    best = int(torch.where(objective.isfinite(), objective, -math.inf).argmax())
    hypers = GPHyperparameters(**{k: v[[best]] for k, v in vars(hypers).items()})
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


class NUTSGP:
    """NUTS over the hyperparameters of ``prior`` (NumPyro on JAX, CPU, float64).

    One chain of ``num_warmup`` adaptation steps and ``num_samples`` draws, compiled as one XLA
    program per data shape ``(n, d, m)``: the first call for a shape compiles (timed in
    :attr:`compile_seconds`), later calls only run. Calling returns the mixture over at most
    ``max_components`` evenly thinned draws of the exact GP predictive of the noisy target; its
    ``info`` holds ``run_seconds``, ``compile_seconds`` (of this call, 0 when cached),
    ``num_divergences`` (after warmup), ``min_ess`` and ``max_split_r_hat`` (over every scalar
    hyperparameter, from all draws).

    Needs ``jax`` and ``numpyro`` (checked when constructed); switches JAX to float64 for the
    whole process (``jax_enable_x64``).
    """

    def __init__(
        self,
        prior: GPHyperPrior,
        *,
        num_warmup: int = 64,
        num_samples: int = 64,
        max_components: int = 64,
        target_accept_prob: float = 0.8,
        max_tree_depth: int = 10,
    ) -> None:
        _check_prior(prior)
        if all(isinstance(getattr(prior, h), (int, float)) for h in HYPERS):
            raise ValueError("every hyperparameter of prior is fixed: use its exact GP instead")
        for name, value, low in (
            ("num_warmup", num_warmup, 0),
            ("num_samples", num_samples, 4),
            ("max_components", max_components, 1),
            ("max_tree_depth", max_tree_depth, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not 0 < target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}")
        _import_jax()
        self.prior = prior
        self.num_warmup, self.num_samples = num_warmup, num_samples
        self.max_components = max_components
        self.target_accept_prob, self.max_tree_depth = target_accept_prob, max_tree_depth
        self.compile_seconds = 0.0  # total, over every shape compiled so far
        self._compiled: dict[tuple[int, int, int], Any] = {}

    def __call__(
        self, x_train: Any, y_train: Any, x_test: Any, *, seed: int = 0
    ) -> GaussianMixturePredictive:
        """``x_train [n, d]``, ``y_train [n]``, ``x_test [m, d]`` -> predictive with S <=
        ``max_components`` components; same ``seed``, same result."""
        jax, _, _ = _import_jax()
        from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

        x, y, xs = _check_data(x_train, y_train, x_test)
        key = jax.random.PRNGKey(seed)
        shape = (*x.shape, xs.shape[0])
        compile_seconds = 0.0
        if shape not in self._compiled:
            start = time.perf_counter()
            self._compiled[shape] = jax.jit(self._chain).lower(key, x, y, xs).compile()
            compile_seconds = time.perf_counter() - start
            self.compile_seconds += compile_seconds
        start = time.perf_counter()
        out = jax.block_until_ready(self._compiled[shape](key, x, y, xs))
        run_seconds = time.perf_counter() - start
        mean, var, kept, sampled, diverging = jax.device_get(out)
        scalars = np.concatenate([v.reshape(self.num_samples, -1) for v in sampled.values()], 1)
        info = {
            "run_seconds": run_seconds,
            "compile_seconds": compile_seconds,
            "num_warmup": self.num_warmup,
            "num_samples": self.num_samples,
            "num_divergences": int(diverging.sum()),
            "min_ess": float(effective_sample_size(scalars[None]).min()),
            "max_split_r_hat": float(split_gelman_rubin(scalars[None]).max()),
        }
        return GaussianMixturePredictive(mean, var, hyperparameters=kept, info=info)

    def _chain(self, key, x, y, xs):  # traced by jax.jit; shapes [n, d], [n], [m, d]
        jax, jnp, numpyro = _import_jax()
        from numpyro.infer.hmc import hmc
        from numpyro.infer.util import initialize_model

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

        def model():
            ls, os_, noise = site("lengthscale", (d,)), site("outputscale", ()), site("noise", ())
            K = os_ * _jax_correlation(prior.kernel, x / ls, x / ls) + noise * jnp.eye(n)
            normal = numpyro.distributions.MultivariateNormal(scale_tril=jnp.linalg.cholesky(K))
            numpyro.sample("y", normal, obs=y)

        init_key, chain_key = jax.random.split(key)
        model_info = initialize_model(init_key, model)
        init_kernel, sample_kernel = hmc(model_info.potential_fn, algo="NUTS")
        state = init_kernel(
            model_info.param_info,
            self.num_warmup,
            rng_key=chain_key,
            target_accept_prob=self.target_accept_prob,
            max_tree_depth=self.max_tree_depth,
        )

        def step(state, _):
            state = sample_kernel(state)
            return state, (state.z, state.diverging)

        _, (z, diverging) = jax.lax.scan(step, state, None, self.num_warmup + self.num_samples)
        z = {k: v[self.num_warmup :] for k, v in z.items()}
        sampled = jax.vmap(model_info.postprocess_fn)(z)  # the hyperparameters drawn, [S, ...]
        thin = -(-self.num_samples // self.max_components)
        kept = {}
        for h, shape in (("lengthscale", (d,)), ("outputscale", ()), ("noise", ())):
            fixed = h not in sampled
            value = jnp.full(shape, float(getattr(prior, h))) if fixed else sampled[h][::thin]
            kept[h] = jnp.broadcast_to(value, (len(range(0, self.num_samples, thin)), *shape))

        def predict(ls, os_, noise):  # exact predictive of the noisy target, as GP.posterior
            L = jnp.linalg.cholesky(
                os_ * _jax_correlation(prior.kernel, x / ls, x / ls) + noise * jnp.eye(n)
            )
            solve = jax.scipy.linalg.solve_triangular
            v = solve(L, os_ * _jax_correlation(prior.kernel, x / ls, xs / ls), lower=True)
            mean = v.T @ solve(L, y, lower=True)
            return mean, jnp.maximum(os_ + noise - (v**2).sum(0), noise)

        mean, var = jax.vmap(predict)(kept["lengthscale"], kept["outputscale"], kept["noise"])
        return mean, var, kept, sampled, diverging[self.num_warmup :]


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


def _import_jax():
    try:
        import jax
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions  # makes numpyro.distributions an attribute
    except ImportError as error:
        raise ImportError("NUTSGP needs jax and numpyro: pip install 'priorfit[bench]'") from error
    jax.config.update("jax_enable_x64", True)
    return jax, jnp, numpyro


# ------------------------------------------------------------------------------- validation


def _as_numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        message = f"{name} must be an array of numbers, got {type(value).__name__}"
        raise ValueError(message) from error


def _check_data(x_train: Any, y_train: Any, x_test: Any) -> tuple[np.ndarray, ...]:
    """float64 copies of ``x_train [n, d]``, ``y_train [n]``, ``x_test [m, d]`` (n, m, d >= 1)."""
    x, y, xs = (
        _as_numpy(x_train, "x_train"),
        _as_numpy(y_train, "y_train"),
        _as_numpy(x_test, "x_test"),
    )
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x_train must be [n, d] with n, d >= 1, got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y_train must be [n] = [{x.shape[0]}] like x_train, got {y.shape}")
    if xs.ndim != 2 or xs.shape[0] < 1 or xs.shape[1] != x.shape[1]:
        raise ValueError(f"x_test must be [m, d] = [m, {x.shape[1]}], m >= 1, got {xs.shape}")
    for name, v in (("x_train", x), ("y_train", y), ("x_test", xs)):
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(x), np.ascontiguousarray(y), np.ascontiguousarray(xs)


def _check_prior(prior: Any) -> None:
    if not isinstance(prior, GPHyperPrior):
        raise TypeError(f"prior must be a GPHyperPrior, got {type(prior).__name__}")
    if prior.irrelevant_prob != 0 or prior.trend_std != 0:
        raise ValueError(
            "only GPHyperPrior with irrelevant_prob=0 and trend_std=0 is supported, got "
            f"irrelevant_prob={prior.irrelevant_prob}, trend_std={prior.trend_std}"
        )
