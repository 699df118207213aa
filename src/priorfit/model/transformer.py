"""The PFN transformer.

Every data point is one token. Training tokens (``x`` and ``y`` embedded and summed) attend to
each other; a test token (``x`` only) attends to the training tokens and to itself, never to
other test tokens. There is no positional encoding, so predictions are invariant to the order
of the training points, and a test point's prediction does not depend on the other test points.

Because training tokens never look at test tokens, their keys and values can be computed once
(:meth:`PFN.condition`) and reused for any number of test points, in chunks
(:meth:`PFN.predict_logits`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priorfit.model.encoders import FeatureEncoder, TargetEncoder


@dataclass
class ModelConfig:
    """Architecture of a PFN.

    Attributes:
        num_features: the most input features a dataset may have (fewer are zero-padded).
        num_outputs: bucket count of the Riemann head, or the class count for classification.
        task: ``"regression"`` (Riemann head) or ``"classification"`` (class logits).
        d_model, num_heads, num_layers, d_ff: transformer sizes.
        dropout: dropout in attention outputs and feed-forward blocks.
        x_transform: ``"none"`` or ``"unit_cube"`` — per dataset, before the model (see
            :mod:`priorfit.transforms`); the same transform is used in training and prediction.
        y_transform: ``"none"`` or ``"standardize"``, likewise.
    """

    num_features: int = 1
    num_outputs: int = 1000
    task: str = "regression"
    d_model: int = 256
    num_heads: int = 4
    num_layers: int = 6
    d_ff: int = 512
    dropout: float = 0.0
    x_transform: str = "none"
    y_transform: str = "none"

    def __post_init__(self) -> None:
        if self.task not in ("regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification', got {self.task!r}")
        for name in ("num_features", "num_outputs", "d_model", "num_heads", "num_layers", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"ModelConfig.d_model ({self.d_model}) must be divisible by num_heads "
                f"({self.num_heads})"
            )
        if self.task == "regression" and self.num_outputs < 2:
            raise ValueError("ModelConfig.num_outputs (bucket count) must be at least 2")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")


KVCache = list[tuple[Tensor, Tensor]]
"""Per layer, keys and values of the training tokens, each ``[B, heads, n, head_dim]``."""


class Attention(nn.Module):
    """Multi-head attention with the PFN mask, computed without materialising a mask."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.d_model // config.num_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)

    def _split(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``h [B, N, d]`` -> q, k, v each ``[B, heads, N, head_dim]``."""
        batch, length, _ = h.shape
        qkv = self.qkv(h).view(batch, length, 3, self.num_heads, self.head_dim)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def _merge(self, h: Tensor) -> Tensor:
        """``[B, heads, N, head_dim]`` -> ``[B, N, d]`` through the output projection."""
        return self.out(h.transpose(1, 2).flatten(2))

    def train_tokens(self, h: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Training tokens attend to each other. ``h [B, n, d]`` -> (``[B, n, d]``, (k, v))."""
        q, k, v = self._split(h)
        return self._merge(F.scaled_dot_product_attention(q, k, v)), (k, v)

    def test_tokens(self, h: Tensor, cache: tuple[Tensor, Tensor]) -> Tensor:
        """Each test token attends to the cached training keys/values and to itself.

        ``h [B, m, d]``, cache k/v ``[B, heads, n, head_dim]`` (``n`` may be 0) -> ``[B, m, d]``.
        """
        return self._merge(_attend_train_and_self(*self._split(h), *cache))

    def joint(self, h: Tensor, n: int) -> Tensor:
        """Training and test tokens in one pass: ``h [B, n + m, d]``, training tokens first ->
        ``[B, n + m, d]``, as :meth:`train_tokens` on ``h[:, :n]`` and :meth:`test_tokens` on
        ``h[:, n:]`` (fewer, larger operations)."""
        q, k, v = self._split(h)
        train = F.scaled_dot_product_attention(q[:, :, :n], k[:, :, :n], v[:, :, :n])
        test = _attend_train_and_self(
            q[:, :, n:], k[:, :, n:], v[:, :, n:], k[:, :, :n], v[:, :, :n]
        )
        return self._merge(torch.cat([train, test], 2))


def _attend_train_and_self(
    q: Tensor, k_self: Tensor, v_self: Tensor, k_train: Tensor, v_train: Tensor
) -> Tensor:
    """Test queries ``q [B, H, m, hd]`` attend to the training keys ``[B, H, n, hd]`` and each to
    its own key ``k_self [B, H, m, hd]`` -> ``[B, H, m, hd]``."""
    q = q * (1.0 / math.sqrt(q.shape[-1]))
    scores_train = q @ k_train.transpose(-1, -2)  # [B, H, m, n]
    score_self = (q * k_self).sum(-1, keepdim=True)  # [B, H, m, 1]
    # Softmax over [training keys, own key] without concatenating: shift by the maximum
    # (detached: the result does not depend on it), exponentiate, normalise.
    shift = score_self.detach()
    if scores_train.shape[-1] > 0:
        shift = torch.maximum(scores_train.amax(-1, keepdim=True).detach(), shift)
    weights_train = scores_train.sub_(shift).exp_()
    weight_self = (score_self - shift).exp_()
    total = weights_train.sum(-1, keepdim=True) + weight_self
    return (weights_train @ v_train + weight_self * v_self) / total


class Block(nn.Module):
    """Pre-norm transformer block: attention, then a GELU feed-forward network."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm_attn = nn.LayerNorm(config.d_model)
        self.attn = Attention(config)
        self.norm_ff = nn.LayerNorm(config.d_model)
        self.ff = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff),
            nn.GELU(),
            nn.Linear(config.d_ff, config.d_model),
        )
        self.dropout = nn.Dropout(config.dropout)

    def _feed_forward(self, h: Tensor) -> Tensor:
        return h + self.dropout(self.ff(self.norm_ff(h)))

    def train_tokens(self, h: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        attended, cache = self.attn.train_tokens(self.norm_attn(h))
        return self._feed_forward(h + self.dropout(attended)), cache

    def test_tokens(self, h: Tensor, cache: tuple[Tensor, Tensor]) -> Tensor:
        return self._feed_forward(h + self.dropout(self.attn.test_tokens(self.norm_attn(h), cache)))

    def joint(self, h: Tensor, n: int) -> Tensor:
        return self._feed_forward(h + self.dropout(self.attn.joint(self.norm_attn(h), n)))


class PFN(nn.Module):
    """A prior-data fitted network.

    ``forward(x_train [B, n, F], y_train [B, n], x_test [B, m, F]) -> logits [B, m, num_outputs]``
    in the model's own units (after the transforms named in the config). For regression the
    logits are over the buckets of ``borders`` (``[num_outputs + 1]``, a buffer estimated from
    prior samples); :meth:`predict` returns the distribution in the user's units.
    """

    def __init__(self, config: ModelConfig, borders: Tensor | None = None):
        super().__init__()
        self.config = config
        self.x_encoder = FeatureEncoder(config.num_features, config.d_model)
        self.y_encoder = TargetEncoder(config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.decoder = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff),
            nn.GELU(),
            nn.Linear(config.d_ff, config.num_outputs),
        )
        if config.task == "regression":
            if borders is None:
                borders = torch.linspace(-3.0, 3.0, config.num_outputs + 1)
            if borders.shape != (config.num_outputs + 1,):
                raise ValueError(
                    f"borders must have shape [{config.num_outputs + 1}], "
                    f"got {tuple(borders.shape)}"
                )
            self.register_buffer("borders", borders.float().clone())
        else:
            self.borders = None
        self.card: dict = {}

    def condition(self, x_train: Tensor, y_train: Tensor) -> KVCache:
        """Run the training tokens through all layers once; return their keys and values."""
        h = self.x_encoder(x_train) + self.y_encoder(y_train.to(x_train.dtype))
        cache: KVCache = []
        for block in self.blocks:
            h, kv = block.train_tokens(h)
            cache.append(kv)
        return cache

    def predict_logits(self, cache: KVCache, x_test: Tensor) -> Tensor:
        """Logits ``[B, m, num_outputs]`` of test points ``x_test [B, m, F]`` given a cache."""
        h = self.x_encoder(x_test)
        for block, kv in zip(self.blocks, cache, strict=True):
            h = block.test_tokens(h, kv)
        return self._decode(h)

    def forward(self, x_train: Tensor, y_train: Tensor, x_test: Tensor) -> Tensor:
        """Logits ``[B, m, num_outputs]`` of ``x_test [B, m, F]`` given ``x_train [B, n, F]``,
        ``y_train [B, n]``, in one pass over all tokens; equal to
        ``predict_logits(condition(x_train, y_train), x_test)``."""
        n = x_train.shape[1]
        h = self.x_encoder(torch.cat([x_train, x_test], 1))
        h = torch.cat([h[:, :n] + self.y_encoder(y_train.to(h.dtype)), h[:, n:]], 1)
        for block in self.blocks:
            h = block.joint(h, n)
        return self._decode(h[:, n:])

    def _decode(self, h: Tensor) -> Tensor:
        with torch.autocast(h.device.type, enabled=False):  # logits in the weights' precision
            return self.decoder(self.norm(h.to(self.norm.weight.dtype)))

    def predict(self, x_train, y_train, x_test, **kwargs):
        """Posterior predictive at ``x_test`` in the user's units; see :func:`priorfit.predict`."""
        from priorfit.predict import predict

        return predict(self, x_train, y_train, x_test, **kwargs)

    def save(self, path) -> None:
        """Write weights (safetensors) with the model card embedded; see :mod:`priorfit.io`."""
        from priorfit.io import save

        save(self, path)
