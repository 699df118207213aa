"""Sampling-based and variational inference as one compiled program per data shape (NumPyro
on JAX, CPU, float64).

:class:`CompiledPerShape` compiles a baseline's whole computation (inference and prediction)
once for each data shape ``(n, d, m)``: the first call for a shape compiles (timed in
``compile_seconds``), later calls only run. :class:`JittedNUTS` is one NUTS chain of
``num_warmup`` adaptation steps and ``num_samples`` draws; a subclass states its model and how
a posterior draw predicts, and the posterior predictive is the equal mixture over at most
``max_components`` evenly thinned draws.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from priorfit.baselines.data import GaussianMixturePredictive, check_data


def import_jax():
    """``(jax, jax.numpy, numpyro)`` with float64 enabled, or a clear ImportError."""
    try:
        import jax
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions  # makes numpyro.distributions an attribute
    except ImportError as error:
        raise ImportError(
            "the NUTS and SVI baselines need jax and numpyro: pip install 'priorfit[bench]'"
        ) from error
    jax.config.update("jax_enable_x64", True)
    return jax, jnp, numpyro


def check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


class CompiledPerShape(ABC):
    """Runs ``_compute(key, x, y, xs)`` jitted, compiling once per data shape."""

    def __init__(self) -> None:
        import_jax()
        self.compile_seconds = 0.0  # total, over every shape compiled so far
        self._compiled: dict[tuple[int, int, int], Any] = {}

    def _run(self, x_train: Any, y_train: Any, x_test: Any, seed: int) -> tuple[Any, dict]:
        """Checked data -> (outputs on the host, ``{"run_seconds", "compile_seconds"}``)."""
        jax, _, _ = import_jax()
        x, y, xs = check_data(x_train, y_train, x_test)
        key = jax.random.PRNGKey(seed)
        shape = (*x.shape, xs.shape[0])
        compile_seconds = 0.0
        if shape not in self._compiled:
            start = time.perf_counter()
            self._compiled[shape] = jax.jit(self._compute).lower(key, x, y, xs).compile()
            compile_seconds = time.perf_counter() - start
            self.compile_seconds += compile_seconds
        start = time.perf_counter()
        out = jax.block_until_ready(self._compiled[shape](key, x, y, xs))
        timing = {"run_seconds": time.perf_counter() - start, "compile_seconds": compile_seconds}
        return jax.device_get(out), timing

    @abstractmethod
    def _compute(self, key, x, y, xs):
        """The whole computation, traced by ``jax.jit``: ``x [n, d]``, ``y [n]``, ``xs [m, d]``."""


class JittedNUTS(CompiledPerShape):
    """One jitted NUTS chain per data shape; subclasses define ``_model`` and ``_predict``.

    ``_model(x, y)`` is a NumPyro model of ``y [n]`` given ``x [n, d]``; ``_predict(draws, x, y,
    xs)`` maps the thinned draws (``{site: [S, ...]}``) to ``(mean [S, m], var [S, m], kept)``:
    the Gaussian predictive of the noisy target at ``xs [m, d]`` per draw, and the parameters
    to report. Calling returns a :class:`GaussianMixturePredictive` whose ``info`` holds
    ``run_seconds``, ``compile_seconds`` (of this call, 0 when cached), ``num_divergences``
    (after warm-up), ``min_ess`` and ``max_split_r_hat`` (over every sampled scalar, all draws)
    and ``max_split_r_hat_mean`` (over the predictive means at the test points, kept draws;
    unlike the parameters' R-hat it ignores label switching, NaN with fewer than 4 draws). A
    parameter that never moves (a stuck chain) makes ``min_ess`` and the R-hats NaN.

    Needs ``jax`` and ``numpyro`` (checked when constructed); switches JAX to float64 for the
    whole process (``jax_enable_x64``).
    """

    def __init__(
        self,
        *,
        num_warmup: int = 64,
        num_samples: int = 64,
        max_components: int = 64,
        target_accept_prob: float = 0.8,
        max_tree_depth: int = 10,
    ) -> None:
        check_int("num_warmup", num_warmup, 0)
        check_int("num_samples", num_samples, 4)
        check_int("max_components", max_components, 1)
        check_int("max_tree_depth", max_tree_depth, 1)
        if not 0 < target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}")
        super().__init__()
        self.num_warmup, self.num_samples = num_warmup, num_samples
        self.max_components = max_components
        self.target_accept_prob, self.max_tree_depth = target_accept_prob, max_tree_depth

    def __call__(
        self, x_train: Any, y_train: Any, x_test: Any, *, seed: int = 0
    ) -> GaussianMixturePredictive:
        """``x_train [n, d]``, ``y_train [n]``, ``x_test [m, d]`` -> predictive with S <=
        ``max_components`` components; same ``seed``, same result."""
        (mean, var, kept, sampled, diverging), timing = self._run(x_train, y_train, x_test, seed)
        scalars = np.concatenate([v.reshape(self.num_samples, -1) for v in sampled.values()], 1)
        with np.errstate(divide="ignore", invalid="ignore"):  # a stuck chain gives NaN
            info = self._diagnostics(scalars, mean, diverging)
        return GaussianMixturePredictive(mean, var, hyperparameters=kept, info={**timing, **info})

    def _diagnostics(self, scalars: np.ndarray, mean: np.ndarray, diverging: np.ndarray) -> dict:
        from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

        return {
            "num_warmup": self.num_warmup,
            "num_samples": self.num_samples,
            "num_divergences": int(diverging.sum()),
            "min_ess": float(effective_sample_size(scalars[None]).min()),
            "max_split_r_hat": float(split_gelman_rubin(scalars[None]).max()),
            "max_split_r_hat_mean": (
                float(split_gelman_rubin(mean[None]).max()) if len(mean) >= 4 else float("nan")
            ),
        }

    def _compute(self, key, x, y, xs):
        jax, _, _ = import_jax()
        from numpyro.infer.hmc import hmc
        from numpyro.infer.util import initialize_model

        init_key, chain_key = jax.random.split(key)
        model_info = initialize_model(init_key, self._model, model_args=(x, y))
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
        sampled = jax.vmap(model_info.postprocess_fn)(z)  # the parameters drawn, [S, ...]
        thin = -(-self.num_samples // self.max_components)
        draws = {k: v[::thin] for k, v in sampled.items()}
        mean, var, kept = self._predict(draws, x, y, xs)
        return mean, var, kept, sampled, diverging[self.num_warmup :]

    @abstractmethod
    def _model(self, x, y) -> None:
        """The NumPyro model of ``y [n]`` given ``x [n, d]`` (traced)."""

    @abstractmethod
    def _predict(self, draws, x, y, xs):
        """``(mean [S, m], var [S, m], kept)`` of the thinned draws at ``xs [m, d]`` (traced)."""
