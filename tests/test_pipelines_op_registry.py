"""Augmentation ops as objects: every registered op round-trips through a recipe, stages place
ops, and any op's probability may differ between the two views."""
import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from fastinv.errors import UsageError
from fastinv.pipelines import LoaderConfig, Recipe, build_two_view_loader, recipe_from_dict
from fastinv.pipelines.augment import sample_params
from fastinv.pipelines.ops import COLOUR, CROP, FLIP, NORMALIZE, OPS, Op


@pytest.mark.parametrize("name", OPS.names())
def test_every_registered_op_round_trips_through_a_recipe(name):
    recipe = recipe_from_dict({"name": name, "ops": [{"op": name}]})
    assert recipe.ops[0].name == name and recipe_from_dict(recipe.to_dict()) == recipe
    sizes = torch.tensor([[40, 50], [30, 30]])
    params = sample_params(recipe, sizes, torch.Generator().manual_seed(0), 16)
    assert params.boxes.shape == (2, 4) and params.flip.shape == (2,)
    assert len(params.colour) == len(recipe.colour_ops)


def test_steps_run_stage_by_stage_with_the_stage_defaults():
    recipe = recipe_from_dict({"ops": [{"op": "grayscale"}, {"op": "horizontal_flip"}, {"op": "gaussian_blur"}]})
    assert [op.name for op in recipe.ops] == ["grayscale", "horizontal_flip", "gaussian_blur"]
    assert [op.stage for op in recipe.steps] == [CROP, FLIP, COLOUR, COLOUR]
    assert [op.name for op in recipe.steps][1:] == ["horizontal_flip", "grayscale", "gaussian_blur"]
    bare = Recipe("bare", ())
    assert [op.stage for op in bare.steps] == [CROP, FLIP] and bare.flip is None and bare.crop is None
    assert recipe_from_dict({"ops": [{"op": "normalize"}]}).steps[-1].stage == NORMALIZE


@pytest.mark.parametrize("p, message", [([0.5, 1.5], "probability"), ([0.1, 0.2, 0.3], "pair"),
                                        ("often", "probability")])
def test_bad_per_view_probabilities_say_what_is_wrong(p, message):
    with pytest.raises(UsageError, match=f"grayscale.p must be a .*{message}"):
        recipe_from_dict({"ops": [{"op": "grayscale", "p": p}]})


def test_a_pair_of_equal_probabilities_draws_as_the_number_does():
    sizes = torch.tensor([[60, 80]] * 32)
    scalar = recipe_from_dict({"ops": [{"op": "random_resized_crop"}, {"op": "horizontal_flip", "p": 0.3},
                                       {"op": "color_jitter", "p": 0.6}, {"op": "gaussian_blur", "p": 0.4}]})
    pairs = recipe_from_dict({"ops": [{"op": "random_resized_crop"}, {"op": "horizontal_flip", "p": [0.3, 0.3]},
                                      {"op": "color_jitter", "p": [0.6, 0.6]},
                                      {"op": "gaussian_blur", "p": [0.4, 0.4]}]})
    for view in (0, 1):
        a = sample_params(scalar, sizes, torch.Generator().manual_seed(1), 24, view)
        b = sample_params(pairs, sizes, torch.Generator().manual_seed(1), 24, view)
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.flip, b.flip)
        for x, y in zip(a.colour, b.colour):
            assert torch.equal(x.apply, y.apply) and torch.equal(x.values, y.values)


def test_each_view_fires_at_its_own_rate():
    recipe = recipe_from_dict({"ops": [{"op": "horizontal_flip", "p": [0.9, 0.1]}, {"op": "grayscale", "p": [0.2, 0.7]},
                                       {"op": "gaussian_blur", "p": [1.0, 0.0]}]})
    n = 20000
    gen = torch.Generator().manual_seed(4)
    first, second = (sample_params(recipe, torch.tensor([[32, 32]] * n), gen, 32, view) for view in (0, 1))
    tol = 4 * math.sqrt(0.25 / n)
    for params, (flip, gray, blur) in ((first, (0.9, 0.2, 1.0)), (second, (0.1, 0.7, 0.0))):
        assert abs(params.flip.double().mean() - flip) < tol
        assert abs(params.colour[0].apply.double().mean() - gray) < tol
        assert params.colour[1].apply.double().mean() == blur


def test_the_loader_applies_each_views_own_probability(tiny_world):
    recipe = recipe_from_dict({"name": "grey first", "ops": [{"op": "grayscale", "p": [1.0, 0.0]}]})
    cfg = LoaderConfig(root=tiny_world / "trainset", recipe=recipe, batch_size=8, workers=0, image_size=16,
                       output="uint8")
    batch = next(iter(build_two_view_loader(cfg)))
    assert (_colourfulness(batch.view1) <= 1).all() and (_colourfulness(batch.view2) > 10).all()


def _colourfulness(views: torch.Tensor) -> torch.Tensor:
    """Per image, the largest spread between a pixel's channels (0 for a grey image)."""
    views = views.int()
    return (views.amax(dim=1) - views.amin(dim=1)).amax(dim=(1, 2))


@dataclass(frozen=True)
class _Posterize(Op):
    """An op with torch forms only (not registered): the DALI loader must refuse it."""

    p: float = 1.0
    name: ClassVar[str] = "posterize"
    stage: ClassVar = COLOUR


def test_the_dali_loader_refuses_an_op_without_a_dali_form(tiny_world):
    pytest.importorskip("nvidia.dali", reason="the dali extra is not installed")
    cfg = LoaderConfig(root=tiny_world / "trainset", backend="dali", recipe=Recipe("poster", (_Posterize(),)),
                       batch_size=4, workers=1, image_size=16)
    with pytest.raises(UsageError, match="op posterize has no DALI form; use --loader torch or ffcv"):
        build_two_view_loader(cfg)
