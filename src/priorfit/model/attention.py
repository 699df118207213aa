"""Attention pieces shared by the architectures.

Tokens are ``[*, N, d]`` with any leading dims; heads are split into ``[*, heads, N, head_dim]``.
A key mask ``[*, n]`` (``True`` = a real token) hides padding, so that datasets with different
numbers of training points share one batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention projections: one ``qkv`` linear map in, one ``out`` map back."""

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def split(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``h [*, N, d]`` -> q, k, v each ``[*, heads, N, head_dim]``."""
        qkv = self.qkv(h).unflatten(-1, (3, self.num_heads, self.head_dim))
        return qkv.movedim(-3, 0).transpose(-2, -3).unbind(0)

    def merge(self, h: Tensor) -> Tensor:
        """``[*, heads, N, head_dim]`` -> ``[*, N, d]`` through the output projection."""
        return self.out(h.transpose(-2, -3).flatten(-2))


def attend(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> Tensor:
    """Softmax attention of ``q [*, H, m, hd]`` over ``k, v [*, H, n, hd]`` -> ``[*, H, m, hd]``.

    ``key_mask [*, n]`` (``True`` = attend) hides keys; a query with no key to attend to (all
    masked, or ``n = 0``) gets zeros.
    """
    if k.shape[-2] == 0:
        return torch.zeros_like(q)
    mask = None if key_mask is None else key_mask[..., None, None, :]
    if _explicit_for_training(q, k):
        return _attend_explicit(q, k, v, mask)
    if q.dim() == 4:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    # PyTorch's fused (memory-efficient) kernels take [B, H, L, hd]: fold the extra leading dims
    lead = q.shape[:-3]
    if mask is not None:
        mask = mask.expand(*lead, *mask.shape[-3:]).flatten(0, -4)
    out = F.scaled_dot_product_attention(
        q.flatten(0, -4), k.flatten(0, -4), v.flatten(0, -4), attn_mask=mask
    )
    return out.unflatten(0, lead)


# Score matrices up to this many elements take the explicit path in reduced-precision training
EXPLICIT_MAX_SCORES = 2**25


def _explicit_for_training(q: Tensor, k: Tensor) -> bool:
    """Whether :func:`attend` computes the scores explicitly: in bfloat16/float16 training on a
    CPU, where PyTorch's fused attention backward is slow (a ``gp-paper`` step on an AMD EPYC:
    0.57-0.73 s through it, 0.44-0.53 s explicitly), and the scores fit in
    :data:`EXPLICIT_MAX_SCORES`."""
    return (q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16)
            and torch.is_grad_enabled() and q.requires_grad
            and q.shape[:-1].numel() * k.shape[-2] <= EXPLICIT_MAX_SCORES)


def _attend_explicit(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """:func:`attend` through matrix products and a softmax in the inputs' precision
    (``mask [*, 1, 1, n]``). PyTorch's CPU softmax accumulates bfloat16/float16 in float32, so
    its weights are a float32 softmax rounded once; a round trip of the scores through float32
    instead made a forward and backward over 95 training points 1.3x slower here."""
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-1, -2)
    if mask is None:
        return torch.softmax(scores, -1) @ v
    weights = torch.softmax(scores.masked_fill(~mask, -math.inf), -1)
    return weights.nan_to_num(0.0) @ v  # a query with no key at all: zeros


# PyTorch's fused CPU attention kernel, which also returns the log-sum-exp of the scores.
_FUSED_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def attend_train_and_self(
    q: Tensor,
    k_self: Tensor,
    v_self: Tensor,
    k_train: Tensor,
    v_train: Tensor,
    key_mask: Tensor | None = None,
) -> Tensor:
    """Test queries ``q [B, H, m, hd]`` attend to the training keys ``[B, H, n, hd]`` and each to
    its own key ``k_self [B, H, m, hd]`` -> ``[B, H, m, hd]``; ``key_mask [B, n]`` hides
    padded training keys.

    In reduced precision on the CPU, without gradients, the training keys go through PyTorch's
    fused attention kernel and the own key is merged in by its log-sum-exp (about 4x faster in
    bfloat16); float32 and float64 always take the explicit path below, bit for bit as before.
    """
    fused = (
        _FUSED_CPU is not None and q.device.type == "cpu" and key_mask is None
        and q.dtype in (torch.bfloat16, torch.float16) and k_train.shape[-2] > 0
        and not (torch.is_grad_enabled() and q.requires_grad)
    )
    if fused:
        return _attend_fused(q, k_self, v_self, k_train, v_train)
    q = q * (1.0 / math.sqrt(q.shape[-1]))
    scores_train = q @ k_train.transpose(-1, -2)  # [B, H, m, n]
    if key_mask is not None:
        scores_train = scores_train.masked_fill(~key_mask[:, None, None, :], -math.inf)
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


def _attend_fused(q, k_self, v_self, k_train, v_train) -> Tensor:
    """:func:`attend_train_and_self` through the fused kernel: the attention over the training
    keys, then the own key with weight ``sigmoid(score_self - logsumexp(scores_train))``."""
    v_self = v_self.to(q.dtype)
    train, log_total = _FUSED_CPU(q, k_train.to(q.dtype), v_train.to(q.dtype))[:2]
    score_self = (q.float() * k_self.float()).sum(-1) * (1.0 / math.sqrt(q.shape[-1]))
    weight_self = torch.sigmoid(score_self - log_total.float())[..., None].to(q.dtype)
    return train + weight_self * (v_self - train)


class LayerScale(nn.Module):
    """A learned per-channel gain on a residual branch, ``[*, d] -> [*, d]``, initialised to
    ``init`` (LayerScale, Touvron et al. 2021): with a small ``init`` every block starts close
    to the identity and the residual stream is not swamped by early, noisy branches."""

    def __init__(self, d_model: int, init: float):
        super().__init__()
        self.gain = nn.Parameter(torch.full((d_model,), float(init)))

    def forward(self, h: Tensor) -> Tensor:
        return h * self.gain


def residual_gain(d_model: int, residual_scale: float) -> nn.Module:
    """The gain of a residual branch: :class:`LayerScale` at ``residual_scale``, or at 1.0 the
    identity with no parameters (so models saved without residual scaling load unchanged)."""
    return nn.Identity() if residual_scale == 1.0 else LayerScale(d_model, residual_scale)


class FeedForward(nn.Module):
    """Pre-norm GELU feed-forward block with its residual: ``h + gain(ff(norm(h)))``,
    ``[*, d]``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, residual_scale: float = 1.0):
        super().__init__()
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.gain = residual_gain(d_model, residual_scale)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.dropout(self.gain(self.ff(self.norm_ff(h))))


def decoder(d_model: int, d_ff: int, num_outputs: int) -> nn.Sequential:
    """The MLP from a token to its ``num_outputs`` logits."""
    return nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, num_outputs))
