"""The 18 evaluation transforms of the synthetic invariance suite (SPEC section 3, paper Table 2).

Each transform is an `EvalTransform` in `EVAL_TRANSFORMS`: the reference code's magnitude grid
(its values, float32 as it held them, and its order), the index of the identity magnitude (None
where the grid has none), and `views(image, indices)`, which makes the views of one decoded image
at those grid positions, batched over the magnitudes on the image's device.

Geometry, as the paper's `ManualTransform.T`: each transform acts on the image at its native
resolution and aspect ratio (as decoded), then Resize 256 (short side) + CenterCrop 224
(`clean_view`'s arithmetic, so an identity magnitude gives the clean view bit for bit). Pixel
magnitudes are raw-image pixels, multiplied by `pixel_scale` (1 for the paper; the miniature
world passes resize / 256). What each transform does to the native image:

| transform | grid (reference code) | at native resolution |
|---|---|---|
| resized_crop | top, left linspace(0, 0.25, 4) x 256 px; h, w linspace(0.75, 0.25, 4) x 256 px; product(top, left, h, w) | the box, corners rounded as PIL's crop does, from the image's top-left, resized straight to 224 x 224 (no Resize/CenterCrop after; the aspect ratio is not kept) |
| h_flip, v_flip | off, on | flip the whole image |
| scale | linspace(0.25, 2, 256) | zoom about the image centre, black outside the picture |
| shear | 16 x 16 (x, y) angles, linspace(-160, 160, 17)[:16] degrees | torchvision's affine shear about the centre |
| rotation | linspace(0, 360, 257)[:256] degrees, counter-clockwise | PIL's rotate about the centre, same size, black corners |
| translation | 16 x 16 (dx, dy), linspace(-0.0625, 0.0625, 17)[:16] x 256 px = -16 .. 14 px | shift by raw pixels (a large photo barely moves) |
| deform | sigma linspace(10, 50, 8) truncated to 10, 15, 21, 27, 32, 38, 44, 50; 32 draws each, sigma cycling fastest | albumentations' ElasticTransform rebuilt: affine jitter of U[-50, 50] raw px at three points, plus a 17-tap elastic field (`evaltf.deform`) |
| grayscale | off, on | PIL's luma on three channels |
| brightness, contrast, saturation | linspace(0.25, 5, 256) | PIL's blends with black, the whole image's mean grey, its grey version |
| hue | linspace(-0.5, 0.5, 256) turns | rotate the HSV hue |
| blur | sigma linspace(1e-5, 20, 256) px, 23 taps | Gaussian in raw pixels (kernel 2 round(11 pixel_scale) + 1 taps) |
| sharpness | linspace(1, 30, 256) | PIL's blend with its 3 x 3 smoothing filter |
| equalize | off, on | per-channel histogram of the whole native image |
| posterize | bits 1 .. 7 | keep the high bits |
| invert | off, on | 255 - value |

Departures from the reference code: translation and scale drop its stray 1-degree x shear (it
passed `shear=1`, a bug); deform is a rebuild, not albumentations (module `evaltf.deform`
says how it differs), its draws seeded per grid position. The deform sigmas are the
reference's truncated integers, `linspace(10, 50, 8).to(int)`, because those are what it ran
(with 17 taps the sigma barely matters). The reference grids carry no identity for scale,
brightness, contrast, saturation, hue (1 and 0 fall between grid points), resized crop and
posterize; identities (index): flips, grayscale, equalize, invert off (0), rotation 0 (0),
shear and translation (0, 0) (136), blur sigma 1e-5 (0: the kernel is exactly [0 .. 1 .. 0]
in float32), sharpness 1 (0).

How the k views of an image are batched: affine warps (scale, shear, rotation, translation)
compute every output pixel's source pixel with PIL's own nearest-neighbour arithmetic (16.16
fixed point for rotations and shears, double precision for pure scales and shifts) and gather
them in one indexing call (`evaltf.geometry`); resized crops, deform fields and their bilinear
resampling are one `grid_sample` call; the k blurs are two grouped convolutions; the colour
ops broadcast over a (k, 1, 1, 1) factor tensor. Intermediates are uint8 at native
resolution, as PIL's are, and `views` processes `chunk_pixels` native pixels at a time (at
least one view): a 4000 x 3000 photo goes one view at a time, in at most about 1.1 GB (measured
on the CPU for deform, blur and sharpness, the largest), whatever the number of magnitudes. No
transform takes a working-size shortcut (transforming a resized image instead of the native
one): measured on the photographs below, the pointwise ones would differ by invert 0.01, grayscale 0.14, hue 0.17,
saturation 0.77, brightness 2.1, contrast 2.9 and posterize 4.1 levels (worst magnitude of 9, worst
photograph). None is taken: on a device the native path costs little, and only the first four
would be allowed.

Fidelity against the paper's path (PIL image at native resolution, torchvision.transforms
.functional as `ManualTransform.T` calls it minus the stray shear, Resize 256 + CenterCrop 224),
on matplotlib's grace_hopper.jpg cut to 500x375 and 375x500 and upscaled to 1600x1200: mean
|difference| in 0..255 levels over the final views, worst magnitude of an evenly sampled grid (9
magnitudes; 5 at 1600x1200). tests/test_eval_transforms_reference.py asserts the tolerance.

| transform | 500x375 | 375x500 | 1600x1200 | tolerance |
|---|---|---|---|---|
| resized_crop | 0.214 | 0.215 | 0.166 | 0.3 |
| h_flip | 0.002 | 0.001 | 0.001 | 0.05 |
| v_flip | 0.002 | 0.001 | 0.001 | 0.05 |
| scale | 0.003 | 0.003 | 0.001 | 0.05 |
| shear | 0.002 | 0.002 | 0.001 | 0.05 |
| rotation | 0.002 | 0.002 | 0.001 | 0.05 |
| translation | 0.002 | 0.002 | 0.001 | 0.05 |
| deform | field statistics (below) | | | |
| grayscale | 0.002 | 0.002 | 0.001 | 0.05 |
| brightness | 0.001 | 0.001 | 0.001 | 0.05 |
| contrast | 0.001 | 0.001 | 0.001 | 0.05 |
| saturation | 0.002 | 0.002 | 0.001 | 0.05 |
| hue | 0.703 | 0.686 | 0.686 | 1.0 |
| blur | 0.002 | 0.001 | 0.001 | 0.05 |
| sharpness | 0.002 | 0.002 | 0.001 | 0.05 |
| equalize | 0.002 | 0.002 | 0.001 | 0.05 |
| posterize | 0.002 | 0.002 | 0.001 | 0.05 |
| invert | 0.003 | 0.002 | 0.001 | 0.05 |

The 0.001-0.003 levels are the final resize (torchvision's uint8 resampling against PIL's). The
resized crop resamples in float, PIL in fixed point: 0.2 levels. Hue rotates a float HSV hue,
PIL a byte one (hue quantised to 1/256 turn): 0.7 levels. Deform is random: its affine jitter
(uniform on [-50, 50] raw px at the three points; the distribution of how far the image corners
move) and the scale of its elastic part (std about 0.034 px) match a rebuild of albumentations'
field at native resolution, and its single resampling stays within 1 level of albumentations'
two (tests/test_eval_transforms_reference.py). Torchvision's tensor `affine` differs from the
PIL path by up to 5.2 levels (rotation by 90 degrees of a 500x375 image, scale 2): it rounds
positions that fall exactly between pixels to even where PIL truncates.
"""
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from fastinv.errors import UsageError
from fastinv.pipelines.evaltf import appearance
from fastinv.pipelines.evaltf.deform import deform, deform_fields
from fastinv.pipelines.evaltf.geometry import Matrix, affine_matrix, nearest_affine, resized_crops, rotation_matrix
from fastinv.pipelines.evaltf.views import clean_view, normalize, resize_crop, to_float, to_working_size

Magnitude = bool | int | float | tuple[float, ...]

VIEW_RESIZE, VIEW_CROP = 256, 224
BLUR_KERNEL = 23
DEFORM_DRAWS = 32
CHUNK_PIXELS = 2 ** 22


@dataclass(frozen=True)
class OpContext:
    """What an op needs besides the image and magnitudes: the pixel scale, the output crop (for
    ops that make the view themselves), the grid positions (seeds of the random op), a generator."""

    pixel_scale: float
    crop: int
    positions: list[int]
    generator: torch.Generator | None


Op = Callable[[torch.Tensor, list[Magnitude], OpContext], torch.Tensor]


def _float32(values: torch.Tensor) -> tuple[float, ...]:
    """Grid values as the reference code held them: float32, read back as Python floats."""
    return tuple(values.to(torch.float32).tolist())


def _unscaled(magnitude: Magnitude, _: float) -> Magnitude:
    return magnitude


def _all_pixels(magnitude: Magnitude, scale: float) -> Magnitude:
    return tuple(v * scale for v in magnitude) if isinstance(magnitude, tuple) else magnitude * scale


def _first_pixels(magnitude: Magnitude, scale: float) -> Magnitude:
    return (magnitude[0] * scale, *magnitude[1:])


def _switch(transform: Callable[[torch.Tensor], torch.Tensor]) -> Op:
    return lambda image, flags, _: torch.stack([transform(image) if on else image for on in flags])


def _warp(matrix: Callable[[int, int, Magnitude], Matrix]) -> Op:
    """The affine op whose inverse matrix for an image of W x H px is `matrix(W, H, magnitude)`."""
    def op(image: torch.Tensor, magnitudes: list[Magnitude], _: OpContext) -> torch.Tensor:
        height, width = image.shape[-2:]
        return nearest_affine(image, [matrix(width, height, m) for m in magnitudes])
    return op


def _blur(image: torch.Tensor, sigmas: list[Magnitude], context: OpContext) -> torch.Tensor:
    kernel = 2 * round(BLUR_KERNEL // 2 * context.pixel_scale) + 1
    return appearance.gaussian_blur(image, sigmas, kernel)


def _deform(image: torch.Tensor, magnitudes: list[Magnitude], context: OpContext) -> torch.Tensor:
    fields = deform_fields(image.shape[-2], image.shape[-1], [m[0] for m in magnitudes], context.positions,
                           pixel_scale=context.pixel_scale, device=image.device, generator=context.generator)
    return deform(image, fields)


def _factor(adjust: Callable[[torch.Tensor, list[float]], torch.Tensor]) -> Op:
    return lambda image, factors, _: adjust(image, factors)


def _check_native(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        what = f"{tuple(image.shape)} {image.dtype}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise UsageError(f"views take one decoded image, a (3, H, W) uint8 tensor, got {what}")
    if min(image.shape[1:]) < 8:
        raise UsageError(f"views need an image of at least 8 x 8 px, got {image.shape[1]} x {image.shape[2]}")


@dataclass(frozen=True)
class EvalTransform:
    """One evaluation transform: name, kind ("spatial" or "appearance"), the reference's magnitude grid.

    Pixel magnitudes (resized-crop boxes, translation offsets, blur and deform sigmas) are raw
    image pixels at pixel scale 1; `applied` gives them at another scale.
    """

    name: str
    kind: str
    magnitudes: tuple[Magnitude, ...]
    identity_index: int | None
    op: Op = field(repr=False)
    to_pixels: Callable[[Magnitude, float], Magnitude] = field(default=_unscaled, repr=False)
    makes_view: bool = False
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
            raise UsageError(f"grid size must be at least 1, got {size}")
        picked = [int(i) for i in np.unique(np.round(np.linspace(0, n - 1, size)).astype(int))]
        if self.identity_index is not None and self.identity_index not in picked:
            nearest = min(range(len(picked)), key=lambda k: abs(picked[k] - self.identity_index))
            picked[nearest] = self.identity_index
        return sorted(picked)

    def grid(self, size: int | None = None) -> list[Magnitude]:
        """The magnitudes at `grid_indices(size)`: the full reference grid when size is None."""
        return [self.magnitudes[i] for i in self.grid_indices(size)]

    def applied(self, magnitude: Magnitude, pixel_scale: float = 1.0) -> Magnitude:
        """`magnitude` as `views` applies it at `pixel_scale`: its pixel quantities multiplied."""
        return self.to_pixels(magnitude, pixel_scale)

    def views(self, image: torch.Tensor, indices: Sequence[int], *, resize: int = VIEW_RESIZE, crop: int = VIEW_CROP,
              pixel_scale: float = 1.0, generator: torch.Generator | None = None,
              chunk_pixels: int = CHUNK_PIXELS) -> torch.Tensor:
        """The views of one decoded image at the grid positions `indices`: (k, 3, crop, crop) float32 in [0, 1].

        `image` is (3, H, W) uint8 at its native resolution, on any device (the views are made
        there). Each view is the transform at that magnitude on the native image, then Resize
        `resize` (short side) + CenterCrop `crop`; the resized crop resamples its box straight
        to `crop`. `pixel_scale` multiplies every pixel magnitude and the blur and deform
        kernels (1 for the paper). `generator` (a CPU torch.Generator) replaces the seeded draws
        of the random transform (deform). The magnitudes are made `chunk_pixels` native pixels
        at a time (at least one view), which bounds the memory used for large images.
        """
        _check_native(image)
        if not 8 <= crop <= resize:
            raise UsageError(f"views need 8 <= crop <= resize, got crop {crop}, resize {resize}")
        if not pixel_scale > 0:
            raise UsageError(f"pixel_scale must be positive, got {pixel_scale}")
        if generator is not None and generator.device.type != "cpu":
            raise UsageError(f"the generator must be a CPU torch.Generator, got one on {generator.device}")
        positions = [int(i) for i in indices]
        if any(not 0 <= i < len(self.magnitudes) for i in positions):
            raise UsageError(f"{self.name} grid positions run from 0 to {len(self.magnitudes) - 1}, got {positions}")
        applied = [self.applied(self.magnitudes[i], pixel_scale) for i in positions]
        step = max(1, chunk_pixels // (image.shape[1] * image.shape[2]))
        out = torch.empty((len(positions), 3, crop, crop), dtype=torch.float32, device=image.device)
        for start in range(0, len(positions), step):
            part = slice(start, start + step)
            moved = self.op(image, applied[part], OpContext(pixel_scale, crop, positions[part], generator))
            out[part] = to_float(moved if self.makes_view else resize_crop(moved, resize, crop))
        return out


def _boolean(name: str, kind: str, op: Op) -> EvalTransform:
    return EvalTransform(name, kind, (False, True), 0, op)


def _factor_grid(name: str, adjust: Callable[[torch.Tensor, list[float]], torch.Tensor], low: float, high: float,
                 identity: int | None = None) -> EvalTransform:
    return EvalTransform(name, "appearance", _float32(torch.linspace(low, high, 256)), identity, _factor(adjust))


def _build() -> dict[str, EvalTransform]:
    corners = _float32(torch.linspace(0, 0.25, 4) * VIEW_RESIZE)
    sizes = _float32(torch.linspace(0.75, 0.25, 4) * VIEW_RESIZE)
    shears = _float32(torch.linspace(-160, 160, 17)[:16])
    shifts = _float32(torch.linspace(-0.0625, 0.0625, 17)[:16] * VIEW_RESIZE)
    pairs_shear, pairs_shift = tuple(product(shears, shears)), tuple(product(shifts, shifts))
    sigmas = tuple(float(s) for s in torch.linspace(10, 50, 8).to(torch.int64).tolist())
    transforms = [
        EvalTransform("resized_crop", "spatial", tuple(product(corners, corners, sizes, sizes)), None,
                      lambda image, boxes, context: resized_crops(image, boxes, context.crop), _all_pixels,
                      makes_view=True),
        _boolean("h_flip", "spatial", _switch(F.horizontal_flip)),
        _boolean("v_flip", "spatial", _switch(F.vertical_flip)),
        EvalTransform("scale", "spatial", _float32(torch.linspace(0.25, 2, 256)), None,
                      _warp(lambda w, h, m: affine_matrix(w, h, scale=m))),
        EvalTransform("shear", "spatial", pairs_shear, pairs_shear.index((0.0, 0.0)),
                      _warp(lambda w, h, m: affine_matrix(w, h, shear=m))),
        EvalTransform("rotation", "spatial", _float32(torch.linspace(0, 360, 257)[:256]), 0, _warp(rotation_matrix)),
        EvalTransform("translation", "spatial", pairs_shift, pairs_shift.index((0.0, 0.0)),
                      _warp(lambda w, h, m: affine_matrix(w, h, translate=m)), _all_pixels),
        EvalTransform("deform", "spatial", tuple((s, d) for d in range(DEFORM_DRAWS) for s in sigmas), None, _deform,
                      _first_pixels, random=True),
        _boolean("grayscale", "appearance", _switch(appearance.grayscale)),
        _factor_grid("brightness", appearance.brightness, 0.25, 5),
        _factor_grid("contrast", appearance.contrast, 0.25, 5),
        _factor_grid("saturation", appearance.saturation, 0.25, 5),
        _factor_grid("hue", appearance.hue, -0.5, 0.5),
        EvalTransform("blur", "appearance", _float32(torch.linspace(1e-5, 20, 256)), 0, _blur, _all_pixels),
        _factor_grid("sharpness", appearance.sharpness, 1, 30, identity=0),
        _boolean("equalize", "appearance", _switch(F.equalize)),
        EvalTransform("posterize", "appearance", tuple(range(1, 8)), None, _factor(appearance.posterize)),
        _boolean("invert", "appearance", _switch(F.invert)),
    ]
    return {t.name: t for t in transforms}


EVAL_TRANSFORMS: dict[str, EvalTransform] = _build()


def get_eval_transform(name: str) -> EvalTransform:
    """The registered transform called `name`; UsageError listing the valid names otherwise."""
    if name not in EVAL_TRANSFORMS:
        raise UsageError(f"unknown evaluation transform {name!r}; valid: {', '.join(EVAL_TRANSFORMS)}")
    return EVAL_TRANSFORMS[name]


def select_transforms(names: Sequence[str] | None = None) -> list[EvalTransform]:
    """The transforms called `names` in the given order (all 18, in the paper's order, if None)."""
    return list(EVAL_TRANSFORMS.values()) if names is None else [get_eval_transform(n) for n in names]


__all__ = ["EVAL_TRANSFORMS", "VIEW_CROP", "VIEW_RESIZE", "EvalTransform", "Magnitude", "clean_view",
           "get_eval_transform", "normalize", "select_transforms", "to_working_size"]
