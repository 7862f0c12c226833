"""Augmentation recipes as data: a validated list of ops, the paper's three presets, user recipes from files.

A recipe is an ordered list of ops (`fastinv.pipelines.ops`, one module per op, found by name).
The output size is not part of a recipe (the loader's `image_size` sets it), so one recipe serves
every resolution. Every backend runs the same list; the random parameters of each op are drawn
per image (see `augment.sample_params`).

Where an op may sit is a property of its stage (`ops.Stage`), checked by `Recipe.__post_init__`:
- each op at most once;
- crop (`random_resized_crop` or `resize_center_crop`): at most one, first; without one the whole
  image is resized to the output size (aspect ratio not kept);
- flip (`horizontal_flip`): at most one, anywhere (the colour ops commute with a flip);
- colour ops (`color_jitter`, `grayscale`, `gaussian_blur`, ...) run in the listed order;
- `normalize`: at most one, last; float output without it is just scaled to [0, 1].

Any op's probability `p` may be one number (both views) or a pair [view 1, view 2], as BYOL's
recipe has (blur p [1.0, 0.1]).

Colour ops run on the output-size image, after the crop. Blur sigmas are therefore in output
pixels after a `random_resized_crop` (as in the reference, which crops first), but in source
pixels when the recipe resizes the whole image (`resize_center_crop`, or no crop op): the
reference Appearance recipe blurs the full-resolution image and only then resizes, so the drawn
sigma is scaled by output size / the image's shorter side (SPEC 1; `augment.sample_params`).
"""
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from fastinv.errors import UsageError
from fastinv.pipelines.ops import COLOUR, CROP, FLIP, NORMALIZE, OPS, Op, Stage, stage_defaults
from fastinv.pipelines.ops.blur import GaussianBlur
from fastinv.pipelines.ops.crop import RandomResizedCrop, ResizeCenterCrop
from fastinv.pipelines.ops.flip import HorizontalFlip
from fastinv.pipelines.ops.grayscale import Grayscale
from fastinv.pipelines.ops.jitter import ColorJitter
from fastinv.pipelines.ops.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize

RECIPE_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Recipe:
    """A named, validated list of augmentation ops (see the module docstring for the rules)."""

    name: str
    ops: tuple[Op, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        object.__setattr__(self, "ops", ops)
        for i, op in enumerate(ops):
            if not isinstance(op, Op):
                raise UsageError(f"recipe {self.name!r}: op {i} is {op!r}, not one of: {', '.join(OPS.names())}")
        names = [op.name for op in ops]
        for name in names:
            if names.count(name) > 1:
                raise UsageError(f"recipe {self.name!r}: {name} appears more than once")
        for stage in sorted({op.stage for op in ops}, key=lambda s: s.rank):
            at = [i for i, op in enumerate(ops) if op.stage == stage]
            if stage.place == "first" and (len(at) > 1 or at[0] != 0):
                raise UsageError(f"recipe {self.name!r}: one {stage.name} op at most, and it must come first")
            if stage.place == "last" and at[-1] != len(ops) - 1:
                raise UsageError(f"recipe {self.name!r}: {ops[at[-1]].name} must be the last op")
            if stage.single and len(at) > 1:
                raise UsageError(f"recipe {self.name!r}: one {stage.name} op at most, got {len(at)}")

    def _one(self, stage: Stage) -> Op | None:
        return next((op for op in self.ops if op.stage == stage), None)

    @property
    def crop(self) -> Op | None:
        """The crop op, or None (then the whole image is resized)."""
        return self._one(CROP)

    @property
    def flip(self) -> HorizontalFlip | None:
        """The flip op, or None."""
        return self._one(FLIP)

    @property
    def colour_ops(self) -> tuple[Op, ...]:
        """The colour ops in the order they run."""
        return tuple(op for op in self.ops if op.stage == COLOUR)

    @property
    def normalize(self) -> Normalize | None:
        """The normalisation op, or None."""
        return self._one(NORMALIZE)

    @property
    def steps(self) -> tuple[Op, ...]:
        """The ops in the order they draw and run: stage by stage, listed order within a stage,
        with each stage's default op (`ops.stage_defaults`) where the recipe lists none."""
        listed = {op.stage for op in self.ops}
        defaults = [op for op in stage_defaults() if op.stage not in listed]
        return tuple(sorted((*self.ops, *defaults), key=lambda op: op.stage.rank))

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
    cls = OPS.get(params.pop("op"))
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UsageError(f"op {cls.name!r} has no parameter {', '.join(unknown)}; valid: {', '.join(valid) or 'none'}")
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
    if Path(text).suffix in RECIPE_SUFFIXES:
        return load_recipe(text)
    raise UsageError(f"unknown recipe {text!r}; valid: {', '.join(RECIPES)}, or a .yaml/.json recipe file")


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RECIPES", "Recipe", "get_recipe", "load_recipe", "op_from_dict",
           "recipe_from_dict", "ColorJitter", "GaussianBlur", "Grayscale", "HorizontalFlip", "Normalize",
           "RandomResizedCrop", "ResizeCenterCrop"]
