"""Per-image random parameters of a recipe, and the torch implementation that applies them.

`sample_params` is the single source of randomness for the torch and DALI backends: it draws,
from one CPU generator, every parameter of every image of a view in a fixed pattern (all
numbers are drawn whether an op fires or not), so a batch's draws depend only on its generator.
"""
from dataclasses import dataclass

import torch

from fastinv.pipelines import ops
from fastinv.pipelines.recipes import (ColorJitter, ColourOp, GaussianBlur, Grayscale, Normalize, RandomResizedCrop,
                                       Recipe, ResizeCenterCrop)

_CROP_ATTEMPTS = 10
CPU_BLOCK = 4
JITTER_STEPS = ("brightness", "contrast", "saturation", "hue")


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


def _draw_colour(op: ColourOp, n: int, gen: torch.Generator) -> OpDraw:
    apply = torch.rand(n, generator=gen, dtype=torch.float64) < op.p
    if isinstance(op, ColorJitter):
        values = torch.stack([_uniform(gen, (n,), low, high) for low, high in op.ranges()], dim=1)
        keys = torch.rand((n, len(JITTER_STEPS)), generator=gen)
        order = keys.argsort(dim=1) if op.random_order else torch.arange(len(JITTER_STEPS)).expand(n, -1)
        return OpDraw(apply, values.float(), order)
    if isinstance(op, GaussianBlur):
        return OpDraw(apply, _uniform(gen, (n, 1), *op.sigma).float())
    return OpDraw(apply, torch.zeros((n, 0)))


def sample_params(recipe: Recipe, sizes: torch.Tensor, gen: torch.Generator) -> ViewParams:
    """Draw one view's parameters for images of sizes (N, 2) = (height, width), on the CPU."""
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
    return ViewParams(boxes, flip, tuple(_draw_colour(op, n, gen) for op in recipe.colour_ops))


_JITTER_FNS = (ops.adjust_brightness, ops.adjust_contrast, ops.adjust_saturation, ops.adjust_hue)


def _on_subset(x: torch.Tensor, idx: torch.Tensor, fn, *args: torch.Tensor) -> torch.Tensor:
    if idx.numel() == 0:
        return x
    if idx.numel() == x.shape[0]:
        return fn(x, *args)
    out = x.clone()
    out[idx] = fn(x[idx], *(a[idx] for a in args))
    return out


def _jitter_per_image(x: torch.Tensor, draw: OpDraw) -> torch.Tensor:
    """Colour jitter image by image in each one's own order: for small CPU blocks, where
    gathering per-op subsets costs more than the ops."""
    fires, order = draw.apply.tolist(), draw.order.tolist()
    values = draw.values.to(x.device)
    rows = []
    for i in range(x.shape[0]):
        row = x[i:i + 1]
        if fires[i]:
            for k in order[i]:
                row = _JITTER_FNS[k](row, values[i:i + 1, k])
        rows.append(row)
    return torch.cat(rows)


def _jitter_by_subset(x: torch.Tensor, draw: OpDraw) -> torch.Tensor:
    """Colour jitter on a whole batch: at each of the 4 steps, each op runs once on the images
    that take it at that step (16 batched calls, whatever the batch size: for accelerators)."""
    fires, order, values = draw.apply.to(x.device), draw.order.to(x.device), draw.values.to(x.device)
    for step in range(len(JITTER_STEPS)):
        for k, fn in enumerate(_JITTER_FNS):
            idx = (fires & (order[:, step] == k)).nonzero().flatten()
            x = _on_subset(x, idx, fn, values[:, k])
    return x


def apply_colour(x: torch.Tensor, recipe: Recipe, params: ViewParams) -> torch.Tensor:
    """Apply the recipe's colour ops to float images x (N, 3, S, S) in [0, 1] with their draws."""
    size = x.shape[-1]
    for op, draw in zip(recipe.colour_ops, params.colour):
        idx = draw.apply.to(x.device).nonzero().flatten()
        if isinstance(op, ColorJitter):
            x = _jitter_per_image(x, draw) if x.shape[0] <= CPU_BLOCK else _jitter_by_subset(x, draw)
        elif isinstance(op, Grayscale):
            x = _on_subset(x, idx, ops.to_grayscale)
        elif isinstance(op, GaussianBlur):
            x = _on_subset(x, idx, lambda t, s: ops.gaussian_blur(t, s, op.kernel_size(size)),
                           draw.values[:, 0].to(x.device))
    return x


def _chunk(params: ViewParams, start: int, stop: int) -> ViewParams:
    colour = tuple(OpDraw(d.apply[start:stop], d.values[start:stop], None if d.order is None else d.order[start:stop])
                   for d in params.colour)
    return ViewParams(params.boxes[start:stop], params.flip[start:stop], colour)


def augment_view(images: list[torch.Tensor], recipe: Recipe, params: ViewParams, size: int) -> torch.Tensor:
    """One augmented view of decoded uint8 images (3, H_i, W_i): (N, 3, size, size) uint8, channels_last.

    The colour ops are memory-bound: on the CPU they run on blocks of CPU_BLOCK images that stay
    in cache (about 4x faster than whole-batch passes on a 2-core machine); elsewhere on the
    whole batch at once."""
    device = images[0].device
    view = ops.crop_resize(images, params.boxes.to(device), params.flip, size)
    if not recipe.colour_ops:
        return view
    block = CPU_BLOCK if device.type == "cpu" else len(images)
    for start in range(0, len(images), block):
        stop = min(start + block, len(images))
        x = apply_colour(view[start:stop].float().div_(255).contiguous(), recipe, _chunk(params, start, stop))
        view[start:stop] = x.mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    return view


def image_sizes(images: list[torch.Tensor]) -> torch.Tensor:
    """(N, 2) = (height, width) of decoded images (3, H, W)."""
    return torch.tensor([tuple(img.shape[-2:]) for img in images], dtype=torch.long).reshape(-1, 2)


def to_float(views: torch.Tensor, normalize: Normalize | None, channels_last: bool = True) -> torch.Tensor:
    """uint8 views (N, 3, H, W) as float32 in [0, 1], then normalised if the recipe says so."""
    mean, std = (normalize.mean, normalize.std) if normalize is not None else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    shift = torch.tensor([255.0 * m for m in mean], device=views.device).view(1, 3, 1, 1)
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=views.device).view(1, 3, 1, 1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.sub(views.contiguous(memory_format=fmt), shift).mul_(scale)  # one cast-and-shift pass, one scale
