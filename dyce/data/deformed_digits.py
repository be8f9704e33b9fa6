"""``digits_deformed``: scikit-learn's digits enlarged by label-preserving deformations.

The 1 797 bundled 8×8 digits are too few for a 0.5 % accuracy tolerance to mean anything (a
validation split of a few hundred images). This pool holds ``copies`` versions of every source
image: copy 0 is the image itself, copies 1 … ``copies-1`` are small random deformations of it — an
affine map (rotation, scale, shear, translation) composed with a smooth elastic displacement —
drawn deterministically from ``seed``. Sample ``i`` is copy ``i % copies`` of source image
``i // copies``, so splits made over *source images* (``dyce prepare-data``) keep every
deformed copy of a validation, calibration or search image out of training.

Deformations are done for the whole pool at once with ``torch.nn.functional.affine_grid`` and
``grid_sample`` (bilinear, zero padding, i.e. background) at the pool's image size; a 28 752-image
pool at 8×8 takes well under a second.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from dyce.data.normalization import DIGITS_MEAN, DIGITS_STD

#: Default number of versions of each source image (the original and 15 deformations).
DEFAULT_COPIES = 16

#: Ranges of the random deformations (uniform within ±value; translation in image widths).
MAX_ROTATION_DEG = 12.0
MAX_LOG_SCALE = math.log(1.12)
MAX_SHEAR = 0.15
MAX_TRANSLATION = 0.08
ELASTIC_GRID = 3  # control points per side of the smooth displacement field
ELASTIC_STRENGTH = 0.06  # standard deviation of a control point's displacement (image widths)


def deformation_grids(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """float32 ``(count, size, size, 2)`` sampling grids of random small deformations.

    Each grid is an affine map (rotation ±12°, scale ×1/1.12…1.12, shear ±0.15, shift ±8 % of
    the width) plus a smooth elastic displacement (a 3×3 field of Gaussian offsets, σ = 6 % of
    the width, upsampled bicubically), in ``grid_sample``'s ``[-1, 1]`` coordinates.
    """
    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(count, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(MAX_ROTATION_DEG))
    scale = torch.exp(uniform(MAX_LOG_SCALE))
    shear = uniform(MAX_SHEAR)
    shift = torch.stack([uniform(2 * MAX_TRANSLATION), uniform(2 * MAX_TRANSLATION)], dim=1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin + shear * cos
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos + shear * sin
    theta[:, :, 2] = shift
    grid = torch.nn.functional.affine_grid(theta, [count, 1, size, size], align_corners=False)
    field = torch.randn(count, 2, ELASTIC_GRID, ELASTIC_GRID, generator=generator)
    field = torch.nn.functional.interpolate(field * (2 * ELASTIC_STRENGTH), size=(size, size),
                                            mode="bicubic", align_corners=True)
    return grid + field.permute(0, 2, 3, 1)


def deform_images(images: torch.Tensor, copies: int, seed: int) -> torch.Tensor:
    """float32 ``(S·copies, 1, H, W)``: ``copies`` versions of each of the ``S`` images.

    ``images``: float32 ``(S, 1, H, W)`` with background 0. Row ``s·copies + c`` is copy ``c``
    of image ``s``; copy 0 is the image unchanged. Deterministic in ``seed``.
    """
    num_sources, _, height, width = images.shape
    if height != width:
        raise ValueError(f"square images only, got {height}×{width}")
    generator = torch.Generator().manual_seed(int(seed))
    grids = deformation_grids(num_sources * (copies - 1), height, generator)
    sources = images.repeat_interleave(copies - 1, dim=0)
    deformed = torch.nn.functional.grid_sample(sources, grids, mode="bilinear",
                                               padding_mode="zeros", align_corners=False)
    out = torch.empty(num_sources, copies, 1, height, width, dtype=images.dtype)
    out[:, 0] = images
    out[:, 1:] = deformed.view(num_sources, copies - 1, 1, height, width)
    return out.view(num_sources * copies, 1, height, width)


class DeformedDigitsPool(Dataset):
    """Digits with ``copies`` versions per source image, normalised like the plain digits pool.

    Items are ``(image (1, S, S) float32, label int)``; ``source_of(i) = i // copies``.
    """

    def __init__(self, image_size: int = 8, copies: int = DEFAULT_COPIES, seed: int = 0):
        from sklearn.datasets import load_digits

        if copies < 1:
            raise ValueError(f"copies must be at least 1, got {copies}")
        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
        if image_size != images.shape[-1]:
            images = torch.nn.functional.interpolate(
                images, size=(image_size, image_size), mode="bilinear", align_corners=False)
        pool = deform_images(images, copies, seed).clamp_(0.0, 1.0)
        self.copies = int(copies)
        self.images = (pool - DIGITS_MEAN) / DIGITS_STD
        self.targets = [int(label) for label in np.repeat(digits.target, copies)]
        self.classes = [str(label) for label in digits.target_names]
        self.source_targets = np.asarray(digits.target, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


def expand_sources(sources: np.ndarray, copies: int) -> np.ndarray:
    """int64 sorted pool indices of every copy of the given source images."""
    sources = np.sort(np.asarray(sources, dtype=np.int64))
    return (sources[:, None] * copies + np.arange(copies)[None, :]).ravel()
