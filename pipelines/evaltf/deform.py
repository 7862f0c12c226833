"""The deform transform: albumentations' ElasticTransform as the paper ran it, rebuilt in torch at the
image's native resolution and batched over draws.

The reference called `albumentations.ElasticTransform(sigma=s, approximate=True)` (albumentations
1.x defaults: alpha 1, alpha_affine 50 px, bilinear, BORDER_REFLECT_101) on the decoded image:

1. a random affine warp. Three points, built from `(H // 2, W // 2)` and `s = min(H, W) // 3` and
   read as (x, y) - albumentations passes (height, width) where OpenCV expects (x, y) - namely
   (H//2 + s, W//2 + s), (H//2 + s, W//2 - s), (H//2 - s, W//2 - s), each move by U[-50, 50]
   raw pixels in x and in y; the image is warped by the affine map that takes them there.
2. an elastic field: dx, dy = alpha * GaussianBlur(U[-1, 1] noise, 17 x 17 taps, sigma); the
   warped image is resampled at (x + dx, y + dy). A 17-tap kernel at sigma >= 10 is close to a
   box filter, so the field's std is about 0.58 / 17 = 0.034 px: the jitter is what one sees.

Here the two maps are composed and the image is interpolated once (bilinear), which smooths a
little less than the reference's two interpolations; borders reflect as BORDER_REFLECT_101.
Every pixel quantity (alpha, alpha_affine, the 17 taps; sigma comes scaled in the magnitude)
is multiplied by `pixel_scale`.

Draws: the jitter of grid position p comes from a CPU generator seeded by (DEFORM_SEED, p): the
same on every device and for every image. The elastic noise comes from a generator on the
image's device seeded from the same sequence, so CPU and CUDA draw different (equally
distributed) noise. A `generator` passed in replaces both.
"""
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.functional import conv2d, pad

from fastinv.pipelines.evaltf.geometry import sample

DEFORM_SEED = 0
ALPHA = 1.0
ALPHA_AFFINE = 50.0
ELASTIC_TAPS = 17


@dataclass(frozen=True)
class DeformFields:
    """k draws for one image size: `matrices` (k, 2, 3) float64, the affine maps from source to
    output pixels (OpenCV's convention), and `elastic` (k, 2, H, W) float32, the (dx, dy) offsets in px."""

    matrices: torch.Tensor
    elastic: torch.Tensor


def anchor_points(height: int, width: int) -> torch.Tensor:
    """(3, 2) float64: the (x, y) points whose jitter defines the affine warp, as albumentations places them."""
    first, second, side = height // 2, width // 2, min(height, width) // 3
    return torch.tensor([[first + side, second + side], [first + side, second - side], [first - side, second - side]],
                        dtype=torch.float64)


def jitter_matrix(height: int, width: int, shifts: torch.Tensor) -> torch.Tensor:
    """(2, 3) float64: the affine map that moves the anchor points by `shifts` (3, 2) px."""
    points = anchor_points(height, width)
    return torch.linalg.solve(torch.cat([points, torch.ones(3, 1, dtype=torch.float64)], 1), points + shifts).T


def _generators(position: int, device: torch.device, seed: int) -> tuple[torch.Generator, torch.Generator]:
    jitter_seed, noise_seed = np.random.SeedSequence([seed, position]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(jitter_seed)), torch.Generator(device=device).manual_seed(int(noise_seed))


def _smooth(noise: torch.Tensor, sigmas: Sequence[float], taps: int) -> torch.Tensor:
    """Gaussian-smooth (k, 2, H, W) noise, draw i with sigmas[i], `taps`-tap separable kernel, reflect-101 border."""
    count, _, height, width = noise.shape
    half = taps // 2
    offsets = torch.arange(-half, half + 1, dtype=torch.float32, device=noise.device)
    scale = torch.tensor(list(sigmas), dtype=torch.float32, device=noise.device).view(-1, 1)
    kernels = torch.exp(-0.5 * (offsets / scale) ** 2)
    kernels = (kernels / kernels.sum(1, keepdim=True)).repeat_interleave(2, 0)
    padded = pad(noise.view(1, 2 * count, height, width), (half, half, half, half), mode="reflect")
    rows = conv2d(padded, kernels.view(2 * count, 1, 1, taps), groups=2 * count)
    return conv2d(rows, kernels.view(2 * count, 1, taps, 1), groups=2 * count).view(count, 2, height, width)


def deform_fields(height: int, width: int, sigmas: Sequence[float], positions: Sequence[int], *,
                  pixel_scale: float = 1.0, device: torch.device | str = "cpu",
                  generator: torch.Generator | None = None, seed: int = DEFORM_SEED) -> DeformFields:
    """The k fields for an H x W image: draw i at sigma `sigmas[i]` (px) for grid position `positions[i]`.

    Seeded by (seed, position) unless `generator` (a CPU torch.Generator) is given; see the
    module docstring.
    """
    device = torch.device(device)
    matrices = []
    uniform = torch.empty((len(positions), 2, height, width), device=device)
    for i, position in enumerate(positions):
        jitter_gen, noise_gen = _generators(position, device, seed) if generator is None else (generator, generator)
        shifts = torch.rand((3, 2), generator=jitter_gen, dtype=torch.float64)
        matrices.append(jitter_matrix(height, width, (shifts * 2 - 1) * (ALPHA_AFFINE * pixel_scale)))
        uniform[i] = torch.rand((2, height, width), generator=noise_gen, device=noise_gen.device)
    taps = 2 * round(ELASTIC_TAPS // 2 * pixel_scale) + 1
    # the kernel sums to 1, so smoothing U[0, 1] and mapping to [-1, 1] afterwards is the same as before
    elastic = _smooth(uniform, sigmas, taps).mul_(2 * ALPHA * pixel_scale).sub_(ALPHA * pixel_scale)
    return DeformFields(torch.stack(matrices), elastic)


def _reflect(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Fold pixel coordinates into [0, size - 1] by mirroring about the edge pixels (BORDER_REFLECT_101)."""
    period = 2.0 * (size - 1)
    folded = torch.remainder(coords, period)
    return torch.where(folded > size - 1, period - folded, folded)


def deform(image: torch.Tensor, fields: DeformFields) -> torch.Tensor:
    """Resample `image` (3, H, W) uint8 through each field: (k, 3, H, W) uint8.

    Output pixel p takes the source at A^-1 (p + e(p)), A the draw's affine map and e its elastic
    offsets, each step reflected into the image (bilinear).
    """
    _, height, width = image.shape
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(len(fields.matrices), 1, 3)
    inverse = torch.linalg.inv(torch.cat([fields.matrices, bottom], 1))[:, :2]
    inverse = inverse.to(device=image.device, dtype=torch.float32).view(-1, 2, 3, 1, 1)
    ys = torch.arange(height, dtype=torch.float32, device=image.device).view(1, height, 1)
    xs = torch.arange(width, dtype=torch.float32, device=image.device).view(1, 1, width)
    qx = _reflect(xs + fields.elastic[:, 0], width)
    qy = _reflect(ys + fields.elastic[:, 1], height)
    sx = _reflect(inverse[:, 0, 0] * qx + inverse[:, 0, 1] * qy + inverse[:, 0, 2], width)
    sy = _reflect(inverse[:, 1, 0] * qx + inverse[:, 1, 1] * qy + inverse[:, 1, 2], height)
    grid = torch.stack([sx * (2.0 / max(width - 1, 1)) - 1, sy * (2.0 / max(height - 1, 1)) - 1], -1)
    return sample(image, grid, mode="bilinear", align_corners=True, padding_mode="border")
