"""Grayscale: replace an image by its luma (ITU-R 601-2), kept as 3 channels."""
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from fastinv.pipelines.ops.base import (COLOUR, ColourStep, DaliView, DrawContext, ImageStep, Op, OpDraw, fires_only,
                                        per_view_probability, register_op, subset)

LUMA = (0.2989, 0.587, 0.114)  # torchvision's tensor weights (ITU-R 601-2)
GREY = np.tile(np.asarray(LUMA, dtype=np.float32), (3, 1))  # a colour matrix whose every output channel is the luma


def luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma of x (N, 3, H, W): (N, 1, H, W)."""
    r, g, b = x.unbind(1)
    return r.mul(LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2]).unsqueeze(1)


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma replicated to 3 channels: (N, 3, H, W)."""
    return luma(x).expand(-1, 3, -1, -1).contiguous()


@register_op
@dataclass(frozen=True)
class Grayscale(Op):
    """With probability `p` (a number, or [view 1, view 2]), replace the image by its luma
    (ITU-R 601-2), kept as 3 channels."""

    p: float | tuple[float, float] = 0.2
    name: ClassVar[str] = "grayscale"
    stage: ClassVar = COLOUR
    dali_arity: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", per_view_probability(self.p, "grayscale.p"))

    def draw(self, ctx: DrawContext) -> OpDraw:
        """Whether each image turns grey; no values."""
        return OpDraw(self.fires(ctx), torch.zeros((ctx.n, 0)))

    def image_steps(self, draw: OpDraw, size: int) -> list[list[ImageStep]]:
        """Per image: `to_grayscale` where it fires."""
        return fires_only(to_grayscale, draw)

    def batch_steps(self, draw: OpDraw, size: int) -> list[ColourStep]:
        """One `to_grayscale` step on the images it fires on."""
        return subset(to_grayscale, draw.apply, None)

    def dali_inputs(self, draw: OpDraw, size: int) -> list[np.ndarray]:
        """Whether it fires (N,) bool: a conditional's predicate."""
        return [draw.apply.numpy()]

    def dali(self, view: DaliView, inputs: Sequence[Any]) -> DaliView:
        """A constant luma colour matrix on the images it fires on."""
        img = view.img
        if inputs[0]:
            img = view.fn.coord_transform(img, M=GREY.ravel().tolist(), dtype=view.types.UINT8)
        return replace(view, img=img)
