"""Few-shot image episodes: what every image prior shares, and episodes of real images.

An *episode* of N classes and K shots is a sequence whose first ``N * K`` images are the
support set (K shots of each class, in random order) and whose rest are queries of the same N
classes; labels are ``0..N-1`` in an order unrelated to the classes. N and K are drawn per
batch, so every episode of a batch has the same support size, which ``sample_split`` returns
as the cut between training and test points (the engine's seam for such priors,
:func:`priorfit.train.data.sample_micro_batch`).

- :class:`Episodes` holds the sizes and draws the layout of the labels;
- :class:`ImageEpisodes` draws the images from a labelled collection, for fine-tuning on real
  characters (Omniglot's background alphabets, as the paper's §7 does);
- :class:`~priorfit.priors.StrokePrior` draws them as random pen strokes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from priorfit.priors.base import Batch
from priorfit.priors.inputs import draw_device, target_device


@dataclass
class Episodes:
    """The sizes of few-shot episodes of ``image_size × image_size`` images.

    Attributes:
        image_size: the side of the square canvas in pixels.
        min_classes, max_classes: N per batch, log-uniform in this range (small N often).
        min_shots, max_shots: K per batch, uniform in this range.
    """

    image_size: int = 28
    min_classes: int = 2
    max_classes: int = 20
    min_shots: int = 1
    max_shots: int = 5

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in ("image_size", "min_classes", "max_classes", "min_shots", "max_shots"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}.{field} must be an int >= 1, got {value!r}")
        if self.image_size < 8:
            raise ValueError(f"{name}.image_size must be >= 8, got {self.image_size}")
        if not 2 <= self.min_classes <= self.max_classes:
            raise ValueError(f"{name} needs 2 <= min_classes <= max_classes, got "
                             f"{self.min_classes}, {self.max_classes}")
        if self.min_shots > self.max_shots:
            raise ValueError(f"{name} needs min_shots <= max_shots, got "
                             f"{self.min_shots}, {self.max_shots}")

    @property
    def num_features(self) -> int:
        """Pixels per image, ``image_size ** 2``."""
        return self.image_size**2

    @property
    def num_classes(self) -> int:
        """The most classes of an episode (what a classifier head must hold)."""
        return self.max_classes

    @property
    def max_support(self) -> int:
        """The largest support set, ``max_classes * max_shots``."""
        return self.max_classes * self.max_shots

    def sample(self, batch_size: int, seq_len: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Batch:
        """``batch_size`` episodes of ``seq_len`` images: x ``[B, T, image_size²]`` and labels
        y ``[B, T]`` (floats ``0..N-1``); the support set first (see ``sample_split``)."""
        return self.sample_split(batch_size, seq_len, generator=generator, device=device)[0]

    def _layout(self, batch_size: int, seq_len: int, generator, draw
                ) -> tuple[Tensor, Tensor, int, int]:
        """The labels ``[B, T]`` (int64) of a batch of episodes, the shot index ``[B, T]`` of
        each image within its class (``0..K-1`` in the support set, ``K`` for the queries), N
        and K. The support set comes first, in a random order per episode."""
        if seq_len <= self.max_support:
            raise ValueError(f"seq_len must exceed max_classes * max_shots = {self.max_support} "
                             f"(room for queries), got {seq_len}")
        # log-uniform: P(N = k) ∝ log((k + 1) / k); a 2-way task in about one batch of six
        # (of up to 20 ways), which is what gets a fresh network off the plateau of chance
        low, high = math.log(self.min_classes), math.log(self.max_classes + 1)
        u = float(torch.rand((), generator=generator, device=draw))
        classes = min(self.max_classes, int(math.exp(low + (high - low) * u)))
        shots = int(torch.randint(self.min_shots, self.max_shots + 1, (1,), generator=generator,
                                  device=draw))
        support = classes * shots
        order = torch.rand((batch_size, support), generator=generator, device=draw).argsort(1)
        labels = torch.cat([
            torch.arange(classes, device=draw).repeat(shots)[order],
            torch.randint(classes, (batch_size, seq_len - support), generator=generator,
                          device=draw),
        ], 1)
        shot = torch.cat([order // classes,
                          torch.full((batch_size, seq_len - support), shots, device=draw)], 1)
        return labels, shot, classes, shots


def random_affine(shape: tuple[int, ...], rotation: float, scale: float, shear: float,
                  translation: float, generator, draw) -> tuple[Tensor, Tensor]:
    """Random affine maps about the canvas centre: matrices ``[*shape, 2, 2]`` (rotation @
    shear @ scale; angle, shear and log scale normal with these standard deviations) and shifts
    ``[*shape, 2]`` (canvas units, standard deviation ``translation``)."""

    def normal(std: float) -> Tensor:
        return std * torch.randn(shape, generator=generator, device=draw)

    angle, log_scale, shearing = normal(rotation), normal(scale), normal(shear)
    cos, sin, factor = angle.cos(), angle.sin(), log_scale.exp()
    matrix = torch.stack([
        torch.stack([cos, cos * shearing - sin], -1),
        torch.stack([sin, sin * shearing + cos], -1),
    ], -2) * factor[..., None, None]
    shift = torch.stack([normal(translation), normal(translation)], -1)
    return matrix, shift


@dataclass
class ImageEpisodes(Episodes):
    """Episodes of real images: each class a character of a collection, each example one of
    its drawings, distorted by a random affine map (see the module).

    The collection is an ``.npz`` file whose ``images`` array is ``[characters, drawings, H,
    W]`` (bool or grey levels, ink bright or dark), e.g. Omniglot's
    ``images_background.npz``; its images are brought to the stroke prior's form once
    (:func:`priorfit.images.prepare_images`) when the first episode is drawn.

    Attributes:
        path: the ``.npz`` file (relative to the working directory).
        rotate_classes: each character also counts as a new class turned by 90, 180 and 270
            degrees (4× the classes, the usual Omniglot augmentation).
        rotation, scale, shear, translation: the per-example affine distortion, as
            :class:`~priorfit.priors.StrokePrior`'s.
    """

    path: str = ""
    rotate_classes: bool = True
    rotation: float = 0.1
    scale: float = 0.1
    shear: float = 0.1
    translation: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"ImageEpisodes.path must name an .npz file, got {self.path!r}")
        for name in ("rotation", "scale", "shear", "translation"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"ImageEpisodes.{name} must be finite and >= 0, got {value}")

    @cached_property
    def images(self) -> Tensor:
        """The prepared collection ``[characters, drawings, image_size, image_size]``."""
        from priorfit.images import prepare_images

        path = Path(self.path)
        if not path.is_file():
            raise FileNotFoundError(f"ImageEpisodes.path: no file {path.resolve()}")
        with np.load(path) as archive:
            if "images" not in archive:
                raise ValueError(f"ImageEpisodes.path: {path} has no 'images' array")
            raw = archive["images"]
        if raw.ndim != 4 or raw.shape[1] <= self.max_shots:
            raise ValueError(f"ImageEpisodes.path: 'images' must be [characters, drawings, H, W] "
                             f"with more than max_shots = {self.max_shots} drawings, got shape "
                             f"{raw.shape}")
        classes = raw.shape[0] * (4 if self.rotate_classes else 1)
        if classes < self.max_classes:
            raise ValueError(f"ImageEpisodes.path: {classes} classes, fewer than max_classes = "
                             f"{self.max_classes}")
        flat = prepare_images("images", raw.reshape(-1, *raw.shape[2:]), self.image_size)
        return flat.reshape(*raw.shape[:2], self.image_size, self.image_size)

    def sample_split(self, batch_size: int, seq_len: int, *,
                     generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> tuple[Batch, int]:
        """As :meth:`sample`, and the support size ``N * K`` of this batch. The queries of a
        class are drawings other than its support drawings."""
        draw = draw_device(generator, device)
        labels, shot, ways, shots = self._layout(batch_size, seq_len, generator, draw)
        images = self.images.to(draw)
        characters, drawings = images.shape[:2]
        turns = 4 if self.rotate_classes else 1
        chosen = torch.rand((batch_size, characters * turns), generator=generator,
                            device=draw).argsort(1)[:, :ways]  # [B, N] classes
        klass = chosen.gather(1, labels)  # [B, T]
        # per class, its drawings in a random order: the support takes the first K, queries
        # any of the rest
        order = torch.rand((batch_size, ways, drawings), generator=generator,
                           device=draw).argsort(-1)
        rest = torch.randint(drawings - shots, labels.shape, generator=generator, device=draw)
        position = torch.where(shot < shots, shot, shots + rest)
        drawing = order[torch.arange(batch_size, device=draw)[:, None], labels, position]
        x = images[klass % characters, drawing]  # [B, T, S, S]
        turned = torch.stack([torch.rot90(x, k, (-2, -1)) for k in range(turns)])
        x = turned.gather(0, (klass // characters)[None, :, :, None, None].expand(
            1, *x.shape))[0]
        x = self._distort(x, generator, draw)
        out = target_device(generator, device)
        x = x.reshape(batch_size, seq_len, -1).to(out)
        return Batch(x, labels.float().to(out)), ways * shots

    def _distort(self, x: Tensor, generator, draw) -> Tensor:
        """Each image ``[B, T, S, S]`` through its own random affine map (bilinear)."""
        matrix, shift = random_affine(x.shape[:2], self.rotation, self.scale, self.shear,
                                      self.translation, generator, draw)
        # affine_grid works in [-1, 1] coordinates: a canvas-unit shift is twice as long there
        theta = torch.cat([matrix, 2 * shift[..., None]], -1).reshape(-1, 2, 3)
        flat = x.reshape(-1, 1, *x.shape[2:])
        grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
        warped = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)
        return warped.reshape(x.shape)
