"""The PFN base class: a network (one subclass per architecture) and its output head.

An architecture implements :meth:`PFN.condition` (run the training set through the network
once, returning a cache) and :meth:`PFN.predict_logits` (logits of test points given the cache);
training uses :meth:`PFN.forward`. Everything else — the head, prediction in user units, saving —
is shared here.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from priorfit import io, predict
from priorfit.model.heads import HEADS


class PFN(nn.Module):
    """A prior-data fitted network.

    ``forward(x_train [B, n, F], y_train [B, n], x_test [B, m, F], train_mask [B, n] | None)
    -> logits [B, m, num_outputs]`` in the model's own units (after the transforms named in the
    config); ``train_mask`` (``True`` = a real point) lets datasets with different numbers of
    training points share a batch. :meth:`predict` returns the distribution in the user's units.

    Attributes:
        config: the ModelConfig. head: the output head (:mod:`priorfit.model.heads`).
        card: the model card (prior, training config, measured quality), saved with the weights.
    """

    arch: ClassVar[str]  # set by register_architecture
    default_chunk_size: ClassVar[int] = 2048  # test points per forward pass in prediction
    accepts_missing: ClassVar[bool] = False  # True: NaN in x is a missing value it encodes

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.head = HEADS[config.head](config)
        self.card: dict = {}

    def condition(self, x_train: Tensor, y_train: Tensor,
                  train_mask: Tensor | None = None) -> Any:
        """Run the training set through the network once; the cache for :meth:`predict_logits`."""
        raise NotImplementedError

    def predict_logits(self, cache: Any, x_test: Tensor) -> Tensor:
        """Logits ``[B, m, num_outputs]`` of test points ``x_test [B, m, F]`` given a cache."""
        raise NotImplementedError

    def forward(self, x_train: Tensor, y_train: Tensor, x_test: Tensor,
                train_mask: Tensor | None = None) -> Tensor:
        """Logits ``[B, m, num_outputs]``; equal to ``predict_logits(condition(...), x_test)``."""
        return self.predict_logits(self.condition(x_train, y_train, train_mask), x_test)

    def _decode(self, h: Tensor) -> Tensor:
        """Tokens ``[*, d]`` -> logits ``[*, num_outputs]`` through ``self.norm`` and
        ``self.decoder`` (every architecture has both), in the weights' precision."""
        with torch.autocast(h.device.type, enabled=False):
            return self.decoder(self.norm(h.to(self.norm.weight.dtype)))

    def predict(self, x_train, y_train, x_test, **kwargs) -> torch.distributions.Distribution:
        """Posterior predictive at ``x_test`` in the user's units; see :func:`priorfit.predict`."""
        return predict.predict(self, x_train, y_train, x_test, **kwargs)

    def condition_on(self, x_train, y_train, **kwargs) -> predict.Conditioned:
        """This PFN conditioned once on a training set; see :class:`priorfit.predict.Conditioned`
        (predictions from it keep gradients with respect to the test inputs)."""
        return predict.Conditioned(self, x_train, y_train, **kwargs)

    def save(self, path: str | os.PathLike, *, half: bool = False) -> None:
        """Write weights (safetensors) with the model card embedded; ``half`` stores the weights
        as float16 (the head's buffers, such as bucket borders, stay float32)."""
        tensors = {
            name: t.half() if half and t.is_floating_point() and not name.startswith("head.")
            else t
            for name, t in self.state_dict().items()
        }
        io.write(path, tensors, {**self.card, "model": dataclasses.asdict(self.config)})

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
