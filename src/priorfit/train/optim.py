"""Optimisers of the training recipe: AdamW, or Muon for the transformer's weight matrices.

``TrainConfig.optimizer = "adamw"``: one AdamW over every parameter. ``"muon"``:
``torch.optim.Muon`` (momentum, then Newton-Schulz orthogonalised updates, with its learning
rate scaled to match AdamW's update size, ``adjust_lr_fn="match_rms_adamw"``, so one ``lr``
serves both) for the 2-D weight matrices inside the transformer blocks, and AdamW for the rest:
encoders, decoder, norms, biases and learned rows, as in the nanoGPT and nanoTabPFN speedruns.
"""

from __future__ import annotations

import torch
from torch import nn

OPTIMIZERS = ("adamw", "muon")


def param_groups(params, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on weight matrices and embeddings only.

    ``params`` is a model or an iterable of parameters. Norm gains, biases and any other
    parameter with fewer than two dimensions are never decayed (as in nanoGPT): shrinking them
    towards zero has no regularising meaning. Both groups are returned even when one is empty,
    so optimiser state dicts keep their layout.
    """
    if isinstance(params, nn.Module):
        params = params.parameters()
    decay, no_decay = [], []
    for param in params:
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizers(model: nn.Module, config) -> list[torch.optim.Optimizer]:
    """The optimisers of ``config.optimizer`` (a TrainConfig) for ``model``."""
    if config.optimizer == "adamw":
        return [torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)]
    matrices, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            hidden = name.startswith("blocks.") and param.dim() == 2
            (matrices if hidden else rest).append(param)
    muon = torch.optim.Muon(matrices, lr=config.lr, weight_decay=config.weight_decay,
                            adjust_lr_fn="match_rms_adamw")
    return [muon, torch.optim.AdamW(param_groups(rest, config.weight_decay), lr=config.lr)]
