"""Per-image random parameters of a recipe, and the torch implementation that applies them.

A batch goes through three steps, each on one side of the host / device line:

1. `sample_params` is the single source of randomness for the torch, DALI and FFCV backends: it
   draws, from one CPU generator, every parameter of every image of a view in a fixed pattern
   (all numbers are drawn whether an op fires or not), so a batch's draws depend only on its
   generator.
2. `plan_views` does everything that reads those draws on the host (which images take which
   op, crop boxes as Python numbers, images grouped by size) and moves what the device needs in
   one pinned, non-blocking transfer.
3. `render_views` is the device work. It never reads a tensor's values on the host (no
   `.item()`, `.tolist()`, `nonzero()`, mask indexing or host-to-device copies), so on an
   accelerator it only queues kernels and never waits for the device.

Two strategies give the same images (within one grey level of torchvision's per-image ops): per
image, for the CPU (torchvision's uint8 resize kernel on each crop, then the colour ops image by
image while the image is in cache), and batched, for accelerators (one padded stack per size
bucket, crops by resampling matmuls, each colour op once on the images that take it).
"""
import ctypes
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from functools import lru_cache, partial
from typing import Any

import torch

from fastinv.pipelines import ops
from fastinv.pipelines.recipes import (ColorJitter, ColourOp, GaussianBlur, Grayscale, Normalize, RandomResizedCrop,
                                       Recipe, ResizeCenterCrop)

_CROP_ATTEMPTS = 10
JITTER_STEPS = ("brightness", "contrast", "saturation", "hue")
_JITTER_FNS = (ops.adjust_brightness, ops.adjust_contrast, ops.adjust_saturation, ops.adjust_hue)
_BUCKET_STEP = 128  # images whose sides round up to the same multiple of this share one padded stack
_STACK_ELEMENTS = 1 << 27  # at most this many values per float stack (512 MiB): huge images go in several
_ALIGN = 8  # byte alignment of each tensor in the one host-to-device transfer of a plan
_HUGE_PAGE, _MADV_HUGEPAGE = 2 << 20, 14  # Linux's transparent huge page size and madvise advice
_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class OpDraw:
    """Draws of one colour op for N images: whether it fires, its values (N, k), and for colour
    jitter the per-image order (N, 4): order[i, s] = index into JITTER_STEPS applied at step s."""

    apply: torch.Tensor
    values: torch.Tensor
    order: torch.Tensor | None = None


@dataclass(frozen=True)
class ViewParams:
    """All draws for one view of N images: crop boxes (N, 4) = (top, left, height, width) in
    source pixels, flips (N,) and one OpDraw per colour op of the recipe, in recipe order."""

    boxes: torch.Tensor
    flip: torch.Tensor
    colour: tuple[OpDraw, ...]


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


def _random_resized_boxes(op: RandomResizedCrop, sizes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """torchvision's RandomResizedCrop.get_params for every image at once (10 attempts, then the
    central crop with the ratio clamped)."""
    n = sizes.shape[0]
    height, width = sizes[:, 0:1].double(), sizes[:, 1:2].double()
    area = height * width
    target = area * _uniform(gen, (n, _CROP_ATTEMPTS), *op.scale)
    log_ratio = torch.log(torch.tensor(op.ratio, dtype=torch.float64))
    aspect = torch.exp(_uniform(gen, (n, _CROP_ATTEMPTS), float(log_ratio[0]), float(log_ratio[1])))
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
    in_ratio = width / height
    fw = torch.where(in_ratio < op.ratio[0], width, torch.where(in_ratio > op.ratio[1], torch.round(height * op.ratio[1]), width))
    fh = torch.where(in_ratio < op.ratio[0], torch.round(width / op.ratio[0]), height)
    ok = valid.any(dim=1)
    w, h = torch.where(ok, w, fw), torch.where(ok, h, fh)
    top = torch.where(ok, top, torch.div(height - fh, 2, rounding_mode="floor"))
    left = torch.where(ok, left, torch.div(width - fw, 2, rounding_mode="floor"))
    return torch.stack((top, left, h, w), dim=1).long()


def _centre_square_boxes(sizes: torch.Tensor) -> torch.Tensor:
    side = sizes.min(dim=1).values
    top = torch.round((sizes[:, 0] - side) / 2.0).long()
    left = torch.round((sizes[:, 1] - side) / 2.0).long()
    return torch.stack((top, left, side, side), dim=1)


def _draw_colour(op: ColourOp, n: int, gen: torch.Generator, blur_scale: torch.Tensor | float) -> OpDraw:
    apply = torch.rand(n, generator=gen, dtype=torch.float64) < op.p
    if isinstance(op, ColorJitter):
        values = torch.stack([_uniform(gen, (n,), low, high) for low, high in op.ranges()], dim=1)
        keys = torch.rand((n, len(JITTER_STEPS)), generator=gen)
        order = keys.argsort(dim=1) if op.random_order else torch.arange(len(JITTER_STEPS)).expand(n, -1)
        return OpDraw(apply, values.float(), order)
    if isinstance(op, GaussianBlur):
        return OpDraw(apply, (_uniform(gen, (n, 1), *op.sigma) * blur_scale).float())
    return OpDraw(apply, torch.zeros((n, 0)))


def sample_params(recipe: Recipe, sizes: torch.Tensor, gen: torch.Generator, size: int | None = None) -> ViewParams:
    """Draw one view's parameters for images of sizes (N, 2) = (height, width), on the CPU.

    With `size` (the output side) and a recipe that resizes the whole image (`resize_center_crop`,
    or no crop op), blur sigmas are drawn in source pixels and returned in output pixels (times
    size / the image's shorter side): the reference blurs the full image before its resize (SPEC 1).
    Without `size`, or after a `random_resized_crop`, sigmas are in output pixels."""
    sizes = sizes.long().cpu()
    n = sizes.shape[0]
    crop = recipe.crop
    if isinstance(crop, RandomResizedCrop):
        boxes = _random_resized_boxes(crop, sizes, gen)
    elif isinstance(crop, ResizeCenterCrop):
        boxes = _centre_square_boxes(sizes)
    else:
        boxes = torch.cat((torch.zeros((n, 2), dtype=torch.long), sizes), dim=1)
    flip_p = recipe.flip.p if recipe.flip is not None else 0.0
    flip = torch.rand(n, generator=gen, dtype=torch.float64) < flip_p
    blur_scale: torch.Tensor | float = 1.0
    if size is not None and not isinstance(crop, RandomResizedCrop):
        blur_scale = size / sizes.min(dim=1, keepdim=True).values.double()
    return ViewParams(boxes, flip, tuple(_draw_colour(op, n, gen, blur_scale) for op in recipe.colour_ops))


# -- plans: the host-side half --------------------------------------------------------------------

@dataclass(frozen=True)
class ColourStep:
    """One colour op run once for a batch: `fn` on the images at `index` (a device tensor; None:
    every image) with their parameters `arg` (None for an op without one)."""

    fn: Callable[..., torch.Tensor]
    index: torch.Tensor | None
    arg: torch.Tensor | None


@dataclass(frozen=True)
class ImageSteps:
    """One image of one view for the per-image strategy: its crop box (top, left, height, width),
    flip, and colour ops in the order they run, each with its parameter ((1,) tensor) or None."""

    box: tuple[int, int, int, int]
    flip: bool
    colour: tuple[tuple[Callable[..., torch.Tensor], torch.Tensor | None], ...]


@dataclass(frozen=True)
class Bucket:
    """Images padded into one stack for the batched strategy: their batch positions `members`,
    the stack's (height, width), the device `index` of the members (None: the whole batch in
    order) and, when the members differ in size, per size the positions in the stack that hold
    it (host) and the same as a device tensor."""

    members: tuple[int, ...]
    height: int
    width: int
    index: torch.Tensor | None
    fills: tuple[tuple[tuple[int, ...], torch.Tensor], ...]


@dataclass(frozen=True)
class BucketCrop:
    """One view's crops of one bucket's images: boxes (n, 4) float and flips (n,) bool, on the device."""

    boxes: torch.Tensor
    flips: torch.Tensor


@dataclass(frozen=True)
class BatchedView:
    """One view for the batched strategy: crops per bucket, then the colour steps in order."""

    crops: tuple[BucketCrop, ...]
    colour: tuple[ColourStep, ...]


@dataclass(frozen=True)
class PerImagePlan:
    """What the per-image strategy needs for a batch: output side and, per view, every image's steps."""

    size: int
    views: tuple[tuple[ImageSteps, ...], ...]


@dataclass(frozen=True)
class BatchedPlan:
    """What the batched strategy needs for a batch, already on the device: output side, the
    size buckets (shared by the views) and each view's crops and colour steps."""

    size: int
    buckets: tuple[Bucket, ...]
    views: tuple[BatchedView, ...]


ViewPlan = PerImagePlan | BatchedPlan


def _image_steps(recipe: Recipe, params: ViewParams, size: int) -> tuple[ImageSteps, ...]:
    fires = [draw.apply.tolist() for draw in params.colour]
    orders = [None if draw.order is None else draw.order.tolist() for draw in params.colour]
    sigmas = [draw.values[:, 0].tolist() if isinstance(op, GaussianBlur) else None
              for op, draw in zip(recipe.colour_ops, params.colour)]
    images = []
    for i, (box, flip) in enumerate(zip(params.boxes.tolist(), params.flip.tolist())):
        colour: list[tuple[Callable[..., torch.Tensor], torch.Tensor | None]] = []
        for op, draw, fire, order, sigma in zip(recipe.colour_ops, params.colour, fires, orders, sigmas):
            if not fire[i]:
                continue
            if isinstance(op, ColorJitter):
                colour += [(_JITTER_FNS[k], draw.values[i:i + 1, k]) for k in order[i]]
            elif isinstance(op, Grayscale):
                colour.append((ops.to_grayscale, None))
            elif isinstance(op, GaussianBlur):
                taps = ops.blur_kernel_size(sigma[i], op.kernel_size(size))
                colour.append((partial(ops.blur_separable, kernel=ops.gaussian_kernel(sigma[i], taps)), None))
        images.append(ImageSteps(tuple(box), bool(flip), tuple(colour)))
    return tuple(images)


def _subset(fn: Callable[..., torch.Tensor], mask: torch.Tensor, values: torch.Tensor | None) -> list[ColourStep]:
    index = mask.nonzero().flatten()  # host tensors: no device involved
    if index.numel() == 0:
        return []
    if index.numel() == mask.numel():
        return [ColourStep(fn, None, values)]
    return [ColourStep(fn, index, None if values is None else values[index])]


def colour_steps(recipe: Recipe, params: ViewParams, size: int) -> tuple[ColourStep, ...]:
    """The recipe's colour ops for a batch of `size`-px views as whole-batch steps (host tensors):
    colour jitter becomes 16 steps (at each of its 4 positions, each op on the images that take it
    there), grayscale and blur one step each (the blur kernel sized for the largest sigma, see
    `ops.blur_kernel_size`); steps no image takes are left out."""
    steps: list[ColourStep] = []
    for op, draw in zip(recipe.colour_ops, params.colour):
        if isinstance(op, ColorJitter):
            for position in range(len(JITTER_STEPS)):
                for k, fn in enumerate(_JITTER_FNS):
                    steps += _subset(fn, draw.apply & (draw.order[:, position] == k), draw.values[:, k])
        elif isinstance(op, Grayscale):
            steps += _subset(ops.to_grayscale, draw.apply, None)
        elif isinstance(op, GaussianBlur) and draw.apply.any():
            kernel = ops.blur_kernel_size(float(draw.values[draw.apply, 0].max()), op.kernel_size(size))
            steps += _subset(partial(ops.gaussian_blur, kernel_size=kernel), draw.apply, draw.values[:, 0])
    return tuple(steps)


def _buckets(sizes: list[tuple[int, int]]) -> list[Bucket]:
    """Host-side grouping of images (height, width) into padded stacks of similar size."""
    keys: dict[tuple[int, int], list[int]] = {}
    for i, (h, w) in enumerate(sizes):
        keys.setdefault((-(-h // _BUCKET_STEP), -(-w // _BUCKET_STEP)), []).append(i)
    buckets = []
    for members in keys.values():
        most = max(1, _STACK_ELEMENTS // (3 * max(sizes[i][0] for i in members) * max(sizes[i][1] for i in members)))
        for start in range(0, len(members), most):
            part = members[start:start + most]
            by_size: dict[tuple[int, int], list[int]] = {}
            for position, i in enumerate(part):
                by_size.setdefault(sizes[i], []).append(position)
            fills = () if len(by_size) == 1 else tuple((tuple(p), torch.tensor(p)) for p in by_size.values())
            index = None if part == list(range(len(sizes))) else torch.tensor(part)
            buckets.append(Bucket(tuple(part), max(sizes[i][0] for i in part), max(sizes[i][1] for i in part),
                                  index, fills))
    return buckets


def plan_views(recipe: Recipe, params: Sequence[ViewParams], sizes: torch.Tensor, size: int, device: torch.device,
               batched: bool | None = None) -> ViewPlan:
    """The host-side half of augmenting a batch: from the draws of each view of images of sizes
    (N, 2), everything `render_views` needs to make `size`-px views on `device`. `batched`
    chooses the strategy (default: per image on the CPU, batched elsewhere)."""
    if not (device.type != "cpu" if batched is None else batched):
        return PerImagePlan(size, tuple(_image_steps(recipe, p, size) for p in params))
    buckets = _buckets([tuple(hw) for hw in sizes.tolist()])
    views = tuple(BatchedView(tuple(BucketCrop(p.boxes[list(b.members)].float(), p.flip[list(b.members)])
                                    for b in buckets), colour_steps(recipe, p, size)) for p in params)
    return to_device(BatchedPlan(size, tuple(buckets), views), device)


def draw_views(recipe: Recipe, sizes: torch.Tensor, size: int, gen: torch.Generator, device: torch.device,
               batched: bool | None = None) -> ViewPlan:
    """Draw two views' parameters from `gen` (view 1 first) for images of sizes (N, 2) and plan them."""
    params = [sample_params(recipe, sizes, gen, size) for _ in range(2)]
    return plan_views(recipe, params, sizes, size, device, batched)


# -- one transfer per plan --------------------------------------------------------------------------

def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, tuple):
        for item in obj:
            yield from _tensors(item)
    elif is_dataclass(obj):
        for f in fields(obj):
            yield from _tensors(getattr(obj, f.name))


def _rebuild(obj: Any, moved: Iterator[torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return next(moved)
    if isinstance(obj, tuple):
        return tuple(_rebuild(item, moved) for item in obj)
    if is_dataclass(obj):
        return replace(obj, **{f.name: _rebuild(getattr(obj, f.name), moved) for f in fields(obj)})
    return obj


def to_device(obj: Any, device: torch.device) -> Any:
    """`obj` (tensors, tuples and dataclasses of them) with every CPU tensor moved to `device` in
    one host-to-device transfer: the tensors are laid end to end in one pinned byte buffer (on
    CUDA), copied without blocking, and rebuilt as views of the device copy."""
    tensors = list(_tensors(obj))
    if device.type == "cpu" or not tensors:
        return obj
    spans, offset = [], 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        spans.append((offset, nbytes))
        offset += -(-nbytes // _ALIGN) * _ALIGN
    host = torch.empty(offset, dtype=torch.uint8, pin_memory=device.type == "cuda")
    for t, (start, nbytes) in zip(tensors, spans):
        host[start:start + nbytes].view(t.dtype).view(t.shape).copy_(t)
    buffer = host.to(device, non_blocking=True)
    return _rebuild(obj, (buffer[start:start + nbytes].view(t.dtype).view(t.shape)
                          for t, (start, nbytes) in zip(tensors, spans)))


# -- the device work ------------------------------------------------------------------------------

def _apply_steps(x: torch.Tensor, steps: Sequence[ColourStep], owned: bool = False) -> torch.Tensor:
    """Run colour steps on x; a subset's result is written into x only once x is a tensor made here
    (or `owned`), so the caller's tensor is never changed."""
    for step in steps:
        args = () if step.arg is None else (step.arg,)
        if step.index is None:
            x = step.fn(x, *args)
        elif owned:
            x.index_copy_(0, step.index, step.fn(x[step.index], *args))
        else:
            x = x.index_copy(0, step.index, step.fn(x[step.index], *args))
        owned = True
    return x


def _quantise(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] to the nearest of the 256 uint8 levels, still as float 0-255."""
    return x.mul_(255).round_().clamp_(0, 255)


def _render_per_image(images: Sequence[torch.Tensor], plan: PerImagePlan) -> torch.Tensor:
    size, device = plan.size, images[0].device
    out = torch.empty((len(plan.views), len(images), size, size, 3), dtype=torch.uint8, device=device)
    pixels = torch.empty((size, size, 3), device=device)  # on a CPU, transposing float then casting beats both at once
    for v, steps in enumerate(plan.views):
        for i, (image, step) in enumerate(zip(images, steps)):
            view = ops.crop_resize(image, *step.box, step.flip, size)
            if not step.colour:
                out[v, i].copy_(view.permute(1, 2, 0))
                continue
            x = torch.empty((1, 3, size, size), device=device).copy_(view).div_(255)
            for fn, arg in step.colour:
                x = fn(x) if arg is None else fn(x, arg)
            out[v, i].copy_(pixels.copy_(_quantise(x)[0].permute(1, 2, 0)))
    return out.permute(0, 1, 4, 2, 3)


def _stack(images: Sequence[torch.Tensor], bucket: Bucket) -> torch.Tensor:
    members = [images[i] for i in bucket.members]
    if not bucket.fills:
        return torch.stack(members)
    stack = torch.empty((len(members), 3, bucket.height, bucket.width), dtype=torch.uint8, device=members[0].device)
    for positions, index in bucket.fills:
        h, w = members[positions[0]].shape[-2:]
        stack[index, :, :h, :w] = torch.stack([members[p] for p in positions])
    return stack


def _render_batched(images: Sequence[torch.Tensor], plan: BatchedPlan) -> torch.Tensor:
    size = plan.size
    out = torch.empty((len(plan.views), len(images), size, size, 3), dtype=torch.uint8, device=images[0].device)
    views = out.permute(0, 1, 4, 2, 3)
    for b, bucket in enumerate(plan.buckets):
        stack = _stack(images, bucket).float()
        for view, vp in zip(views, plan.views):
            crop = ops.resample(stack, vp.crops[b].boxes, vp.crops[b].flips, size).round_().clamp_(0, 255)
            if bucket.index is None:
                view.copy_(crop)
            else:
                view.index_copy_(0, bucket.index, crop.to(torch.uint8))
    for view, vp in zip(views, plan.views):
        if vp.colour:
            view.copy_(_quantise(_apply_steps(view.float().div_(255), vp.colour, owned=True)))
    return views


def render_views(images: Sequence[torch.Tensor], plan: ViewPlan) -> torch.Tensor:
    """The device half of augmenting a batch: uint8 views (V, N, 3, size, size) of decoded uint8
    images (3, H_i, W_i) as `plan` says, each view channels_last, all V views in one buffer."""
    if isinstance(plan, PerImagePlan):
        return _render_per_image(images, plan)
    return _render_batched(images, plan)


def apply_colour(x: torch.Tensor, recipe: Recipe, params: ViewParams) -> torch.Tensor:
    """Apply the recipe's colour ops to float images x (N, 3, S, S) in [0, 1] with their draws,
    on x's device (one transfer of the draws, no host syncs)."""
    return _apply_steps(x, to_device(colour_steps(recipe, params, x.shape[-1]), x.device))


def image_sizes(images: list[torch.Tensor]) -> torch.Tensor:
    """(N, 2) = (height, width) of decoded images (3, H, W)."""
    return torch.tensor([tuple(img.shape[-2:]) for img in images], dtype=torch.long).reshape(-1, 2)


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


def to_float(views: torch.Tensor, normalize: Normalize | None, channels_last: bool = True) -> torch.Tensor:
    """uint8 views (N, 3, H, W) as float32 in [0, 1], then normalised if the recipe says so."""
    mean, std = (normalize.mean, normalize.std) if normalize is not None else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    if channels_last:  # as (N, H, W, 3) rows, so that the per-channel constants broadcast along whole pixel rows
        source = views.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        shift, scale = _affine(mean, std, views.device, views.shape[-1])
    else:
        source = views.contiguous()
        shift, scale = _affine(mean, std, views.device, 0)
    out = _fresh_float(tuple(source.shape), views.device).copy_(source).sub_(shift).mul_(scale)
    return out.permute(0, 3, 1, 2) if channels_last else out
