"""The 18 evaluation transforms of the synthetic invariance suite (SPEC section 3, paper Table 2).

Each transform is an `EvalTransform` in `EVAL_TRANSFORMS`: its full magnitude grid as in the
SPEC, the index of the identity magnitude (None where the grid has none), and a batched
`apply(images, magnitude)` built on `torchvision.transforms.v2.functional`, which runs on any
device and applies one magnitude to the whole batch. `view` adds the final Resize 256 +
CenterCrop 224 and ImageNet normalisation; `clean_view` is the same without a transform.

Working size: the paper's code transformed each full-resolution PIL image. Here every image is
first brought to one 256 x 256 working square (`to_working_size`: Resize 256 short side +
CenterCrop 256) so batches stack; pixel magnitudes (crop boxes, translations, blur sigma, the
deform jitter) refer to that square and scale with it when another working size is used. For
the final view nothing is lost: Resize 256 of the square is a no-op and CenterCrop 224 is the
same pixels the reference kept. Rotated, sheared or shrunk content fills its corners with
black from the 256 square instead of with picture from outside it.

Identity magnitudes (bit-exact: `apply` returns the same values, and `view` of it equals
`clean_view`): h flip, v flip, grayscale, equalize, invert at "off" (index 0); rotation 0
(index 0); shear (0, 0) and translation (0, 0) (index 136 of the 16 x 16 grids); blur
sigma 1e-5 (index 0: the 23-tap kernel is exactly [0 .. 1 .. 0] in float32); sharpness 1
(index 0). No identity on the grid: resized crop (largest box 0.75), scale (1 falls between
grid points), brightness / contrast / saturation (1 is not on linspace(0.25, 5, 256)), hue (0
is not on linspace(-0.5, 0.5, 256)), posterize (bits 1..7), deform (random).

Interpolation: affine ops (rotation, shear, translation, scale) use nearest neighbour, the
default of the torchvision calls the reference made; resized crop, resizes and deform use
bilinear. Equalize and posterize work on uint8 values (PIL semantics); float input is rounded
to uint8 levels for them. Deform substitutes torchvision's elastic transform for
albumentations' (see `fastinv.pipelines.evaltf.deform`).

Fidelity against the per-image PIL reference (torchvision.transforms.functional on PIL images:
Resize 256 + CenterCrop 256, the transform, Resize 256 + CenterCrop 224), 3 crops of a real
photograph, mean |difference| in 0..255 levels over the final 224 views, worst magnitude of an
evenly sampled grid of 9 (tests/test_eval_transforms_reference.py asserts the tolerance):

| transform | vs PIL reference | tolerance | gap without working square |
|---|---|---|---|
| resized_crop | 0.074 | 0.2 | 77.64 (box placed in the square, not at the image's top-left) |
| h_flip | 0.001 | 0.05 | 0.00 |
| v_flip | 0.001 | 0.05 | 0.00 |
| scale | 0.001 | 0.05 | 12.65 (black border instead of picture) |
| shear | 0.007 | 0.05 | 9.47 (same) |
| rotation | 0.031 | 0.1 | 3.89 (same) |
| translation | 0.001 | 0.05 | 15.35 (same) |
| deform | 0.19-0.33 vs a scipy rebuild of albumentations' algorithm (sigma 10, 50) | 0.5 | - |
| grayscale | 0.526 | 1.0 | 0.53 |
| brightness | 0.001 | 0.05 | 0.00 |
| contrast | 0.584 | 1.0 | 8.03 (mean grey of the square, not the image) |
| saturation | 1.110 | 1.5 | 1.11 |
| hue | 0.724 | 1.2 | 0.72 |
| blur | 0.001 | 0.05 | 0.00 |
| sharpness | 0.014 | 0.05 | 0.01 |
| equalize | 0.002 | 0.05 | 12.06 (histogram of the square, not the image) |
| posterize | 0.001 | 0.05 | 0.00 |
| invert | 0.001 | 0.05 | 0.00 |

"Gap without working square": the same figure when the reference transforms the Resize-256
image at its own aspect ratio instead of the 256 square (the paper's order of operations, up
to its full-resolution start); it is the price of batching, not an implementation error.
Grayscale, contrast, saturation and hue differ from PIL by PIL's integer luma weights and
per-step rounding. Blur is compared with torchvision's own PIL path (the paper's call).
"""
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from fastinv.pipelines.evaltf.deform import deform, deform_field, seeded_displacement
from fastinv.pipelines.evaltf.views import WORKING_SIZE, _check_images, clean_view, to_working_size

Magnitude = bool | int | float | tuple[float, ...]
Op = Callable[[torch.Tensor, Magnitude, torch.Generator | None], torch.Tensor]

CROP_FRACTIONS = (0.0, 1 / 12, 2 / 12, 3 / 12)
CROP_SIZES = (0.75, 0.583, 0.417, 0.25)
SHEAR_ANGLES = tuple(float(a) for a in np.linspace(-160, 160, 17)[:16])
SHIFT_FRACTIONS = tuple(float(a) for a in np.linspace(-0.0625, 0.0625, 17)[:16])
DEFORM_SIGMAS = tuple(float(s) for s in np.linspace(10, 50, 8))
DEFORM_DRAWS = 32
BLUR_KERNEL = 23
VIEW_RESIZE, VIEW_CROP = 256, 224


def _linspace(low: float, high: float, n: int) -> tuple[float, ...]:
    return tuple(float(v) for v in np.linspace(low, high, n))


def _side(images: torch.Tensor) -> int:
    height, width = images.shape[-2:]
    if height != width:
        raise ValueError(f"evaluation transforms act on a square working image (see to_working_size), got {height}x{width}")
    return width


def _as_uint8(images: torch.Tensor) -> torch.Tensor:
    return images if images.dtype == torch.uint8 else images.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def _like(result: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return result if result.dtype == images.dtype else F.to_dtype(result, images.dtype, scale=True)


def _resized_crop(images: torch.Tensor, box: Magnitude, _: torch.Generator | None) -> torch.Tensor:
    side = _side(images)
    top, left, height, width = (round(v * side) for v in box)
    out = round(side * VIEW_CROP / WORKING_SIZE)
    return F.resized_crop(images, top, left, height, width, [out, out], antialias=True)


def _flip(vertical: bool) -> Op:
    flip = F.vertical_flip if vertical else F.horizontal_flip
    return lambda images, on, _: flip(images) if on else images


def _affine(images: torch.Tensor, *, angle: float = 0.0, shift: tuple[float, float] = (0.0, 0.0),
            scale: float = 1.0, shear: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    side = _side(images)
    translate = [round(shift[0] * side), round(shift[1] * side)]
    return F.affine(images, angle=angle, translate=translate, scale=scale, shear=list(shear))


def _deform(images: torch.Tensor, magnitude: Magnitude, generator: torch.Generator | None) -> torch.Tensor:
    sigma, draw = magnitude
    index, side = DEFORM_SIGMAS.index(sigma), _side(images)
    if generator is None:
        return deform(images, seeded_displacement(side, sigma, index, int(draw)))
    return deform(images, deform_field(side, sigma, index, int(draw), generator=generator).displacement)


def _blur(images: torch.Tensor, sigma: Magnitude, _: torch.Generator | None) -> torch.Tensor:
    ratio = _side(images) / WORKING_SIZE
    kernel = 2 * round((BLUR_KERNEL // 2) * ratio) + 1
    return F.gaussian_blur(images, [kernel, kernel], [sigma * ratio, sigma * ratio])


def _on_uint8(op: Callable[[torch.Tensor], torch.Tensor]) -> Op:
    return lambda images, on, _: _like(op(_as_uint8(images)), images) if on else images


def _posterize(images: torch.Tensor, bits: Magnitude, _: torch.Generator | None) -> torch.Tensor:
    return _like(F.posterize(_as_uint8(images), int(bits)), images)


@dataclass(frozen=True)
class EvalTransform:
    """One evaluation transform: name, kind ("spatial" or "appearance"), full magnitude grid."""

    name: str
    kind: str
    magnitudes: tuple[Magnitude, ...]
    identity_index: int | None
    op: Op = field(repr=False)
    makes_view_size: bool = False
    random: bool = False

    def grid_indices(self, size: int | None = None) -> list[int]:
        """Positions in the full grid of an even subsample of `size` magnitudes (all if None).

        The identity magnitude, where the grid has one, is always included (it replaces the
        sampled point nearest to it). Positions are stable keys for caching features.
        """
        n = len(self.magnitudes)
        if size is None or size >= n:
            return list(range(n))
        if size < 1:
            raise ValueError(f"grid size must be at least 1, got {size}")
        picked = [int(i) for i in np.unique(np.round(np.linspace(0, n - 1, size)).astype(int))]
        if self.identity_index is not None and self.identity_index not in picked:
            nearest = min(range(len(picked)), key=lambda k: abs(picked[k] - self.identity_index))
            picked[nearest] = self.identity_index
        return sorted(picked)

    def grid(self, size: int | None = None) -> list[Magnitude]:
        """The magnitudes at `grid_indices(size)`: the full SPEC grid when size is None."""
        return [self.magnitudes[i] for i in self.grid_indices(size)]

    def apply(self, images: torch.Tensor, magnitude: Magnitude, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform a batch (B, 3, S, S) of working-size images (uint8 or float in [0, 1]).

        One magnitude for the whole batch; output on the same device with the same dtype, S x S
        (resized crop: round(S * 224 / 256), the final view size). `generator` (a CPU
        torch.Generator) replaces the seeded draw of the random transform (deform).
        """
        _check_images(images)
        _side(images)
        if magnitude not in self.magnitudes:
            raise ValueError(f"{magnitude!r} is not on the {self.name} grid; take magnitudes from .grid()")
        return self.op(images, magnitude, generator)

    def view(self, images: torch.Tensor, magnitude: Magnitude, generator: torch.Generator | None = None,
             *, normalise: bool = True) -> torch.Tensor:
        """The model input for `magnitude`: `apply`, then Resize 256 + CenterCrop 224 and normalisation."""
        out = self.apply(images, magnitude, generator)
        if self.makes_view_size:
            return clean_view(out, out.shape[-1], out.shape[-1], normalise=normalise)
        ratio = images.shape[-1] / WORKING_SIZE
        return clean_view(out, round(VIEW_RESIZE * ratio), round(VIEW_CROP * ratio), normalise=normalise)


def _boolean(name: str, kind: str, op: Op) -> EvalTransform:
    return EvalTransform(name, kind, (False, True), 0, op)


def _factor(name: str, adjust: Callable[[torch.Tensor, float], torch.Tensor], low: float, high: float) -> EvalTransform:
    return EvalTransform(name, "appearance", _linspace(low, high, 256), None, lambda images, m, _: adjust(images, m))


def _build() -> dict[str, EvalTransform]:
    pairs_shear = tuple(product(SHEAR_ANGLES, SHEAR_ANGLES))
    pairs_shift = tuple(product(SHIFT_FRACTIONS, SHIFT_FRACTIONS))
    rotation = tuple(float(a) for a in np.linspace(0, 360, 257)[:256])
    transforms = [
        EvalTransform("resized_crop", "spatial", tuple(product(CROP_FRACTIONS, CROP_FRACTIONS, CROP_SIZES, CROP_SIZES)),
                      None, _resized_crop, makes_view_size=True),
        _boolean("h_flip", "spatial", _flip(vertical=False)),
        _boolean("v_flip", "spatial", _flip(vertical=True)),
        EvalTransform("scale", "spatial", _linspace(0.25, 2, 256), None, lambda x, m, _: _affine(x, scale=m)),
        EvalTransform("shear", "spatial", pairs_shear, pairs_shear.index((0.0, 0.0)), lambda x, m, _: _affine(x, shear=m)),
        EvalTransform("rotation", "spatial", rotation, 0, lambda x, m, _: F.rotate(x, m)),
        EvalTransform("translation", "spatial", pairs_shift, pairs_shift.index((0.0, 0.0)), lambda x, m, _: _affine(x, shift=m)),
        EvalTransform("deform", "spatial", tuple(product(DEFORM_SIGMAS, range(DEFORM_DRAWS))), None, _deform, random=True),
        _boolean("grayscale", "appearance", lambda x, on, _: F.rgb_to_grayscale(x, num_output_channels=3) if on else x),
        _factor("brightness", F.adjust_brightness, 0.25, 5),
        _factor("contrast", F.adjust_contrast, 0.25, 5),
        _factor("saturation", F.adjust_saturation, 0.25, 5),
        _factor("hue", F.adjust_hue, -0.5, 0.5),
        EvalTransform("blur", "appearance", _linspace(1e-5, 20, 256), 0, _blur),
        EvalTransform("sharpness", "appearance", _linspace(1, 30, 256), 0, lambda x, m, _: F.adjust_sharpness(x, m)),
        _boolean("equalize", "appearance", _on_uint8(F.equalize)),
        EvalTransform("posterize", "appearance", tuple(range(1, 8)), None, _posterize),
        _boolean("invert", "appearance", lambda x, on, _: F.invert(x) if on else x),
    ]
    return {t.name: t for t in transforms}


EVAL_TRANSFORMS: dict[str, EvalTransform] = _build()


def get_eval_transform(name: str) -> EvalTransform:
    """The registered transform called `name`; ValueError listing the valid names otherwise."""
    if name not in EVAL_TRANSFORMS:
        raise ValueError(f"unknown evaluation transform {name!r}; valid: {', '.join(EVAL_TRANSFORMS)}")
    return EVAL_TRANSFORMS[name]


def select_transforms(names: Sequence[str] | None = None) -> list[EvalTransform]:
    """The transforms called `names` in the given order (all 18, in the paper's order, if None)."""
    return list(EVAL_TRANSFORMS.values()) if names is None else [get_eval_transform(n) for n in names]


__all__ = ["EVAL_TRANSFORMS", "EvalTransform", "Magnitude", "clean_view", "get_eval_transform",
           "select_transforms", "to_working_size"]
