"""Appearance transforms of one native image, batched over magnitudes by broadcasting.

Each function takes one image (3, H, W) uint8 and k magnitudes and returns (k, 3, H, W) uint8
with the arithmetic of the reference path, torchvision's functional calls on a PIL image:
brightness, contrast, saturation and sharpness blend the image with a degenerate image as PIL's
`ImageEnhance` does (degenerate + f * (image - degenerate) in float32, clamped, truncated; PIL's
integer luma for the grey of saturation, grayscale and the contrast mean, which is rounded to a
whole level); the Gaussian blur is torchvision's (a separable kernel, reflect border, rounded);
hue rotates the float HSV hue as torchvision's tensor `adjust_hue` does (PIL's integer HSV
differs by under a grey level on average); posterize keeps the high bits.
"""
from collections.abc import Sequence

import torch
from torch.nn.functional import conv2d, pad
from torchvision.transforms.v2 import functional as F


def _factors(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.float32, device=like.device).view(-1, 1, 1, 1)


def luma(image: torch.Tensor) -> torch.Tensor:
    """PIL's "L" conversion of (3, H, W) uint8: (1, H, W) int32, (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    red, green, blue = image.to(torch.int32).unbind(0)
    return ((red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16).unsqueeze(0)


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """PIL's grey version of the image, on 3 channels (3, H, W) uint8."""
    return luma(image).to(torch.uint8).expand(3, -1, -1)


def _blend(image: torch.Tensor, degenerate: torch.Tensor | None, factors: Sequence[float]) -> torch.Tensor:
    """degenerate + f * (image - degenerate) for each factor f, clamped and truncated to uint8 (PIL's blend)."""
    ratio = _factors(factors, image)
    source = image.unsqueeze(0).to(torch.float32)
    if degenerate is None:
        out = source * ratio
    else:
        out = (source - degenerate) * ratio + degenerate
    return out.clamp_(0, 255).to(torch.uint8)


def brightness(image: torch.Tensor, factors: Sequence[float]) -> torch.Tensor:
    """Blend with black: scale every value by each factor."""
    return _blend(image, None, factors)


def contrast(image: torch.Tensor, factors: Sequence[float]) -> torch.Tensor:
    """Blend with the mean grey level of the whole image, rounded to a whole level."""
    mean = torch.floor(luma(image).to(torch.float64).mean() + 0.5).to(torch.float32)
    return _blend(image, mean, factors)


def saturation(image: torch.Tensor, factors: Sequence[float]) -> torch.Tensor:
    """Blend with the image's own grey version."""
    return _blend(image, luma(image).to(torch.float32), factors)


def sharpness(image: torch.Tensor, factors: Sequence[float]) -> torch.Tensor:
    """Blend with a copy whose inner pixels are 3 x 3 smoothed (1s around a 5, over 13, rounded)."""
    source = image.unsqueeze(0).to(torch.float32)
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], dtype=torch.float32, device=image.device)
    smooth = source.clone()
    smooth[..., 1:-1, 1:-1] = conv2d(source, kernel.expand(3, 1, 3, 3), groups=3).round_()
    return _blend(image, smooth, factors)


def _rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] to HSV, hue in [0, 1)."""
    red, green, blue = rgb.unbind(0)
    top, bottom = rgb.amax(0), rgb.amin(0)
    flat = top == bottom
    spread = top - bottom
    sat = spread / torch.where(flat, torch.ones_like(top), top)
    spread = torch.where(flat, torch.ones_like(spread), spread)
    hue = torch.where(top == red, (green - blue) / spread,
                      torch.where(top == green, 2.0 + (blue - red) / spread, 4.0 + (red - green) / spread))
    return torch.stack([torch.remainder(hue / 6.0, 1.0), sat, top])


def _hsv_to_rgb(hue: torch.Tensor, sat: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """HSV (hue (k, H, W) in [0, 1), saturation and value (H, W)) to RGB (k, 3, H, W) in [0, 1]."""
    channels = []
    for offset in (5.0, 3.0, 1.0):
        sector = torch.remainder(offset + hue * 6.0, 6.0)
        ramp = torch.minimum(sector, 4.0 - sector).clamp_(0.0, 1.0)
        channels.append(value - value * sat * ramp)
    return torch.stack(channels, 1)


def hue(image: torch.Tensor, shifts: Sequence[float]) -> torch.Tensor:
    """Rotate the hue by each shift (in turns, [-0.5, 0.5]); saturation and value are kept."""
    hsv = _rgb_to_hsv(F.to_dtype(image, torch.float32, scale=True))
    moved = torch.remainder(hsv[0].unsqueeze(0) + _factors(shifts, image).view(-1, 1, 1), 1.0)
    return F.to_dtype(_hsv_to_rgb(moved, hsv[1], hsv[2]), torch.uint8, scale=True)


def posterize(image: torch.Tensor, bits: Sequence[int]) -> torch.Tensor:
    """Keep the `b` highest bits of every value, for each b in 1..8."""
    masks = torch.tensor([(0xFF << (8 - b)) & 0xFF for b in bits], dtype=torch.uint8, device=image.device)
    return image.unsqueeze(0) & masks.view(-1, 1, 1, 1)


def gaussian_blur(image: torch.Tensor, sigmas: Sequence[float], kernel_size: int) -> torch.Tensor:
    """Blur with a `kernel_size`-tap Gaussian of each sigma (px), separable, reflect border, rounded.

    One grouped convolution per direction computes all k blurs: the image is read once per
    direction, not copied k times.
    """
    half = kernel_size // 2
    taps = torch.arange(-half, half + 1, dtype=torch.float32, device=image.device)
    kernels = torch.exp(-0.5 * (taps / _factors(sigmas, image).view(-1, 1)) ** 2)
    kernels = (kernels / kernels.sum(1, keepdim=True)).repeat(3, 1)
    count, (_, height, width) = len(sigmas), image.shape
    source = pad(image.unsqueeze(0).to(torch.float32), (half, half, half, half), mode="reflect")
    rows = conv2d(source, kernels.view(3 * count, 1, 1, kernel_size), groups=3)
    both = conv2d(rows, kernels.view(3 * count, 1, kernel_size, 1), groups=3 * count)
    return both.view(3, count, height, width).transpose(0, 1).round_().clamp_(0, 255).to(torch.uint8)
