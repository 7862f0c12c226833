"""Per-image random parameters of a recipe, and the torch implementation that applies them.

A batch goes through three steps, each on one side of the host / device line:

1. `sample_params` is the single source of randomness for the torch, DALI and FFCV backends: it
   asks each op of the recipe, in run order (`Recipe.steps`), for its draws of every image of a
   view from one CPU generator in a fixed pattern (all numbers are drawn whether an op fires or
   not), so a batch's draws depend only on its generator.
2. `plan_views` does everything that reads those draws on the host (which images take which
   op, crop boxes as Python numbers, images grouped by size) and moves what the device needs in
   one pinned, non-blocking transfer.
3. `render_views` is the device work. It never reads a tensor's values on the host (no
   `.item()`, `.tolist()`, `nonzero()`, mask indexing or host-to-device copies), so on an
   accelerator it only queues kernels and never waits for the device.

Two strategies give the same images (within one grey level of torchvision's per-image ops): per
image, for the CPU (torchvision's uint8 resize kernel on each crop, then each colour op's
`image_steps` image by image while the image is in cache), and batched, for accelerators (one
padded stack per size bucket, crops by resampling matmuls, each colour op's `batch_steps` once on
the images that take it).
"""
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

import torch

from fastinv.pipelines.ops import COLOUR, CROP, FLIP, Stage
from fastinv.pipelines.ops.base import ColourStep, DrawContext, ImageStep
from fastinv.pipelines.ops.crop import crop_resize, resample
from fastinv.pipelines.ops.normalize import Normalize, normalise
from fastinv.pipelines.recipes import Recipe

_BUCKET_STEP = 128  # images whose sides round up to the same multiple of this share one padded stack
_STACK_ELEMENTS = 1 << 27  # at most this many values per float stack (512 MiB): huge images go in several
_ALIGN = 8  # byte alignment of each tensor in the one host-to-device transfer of a plan
_NO_NORMALIZE = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


@dataclass(frozen=True)
class ViewParams:
    """All draws for one view of N images: one per step of the recipe (`Recipe.steps`), in that
    order, with each step's stage. `boxes` (N, 4) = (top, left, height, width) in source pixels,
    `flip` (N,) and `colour` (one OpDraw per colour op) read them by stage."""

    stages: tuple[Stage, ...]
    draws: tuple[Any, ...]

    def _one(self, stage: Stage) -> Any:
        return next(d for s, d in zip(self.stages, self.draws) if s == stage)

    @property
    def boxes(self) -> torch.Tensor:
        """Crop boxes (N, 4) long."""
        return self._one(CROP)

    @property
    def flip(self) -> torch.Tensor:
        """Mirror flags (N,) bool."""
        return self._one(FLIP)

    @property
    def colour(self) -> tuple:
        """The colour ops' draws, in recipe order."""
        return tuple(d for s, d in zip(self.stages, self.draws) if s == COLOUR)

    def __getitem__(self, rows: slice) -> "ViewParams":
        """The draws of the images at `rows`."""
        return ViewParams(self.stages, tuple(d[rows] for d in self.draws))


def sample_params(recipe: Recipe, sizes: torch.Tensor, gen: torch.Generator, size: int | None = None,
                  view: int = 0) -> ViewParams:
    """Draw the parameters of view `view` (0 or 1) for images of sizes (N, 2) = (height, width), on the CPU.

    With `size` (the output side) and a recipe that resizes the whole image (`resize_center_crop`,
    or no crop op), blur sigmas are drawn in source pixels and returned in output pixels (times
    size / the image's shorter side): the reference blurs the full image before its resize (SPEC 1).
    Without `size`, or after a `random_resized_crop`, sigmas are in output pixels."""
    sizes = sizes.long().cpu()
    steps = recipe.steps
    crop = next(op for op in steps if op.stage == CROP)
    scale: torch.Tensor | float = 1.0
    if size is not None and crop.source_pixels:
        scale = size / sizes.min(dim=1, keepdim=True).values.double()
    ctx = DrawContext(gen, sizes, view, scale)
    return ViewParams(tuple(op.stage for op in steps), tuple(op.draw(ctx) for op in steps))


# -- plans: the host-side half --------------------------------------------------------------------

@dataclass(frozen=True)
class ImageSteps:
    """One image of one view for the per-image strategy: its crop box (top, left, height, width),
    flip, and colour ops in the order they run, each with its parameter ((1,) tensor) or None."""

    box: tuple[int, int, int, int]
    flip: bool
    colour: tuple[ImageStep, ...]


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


def image_colour_steps(recipe: Recipe, params: ViewParams, size: int) -> list[tuple[ImageStep, ...]]:
    """Per image of a view of `size`-px images: its colour ops in the order they run, each op's
    `image_steps` (host side of the per-image strategy)."""
    per_op = [op.image_steps(draw, size) for op, draw in zip(recipe.colour_ops, params.colour)]
    return [tuple(step for steps in per_op for step in steps[i]) for i in range(params.flip.shape[0])]


def _image_steps(recipe: Recipe, params: ViewParams, size: int) -> tuple[ImageSteps, ...]:
    colour = image_colour_steps(recipe, params, size)
    return tuple(ImageSteps(tuple(box), bool(flip), steps)
                 for box, flip, steps in zip(params.boxes.tolist(), params.flip.tolist(), colour))


def colour_steps(recipe: Recipe, params: ViewParams, size: int) -> tuple[ColourStep, ...]:
    """The recipe's colour ops for a batch of `size`-px views as whole-batch steps (host tensors),
    each op's `batch_steps` in recipe order (colour jitter: 16 steps, one per position of its
    order and factor; grayscale and blur one each); steps no image takes are left out."""
    return tuple(step for op, draw in zip(recipe.colour_ops, params.colour) for step in op.batch_steps(draw, size))


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
    params = [sample_params(recipe, sizes, gen, size, view) for view in range(2)]
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


def colour_levels(view: torch.Tensor, steps: Sequence[ImageStep]) -> torch.Tensor:
    """One uint8 image (3, S, S), in any layout, through its colour steps in order: (1, 3, S, S)
    float of 0-255 grey levels, contiguous (the per-image strategy's colour work: the ops run on
    one planar image while it stays in cache)."""
    x = torch.empty((1, *view.shape[-3:]), device=view.device).copy_(view).div_(255)
    for fn, arg in steps:
        x = fn(x) if arg is None else fn(x, arg)
    return _quantise(x)


def view_buffer(views: int, n: int, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """An empty uint8 (views, n, 3, size, size) tensor, each view channels_last: what `render_views` fills."""
    return torch.empty((views, n, size, size, 3), dtype=torch.uint8, device=device).permute(0, 1, 4, 2, 3)


def _render_per_image(images: Sequence[torch.Tensor], plan: PerImagePlan, out: torch.Tensor) -> torch.Tensor:
    for v, steps in enumerate(plan.views):
        for i, (image, step) in enumerate(zip(images, steps)):
            view = crop_resize(image, *step.box, step.flip, plan.size)
            if not step.colour:
                out[v, i].copy_(view)
                continue
            levels = colour_levels(view, step.colour)[0]
            for channel in range(3):  # on a CPU, a plane at a time beats one transposing cast by about a third
                out[v, i, channel].copy_(levels[channel])
    return out


def _stack(images: Sequence[torch.Tensor], bucket: Bucket) -> torch.Tensor:
    members = [images[i] for i in bucket.members]
    if not bucket.fills:
        return torch.stack(members)
    stack = torch.empty((len(members), 3, bucket.height, bucket.width), dtype=torch.uint8, device=members[0].device)
    for positions, index in bucket.fills:
        h, w = members[positions[0]].shape[-2:]
        stack[index, :, :h, :w] = torch.stack([members[p] for p in positions])
    return stack


def _render_batched(images: Sequence[torch.Tensor], plan: BatchedPlan, views: torch.Tensor) -> torch.Tensor:
    size = plan.size
    for b, bucket in enumerate(plan.buckets):
        stack = _stack(images, bucket).float()
        for view, vp in zip(views, plan.views):
            crop = resample(stack, vp.crops[b].boxes, vp.crops[b].flips, size).round_().clamp_(0, 255)
            if bucket.index is None:
                view.copy_(crop)
            else:
                view.index_copy_(0, bucket.index, crop.to(torch.uint8))
    for view, vp in zip(views, plan.views):
        if vp.colour:
            view.copy_(_quantise(_apply_steps(view.float().div_(255), vp.colour, owned=True)))
    return views


def render_views(images: Sequence[torch.Tensor], plan: ViewPlan, out: torch.Tensor | None = None) -> torch.Tensor:
    """The device half of augmenting a batch: uint8 views (V, N, 3, size, size) of decoded uint8
    images (3, H_i, W_i) as `plan` says, all V views in one buffer: `out` if given (a
    `view_buffer` or any uint8 tensor of that shape), else a new `view_buffer`."""
    if out is None:
        out = view_buffer(len(plan.views), len(images), plan.size, images[0].device)
    if isinstance(plan, PerImagePlan):
        return _render_per_image(images, plan, out)
    return _render_batched(images, plan, out)


def apply_colour(x: torch.Tensor, recipe: Recipe, params: ViewParams) -> torch.Tensor:
    """Apply the recipe's colour ops to float images x (N, 3, S, S) in [0, 1] with their draws,
    on x's device (one transfer of the draws, no host syncs)."""
    return _apply_steps(x, to_device(colour_steps(recipe, params, x.shape[-1]), x.device))


def image_sizes(images: list[torch.Tensor]) -> torch.Tensor:
    """(N, 2) = (height, width) of decoded images (3, H, W)."""
    return torch.tensor([tuple(img.shape[-2:]) for img in images], dtype=torch.long).reshape(-1, 2)


def to_float(views: torch.Tensor, normalize: Normalize | None, channels_last: bool = True) -> torch.Tensor:
    """Views (N, 3, H, W) of 0-255 grey levels (uint8, or float) as float32 in [0, 1], then
    normalised if the recipe says so."""
    mean, std = (normalize.mean, normalize.std) if normalize is not None else _NO_NORMALIZE
    return normalise(views, mean, std, channels_last, levels=True)
