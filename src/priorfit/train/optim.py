"""Optimiser pieces of the training recipe."""

from __future__ import annotations

from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on weight matrices and embeddings only.

    Norm gains, biases and any other parameter with fewer than two dimensions are never
    decayed (as in nanoGPT): shrinking them towards zero has no regularising meaning. Both
    groups are returned even when one is empty, so optimiser state dicts keep their layout.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
