"""Solarize (BYOL): invert every value at or above a threshold, x -> 1 - x on [0, 1] images."""
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch

from fastinv.errors import UsageError
from fastinv.pipelines.ops.base import (COLOUR, ColourStep, DaliView, DrawContext, ImageStep, Op, OpDraw, fires_only,
                                        per_view_probability, register_op, subset)


def solarize(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Images x (N, C, H, W) in [0, 1] with every value >= threshold replaced by 1 - value
    (torchvision's `solarize` on float images)."""
    return torch.where(x >= threshold, 1.0 - x, x)


def _first_level(threshold: float) -> int:
    """The lowest uint8 level v whose float value v / 255 (as the torch backend computes it) is
    solarized; 256 if none is."""
    solarized = torch.arange(256, dtype=torch.uint8).float().div_(255) >= threshold  # the levels from one on
    return 256 - int(solarized.sum())


@register_op
@dataclass(frozen=True)
class Solarize(Op):
    """With probability `p` (a number, or [view 1, view 2]), replace every value at or above
    `threshold` (on [0, 1] images) by 1 - value, as BYOL does on its second view."""

    threshold: float = 0.5
    p: float | tuple[float, float] = 0.2
    name: ClassVar[str] = "solarize"
    stage: ClassVar = COLOUR
    dali_arity: ClassVar[int] = 3

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise UsageError(f"solarize.threshold must lie in [0, 1], got {self.threshold!r}")
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "p", per_view_probability(self.p, "solarize.p"))

    def draw(self, ctx: DrawContext) -> OpDraw:
        """Whether each image is solarized; no values."""
        return OpDraw(self.fires(ctx), torch.zeros((ctx.n, 0)))

    def image_steps(self, draw: OpDraw, size: int) -> list[list[ImageStep]]:
        """Per image: `solarize` where it fires."""
        return fires_only(partial(solarize, threshold=self.threshold), draw)

    def batch_steps(self, draw: OpDraw, size: int) -> list[ColourStep]:
        """One `solarize` step on the images it fires on."""
        return subset(partial(solarize, threshold=self.threshold), draw.apply, None)

    def dali_inputs(self, draw: OpDraw, size: int) -> list[np.ndarray]:
        """Whether it fires (N,) bool, and per image the first solarized level and 255 (int16)."""
        n = draw.apply.shape[0]
        return [draw.apply.numpy(), np.full(n, _first_level(self.threshold), dtype=np.int16),
                np.full(n, 255, dtype=np.int16)]

    def dali(self, view: DaliView, inputs: Sequence[Any]) -> DaliView:
        """On uint8 images where it fires: v -> 255 - v for every level v from the threshold on."""
        fires, level, white = inputs
        fn, types, img = view.fn, view.types, view.img
        if fires:
            wide = fn.cast(img, dtype=types.INT16)
            img = fn.cast(wide + (wide >= level) * (white - wide - wide), dtype=types.UINT8)
        return replace(view, img=img)
