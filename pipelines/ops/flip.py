"""The flip stage: mirror an image left-right. The colour ops commute with a flip, so it may be
listed anywhere; every backend folds it into the crop (resampling weights, `crop_resize`, FFCV's
crop) or, in DALI, into the final `crop_mirror_normalize`."""
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from fastinv.pipelines.ops.base import (FLIP, DaliView, DrawContext, Op, per_view_probability, register_default,
                                        register_op)


@register_op
@dataclass(frozen=True)
class HorizontalFlip(Op):
    """Mirror the image left-right with probability `p` (a number, or [view 1, view 2])."""

    p: float | tuple[float, float] = 0.5
    name: ClassVar[str] = "horizontal_flip"
    stage: ClassVar = FLIP
    dali_arity: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", per_view_probability(self.p, "horizontal_flip.p"))

    def draw(self, ctx: DrawContext) -> torch.Tensor:
        """Whether each image is mirrored (N,) bool."""
        return self.fires(ctx)

    def dali_inputs(self, draw: torch.Tensor, size: int) -> list[np.ndarray]:
        """The mirror flags (N,) int32."""
        return [draw.numpy().astype(np.int32)]

    def dali(self, view: DaliView, inputs: Sequence[Any]) -> DaliView:
        """Mirror the flagged images in the final `crop_mirror_normalize`."""
        return replace(view, mirror=inputs[0])


register_default(HorizontalFlip(0.0))  # a recipe without a flip still draws one number per image
