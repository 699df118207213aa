"""The ``"rows"`` architecture: one token per data point.

Training tokens (``x`` and ``y`` embedded and summed) attend to each other; a test token (``x``
only) attends to the training tokens and to itself, never to other test tokens. There is no
positional encoding, so predictions are invariant to the order of the training points, and a
test point's prediction does not depend on the other test points.

Because training tokens never look at test tokens, their keys and values are computed once
(:meth:`RowsPFN.condition`) and reused for any number of test points, in chunks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from priorfit.model.attention import (
    Attention,
    FeedForward,
    attend,
    attend_train_and_self,
    decoder,
    residual_gain,
)
from priorfit.model.encoders import FeatureEncoder, TargetEncoder
from priorfit.model.pfn import PFN
from priorfit.model.registry import register_architecture

RowsCache = tuple[list[tuple[Tensor, Tensor]], Tensor | None]
"""Per layer, keys and values of the training tokens (each ``[B, heads, n, head_dim]``), and
the training mask ``[B, n]`` (``None``: every training point is real)."""


class Block(nn.Module):
    """Pre-norm transformer block: attention with the PFN mask, then the feed-forward block."""

    def __init__(self, config):
        super().__init__()
        self.norm_attn = nn.LayerNorm(config.d_model)
        self.attn = Attention(config.d_model, config.num_heads)
        self.attn_gain = residual_gain(config.d_model, config.residual_scale)
        self.feed_forward = FeedForward(config.d_model, config.d_ff, config.dropout,
                                        config.residual_scale)
        self.dropout = nn.Dropout(config.dropout)

    def train_tokens(self, h: Tensor, mask: Tensor | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Training tokens ``h [B, n, d]`` attend to each other -> (``[B, n, d]``, (k, v))."""
        q, k, v = self.attn.split(self.norm_attn(h))
        return self._residual(h, attend(q, k, v, mask)), (k, v)

    def test_tokens(self, h: Tensor, cache: tuple[Tensor, Tensor], mask: Tensor | None) -> Tensor:
        """Test tokens ``h [B, m, d]`` attend to the cached training keys/values and each to
        itself -> ``[B, m, d]``."""
        return self._residual(h, attend_train_and_self(*self.attn.split(self.norm_attn(h)),
                                                       *cache, mask))

    def joint(self, h: Tensor, n: int, mask: Tensor | None) -> Tensor:
        """Training and test tokens in one pass: ``h [B, n + m, d]``, training tokens first, as
        :meth:`train_tokens` and :meth:`test_tokens` (fewer, larger operations)."""
        sizes = [n, h.shape[1] - n]  # split, not sliced: its backward is one concatenation
        (q_train, q_test), (k_train, k_test), (v_train, v_test) = (
            t.split(sizes, 2) for t in self.attn.split(self.norm_attn(h))
        )
        train = attend(q_train, k_train, v_train, mask)
        test = attend_train_and_self(q_test, k_test, v_test, k_train, v_train, mask)
        return self._residual(h, torch.cat([train, test], 2))

    def _residual(self, h: Tensor, attended: Tensor) -> Tensor:
        return self.feed_forward(h + self.dropout(self.attn_gain(self.attn.merge(attended))))


@register_architecture("rows")
class RowsPFN(PFN):
    """One token per data point (see the module docstring); ``config.num_features`` is the most
    features a dataset may have (fewer are zero-padded and rescaled by the encoder)."""

    def __init__(self, config):
        super().__init__(config)
        self.x_encoder, self.y_encoder = self.encoders(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.decoder = decoder(config.d_model, config.d_ff, config.num_outputs)

    def encoders(self, config) -> tuple[nn.Module, nn.Module]:
        """The encoders of a data point's inputs ``[B, N, F] -> [B, N, d]`` and of its target
        ``[B, N] -> [B, N, d]``: linear maps here; a subclass brings its own."""
        return FeatureEncoder(config.num_features, config.d_model), TargetEncoder(config.d_model)

    def condition(self, x_train: Tensor, y_train: Tensor,
                  train_mask: Tensor | None = None) -> RowsCache:
        """``x_train [B, n, F]``, ``y_train [B, n]`` -> per-layer keys and values."""
        h = self.x_encoder(x_train) + self.y_encoder(y_train.to(x_train.dtype))
        kv = []
        for block in self.blocks:
            h, layer_kv = block.train_tokens(h, train_mask)
            kv.append(layer_kv)
        return kv, train_mask

    def predict_logits(self, cache: RowsCache, x_test: Tensor) -> Tensor:
        """Logits ``[B, m, num_outputs]`` of test points ``x_test [B, m, F]`` given a cache."""
        kv, mask = cache
        h = self.x_encoder(x_test)
        for block, layer_kv in zip(self.blocks, kv, strict=True):
            h = block.test_tokens(h, layer_kv, mask)
        return self._decode(h)

    def forward(self, x_train: Tensor, y_train: Tensor, x_test: Tensor,
                train_mask: Tensor | None = None) -> Tensor:
        """Logits ``[B, m, num_outputs]`` of ``x_test [B, m, F]`` given ``x_train [B, n, F]``,
        ``y_train [B, n]``, in one pass over all tokens."""
        n = x_train.shape[1]
        h = self.x_encoder(torch.cat([x_train, x_test], 1))
        h = torch.cat([h[:, :n] + self.y_encoder(y_train.to(h.dtype)), h[:, n:]], 1)
        for block in self.blocks:
            h = block.joint(h, n, train_mask)
        return self._decode(h[:, n:])
