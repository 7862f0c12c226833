"""What every augmentation op shares: its stage, the registry that finds it by name, the draw
container, and the whole-batch step the batched strategy runs.

An op is a frozen dataclass of its parameters (what a recipe file names) with a small contract:
`draw` makes its per-image random parameters for one view from the batch's CPU generator;
colour ops also turn those draws into per-image steps (`image_steps`, the CPU strategy) and
whole-batch steps (`batch_steps`, the accelerator strategy); `dali_inputs` and `dali` give its
form in a DALI graph. The backends own buffers and layouts; an op only says what to compute.
"""
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from fastinv.errors import UsageError
from fastinv.registry import Registry


@dataclass(frozen=True)
class Stage:
    """Where ops of one kind sit in a recipe and run in a batch.

    `rank` orders the stages (ops draw and run stage by stage, in listed order within one);
    `place` is "first", "last" or "any" (where the op may be listed); `single`: at most one op of
    this stage per recipe."""

    name: str
    rank: int
    place: str = "any"
    single: bool = False


CROP = Stage("crop", 0, place="first", single=True)
FLIP = Stage("flip", 1, single=True)
COLOUR = Stage("colour", 2)
NORMALIZE = Stage("normalize", 3, place="last", single=True)

OPS: Registry[type["Op"]] = Registry("augmentation op")
_DEFAULTS: dict[Stage, "Op"] = {}


def register_op(cls: type["Op"]) -> type["Op"]:
    """Class decorator: make the op findable by its `name` in recipe files."""
    return OPS.register(cls.name, cls)


def register_default(op: "Op") -> "Op":
    """Make `op` what a recipe without an op of `op.stage` runs in its place."""
    _DEFAULTS[op.stage] = op
    return op


def stage_defaults() -> tuple["Op", ...]:
    """The op each stage runs when a recipe lists none of that stage (stages without one do nothing)."""
    return tuple(_DEFAULTS.values())


def pair(value: Any, what: str) -> tuple[float, float]:
    """`value` as a (low, high) pair of floats; UsageError naming `what` otherwise."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a pair [low, high], got {value!r}") from None
    if not low <= high:
        raise UsageError(f"{what} must have low <= high, got {value!r}")
    return low, high


def _probability(p: Any, what: str) -> float:
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a probability in [0, 1], got {p!r}") from None
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{what} must be a probability in [0, 1], got {p!r}")
    return value


def per_view_probability(p: Any, what: str) -> float | tuple[float, float]:
    """A probability for both views (a number) or one per view ([view 1, view 2]), validated."""
    if isinstance(p, (list, tuple)):
        if len(p) != 2:
            raise UsageError(f"{what} must be a probability or a pair [view 1, view 2], got {p!r}")
        first, second = (_probability(v, what) for v in p)
        return (first, second)
    return _probability(p, what)


def uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    """float64 draws ~ U[low, high) of `shape` from `gen`."""
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


@dataclass(frozen=True)
class DrawContext:
    """What an op's draw may look at for one view of N images: the generator, the images' sizes
    (N, 2) = (height, width), the view (0 or 1), and the factor (float or (N, 1)) from source to
    output pixels for ops whose parameters are in source pixels (1.0 after a random crop)."""

    gen: torch.Generator
    sizes: torch.Tensor
    view: int
    source_scale: torch.Tensor | float = 1.0

    @property
    def n(self) -> int:
        """Images in the view."""
        return self.sizes.shape[0]


@dataclass(frozen=True)
class OpDraw:
    """Draws of one op for N images: whether it fires (N,), its values (N, k), and for colour
    jitter the per-image order (N, 4) of its steps."""

    apply: torch.Tensor
    values: torch.Tensor
    order: torch.Tensor | None = None

    def __getitem__(self, rows: slice) -> "OpDraw":
        """The draws of the images at `rows`."""
        return OpDraw(self.apply[rows], self.values[rows], None if self.order is None else self.order[rows])


@dataclass(frozen=True)
class ColourStep:
    """One colour op run once for a batch: `fn` on the images at `index` (a device tensor; None:
    every image) with their parameters `arg` (None for an op without one)."""

    fn: Callable[..., torch.Tensor]
    index: torch.Tensor | None
    arg: torch.Tensor | None


ImageStep = tuple[Callable[..., torch.Tensor], torch.Tensor | None]


def subset(fn: Callable[..., torch.Tensor], mask: torch.Tensor, values: torch.Tensor | None) -> list[ColourStep]:
    """`fn` as a whole-batch step on the images where the host mask (N,) is True, with their
    values (None: no parameter); no step if no image takes it."""
    index = mask.nonzero().flatten()  # host tensors: no device involved
    if index.numel() == 0:
        return []
    if index.numel() == mask.numel():
        return [ColourStep(fn, None, values)]
    return [ColourStep(fn, index, None if values is None else values[index])]


def fires_only(fn: Callable[..., torch.Tensor], draw: OpDraw) -> list[list[ImageStep]]:
    """Per image, `fn` without a parameter where the op fires, else nothing."""
    return [[(fn, None)] if fire else [] for fire in draw.apply.tolist()]


@dataclass(frozen=True)
class DaliView:
    """One view's DALI graph as the ops build it: the image node, the mirror flags and the
    mean / std (0-255 units) of the final `crop_mirror_normalize`, and DALI's `fn` and `types`."""

    img: Any
    fn: Any
    types: Any
    size: int
    uint8: bool
    mirror: Any = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (255.0, 255.0, 255.0)


class Op:
    """Base of every augmentation op (subclasses are frozen dataclasses; see the module docstring)."""

    name: ClassVar[str]
    stage: ClassVar[Stage]
    dali_arity: ClassVar[int] = 0  # host arrays its DALI form takes per view

    def chance(self, view: int) -> float:
        """The probability that the op fires on `view` (0 or 1)."""
        p = getattr(self, "p")
        return p[view] if isinstance(p, tuple) else p

    def fires(self, ctx: DrawContext) -> torch.Tensor:
        """Whether the op fires on each image of the view (N,) bool, one draw per image."""
        return torch.rand(ctx.n, generator=ctx.gen, dtype=torch.float64) < self.chance(ctx.view)

    def draw(self, ctx: DrawContext) -> Any:
        """This op's per-image random parameters for one view (row-indexable: a tensor or OpDraw)."""
        return torch.zeros((ctx.n, 0))

    def image_steps(self, draw: OpDraw, size: int) -> list[list[ImageStep]]:
        """Per image of a view, the (fn, arg) steps that apply the op at `size` px (CPU strategy)."""
        raise NotImplementedError(f"{self.name} is not a colour op")

    def batch_steps(self, draw: OpDraw, size: int) -> list[ColourStep]:
        """The op as whole-batch steps on the images that take it (host tensors; accelerator strategy)."""
        raise NotImplementedError(f"{self.name} is not a colour op")

    def dali_inputs(self, draw: Any, size: int) -> list[np.ndarray]:
        """The host arrays its DALI form is fed for one view (`dali_arity` of them)."""
        return []

    def dali(self, view: DaliView, inputs: Sequence[Any]) -> DaliView:
        """The view's DALI graph with this op added, from its fed inputs (ops without a DALI form
        leave this out; the DALI loader then refuses recipes that use them)."""
        raise NotImplementedError(f"{self.name} has no DALI form")
