"""Learning-rate schedules: linear warm-up, then a decay shape, on a step or a time clock.

The factor multiplies ``TrainConfig.lr``. Warm-up is linear over ``warmup_steps`` steps; then
the run's progress ``p`` in [0, 1] — steps done over ``steps``, or with ``schedule_clock =
"time"`` wall time over ``time_limit_s`` (so that a run stopped by its budget has annealed,
whatever its step time turned out to be) — sets the decay:

* ``"cosine"``: ``min + (1 - min) (1 + cos(pi p)) / 2``;
* ``"linear"``: ``min + (1 - min) (1 - p)``;
* ``"wsd"`` (warm-up, stable, decay): 1 until ``1 - cooldown_fraction``, then linear to ``min``,

with ``min = min_lr_ratio``.
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "linear", "wsd")
CLOCKS = ("steps", "time")


def lr_factor(config, step: int, elapsed_s: float) -> float:
    """The learning-rate factor of optimiser step ``step`` (0-based), ``elapsed_s`` into the run."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule_clock == "time":
        progress = elapsed_s / config.time_limit_s
    else:
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if config.lr_schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif config.lr_schedule == "linear":
        shape = 1.0 - progress
    else:  # "wsd"
        shape = min(1.0, (1.0 - progress) / config.cooldown_fraction)
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * shape
