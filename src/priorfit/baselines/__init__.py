"""Reference inference for benchmarks, on exactly the priors the PFNs are trained on.

GP hyperparameters (:class:`~priorfit.priors.GPHyperPrior`):

- :func:`mle2`: type-II maximum likelihood (scikit-learn);
- :func:`map2`: type-II MAP with the true hyperpriors (torch L-BFGS);
- :class:`NUTSGP`: NUTS over the hyperparameters (NumPyro/JAX, jitted).

Bayesian neural networks (:class:`~priorfit.priors.BNN`):

- :class:`NUTSBNN`: NUTS over the weights (NumPyro/JAX, jitted);
- :class:`SVIBNN`: Bayes-by-Backprop, mean-field variational inference (NumPyro/JAX, jitted).

All return a :class:`GaussianMixturePredictive` (``mean [S, m]``, ``var [S, m]``, ``log_prob``).
scikit-learn, jax and numpyro are imported only when used: ``pip install 'priorfit[bench]'``.
"""

from priorfit.baselines.bnn import NUTSBNN, SVIBNN
from priorfit.baselines.data import GaussianMixturePredictive
from priorfit.baselines.gp_hyper import NUTSGP, map2, mle2

__all__ = ["NUTSBNN", "NUTSGP", "SVIBNN", "GaussianMixturePredictive", "map2", "mle2"]
