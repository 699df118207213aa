"""A prior over few-shot image classification tasks drawn with pen strokes (paper §7).

Each task has N classes; each class is a random *character*, a template of 1 to
``max_strokes`` pen strokes, each a cubic Bézier curve (nearly straight lines to arcs and hooks,
by the spread of its inner control points), a stroke starting where the previous one ended with
probability ``connect_prob``. Every example of a class re-draws its template by hand: control
points jittered, the stroke thickness varied, the whole character distorted by a random affine
map (rotation, scale, shear, translation), then pixel noise. Images are ``image_size ×
image_size``, ink bright (1) on a dark background (0), flattened to ``image_size ** 2`` features.

A task of the batch is an episode (:mod:`priorfit.priors.episodes`): K shots of each of N
classes first, then queries of the same classes, labels in an order unrelated to the templates.

Rendering is vectorised over all images of the batch, without a loop: a stroke is a trail of
Gaussian blobs, and the image of every example is one batched matrix product (see
:meth:`StrokePrior._render`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from priorfit.priors.base import Batch
from priorfit.priors.episodes import Episodes, random_affine
from priorfit.priors.inputs import draw_device, target_device

POINTS_PER_STROKE = 24  # each Bézier curve is drawn as this many pen positions


@dataclass
class StrokePrior(Episodes):
    """Few-shot episodes of hand-drawn random characters (see the module; the sizes
    ``image_size``, ``min_classes``, ``max_classes``, ``min_shots`` and ``max_shots`` are
    :class:`~priorfit.priors.episodes.Episodes`').

    Attributes:
        max_strokes: strokes per character, uniform in ``1..max_strokes`` per class.
        connect_prob: the chance that a stroke starts where the previous one ended.
        thickness: the range of a class's stroke half-width, in canvas units (canvas = 1).
        jitter: the standard deviation of each control point's per-example displacement.
        rotation: the standard deviation of the per-example rotation, in radians.
        scale: per-example scale factors are log-normal with this standard deviation.
        shear: the standard deviation of the per-example shear.
        translation: the standard deviation of the per-example shift, in canvas units.
        noise: the standard deviation of Gaussian pixel noise (before clamping to [0, 1]).
    """

    max_strokes: int = 4
    connect_prob: float = 0.5
    thickness: tuple[float, float] = (0.015, 0.04)
    jitter: float = 0.025
    rotation: float = 0.15
    scale: float = 0.1
    shear: float = 0.1
    translation: float = 0.05
    noise: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.max_strokes, bool) or not isinstance(self.max_strokes, int) \
                or self.max_strokes < 1:
            raise ValueError(f"StrokePrior.max_strokes must be an int >= 1, got "
                             f"{self.max_strokes!r}")
        self.thickness = tuple(float(t) for t in self.thickness)
        if len(self.thickness) != 2 or not 0 < self.thickness[0] <= self.thickness[1]:
            raise ValueError(f"StrokePrior.thickness must be (low, high) with 0 < low <= high, "
                             f"got {self.thickness}")
        if not 0 <= self.connect_prob <= 1:
            raise ValueError(f"StrokePrior.connect_prob must be in [0, 1], got "
                             f"{self.connect_prob}")
        for name in ("jitter", "rotation", "scale", "shear", "translation", "noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"StrokePrior.{name} must be finite and >= 0, got {value}")

    def sample_split(self, batch_size: int, seq_len: int, *,
                     generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> tuple[Batch, int]:
        """As :meth:`sample`, and the support size ``N * K`` of this batch (the first ``N * K``
        images of each episode are its support set, the rest its queries)."""
        draw = draw_device(generator, device)
        labels, _, classes, shots = self._layout(batch_size, seq_len, generator, draw)
        templates, template_used, thickness = self._templates(batch_size, classes, generator,
                                                              draw)
        index = labels[..., None, None, None].expand(-1, -1, *templates.shape[2:])
        control = templates.gather(1, index)  # [B, T, strokes, 4, 2]
        used = template_used.gather(1, labels[..., None].expand(-1, -1, self.max_strokes))
        width = thickness.gather(1, labels) * _uniform((batch_size, seq_len), 0.8, 1.2,
                                                      generator, draw)
        control = control + self.jitter * torch.randn(control.shape, generator=generator,
                                                      device=draw)
        control = self._distort(control, generator, draw)
        images = self._render(control, used, width)
        images = images + self.noise * torch.randn(images.shape, generator=generator,
                                                   device=draw)
        out = target_device(generator, device)
        x = images.clamp(0.0, 1.0).reshape(batch_size, seq_len, -1)
        return Batch(x.to(out), labels.float().to(out)), classes * shots

    def _templates(self, batch_size: int, classes: int, generator, draw
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """Control points ``[B, N, strokes, 4, 2]`` (canvas units), the strokes each class
        draws ``[B, N, strokes]`` (bool: its first 1..max_strokes) and pen widths ``[B, N]``;
        each character centred on the canvas, its larger side 0.45 to 0.8 of it."""
        shape = (batch_size, classes, self.max_strokes)
        start = _uniform((*shape, 2), 0.2, 0.8, generator, draw)
        angle = _uniform(shape, 0.0, 2 * math.pi, generator, draw)
        length = _uniform(shape, 0.15, 0.45, generator, draw)
        direction = torch.stack([angle.cos(), angle.sin()], -1)
        connect = torch.rand(shape, generator=generator, device=draw) < self.connect_prob
        starts = [start[:, :, 0]]
        for s in range(1, self.max_strokes):  # a stroke may start at the previous one's end
            previous_end = (starts[-1] + length[:, :, s - 1, None] * direction[:, :, s - 1])
            starts.append(torch.where(connect[:, :, s, None], previous_end.clamp(0.1, 0.9),
                                      start[:, :, s]))
        p0 = torch.stack(starts, 2)
        p3 = (p0 + length[..., None] * direction).clamp(0.05, 0.95)
        chord = p3 - p0
        normal = torch.stack([-chord[..., 1], chord[..., 0]], -1)
        bend = 0.6 * torch.randn((*shape, 2), generator=generator, device=draw)
        p1 = p0 + chord / 3 + bend[..., :1] * normal
        p2 = p0 + 2 * chord / 3 + bend[..., 1:] * normal
        control = torch.stack([p0, p1, p2, p3], 3)  # [B, N, strokes, 4, 2]
        count = torch.randint(1, self.max_strokes + 1, (batch_size, classes, 1),
                              generator=generator, device=draw)
        used = torch.arange(self.max_strokes, device=draw) < count
        # bounding box of the used strokes' control points (a Bézier curve lies in their hull)
        flat = control.flatten(2, 3)  # [B, N, strokes * 4, 2]
        drawn = used.repeat_interleave(4, 2)[..., None]
        low = flat.masked_fill(~drawn, math.inf).amin(2)
        high = flat.masked_fill(~drawn, -math.inf).amax(2)  # [B, N, 2]
        side = (high - low).amax(-1).clamp(min=1e-3)  # [B, N]
        target = _uniform((batch_size, classes), 0.45, 0.8, generator, draw)
        factor = (target / side)[..., None, None, None]
        centre = ((low + high) / 2)[:, :, None, None]
        control = (control - centre) * factor + 0.5
        thickness = _uniform((batch_size, classes), *self.thickness, generator, draw)
        return control, used, thickness

    def _distort(self, control: Tensor, generator, draw) -> Tensor:
        """A random affine map per example about the canvas centre: ``[B, T, S, 4, 2]``."""
        matrix, shift = random_affine(control.shape[:2], self.rotation, self.scale, self.shear,
                                      self.translation, generator, draw)
        centred = control - 0.5
        moved = torch.einsum("btij,btskj->btski", matrix, centred)
        return moved + 0.5 + shift[:, :, None, None]

    def _render(self, control: Tensor, used: Tensor, width: Tensor) -> Tensor:
        """Images ``[B, T, H, W]`` in [0, 1] of strokes ``control [B, T, S, 4, 2]`` (those with
        ``used [B, T, S]``) with pen widths ``width [B, T]`` (canvas units).

        Each stroke is :data:`POINTS_PER_STROKE` points along its curve, each a Gaussian blob
        of standard deviation ``width``, weighted by its share of the stroke's length so that a
        stroke's ink peaks near 1 whatever its length; the sum, doubled and clamped to [0, 1],
        is a pen line with a soft edge. A Gaussian separates into its x and y factors, so the
        image is one batched matrix product ``gy^T @ gx`` over the points.
        """
        size, dims = self.image_size, control.shape[:2]
        t = torch.linspace(0.0, 1.0, POINTS_PER_STROKE, device=control.device)
        bernstein = torch.stack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3],
                                -1)  # [P, 4]
        points = torch.einsum("pk,btskj->btspj", bernstein, control)  # [B, T, S, P, 2]
        spacing = (points[..., 1:, :] - points[..., :-1, :]).norm(dim=-1).mean(-1)  # [B, T, S]
        sigma = width[..., None, None]  # [B, T, 1, 1]
        weight = spacing[..., None] / (sigma * math.sqrt(2 * math.pi)) * used[..., None]
        centres = (torch.arange(size, device=control.device) + 0.5) / size  # [W]

        def blobs(coordinate: Tensor) -> Tensor:  # [B, T, S, P] -> [B * T, S * P, size]
            z = (centres - coordinate[..., None]) / sigma[..., None]
            return torch.exp(-0.5 * z * z).reshape(dims.numel(), -1, size)

        gx = blobs(points[..., 0])
        gy = blobs(points[..., 1]) * weight.expand(points.shape[:-1]).reshape(dims.numel(), -1, 1)
        ink = torch.bmm(gy.transpose(1, 2), gx)  # [B * T, H, W]: rows are y, columns x
        return (2 * ink).clamp(0.0, 1.0).reshape(*dims, size, size)


def _uniform(shape: tuple[int, ...], low: float, high: float, generator, draw) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=draw)
