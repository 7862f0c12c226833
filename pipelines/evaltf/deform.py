"""The deform transform's random field: albumentations' ElasticTransform rebuilt on torchvision.

The paper's reference ran `albumentations.ElasticTransform(alpha=1, sigma=s, alpha_affine=50)`:
first a random affine warp that moves three points of the centre square (side 2/3 of the
image, as albumentations places them) by up to `alpha_affine` px each (uniform), then an
elastic field `alpha * gaussian_filter(U[-1, 1] noise, sigma)`. With alpha = 1 the elastic part
moves pixels by hundredths of a pixel, so the affine jitter dominates. We draw the same two
parts with torch (seeded), compose them into one sampling field and let
`torchvision.transforms.v2.functional.elastic` resample the image (bilinear). Differences from
albumentations: pixels pulled in from outside the image are black (torchvision's zero fill)
rather than mirrored (OpenCV's BORDER_REFLECT_101), and the noise comes from torch, not numpy.
"""
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

DEFORM_SEED = 0
ALPHA = 1.0
ALPHA_AFFINE = 50.0
REFERENCE_SIZE = 256


@dataclass(frozen=True)
class DeformField:
    """One draw: the affine `matrix` (2, 3) mapping source to output pixels (OpenCV convention),
    the elastic offsets `elastic` (H, W, 2) in px (x, y), and `displacement` (1, H, W, 2), the
    combined field in torchvision's normalised units, ready for `F.elastic`."""

    matrix: torch.Tensor
    elastic: torch.Tensor
    displacement: torch.Tensor


def _draw_generator(sigma_index: int, draw: int, seed: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, sigma_index, draw]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _smooth_noise(size: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Two channels of U[-1, 1] noise, Gaussian-smoothed (separable, reflect border)."""
    noise = torch.rand((2, 1, size, size), generator=generator, dtype=torch.float64) * 2 - 1
    radius = min(int(4 * sigma), size - 1)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    rows = torch.nn.functional.conv2d(torch.nn.functional.pad(noise, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    both = torch.nn.functional.conv2d(torch.nn.functional.pad(rows, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return both[:, 0]


def _jitter_matrix(size: int, alpha_affine: float, generator: torch.Generator) -> torch.Tensor:
    centre, half = float(size // 2), float(size // 3)
    src = torch.tensor([[centre + half, centre + half], [centre + half, centre - half], [centre - half, centre - half]], dtype=torch.float64)
    dst = src + (torch.rand((3, 2), generator=generator, dtype=torch.float64) * 2 - 1) * alpha_affine
    ones = torch.ones((3, 1), dtype=torch.float64)
    return torch.linalg.solve(torch.cat([src, ones], 1), dst).T


def deform_field(size: int, sigma: float, sigma_index: int, draw: int, *, seed: int = DEFORM_SEED,
                 generator: torch.Generator | None = None) -> DeformField:
    """The field of draw `draw` at `sigma` (px at a 256 image) for a `size` x `size` image.

    Pixel quantities (sigma, alpha, alpha_affine) are scaled by size / 256. The draw is a pure
    function of (seed, sigma_index, draw) unless a CPU `generator` is given.
    """
    if size < 8 or sigma <= 0:
        raise ValueError(f"deform needs size >= 8 and sigma > 0, got size {size}, sigma {sigma}")
    ratio = size / REFERENCE_SIZE
    gen = generator if generator is not None else _draw_generator(sigma_index, draw, seed)
    matrix = _jitter_matrix(size, ALPHA_AFFINE * ratio, gen)
    elastic = _smooth_noise(size, sigma * ratio, gen).permute(1, 2, 0) * (ALPHA * ratio)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    pixels = torch.stack([xs, ys], -1)
    moved = pixels + elastic
    inverse = torch.linalg.inv(torch.cat([matrix, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)]))[:2]
    source = moved @ inverse[:, :2].T + inverse[:, 2]
    displacement = ((source - pixels) * (2.0 / size)).unsqueeze(0).to(torch.float32)
    return DeformField(matrix=matrix, elastic=elastic, displacement=displacement)


@lru_cache(maxsize=32)
def seeded_displacement(size: int, sigma: float, sigma_index: int, draw: int, seed: int = DEFORM_SEED) -> torch.Tensor:
    """The (1, size, size, 2) displacement of the seeded draw, cached (32 most recent draws).

    A suite that loops over batches inside each magnitude draws every field once.
    """
    return deform_field(size, sigma, sigma_index, draw, seed=seed).displacement


def deform(images: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Resample `images` (B, 3, H, W) through a (1, H, W, 2) `displacement` (bilinear, zero fill); dtype kept."""
    return F.elastic(images, displacement.to(images.device))
