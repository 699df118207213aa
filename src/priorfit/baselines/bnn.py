"""Reference inference over the weights of a :class:`~priorfit.priors.BNN`, on exactly its
prior and likelihood (NumPyro on JAX, CPU, float64, compiled once per data shape):

- :class:`NUTSBNN`: NUTS over all weights and biases;
- :class:`SVIBNN`: Bayes-by-Backprop, a mean-field Gaussian posterior fitted on the ELBO.

Both return a :class:`~priorfit.baselines.GaussianMixturePredictive`: per posterior draw of the
weights, N(f(x*; θ), noise_std²), mixed with equal weights.
"""

from __future__ import annotations

import math
from typing import Any

from priorfit.baselines.data import GaussianMixturePredictive
from priorfit.baselines.jax_inference import CompiledPerShape, JittedNUTS, check_int, import_jax
from priorfit.priors.bnn import BNN


def _check_bnn(prior: Any) -> BNN:
    if not isinstance(prior, BNN):
        raise TypeError(f"prior must be a BNN (fixed architecture), got {type(prior).__name__}")
    return prior


def jax_activation(name: str):
    """The JAX function of a :data:`priorfit.priors.bnn.ACTIVATIONS` name."""
    import jax

    return {"tanh": jax.numpy.tanh, "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid,
            "gelu": lambda h: jax.nn.gelu(h, approximate=False)}[name]


def bnn_model(prior: BNN, x, y=None) -> None:
    """NumPyro model of :class:`BNN`: sites ``w0, b0, w1, ...`` and the observed ``y [n]``."""
    _, _, numpyro = import_jax()
    normal = numpyro.distributions.Normal
    last = len(prior.layer_shapes) - 1
    h = x
    for i, (fan_in, fan_out) in enumerate(prior.layer_shapes):
        w_std = prior.weight_std / math.sqrt(fan_in)
        w = numpyro.sample(f"w{i}", normal(0.0, w_std).expand((fan_in, fan_out)).to_event(2))
        b = numpyro.sample(f"b{i}", normal(0.0, prior.bias_std).expand((fan_out,)).to_event(1))
        h = h @ w + b
        if i < last:
            h = jax_activation(prior.activation)(h)
    numpyro.sample("y", normal(h[:, 0], prior.noise_std), obs=y)


def bnn_function(prior: BNN, draws: dict, xs):
    """Network outputs ``[S, m]`` at ``xs [m, d]`` of weight draws ``{"w0": [S, ...], ...}``."""
    jax, _, _ = import_jax()
    last = len(prior.layer_shapes) - 1

    def one(params):
        h = xs
        for i in range(last + 1):
            h = h @ params[f"w{i}"] + params[f"b{i}"]
            if i < last:
                h = jax_activation(prior.activation)(h)
        return h[:, 0]

    return jax.vmap(one)(draws)


class NUTSBNN(JittedNUTS):
    """NUTS over the weights of ``prior`` (one chain; see
    :class:`~priorfit.baselines.jax_inference.JittedNUTS` for the options and diagnostics)."""

    def __init__(self, prior: BNN, **chain: Any) -> None:
        self.prior = _check_bnn(prior)
        super().__init__(**chain)

    def _model(self, x, y):
        bnn_model(self.prior, x, y)

    def _predict(self, draws, x, y, xs):
        _, jnp, _ = import_jax()
        mean = bnn_function(self.prior, draws, xs)
        return mean, jnp.full_like(mean, self.prior.noise_std**2), {}


class SVIBNN(CompiledPerShape):
    """Bayes-by-Backprop: a mean-field Gaussian over the weights of ``prior`` (NumPyro's
    ``AutoNormal``, its means initialised at a prior draw, its scales at ``init_scale``), fitted by
    ``num_steps`` Adam steps on the ELBO with ``num_particles`` reparameterised samples; the
    predictive mixes ``num_draws`` weight draws from it.

    Calling returns a :class:`GaussianMixturePredictive` whose ``info`` holds ``run_seconds``,
    ``compile_seconds`` (0 when cached) and ``final_loss`` (the negative ELBO, averaged over the
    last tenth of the steps).
    """

    def __init__(
        self,
        prior: BNN,
        *,
        num_steps: int = 1000,
        learning_rate: float = 0.01,
        num_particles: int = 1,
        num_draws: int = 64,
        init_scale: float = 0.1,
    ) -> None:
        self.prior = _check_bnn(prior)
        check_int("num_steps", num_steps, 1)
        check_int("num_particles", num_particles, 1)
        check_int("num_draws", num_draws, 1)
        for name, value in (("learning_rate", learning_rate), ("init_scale", init_scale)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        super().__init__()
        self.num_steps, self.learning_rate = num_steps, learning_rate
        self.num_particles, self.num_draws, self.init_scale = num_particles, num_draws, init_scale

    def __call__(
        self, x_train: Any, y_train: Any, x_test: Any, *, seed: int = 0
    ) -> GaussianMixturePredictive:
        """``x_train [n, d]``, ``y_train [n]``, ``x_test [m, d]`` -> predictive with
        ``num_draws`` components; same ``seed``, same result."""
        (mean, var, losses), timing = self._run(x_train, y_train, x_test, seed)
        tail = max(1, self.num_steps // 10)
        info = {**timing, "num_steps": self.num_steps, "final_loss": float(losses[-tail:].mean())}
        return GaussianMixturePredictive(mean, var, info=info)

    def _compute(self, key, x, y, xs):
        jax, jnp, numpyro = import_jax()
        from numpyro.infer import SVI, Trace_ELBO
        from numpyro.infer.autoguide import AutoNormal
        from numpyro.infer.initialization import init_to_sample

        def model(x, y=None):
            bnn_model(self.prior, x, y)

        guide = AutoNormal(model, init_loc_fn=init_to_sample, init_scale=self.init_scale)
        svi = SVI(model, guide, numpyro.optim.Adam(self.learning_rate),
                  Trace_ELBO(num_particles=self.num_particles))
        init_key, draw_key = jax.random.split(key)
        state = svi.init(init_key, x, y)
        state, losses = jax.lax.scan(lambda s, _: svi.update(s, x, y), state, None,
                                     self.num_steps)
        draws = guide.sample_posterior(draw_key, svi.get_params(state),
                                       sample_shape=(self.num_draws,))
        mean = bnn_function(self.prior, draws, xs)
        return mean, jnp.full_like(mean, self.prior.noise_std**2), losses
