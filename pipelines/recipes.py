"""Augmentation recipes as data: typed op specs, the paper's three presets, user recipes from files.

A recipe is an ordered list of ops. The output size is not part of a recipe (the loader's
`image_size` sets it), so one recipe serves every resolution. Every backend compiles the same
list; the random parameters of each op are drawn per image (see `augment.sample_params`).

Rules a recipe must follow (checked by `Recipe.__post_init__`):
- at most one crop op (`random_resized_crop` or `resize_center_crop`) and, if present, it comes
  first; without one the whole image is resized to the output size (aspect ratio not kept);
- at most one `horizontal_flip` (position free: the colour ops commute with a flip);
- `color_jitter`, `grayscale`, `gaussian_blur` run in the listed order, each at most once;
- at most one `normalize`, last; float output without it is just scaled to [0, 1].

Colour ops run on the output-size image, after the crop. Blur sigmas are therefore in output
pixels after a `random_resized_crop` (as in the reference, which crops first), but in source
pixels when the recipe resizes the whole image (`resize_center_crop`, or no crop op): the
reference Appearance recipe blurs the full-resolution image and only then resizes, so the drawn
sigma is scaled by output size / the image's shorter side (SPEC 1; `augment.sample_params`).
"""
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Union

import yaml

from fastinv.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(value: Any, what: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a pair [low, high], got {value!r}") from None
    if not low <= high:
        raise UsageError(f"{what} must have low <= high, got {value!r}")
    return low, high


def _probability(p: float, what: str) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise UsageError(f"{what} must be a probability in [0, 1], got {p!r}")
    return float(p)


@dataclass(frozen=True)
class RandomResizedCrop:
    """Crop a random region (area fraction in `scale`, aspect ratio w/h in `ratio`) and resize it."""

    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    name: ClassVar[str] = "random_resized_crop"

    def __post_init__(self) -> None:
        scale, ratio = _pair(self.scale, "random_resized_crop.scale"), _pair(self.ratio, "random_resized_crop.ratio")
        if not 0 < scale[0] <= 1 or scale[1] > 1:
            raise UsageError(f"random_resized_crop.scale must lie in (0, 1], got {self.scale!r}")
        if ratio[0] <= 0:
            raise UsageError(f"random_resized_crop.ratio must be positive, got {self.ratio!r}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "ratio", ratio)


@dataclass(frozen=True)
class ResizeCenterCrop:
    """Resize the shorter side to the output size, then take the central square (no randomness)."""

    name: ClassVar[str] = "resize_center_crop"


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror the image left-right with probability `p`."""

    p: float = 0.5
    name: ClassVar[str] = "horizontal_flip"

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _probability(self.p, "horizontal_flip.p"))


@dataclass(frozen=True)
class ColorJitter:
    """With probability `p`, jitter brightness/contrast/saturation (factor in [1-x, 1+x]) and hue
    (shift in [-hue, hue] of a full turn), in a random order per image when `random_order`."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    p: float = 0.8
    random_order: bool = True
    name: ClassVar[str] = "color_jitter"

    def __post_init__(self) -> None:
        for key in ("brightness", "contrast", "saturation"):
            if not float(getattr(self, key)) >= 0:
                raise UsageError(f"color_jitter.{key} must be >= 0, got {getattr(self, key)!r}")
        if not 0 <= float(self.hue) <= 0.5:
            raise UsageError(f"color_jitter.hue must lie in [0, 0.5], got {self.hue!r}")
        object.__setattr__(self, "p", _probability(self.p, "color_jitter.p"))

    def ranges(self) -> tuple[tuple[float, float], ...]:
        """Sampling ranges of the four factors: brightness, contrast, saturation (multipliers), hue (shift)."""
        mult = [(max(0.0, 1 - float(x)), 1 + float(x)) for x in (self.brightness, self.contrast, self.saturation)]
        return (*mult, (-float(self.hue), float(self.hue)))


@dataclass(frozen=True)
class Grayscale:
    """With probability `p`, replace the image by its luma (ITU-R 601-2), kept as 3 channels."""

    p: float = 0.2
    name: ClassVar[str] = "grayscale"

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _probability(self.p, "grayscale.p"))


@dataclass(frozen=True)
class GaussianBlur:
    """With probability `p`, blur with sigma ~ U[sigma] pixels: of the output image after a
    random_resized_crop, of the source image otherwise (see the module docstring).

    Kernel size follows the SimCLR / MoCo-v2 GPU convention: `kernel_fraction` (10%) of the
    output side, rounded to the nearest odd integer >= 3 (23 px at 224, 7 at 64); the torch
    backend leaves out taps beyond 4 sigma, which weigh under e^-8 of the centre tap."""

    sigma: tuple[float, float] = (0.1, 2.0)
    p: float = 0.5
    kernel_fraction: float = 0.1
    name: ClassVar[str] = "gaussian_blur"

    def __post_init__(self) -> None:
        sigma = _pair(self.sigma, "gaussian_blur.sigma")
        if sigma[0] <= 0:
            raise UsageError(f"gaussian_blur.sigma must be positive, got {self.sigma!r}")
        if not 0 < float(self.kernel_fraction) <= 1:
            raise UsageError(f"gaussian_blur.kernel_fraction must lie in (0, 1], got {self.kernel_fraction!r}")
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "p", _probability(self.p, "gaussian_blur.p"))

    def kernel_size(self, image_size: int) -> int:
        """Odd kernel side in pixels for an output of `image_size` pixels."""
        k = max(3, int(round(self.kernel_fraction * image_size)))
        return k if k % 2 == 1 else k + 1


@dataclass(frozen=True)
class Normalize:
    """Subtract `mean` and divide by `std` per channel (on values in [0, 1]); float output only."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    name: ClassVar[str] = "normalize"

    def __post_init__(self) -> None:
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise UsageError(f"normalize needs 3 means and 3 positive stds, got {self.mean!r}, {self.std!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)


Op = Union[RandomResizedCrop, ResizeCenterCrop, HorizontalFlip, ColorJitter, Grayscale, GaussianBlur, Normalize]
CropOp = Union[RandomResizedCrop, ResizeCenterCrop]
ColourOp = Union[ColorJitter, Grayscale, GaussianBlur]
OP_TYPES: dict[str, type] = {cls.name: cls for cls in
                             (RandomResizedCrop, ResizeCenterCrop, HorizontalFlip, ColorJitter, Grayscale,
                              GaussianBlur, Normalize)}
_CROPS = (RandomResizedCrop, ResizeCenterCrop)
_COLOURS = (ColorJitter, Grayscale, GaussianBlur)


@dataclass(frozen=True)
class Recipe:
    """A named, validated list of augmentation ops (see the module docstring for the rules)."""

    name: str
    ops: tuple[Op, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        object.__setattr__(self, "ops", ops)
        for i, op in enumerate(ops):
            if not isinstance(op, tuple(OP_TYPES.values())):
                raise UsageError(f"recipe {self.name!r}: op {i} is {op!r}, not one of: {', '.join(OP_TYPES)}")
        for cls in OP_TYPES.values():
            if sum(isinstance(op, cls) for op in ops) > 1:
                raise UsageError(f"recipe {self.name!r}: {cls.name} appears more than once")
        crops = [i for i, op in enumerate(ops) if isinstance(op, _CROPS)]
        if len(crops) > 1 or (crops and crops[0] != 0):
            raise UsageError(f"recipe {self.name!r}: one crop op at most, and it must come first")
        norms = [i for i, op in enumerate(ops) if isinstance(op, Normalize)]
        if norms and norms[0] != len(ops) - 1:
            raise UsageError(f"recipe {self.name!r}: normalize must be the last op")

    @property
    def crop(self) -> CropOp | None:
        """The crop op, or None (then the whole image is resized)."""
        return next((op for op in self.ops if isinstance(op, _CROPS)), None)

    @property
    def flip(self) -> HorizontalFlip | None:
        """The flip op, or None."""
        return next((op for op in self.ops if isinstance(op, HorizontalFlip)), None)

    @property
    def colour_ops(self) -> tuple[ColourOp, ...]:
        """Jitter, grayscale and blur ops in the order they run."""
        return tuple(op for op in self.ops if isinstance(op, _COLOURS))

    @property
    def normalize(self) -> Normalize | None:
        """The normalisation op, or None."""
        return next((op for op in self.ops if isinstance(op, Normalize)), None)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data, the inverse of `recipe_from_dict`."""
        return {"name": self.name, "ops": [{"op": op.name, **{k: list(v) if isinstance(v, tuple) else v
                                                              for k, v in asdict(op).items()}} for op in self.ops]}


RECIPES: dict[str, Recipe] = {
    "default": Recipe("default", (RandomResizedCrop(), HorizontalFlip(), ColorJitter(), Grayscale(),
                                  GaussianBlur(), Normalize())),
    "spatial": Recipe("spatial", (RandomResizedCrop(), HorizontalFlip(), Normalize())),
    "appearance": Recipe("appearance", (ResizeCenterCrop(), ColorJitter(), Grayscale(), GaussianBlur(), Normalize())),
}


def op_from_dict(spec: dict[str, Any]) -> Op:
    """Build one op from `{"op": NAME, **params}`; raise UsageError listing valid names or params."""
    if not isinstance(spec, dict) or "op" not in spec:
        raise UsageError(f"each recipe op must be a mapping with an 'op' key, got {spec!r}")
    params = dict(spec)
    name = params.pop("op")
    if name not in OP_TYPES:
        raise UsageError(f"unknown augmentation op {name!r}; valid: {', '.join(OP_TYPES)}")
    cls = OP_TYPES[name]
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UsageError(f"op {name!r} has no parameter {', '.join(unknown)}; valid: {', '.join(valid) or 'none'}")
    return cls(**params)


def recipe_from_dict(data: dict[str, Any], default_name: str = "custom") -> Recipe:
    """Build a recipe from `{"name": ..., "ops": [{"op": ..., ...}, ...]}` (or a bare op list)."""
    if isinstance(data, list):
        data = {"ops": data}
    if not isinstance(data, dict) or not isinstance(data.get("ops"), list):
        raise UsageError("a recipe must be a mapping with an 'ops' list (or a list of ops)")
    extra = sorted(set(data) - {"name", "ops"})
    if extra:
        raise UsageError(f"recipe has unknown keys {', '.join(extra)}; valid: name, ops")
    return Recipe(str(data.get("name", default_name)), tuple(op_from_dict(op) for op in data["ops"]))


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe from a .yaml/.yml/.json file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"recipe file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"recipe file {path}: not valid {path.suffix[1:]} ({str(exc).splitlines()[0]})") from None
    return recipe_from_dict(data, default_name=path.stem)


def get_recipe(recipe: "str | Path | Recipe") -> Recipe:
    """Resolve a preset name, a Recipe, or a path to a .yaml/.yml/.json recipe file."""
    if isinstance(recipe, Recipe):
        return recipe
    text = str(recipe)
    if text in RECIPES:
        return RECIPES[text]
    if Path(text).suffix in (".yaml", ".yml", ".json"):
        return load_recipe(text)
    raise UsageError(f"unknown recipe {text!r}; valid: {', '.join(RECIPES)}, or a .yaml/.json recipe file")

