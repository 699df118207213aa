"""Warm starts: a new PFN begins from the weights of a trained one (``TrainConfig.init_from``).

Training a PFN from scratch on a hard prior can sit for thousands of steps on the plateau where
it predicts the targets' marginal and ignores the inputs; a network that already does in-context
regression on a related prior leaves it at once. :func:`warm_start` copies the source's
parameters into the new model by name: a tensor of the same shape is copied whole; one of the
same rank but another shape (an input encoder for more features, say) has its overlapping block
copied and the rest keeps its fresh initialisation. The head's buffers (the Riemann borders)
are the source's when the source was trained on the very prior of the new run — a continuation
keeps its output space: borders fitted again from another seed's prior samples move by three to
five bucket widths (measured on ``gp-1d`` and ``gp-paper``), so every logit the network learned
would name another interval — and otherwise stay as fitted to the new prior.

The new model's card records the warm start (:func:`warm_start_record`): the source as named and
the source's own card, which records its own warm start in turn, so a model trained in stages
carries the whole chain; :func:`first_stage_card` finds the stage that began from scratch.
"""

from __future__ import annotations

import dataclasses

import torch

from priorfit.model import PFN, load
from priorfit.priors.base import prior_from_config, prior_to_config


def warm_start(model: PFN, source: str | PFN, prior_config: dict | None = None
               ) -> dict[str, list[str]]:
    """Copy the weights of ``source`` (a zoo name, a file or a loaded PFN) into ``model`` in
    place (see the module); ``prior_config``: the new run's prior (``prior_to_config``), whose
    equality to the source card's prior carries the head's buffers over. Returns the parameter
    names ``copied``, ``partly`` copied (an overlapping block) and ``kept`` (fresh), and the
    head ``buffers`` copied."""
    source = source if isinstance(source, PFN) else load(source)
    if source.config.arch != model.config.arch:
        raise ValueError(f"init_from: a {source.config.arch!r} network cannot start a "
                         f"{model.config.arch!r} one")
    if source.config.head != model.config.head:
        raise ValueError(f"init_from: a {source.config.head!r} head cannot start a "
                         f"{model.config.head!r} one")
    weights = dict(source.named_parameters())
    report = {"copied": [], "partly": [], "kept": []}
    with torch.no_grad():
        for name, param in model.named_parameters():
            given = weights.get(name)
            if given is not None and given.shape == param.shape:
                param.copy_(given)
                report["copied"].append(name)
            elif given is not None and given.dim() == param.dim():
                block = tuple(slice(0, min(a, b)) for a, b in zip(given.shape, param.shape,
                                                                  strict=True))
                param[block] = given[block]
                report["partly"].append(name)
            else:
                report["kept"].append(name)
    if not report["copied"] and not report["partly"]:
        raise ValueError("init_from: the source shares no parameter with this network")
    report["buffers"] = []
    if prior_config is not None and _trained_on(source, prior_config):
        buffers = dict(source.head.named_buffers())
        with torch.no_grad():
            for name, buffer in model.head.named_buffers():
                if name in buffers and buffers[name].shape == buffer.shape:
                    buffer.copy_(buffers[name])
                    report["buffers"].append(f"head.{name}")
    return report


def _trained_on(source: PFN, prior_config: dict) -> bool:
    """Whether the card of ``source`` names the prior ``prior_config`` (a card without a prior,
    or with one this version cannot build, does not)."""
    try:
        return prior_to_config(prior_from_config(source.card["prior"])) == prior_config
    except (KeyError, TypeError, ValueError):
        return False


def warm_start_record(source: str) -> dict:
    """The card entry ``"warm_start"`` of a run started from ``source`` (a zoo name or file):
    ``{"from": source, "card": the source's card}``."""
    return {"from": source, "card": load(source).card}


def first_stage_card(card: dict) -> dict:
    """The card of the first stage of ``card``'s chain of warm starts on its own prior (``card``
    itself for a model trained from scratch, or started from a model of another prior): the
    recipe that began the model, as a benchmark of training recipes needs it."""
    while "warm_start" in card and card["warm_start"]["card"].get("prior") == card.get("prior"):
        card = card["warm_start"]["card"]
    return card


def first_stage_configs(name: str):
    """``(prior, ModelConfig, TrainConfig)`` that began the model ``name`` (a zoo name or file),
    from its card: its prior and network, and the training config of its first stage
    (:func:`first_stage_card`), which reads the same from an installed package as from
    ``configs/``."""
    from priorfit.train.config import train_config_from_card

    model = load(name)
    train = first_stage_card(model.card)["train"]
    return (prior_from_config(model.card["prior"]), dataclasses.replace(model.config),
            train_config_from_card(train, f"{name} card train"))
