"""Token encoders: each data point becomes one token, ``embed(x) [+ embed(y)]``."""

from __future__ import annotations

import math

from torch import Tensor, nn


class FeatureEncoder(nn.Module):
    """Linear embedding of inputs with a variable number of features.

    Inputs with ``F < max_features`` are zero-padded to ``max_features`` and multiplied by
    ``sqrt(max_features / F)``, so that the expected squared norm of a token does not depend on
    how many features a dataset has.
    """

    def __init__(self, max_features: int, d_model: int):
        super().__init__()
        self.max_features = max_features
        self.linear = nn.Linear(max_features, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, N, F]`` with ``1 <= F <= max_features`` -> ``[B, N, d_model]``."""
        num_features = x.shape[-1]
        if num_features < self.max_features:
            x = nn.functional.pad(x, (0, self.max_features - num_features))
            x = x * math.sqrt(self.max_features / num_features)
        return self.linear(x)


class TargetEncoder(nn.Module):
    """Linear embedding of a scalar target (a regression value or a class index)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.linear = nn.Linear(1, d_model)

    def forward(self, y: Tensor) -> Tensor:
        """``y [B, N]`` -> ``[B, N, d_model]``."""
        return self.linear(y.unsqueeze(-1))

