"""Batched image ops with per-image parameters, on any device.

Colour ops take float images (N, 3, H, W) in [0, 1] and one parameter per image (N,); each
matches torchvision.transforms.v2.functional's per-image op (tested image by image). None of
them reads a tensor's values on the host, so on an accelerator they never wait for the device.

Crop + resize comes in two strategies with the same result (within one grey level of
torchvision's `resized_crop` + flip):
- `crop_resize`, one image at a time with torchvision's uint8 antialiased kernel: the fastest on a CPU;
- `resample`, a whole (padded) stack of images at once: each crop becomes two resampling
  matrices (crop offset, torchvision's antialiased bilinear weights and the flip folded in) and
  two batched matmuls, a fixed number of kernels whatever the batch size: for accelerators.
"""
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import resize

LUMA = (0.2989, 0.587, 0.114)  # torchvision's tensor weights (ITU-R 601-2)


def crop_resize(image: torch.Tensor, top: int, left: int, h: int, w: int, mirror: bool, size: int) -> torch.Tensor:
    """Crop (top, left, h, w) of a uint8 image (3, H, W), resized to size x size (bilinear,
    antialiased: torchvision's uint8 kernel) and mirrored if asked: (3, size, size) uint8,
    channels_last. Only the crop is resized, never the whole image."""
    crop = image[None, :, top:top + h, left:left + w].contiguous(memory_format=torch.channels_last)
    resized = resize(crop, [size, size], antialias=True)[0]
    return resized.flip(-1) if mirror else resized


def resample_weights(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int) -> torch.Tensor:
    """Antialiased bilinear resampling matrices (N, out_size, in_size) that map source pixels
    [start, start + length) of an axis of in_size pixels to out_size pixels, as torchvision's
    antialiased resize computes them (triangle filter widened by the downscale factor, each row
    normalised); start, length (N,) on the device of the result."""
    device = start.device
    scale = (length.float() / out_size).view(-1, 1, 1)
    support = scale.clamp(min=1.0)
    centre = (torch.arange(out_size, device=device, dtype=torch.float32) + 0.5).view(1, -1, 1) * scale
    offset = torch.arange(in_size, device=device, dtype=torch.float32).view(1, 1, -1) + 0.5  # pixel centres
    offset = offset - start.float().view(-1, 1, 1)
    weights = (offset - centre).abs_().div_(support).neg_().add_(1.0).clamp_(min=0.0)
    weights.mul_((offset > 0) & (offset < length.float().view(-1, 1, 1)))
    return weights.div_(weights.sum(dim=-1, keepdim=True))


def resample(images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: int) -> torch.Tensor:
    """Crop boxes (N, 4) = (top, left, height, width) from float images (N, C, H, W), resize each
    crop to size x size (bilinear, antialiased) and mirror it where flips (N,) is True:
    (N, C, size, size) float, unrounded. The zero weights outside each box make padding of
    smaller images in the stack harmless."""
    n, c, h, w = images.shape
    rows = resample_weights(boxes[:, 0], boxes[:, 2], h, size)
    cols = resample_weights(boxes[:, 1], boxes[:, 3], w, size)
    cols = torch.where(flips.view(-1, 1, 1), cols.flip(1), cols)
    if h <= w:  # resample the longer axis first: fewer multiply-adds
        x = torch.bmm(images.reshape(n, c * h, w), cols.transpose(1, 2)).view(n, c, h, size)
        return torch.matmul(rows.unsqueeze(1), x)
    x = torch.matmul(rows.unsqueeze(1), images)
    return torch.matmul(x, cols.transpose(1, 2).unsqueeze(1))


def luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma of x (N, 3, H, W): (N, 1, H, W)."""
    r, g, b = x.unbind(1)
    return r.mul(LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2]).unsqueeze(1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Multiply each image by its factor (N,), clamped to [0, 1]."""
    return torch.mul(x, factor.view(-1, 1, 1, 1).to(x.dtype)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean luma by its factor (N,)."""
    means = x.mean(dim=(-2, -1))
    mean = means[:, 0].mul(LUMA[0]).add_(means[:, 1], alpha=LUMA[1]).add_(means[:, 2], alpha=LUMA[2])
    factor = factor.to(x.dtype)
    return torch.mul(x, factor.view(-1, 1, 1, 1)).add_(((1 - factor) * mean).view(-1, 1, 1, 1)).clamp_(0, 1)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its luma image by its factor (N,): factor * x + (1 - factor) * luma."""
    return torch.lerp(x, luma(x), (1 - factor).view(-1, 1, 1, 1).to(x.dtype)).clamp_(0, 1)


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma replicated to 3 channels: (N, 3, H, W)."""
    return luma(x).expand(-1, 3, -1, -1).contiguous()


def _is_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a == b as a float 0/1 mask: selecting with it by lerp is exact and, unlike a bool mask
    (torch.where), runs vectorised on the CPU."""
    return torch.eq(a, b, out=torch.empty_like(a))


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by its shift (N,) in turns, in [-0.5, 0.5].

    Same result as an HSV round trip (torchvision's adjust_hue): a hue rotation keeps each
    pixel's max and min, so every channel is max - delta * clamp(min(k, 4 - k), 0, 1) with
    k = (n_c + 6 * hue) mod 6 and n = (5, 3, 1) for (r, g, b)."""
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    delta = maxc - torch.minimum(torch.minimum(r, g), b)
    # 6 * hue before the shift, by the channel that holds the max (r before g before b on ties)
    num = torch.lerp(torch.lerp((r - g).add_(delta, alpha=4), (b - r).add_(delta, alpha=2), _is_equal(maxc, g)),
                     g - b, _is_equal(maxc, r))
    hue6 = num.div_(delta.clamp(min=1e-30)).add_(6.0 * shift.view(-1, 1, 1).to(x.dtype))
    hue6.sub_(torch.floor(hue6 / 6.0).mul_(6.0))  # now in [0, 6)
    k = torch.stack((hue6 + 5.0, hue6 + 3.0, hue6 + 1.0), dim=1)  # in [1, 11)
    k.sub_(torch.ge(k, 6.0, out=torch.empty_like(k)).mul_(6.0))
    weight = torch.minimum(k, 4.0 - k).clamp_(0, 1)
    return weight.mul_(delta.unsqueeze(1)).neg_().add_(maxc.unsqueeze(1)).clamp_(0, 1)


def blur_kernel_size(sigma: float, limit: int) -> int:
    """The odd kernel side that covers +-4 sigma, at most `limit` (odd): the taps left out weigh
    less than e^-8 of the centre tap and change a blurred [0, 1] image by under 1e-4 (the same
    cut as scipy.ndimage's default truncate=4)."""
    return min(limit, 2 * math.ceil(4.0 * sigma) + 1)


def gaussian_kernel(sigma: float, kernel_size: int) -> list[float]:
    """torchvision's normalised 1-D Gaussian kernel of odd `kernel_size` taps, as host numbers."""
    half = kernel_size // 2
    taps = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(-half, half + 1)]
    total = sum(taps)
    return [t / total for t in taps]


def _reflect_pad(x: torch.Tensor, half: int, dim: int) -> torch.Tensor:
    """Reflect-pad the last (dim -1) or second-to-last (dim -2) axis by `half` on both sides,
    replicating the edge where the axis is too short to reflect that far."""
    size = x.shape[dim]
    reflect = min(half, size - 1)
    pad = (reflect, reflect, 0, 0) if dim == -1 else (0, 0, reflect, reflect)
    x = F.pad(x, pad, mode="reflect") if reflect else x
    if reflect < half:
        rest = half - reflect
        x = F.pad(x, (rest, rest, 0, 0) if dim == -1 else (0, 0, rest, rest), mode="replicate")
    return x


def blur_separable(x: torch.Tensor, kernel: Sequence[float]) -> torch.Tensor:
    """Blur images x (N, C, H, W) with one separable kernel of host numbers (odd length), reflect
    padding, as `gaussian_blur` does: one multiply-add pass per tap and axis, which on a CPU beats
    a grouped convolution for a single image."""
    half = len(kernel) // 2
    h, w = x.shape[-2:]
    padded = _reflect_pad(x, half, -1)
    rows = padded[..., 0:w] * kernel[0]
    for k in range(1, len(kernel)):
        rows.add_(padded[..., k:k + w], alpha=kernel[k])
    padded = _reflect_pad(rows, half, -2)
    out = padded[..., 0:h, :] * kernel[0]
    for k in range(1, len(kernel)):
        out.add_(padded[..., k:k + h, :], alpha=kernel[k])
    return out


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
    flat = flat.contiguous(memory_format=torch.channels_last)  # the grouped convolution's fast layout on a CPU
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    flat = F.conv2d(flat, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return flat.view(n, c, h, w)
