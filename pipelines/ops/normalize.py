"""Normalisation: images to float32, minus a per-channel mean, divided by a per-channel std.

The one place fastinv keeps the ImageNet statistics and the normalise function: the loaders'
`normalize` op, the evaluation views and the training monitor all call `normalise`.
"""
import ctypes
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, ClassVar

import torch

from fastinv.errors import UsageError
from fastinv.pipelines.ops.base import NORMALIZE, DaliView, Op, register_op

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_HUGE_PAGE, _MADV_HUGEPAGE = 2 << 20, 14  # Linux's transparent huge page size and madvise advice
_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


@lru_cache(maxsize=16)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, width: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift and scale of the uint8-to-normalised map, laid out like a row of `width` channels_last
    pixels ((width, 3); (3, 1, 1) for width 0), made once per device."""
    shift = torch.tensor([255.0 * m for m in mean])
    scale = torch.tensor([1.0 / (255.0 * s) for s in std])
    if width:
        shift, scale = shift.repeat(width, 1), scale.repeat(width, 1)
    else:
        shift, scale = shift.view(3, 1, 1), scale.view(3, 1, 1)
    return shift.to(device), scale.to(device)


def _fresh_float(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An uninitialised float32 tensor; on the CPU, one that Linux backs with 2 MiB pages where it
    can (transparent huge pages in "madvise" mode): a fresh batch-sized buffer then costs one page
    fault per 2 MiB instead of one per 4 KiB, which was most of the time of converting a batch."""
    out = torch.empty(shape, device=device)
    if device.type == "cpu" and _LIBC is not None:
        first = -(-out.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
        last = (out.data_ptr() + out.numel() * out.element_size()) // _HUGE_PAGE * _HUGE_PAGE
        if last > first:
            _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_HUGEPAGE)
    return out


def normalise(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
              channels_last: bool = False, levels: bool | None = None) -> torch.Tensor:
    """Images (N, 3, H, W) as float32 (x - mean) / std per channel on their device (ImageNet's
    statistics by default), with x in [0, 1].

    `levels`: the values are 0-255 grey levels (default: for uint8 images), scaled by 1/255 in
    the same pass into a new tensor laid out channels_last if asked, else contiguous; otherwise
    they are floats in [0, 1] and keep their layout."""
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if not (images.dtype == torch.uint8 if levels is None else levels):
        centre = torch.tensor(mean, device=images.device).view(-1, 1, 1)
        return images.float().sub(centre).div_(torch.tensor(std, device=images.device).view(-1, 1, 1))
    if channels_last:  # as (N, H, W, 3) rows, so that the per-channel constants broadcast along whole pixel rows
        source = images.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        shift, scale = _affine(mean, std, images.device, images.shape[-1])
    else:
        source = images.contiguous()
        shift, scale = _affine(mean, std, images.device, 0)
    out = _fresh_float(tuple(source.shape), images.device).copy_(source).sub_(shift).mul_(scale)
    return out.permute(0, 3, 1, 2) if channels_last else out


@register_op
@dataclass(frozen=True)
class Normalize(Op):
    """Subtract `mean` and divide by `std` per channel (on values in [0, 1]); float output only."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    name: ClassVar[str] = "normalize"
    stage: ClassVar = NORMALIZE

    def __post_init__(self) -> None:
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise UsageError(f"normalize needs 3 means and 3 positive stds, got {self.mean!r}, {self.std!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def dali(self, view: DaliView, inputs: Sequence[Any]) -> DaliView:
        """The final `crop_mirror_normalize` normalises too (float output only)."""
        if view.uint8:
            return view
        return replace(view, mean=tuple(255.0 * m for m in self.mean), std=tuple(255.0 * s for s in self.std))
