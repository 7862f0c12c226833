"""Batched image ops with per-image parameters, on any device.

Colour ops take float images (N, 3, H, W) in [0, 1] and one parameter per image (N,); each
matches torchvision.transforms.v2.functional's per-image op (tested image by image).
"""
import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import resize

LUMA = (0.2989, 0.587, 0.114)  # torchvision's tensor weights (ITU-R 601-2)
_HUE_OFFSETS = (5.0, 3.0, 1.0)


def crop_resize(images: list[torch.Tensor], boxes: torch.Tensor, flip: torch.Tensor, size: int) -> torch.Tensor:
    """Crop boxes (N, 4) = (top, left, height, width) from uint8 images (3, H_i, W_i), resize
    each crop to size x size (bilinear, antialiased) and mirror it where flip (N,) is True:
    (N, 3, size, size) uint8, channels_last.

    Crops are views at native resolution; only the crop is resized (torchvision's uint8 kernel
    on the CPU), never the full image."""
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8, device=boxes.device
                      ).contiguous(memory_format=torch.channels_last)
    for i, ((top, left, h, w), mirror) in enumerate(zip(boxes.tolist(), flip.tolist())):
        crop = images[i][None, :, top:top + h, left:left + w].contiguous(memory_format=torch.channels_last)
        resized = resize(crop, [size, size], antialias=True)[0]
        out[i] = resized.flip(-1) if mirror else resized
    return out


def luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma of x (N, 3, H, W): (N, 1, H, W)."""
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1).to(x.dtype)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Multiply each image by its factor (N,), clamped to [0, 1]."""
    return (x * factor.view(-1, 1, 1, 1).to(x.dtype)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean luma by its factor (N,)."""
    return _blend(x, luma(x).mean(dim=(-2, -1), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its luma image by its factor (N,)."""
    return _blend(x, luma(x), factor)


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma replicated to 3 channels: (N, 3, H, W)."""
    return luma(x).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by its shift (N,) in turns, in [-0.5, 0.5].

    Same result as an HSV round trip (torchvision's adjust_hue): a hue rotation keeps each
    pixel's max and min, so every channel is max - delta * clamp(min(k, 4 - k), 0, 1) with
    k = (n_c + 6 * hue) mod 6 and n = (5, 3, 1) for (r, g, b)."""
    r, g, b = x.unbind(1)
    maxc = x.amax(dim=1)
    delta = maxc - x.amin(dim=1)
    num = torch.where(maxc == r, g - b, torch.where(maxc == g, b - r + 2 * delta, r - g + 4 * delta))
    hue6 = num / torch.where(delta == 0, torch.ones_like(delta), delta) + 6.0 * shift.view(-1, 1, 1).to(x.dtype)
    offsets = torch.tensor(_HUE_OFFSETS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(hue6.unsqueeze(1) + offsets, 6.0)
    weight = torch.minimum(k, 4.0 - k).clamp_(0, 1)
    return (maxc.unsqueeze(1) - delta.unsqueeze(1) * weight).clamp_(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur each image with its own sigma (N,) and an odd kernel_size, reflect padding
    (torchvision's kernel): one separable grouped convolution for the whole batch."""
    n, c, h, w = x.shape
    half = kernel_size // 2
    pos = torch.linspace(-half, half, kernel_size, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (pos[None, :] / sigma.to(x.dtype).view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n*c, k)
    flat = x.reshape(1, n * c, h, w)
    pad_h, pad_w = min(half, h - 1), min(half, w - 1)
    flat = F.pad(flat, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    if pad_w < half or pad_h < half:  # images smaller than the kernel: replicate the rest
        flat = F.pad(flat, (half - pad_w, half - pad_w, half - pad_h, half - pad_h), mode="replicate")
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    flat = F.conv2d(flat, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return flat.view(n, c, h, w)
