"""Warm starts: a new PFN begins from the weights of a trained one (``TrainConfig.init_from``).

Training a PFN from scratch on a hard prior can sit for thousands of steps on the plateau where
it predicts the targets' marginal and ignores the inputs; a network that already does in-context
regression on a related prior leaves it at once. :func:`warm_start` copies the source's
parameters into the new model by name: a tensor of the same shape is copied whole; one of the
same rank but another shape (an input encoder for more features, say) has its overlapping block
copied and the rest keeps its fresh initialisation; the head's buffers (the Riemann borders,
fitted to the new prior) and anything else are left as they are.
"""

from __future__ import annotations

import torch

from priorfit.model import PFN, load


def warm_start(model: PFN, source: str | PFN) -> dict[str, list[str]]:
    """Copy the weights of ``source`` (a zoo name, a file or a loaded PFN) into ``model`` in
    place (see the module). Returns the parameter names ``copied``, ``partly`` copied (an
    overlapping block) and ``kept`` (fresh)."""
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
    return report
