"""Colour jitter: brightness, contrast, saturation and hue, each by a per-image factor, in a
per-image random order. The batched functions match torchvision.transforms.v2.functional's
per-image ops (tested image by image) and never read a tensor's values on the host."""
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from fastinv.errors import UsageError
from fastinv.pipelines.ops.base import (COLOUR, ColourStep, DaliView, DrawContext, ImageStep, Op, OpDraw,
                                        per_view_probability, register_op, subset, uniform)
from fastinv.pipelines.ops.grayscale import GREY, LUMA, luma

JITTER_STEPS = ("brightness", "contrast", "saturation", "hue")
_EYE = np.eye(3, dtype=np.float32)
_BRIGHTNESS, _CONTRAST = JITTER_STEPS.index("brightness"), JITTER_STEPS.index("contrast")
_SATURATION, _HUE = JITTER_STEPS.index("saturation"), JITTER_STEPS.index("hue")


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


def _is_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a == b as a float 0/1 mask: selecting with it by lerp is exact and, unlike a bool mask
    (torch.where), runs vectorised on the CPU."""
    return torch.eq(a, b, out=torch.empty_like(a))


def _at_least(a: torch.Tensor, bound: float) -> torch.Tensor:
    """a >= bound as a float 0/1 mask (see `_is_equal`)."""
    return torch.ge(a, bound, out=torch.empty_like(a))


_SECTOR_OFFSETS = (1.0, 5.0, 3.0)  # (n_c - 4) mod 6 for n = (5, 3, 1): see adjust_hue


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by its shift (N,) in turns, in [-0.5, 0.5].

    Same result as an HSV round trip (torchvision's adjust_hue): a hue rotation keeps each
    pixel's max and min, so every channel is max - delta * clamp(min(k, 4 - k), 0, 1) with
    k = (n_c + 6 * hue) mod 6 and n = (5, 3, 1) for (r, g, b). 6 * hue before the shift lies in
    [-1, 5); with the shift and 4 added it lies in [0, 12), so each mod 6 is one conditional
    subtraction (once per pixel, once per channel) instead of a floor."""
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    delta = maxc - torch.minimum(torch.minimum(r, g), b)
    # 6 * hue before the shift, by the channel that holds the max (r before g before b on ties)
    num = torch.lerp(torch.lerp((r - g).add_(delta, alpha=4), (b - r).add_(delta, alpha=2), _is_equal(maxc, g)),
                     g - b, _is_equal(maxc, r))
    hue6 = num.div_(delta.clamp(min=1e-30)).add_((6.0 * shift + 4.0).view(-1, 1, 1).to(x.dtype))
    hue6.sub_(_at_least(hue6, 6.0), alpha=6.0)  # (6 * hue + 4) mod 6
    k = torch.empty_like(x)
    for channel, offset in enumerate(_SECTOR_OFFSETS):
        torch.add(hue6, offset, out=k[:, channel])
    k.sub_(_at_least(k, 6.0), alpha=6.0)  # in [0, 6)
    weight = k.sub_(2.0).abs_().neg_().add_(2.0).clamp_(0, 1)  # = clamp(min(k, 4 - k), 0, 1) on [0, 6), in place
    return torch.sub(maxc.unsqueeze(1), weight.mul_(delta.unsqueeze(1))).clamp_(0, 1)


_JITTER_FNS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def _hue_matrices(shift: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations about the grey axis by `shift` (N,) turns (Rodrigues' formula)."""
    angle = 2 * np.pi * shift.astype(np.float64)
    axis = np.full(3, 1 / np.sqrt(3))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    return (cos * np.eye(3) + sin * cross + (1 - cos) * np.outer(axis, axis)).astype(np.float32)


@register_op
@dataclass(frozen=True)
class ColorJitter(Op):
    """With probability `p` (a number, or [view 1, view 2]), jitter brightness/contrast/saturation
    (factor in [1-x, 1+x]) and hue (shift in [-hue, hue] of a full turn), in a random order per
    image when `random_order`.

    In a DALI graph the steps run on uint8 images, each rounding like PIL: brightness is
    `fn.brightness`, contrast a blend with the mean luma, saturation and hue one colour matrix
    (hue as a rotation about the grey axis: close to, not identical with, HSV's rotation)."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    p: float | tuple[float, float] = 0.8
    random_order: bool = True
    name: ClassVar[str] = "color_jitter"
    stage: ClassVar = COLOUR
    dali_arity: ClassVar[int] = 6 * len(JITTER_STEPS)

    def __post_init__(self) -> None:
        for key in ("brightness", "contrast", "saturation"):
            if not float(getattr(self, key)) >= 0:
                raise UsageError(f"color_jitter.{key} must be >= 0, got {getattr(self, key)!r}")
        if not 0 <= float(self.hue) <= 0.5:
            raise UsageError(f"color_jitter.hue must lie in [0, 0.5], got {self.hue!r}")
        object.__setattr__(self, "p", per_view_probability(self.p, "color_jitter.p"))

    def ranges(self) -> tuple[tuple[float, float], ...]:
        """Sampling ranges of the four factors: brightness, contrast, saturation (multipliers), hue (shift)."""
        mult = [(max(0.0, 1 - float(x)), 1 + float(x)) for x in (self.brightness, self.contrast, self.saturation)]
        return (*mult, (-float(self.hue), float(self.hue)))

    def draw(self, ctx: DrawContext) -> OpDraw:
        """Whether each image is jittered, its four factors (N, 4) and its order of the steps (N, 4)."""
        n, gen = ctx.n, ctx.gen
        apply = self.fires(ctx)
        values = torch.stack([uniform(gen, (n,), low, high) for low, high in self.ranges()], dim=1)
        keys = torch.rand((n, len(JITTER_STEPS)), generator=gen)
        order = keys.argsort(dim=1) if self.random_order else torch.arange(len(JITTER_STEPS)).expand(n, -1)
        return OpDraw(apply, values.float(), order)

    def image_steps(self, draw: OpDraw, size: int) -> list[list[ImageStep]]:
        """Per image: its four steps in its order where it fires, each with its (1,) factor."""
        return [[(_JITTER_FNS[k], draw.values[i:i + 1, k]) for k in order] if fire else []
                for i, (fire, order) in enumerate(zip(draw.apply.tolist(), draw.order.tolist()))]

    def batch_steps(self, draw: OpDraw, size: int) -> list[ColourStep]:
        """16 steps: at each of the 4 positions of the order, each factor on the images that take it there."""
        steps: list[ColourStep] = []
        for position in range(len(JITTER_STEPS)):
            for k, fn in enumerate(_JITTER_FNS):
                steps += subset(fn, draw.apply & (draw.order[:, position] == k), draw.values[:, k])
        return steps

    def dali_inputs(self, draw: OpDraw, size: int) -> list[np.ndarray]:
        """Per step of the order: which op each image takes (brightness, contrast or a colour
        matrix, as booleans), its factor and 1 - factor, and its 3x3 matrix (saturation, hue; else identity)."""
        n = draw.apply.shape[0]
        fires, values, rows = draw.apply.numpy(), draw.values.numpy(), np.arange(n)
        out = []
        for step in range(len(JITTER_STEPS)):
            op = draw.order[:, step].numpy()
            factor = values[rows, op].astype(np.float32)
            saturate, rotate = fires & (op == _SATURATION), fires & (op == _HUE)
            matrix = np.repeat(_EYE[None], n, axis=0)
            matrix[saturate] = (factor[saturate, None, None] * _EYE
                                + (1 - factor[saturate])[:, None, None] * GREY)
            matrix[rotate] = _hue_matrices(factor[rotate])
            out += [fires & (op == _BRIGHTNESS), fires & (op == _CONTRAST), saturate | rotate, factor,
                    (1 - factor).astype(np.float32), matrix]
        return out

    def dali(self, view: DaliView, inputs: Sequence[Any]) -> DaliView:
        """Per step of each image's order, the op it takes there (uint8 in and out)."""
        fn, types, img = view.fn, view.types, view.img
        for step in range(len(JITTER_STEPS)):
            brighten, contrast, recolour, factor, rest, matrix = inputs[6 * step:6 * step + 6]
            if brighten:
                img = fn.brightness(img, brightness=factor)
            elif contrast:
                centre = fn.reductions.mean(fn.coord_transform(img, M=list(LUMA)), axes=[0, 1, 2], keep_dims=True)
                img = fn.cast(img * factor + centre * rest, dtype=types.UINT8)
            elif recolour:
                img = fn.coord_transform(img, M=matrix, dtype=types.UINT8)
        return replace(view, img=img)
