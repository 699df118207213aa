"""Real images brought to the form of :class:`~priorfit.priors.StrokePrior`'s: grey levels in
[0, 1], ink bright on a dark background (the polarity detected per image from its median), the
ink's bounding box centred and scaled to the prior's typical character size
(:data:`CHARACTER_SIZE`), resized to the model's square canvas. Used by
:mod:`priorfit.fewshot` on the user's images and by :class:`~priorfit.priors.ImageEpisodes` on
a training collection.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CHARACTER_SIZE = 0.62  # the ink's larger side over the canvas side: the prior's mid-range


def prepare_images(name: str, images, side: int) -> torch.Tensor:
    """Images ``[n, H, W]`` as the stroke prior draws them, flattened: ``[1, n, side²]``
    float32 in [0, 1], ink bright, centred and scaled (see the module). ``name`` is the
    argument's name in error messages."""
    array = np.asarray(images)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == bool):
        raise TypeError(f"{name} must be numeric or boolean images, got dtype {array.dtype}")
    if array.ndim != 3 or min(array.shape[1:], default=0) < 2:
        raise ValueError(f"{name} must be images [n, height, width], got shape {array.shape}")
    if not len(array):
        raise ValueError(f"{name} is empty: give at least one image")
    x = torch.from_numpy(array.astype(np.float32))
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite pixel values")
    low = x.amin((1, 2), keepdim=True)
    x = (x - low) / (x.amax((1, 2), keepdim=True) - low).clamp(min=1e-12)
    bright_background = x.flatten(1).median(1).values > 0.5
    x = torch.where(bright_background[:, None, None], 1 - x, x)
    return torch.stack([_centre(image, side) for image in x]).reshape(1, len(x), side * side)


def _centre(image: torch.Tensor, side: int) -> torch.Tensor:
    """One image ``[H, W]`` (ink bright) cropped to a square around its ink, the ink's larger
    side :data:`CHARACTER_SIZE` of it, resized to ``[side, side]``."""
    rows, columns = torch.nonzero(image > 0.5, as_tuple=True)
    if len(rows):
        top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
        extent = float(max(bottom - top, right - left)) / CHARACTER_SIZE
        centre_y, centre_x = float(top + bottom) / 2, float(left + right) / 2
        half = extent / 2
        pad = int(np.ceil(half)) + 1
        padded = F.pad(image, (pad, pad, pad, pad))
        y0, x0 = round(centre_y - half) + pad, round(centre_x - half) + pad
        size = max(1, round(extent))
        image = padded[y0: y0 + size, x0: x0 + size]
    mode = "area" if image.shape[0] >= side else "bilinear"
    resized = F.interpolate(image[None, None], size=(side, side), mode=mode)
    return resized[0, 0].clamp(0.0, 1.0)
