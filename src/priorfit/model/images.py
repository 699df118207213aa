"""The ``"images"`` architecture: one token per image, for few-shot classification.

The rows network (:mod:`priorfit.model.rows`) with two encoders of its own: a small
convolutional network turns each image (``num_features = side²`` pixels, flattened row by
row) into a token, and a support image's label is added as a learned embedding (a class index
is a name, not a number). Support tokens attend to each other, a query to the support set and
itself; there is no positional encoding, so predictions are invariant to the order of the
support set, and training on episodes with randomly assigned labels makes them (approximately)
invariant to relabelling.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from priorfit.model.registry import register_architecture
from priorfit.model.rows import RowsPFN


class ImageEncoder(nn.Module):
    """Images ``[B, N, side²]`` (``num_features = side²``) -> tokens ``[B, N, d_model]``: three
    stride-2 3×3 convolutions (16, 32, 32 channels, GELU), a linear map of the flattened feature
    map and a layer norm, so that an image token is as large as a label embedding (``N(0, 1)``
    entries): without it the tokens of a fresh network were 95% label, and training stalled at
    chance."""

    def __init__(self, num_features: int, d_model: int):
        super().__init__()
        self.side = math.isqrt(num_features)
        if self.side**2 != num_features or self.side < 8:
            raise ValueError(
                "the images architecture needs ModelConfig.num_features = side² (a square "
                f"image of side >= 8), got {num_features}"
            )
        self.convolutions = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False), nn.GELU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.GELU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1, bias=False), nn.GELU(),
        )
        reduced = math.ceil(self.side / 8)  # three stride-2 convolutions
        self.linear = nn.Linear(32 * reduced**2, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        batch, count, _ = x.shape
        maps = self.convolutions(x.reshape(batch * count, 1, self.side, self.side))
        tokens = self.norm(self.linear(maps.flatten(1)))
        return tokens.reshape(batch, count, self.linear.out_features)


class LabelEncoder(nn.Module):
    """Class indices ``[B, N]`` (floats ``0..K-1``) -> embeddings ``[B, N, d_model]``."""

    def __init__(self, num_classes: int, d_model: int):
        super().__init__()
        self.embedding = nn.Embedding(num_classes, d_model)

    def forward(self, y: Tensor) -> Tensor:
        return self.embedding(y.round().long())


@register_architecture("images")
class ImagesPFN(RowsPFN):
    """One token per image (see the module); ``config.num_features`` is the pixel count of a
    square image and ``config.num_outputs`` the most classes (the ``"classes"`` head)."""

    def __init__(self, config):
        if config.head != "classes":
            raise ValueError(
                f"the images architecture needs the 'classes' head, got {config.head!r}"
            )
        super().__init__(config)

    def encoders(self, config) -> tuple[nn.Module, nn.Module]:
        """A convolutional image encoder and a label embedding."""
        return (ImageEncoder(config.num_features, config.d_model),
                LabelEncoder(config.num_outputs, config.d_model))
