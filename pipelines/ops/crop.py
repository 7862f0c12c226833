"""The crop stage: which region of each source image becomes the output square.

`random_resized_crop` draws torchvision's RandomResizedCrop boxes; `resize_center_crop` takes the
central square; a recipe without a crop op resizes the whole image (aspect ratio not kept). Each
draws boxes (N, 4) = (top, left, height, width) in source pixels; resizing a box (and mirroring
it, the flip stage's draw) is the same for all of them and comes in two strategies with the same
result (within one grey level of torchvision's `resized_crop` + flip):
- `crop_resize`, one image at a time with torchvision's uint8 antialiased kernel: the fastest on a CPU;
- `resample`, a whole (padded) stack of images at once: each crop becomes two resampling
  matrices (crop offset, torchvision's antialiased bilinear weights and the flip folded in) and
  two batched matmuls, a fixed number of kernels whatever the batch size: for accelerators.
In a DALI graph a box is a region of interest of `fn.resize`.
"""
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torchvision.transforms.v2.functional import resize

from fastinv.errors import UsageError
from fastinv.pipelines.ops.base import CROP, DaliView, DrawContext, Op, pair, register_default, register_op, uniform

_CROP_ATTEMPTS = 10


class CropOp(Op):
    """An op of the crop stage: draws one box per image; `source_pixels` says whether the colour
    ops' pixel parameters (blur sigma) are in source pixels (the whole image is resized) or in
    output pixels (a random crop comes first, as in the reference)."""

    stage: ClassVar = CROP
    source_pixels: ClassVar[bool] = True
    dali_arity: ClassVar[int] = 2

    def boxes(self, ctx: DrawContext) -> torch.Tensor:
        """Crop boxes (N, 4) long for the view's images."""
        raise NotImplementedError

    def draw(self, ctx: DrawContext) -> torch.Tensor:
        """Crop boxes (N, 4) = (top, left, height, width) in source pixels."""
        return self.boxes(ctx)

    def dali_inputs(self, draw: torch.Tensor, size: int) -> list[np.ndarray]:
        """Each box's corners (N, 2): (top, left) and (bottom, right)."""
        boxes = draw.numpy()
        return [boxes[:, :2].astype(np.float32), (boxes[:, :2] + boxes[:, 2:]).astype(np.float32)]

    def dali(self, view: DaliView, inputs: Sequence[Any]) -> DaliView:
        """Resize each image's box to the output square (antialiased)."""
        start, end = inputs
        img = view.fn.resize(view.img, size=[view.size, view.size], roi_start=start, roi_end=end, antialias=True)
        return replace(view, img=img)


@register_op
@dataclass(frozen=True)
class RandomResizedCrop(CropOp):
    """Crop a random region (area fraction in `scale`, aspect ratio w/h in `ratio`) and resize it."""

    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    name: ClassVar[str] = "random_resized_crop"
    source_pixels: ClassVar[bool] = False

    def __post_init__(self) -> None:
        scale, ratio = pair(self.scale, "random_resized_crop.scale"), pair(self.ratio, "random_resized_crop.ratio")
        if not 0 < scale[0] <= 1 or scale[1] > 1:
            raise UsageError(f"random_resized_crop.scale must lie in (0, 1], got {self.scale!r}")
        if ratio[0] <= 0:
            raise UsageError(f"random_resized_crop.ratio must be positive, got {self.ratio!r}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "ratio", ratio)

    def boxes(self, ctx: DrawContext) -> torch.Tensor:
        """torchvision's RandomResizedCrop.get_params for every image at once (10 attempts, then the
        central crop with the ratio clamped)."""
        n, gen = ctx.n, ctx.gen
        height, width = ctx.sizes[:, 0:1].double(), ctx.sizes[:, 1:2].double()
        area = height * width
        target = area * uniform(gen, (n, _CROP_ATTEMPTS), *self.scale)
        log_ratio = torch.log(torch.tensor(self.ratio, dtype=torch.float64))
        aspect = torch.exp(uniform(gen, (n, _CROP_ATTEMPTS), float(log_ratio[0]), float(log_ratio[1])))
        w = torch.round(torch.sqrt(target * aspect))
        h = torch.round(torch.sqrt(target / aspect))
        valid = (w > 0) & (h > 0) & (w <= width) & (h <= height)
        first = valid.double().argmax(dim=1, keepdim=True)
        w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
        pos = torch.rand((n, 2), generator=gen, dtype=torch.float64)
        height, width = height.squeeze(1), width.squeeze(1)
        top = torch.floor(pos[:, 0] * (height - h + 1))
        left = torch.floor(pos[:, 1] * (width - w + 1))
        # fallback when no attempt fits: torchvision's central crop
        low, high = self.ratio
        in_ratio = width / height
        fw = torch.where(in_ratio < low, width, torch.where(in_ratio > high, torch.round(height * high), width))
        fh = torch.where(in_ratio < low, torch.round(width / low), height)
        ok = valid.any(dim=1)
        w, h = torch.where(ok, w, fw), torch.where(ok, h, fh)
        top = torch.where(ok, top, torch.div(height - fh, 2, rounding_mode="floor"))
        left = torch.where(ok, left, torch.div(width - fw, 2, rounding_mode="floor"))
        return torch.stack((top, left, h, w), dim=1).long()


@register_op
@dataclass(frozen=True)
class ResizeCenterCrop(CropOp):
    """Resize the shorter side to the output size, then take the central square (no randomness)."""

    name: ClassVar[str] = "resize_center_crop"

    def boxes(self, ctx: DrawContext) -> torch.Tensor:
        """The central square of each image."""
        sizes = ctx.sizes
        side = sizes.min(dim=1).values
        top = torch.round((sizes[:, 0] - side) / 2.0).long()
        left = torch.round((sizes[:, 1] - side) / 2.0).long()
        return torch.stack((top, left, side, side), dim=1)


@dataclass(frozen=True)
class ResizeWhole(CropOp):
    """The crop stage of a recipe without a crop op: the whole image, resized (aspect ratio not kept)."""

    name: ClassVar[str] = "resize_whole"

    def boxes(self, ctx: DrawContext) -> torch.Tensor:
        """Each image's full extent."""
        return torch.cat((torch.zeros((ctx.n, 2), dtype=torch.long), ctx.sizes), dim=1)


register_default(ResizeWhole())


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
