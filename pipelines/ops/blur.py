"""Gaussian blur with a per-image sigma: torchvision's kernel, reflect padding."""
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from fastinv.errors import UsageError
from fastinv.pipelines.ops.base import (COLOUR, ColourStep, DaliView, DrawContext, ImageStep, Op, OpDraw, pair,
                                        per_view_probability, register_op, subset, uniform)


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


@register_op
@dataclass(frozen=True)
class GaussianBlur(Op):
    """With probability `p` (a number, or [view 1, view 2]), blur with sigma ~ U[sigma] pixels: of
    the output image after a random_resized_crop, of the source image otherwise (see `recipes`).

    Kernel size follows the SimCLR / MoCo-v2 GPU convention: `kernel_fraction` (10%) of the
    output side, rounded to the nearest odd integer >= 3 (23 px at 224, 7 at 64); the torch
    backend leaves out taps beyond 4 sigma, which weigh under e^-8 of the centre tap."""

    sigma: tuple[float, float] = (0.1, 2.0)
    p: float | tuple[float, float] = 0.5
    kernel_fraction: float = 0.1
    name: ClassVar[str] = "gaussian_blur"
    stage: ClassVar = COLOUR
    dali_arity: ClassVar[int] = 3

    def __post_init__(self) -> None:
        sigma = pair(self.sigma, "gaussian_blur.sigma")
        if sigma[0] <= 0:
            raise UsageError(f"gaussian_blur.sigma must be positive, got {self.sigma!r}")
        if not 0 < float(self.kernel_fraction) <= 1:
            raise UsageError(f"gaussian_blur.kernel_fraction must lie in (0, 1], got {self.kernel_fraction!r}")
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "p", per_view_probability(self.p, "gaussian_blur.p"))

    def kernel_size(self, image_size: int) -> int:
        """Odd kernel side in pixels for an output of `image_size` pixels."""
        k = max(3, int(round(self.kernel_fraction * image_size)))
        return k if k % 2 == 1 else k + 1

    def draw(self, ctx: DrawContext) -> OpDraw:
        """Whether each image is blurred, and its sigma (N, 1) in output pixels."""
        apply = self.fires(ctx)
        return OpDraw(apply, (uniform(ctx.gen, (ctx.n, 1), *self.sigma) * ctx.source_scale).float())

    def image_steps(self, draw: OpDraw, size: int) -> list[list[ImageStep]]:
        """Per image: a separable blur with its own kernel (cut at 4 sigma) where it fires."""
        limit = self.kernel_size(size)
        steps: list[list[ImageStep]] = []
        for fire, sigma in zip(draw.apply.tolist(), draw.values[:, 0].tolist()):
            if not fire:
                steps.append([])
                continue
            kernel = gaussian_kernel(sigma, blur_kernel_size(sigma, limit))
            steps.append([(partial(blur_separable, kernel=kernel), None)])
        return steps

    def batch_steps(self, draw: OpDraw, size: int) -> list[ColourStep]:
        """One batched blur on the images it fires on, its kernel sized for their largest sigma."""
        if not draw.apply.any():
            return []
        kernel = blur_kernel_size(float(draw.values[draw.apply, 0].max()), self.kernel_size(size))
        return subset(partial(gaussian_blur, kernel_size=kernel), draw.apply, draw.values[:, 0])

    def dali_inputs(self, draw: OpDraw, size: int) -> list[np.ndarray]:
        """Whether it fires, and each image's kernel as a row (1, k) and a column (k, 1) filter."""
        limit = self.kernel_size(size)
        kernels = [np.asarray(gaussian_kernel(s, blur_kernel_size(s, limit)), dtype=np.float32)
                   for s in draw.values[:, 0].numpy().tolist()]
        return [draw.apply.numpy(), [k[None, :] for k in kernels], [np.ascontiguousarray(k[:, None]) for k in kernels]]

    def dali(self, view: DaliView, inputs: Sequence[Any]) -> DaliView:
        """Two separable `fn.filter` passes on the images it fires on."""
        fires, rows, columns = inputs
        img = view.img
        if fires:
            img = view.fn.filter(view.fn.filter(img, rows), columns)
        return replace(view, img=img)
