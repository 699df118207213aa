"""A PFN as a BoTorch model: BoTorch's acquisition functions and ``optimize_acqf`` on a PFN's
posterior (optional extra: ``pip install 'priorfit[bo]'``).

:class:`PFNModel` conditions the PFN once on ``(train_X, train_Y)``; its posterior at
``X [*batch, q, d]`` holds the PFN's marginal predictive at each of the ``q`` points
(independent across points: a PFN predicts marginals). Analytic acquisitions read its mean and
variance; Monte-Carlo ones draw through the quantile function, ``y = F^{-1}(Φ(z))`` with the
sampler's normal base samples ``z``, differentiable in ``X``.
"""

from __future__ import annotations

import torch
from botorch.models.model import Model
from botorch.posteriors.posterior import Posterior
from botorch.sampling.get_sampler import GetSampler
from botorch.sampling.normal import SobolQMCNormalSampler
from torch import Tensor

from priorfit.model import PFN, load


class PFNPosterior(Posterior):
    """Independent marginal predictives at ``q`` points per batch: samples
    ``[*sample_shape, *batch, q, 1]``.

    Args:
        distribution: the PFN's predictive with batch shape ``[N]``, ``N = prod(batch) * q``.
        shape: ``(*batch, q)``.
    """

    def __init__(self, distribution, shape: torch.Size) -> None:
        self.distribution, self.shape = distribution, torch.Size(shape)

    def _reshape(self, values: Tensor) -> Tensor:
        """``[*lead, N]`` -> ``[*lead, *batch, q, 1]``."""
        return values.reshape(*values.shape[:-1], *self.shape, 1)

    @property
    def mean(self) -> Tensor:
        return self._reshape(self.distribution.mean)

    @property
    def variance(self) -> Tensor:
        return self._reshape(self.distribution.variance)

    @property
    def device(self) -> torch.device:
        return self.distribution.logits.device

    @property
    def dtype(self) -> torch.dtype:
        return self.distribution.logits.dtype

    @property
    def base_sample_shape(self) -> torch.Size:
        return torch.Size([*self.shape, 1])

    @property
    def batch_range(self) -> tuple[int, int]:
        return 0, -2

    def _extended_shape(self, sample_shape: torch.Size = torch.Size()) -> torch.Size:  # noqa: B008
        return torch.Size([*sample_shape, *self.shape, 1])

    def rsample_from_base_samples(self, sample_shape: torch.Size, base_samples: Tensor
                                  ) -> Tensor:
        """Samples ``F^{-1}(Φ(base_samples))`` of shape ``[*sample_shape, *batch, q, 1]``."""
        levels = torch.special.ndtr(base_samples.to(self.dtype)).clamp(1e-6, 1 - 1e-6)
        flat = levels.reshape(*sample_shape, -1)
        return self._reshape(self.distribution.icdf(flat))

    def rsample(self, sample_shape: torch.Size | None = None) -> Tensor:
        sample_shape = torch.Size(sample_shape or [1])
        base = torch.randn(self._extended_shape(sample_shape), device=self.device,
                           dtype=self.dtype)
        return self.rsample_from_base_samples(sample_shape, base)

    def quantile(self, value: Tensor) -> Tensor:
        """The ``value`` quantiles ``[*value.shape, *batch, q, 1]``."""
        return self._reshape(self.distribution.icdf(value.reshape(*value.shape, 1)))

    def density(self, value: Tensor) -> Tensor:
        return self._reshape(self.distribution.log_prob(value.reshape(*value.shape, 1)).exp())


@GetSampler.register(PFNPosterior)
def _pfn_sampler(posterior: PFNPosterior, sample_shape: torch.Size, *, seed: int | None = None):
    return SobolQMCNormalSampler(sample_shape=sample_shape, seed=seed)


class PFNModel(Model):
    """A single-output BoTorch model whose posterior is a PFN's.

    Args:
        model: a zoo name, path or loaded regression PFN.
        train_X: ``[n, d]`` observed inputs (in the space the PFN expects; BoTorch's usual unit
            cube). train_Y: ``[n, 1]`` observed values.
    """

    def __init__(self, model: str | PFN, train_X: Tensor, train_Y: Tensor) -> None:
        super().__init__()
        # kept out of the module tree: BoTorch casts its models to the candidates' dtype, the
        # PFN stays in the precision it was trained in
        self.__dict__["pfn"] = model if isinstance(model, PFN) else load(model)
        if train_Y.dim() != 2 or train_Y.shape[-1] != 1 or train_X.dim() != 2:
            raise ValueError(f"PFNModel takes train_X [n, d] and train_Y [n, 1], got "
                             f"{tuple(train_X.shape)} and {tuple(train_Y.shape)}")
        self.train_inputs, self.train_targets = (train_X,), train_Y[:, 0]
        self.conditioned = self.pfn.condition_on(train_X.float()[None],
                                                 train_Y[:, 0].float()[None])

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size()

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False,
                  posterior_transform=None, **kwargs) -> Posterior:
        """The PFN's predictive at ``X [*batch, q, d]`` (it predicts noisy observations, so
        ``observation_noise`` changes nothing)."""
        if output_indices not in (None, [0]):
            raise ValueError("PFNModel has a single output")
        flat = X.reshape(1, -1, X.shape[-1]).float()
        distribution = self.conditioned.distribution(flat)
        distribution = type(distribution)(distribution.borders[0], distribution.logits[0],
                                          tails=distribution.tails)
        posterior = PFNPosterior(distribution, X.shape[:-1])
        return posterior if posterior_transform is None else posterior_transform(posterior)
