"""Reference inference for benchmarks: the standard ways to handle a GP's hyperparameters.

- :func:`mle2`: type-II maximum likelihood (scikit-learn);
- :func:`map2`: type-II MAP with the true hyperpriors (torch L-BFGS);
- :class:`NUTSGP`: NUTS over the hyperparameters (NumPyro/JAX, jitted).

All return a :class:`GaussianMixturePredictive` (``mean [S, m]``, ``var [S, m]``, ``log_prob``).
scikit-learn, jax and numpyro are imported only when used: ``pip install 'priorfit[bench]'``.
"""

from priorfit.baselines.gp_hyper import NUTSGP, GaussianMixturePredictive, map2, mle2

__all__ = ["NUTSGP", "GaussianMixturePredictive", "map2", "mle2"]
