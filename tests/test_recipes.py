"""Recipes as data: the paper's presets, user recipes from files, and the draws they produce."""
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.transforms import RandomResizedCrop as TvRandomResizedCrop

from fastinv.errors import UsageError
from fastinv.pipelines import RECIPES, Recipe, get_recipe, recipe_from_dict
from fastinv.pipelines.augment import sample_params
from fastinv.pipelines.recipes import (ColorJitter, GaussianBlur, Grayscale, HorizontalFlip, Normalize,
                                       RandomResizedCrop, ResizeCenterCrop)


def test_presets_match_the_spec_table():
    d, s, a = RECIPES["default"], RECIPES["spatial"], RECIPES["appearance"]
    assert d.crop == RandomResizedCrop(scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3))
    assert d.flip == HorizontalFlip(0.5)
    assert d.colour_ops == (ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8, random_order=True), Grayscale(0.2),
                            GaussianBlur(sigma=(0.1, 2.0), p=0.5))
    assert d.normalize == Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert s.crop == d.crop and s.flip == d.flip and s.colour_ops == () and s.normalize == d.normalize
    assert isinstance(a.crop, ResizeCenterCrop) and a.flip is None and a.colour_ops == d.colour_ops


def test_blur_kernel_is_ten_percent_odd():
    blur = GaussianBlur()
    assert [blur.kernel_size(s) for s in (224, 64, 32, 96)] == [23, 7, 3, 11]


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UsageError, match="valid: default, spatial, appearance"):
        get_recipe("fancy")
    with pytest.raises(UsageError, match="unknown augmentation op 'sharpen'; valid: .*random_resized_crop"):
        recipe_from_dict({"ops": [{"op": "sharpen"}]})
    with pytest.raises(UsageError, match="no parameter sigmaa; valid: sigma, p, kernel_fraction"):
        recipe_from_dict({"ops": [{"op": "gaussian_blur", "sigmaa": [1, 2]}]})


@pytest.mark.parametrize("ops, message", [
    ([{"op": "horizontal_flip"}, {"op": "random_resized_crop"}], "must come first"),
    ([{"op": "normalize"}, {"op": "grayscale"}], "normalize must be the last"),
    ([{"op": "grayscale"}, {"op": "grayscale"}], "more than once"),
    ([{"op": "grayscale", "p": 1.5}], "probability"),
    ([{"op": "random_resized_crop", "scale": [0.5, 0.2]}], "low <= high"),
])
def test_invalid_recipes_say_what_is_wrong(ops, message):
    with pytest.raises(UsageError, match=message):
        recipe_from_dict({"ops": ops})


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_recipe_files_round_trip(tmp_path, suffix):
    path = tmp_path / f"mine{suffix}"
    data = {"name": "mine", "ops": [{"op": "random_resized_crop", "scale": [0.08, 1.0]},
                                    {"op": "grayscale", "p": 0.5}, {"op": "normalize"}]}
    path.write_text(json.dumps(data))  # JSON is valid YAML
    recipe = get_recipe(str(path))
    assert recipe.name == "mine" and recipe.crop.scale == (0.08, 1.0) and recipe.colour_ops == (Grayscale(0.5),)
    assert recipe_from_dict(recipe.to_dict()) == recipe
    for preset in RECIPES.values():
        assert recipe_from_dict(preset.to_dict()) == preset


def _draws(recipe: Recipe, n: int, size=(375, 500), seed=0):
    return sample_params(recipe, torch.tensor([size] * n), torch.Generator().manual_seed(seed))


def test_crop_draws_match_torchvision():
    n, (h, w) = 4000, (375, 500)
    ours = _draws(RECIPES["default"], n).boxes.double()
    torch.manual_seed(0)
    img = torch.empty(3, h, w)
    ref = torch.tensor([TvRandomResizedCrop.get_params(img, [0.2, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]).double()
    for col in range(4):  # top, left, height, width
        assert stats.ks_2samp(ours[:, col], ref[:, col]).pvalue > 1e-3
    area = ours[:, 2] * ours[:, 3] / (h * w)
    aspect = ours[:, 3] / ours[:, 2]
    ref_area = ref[:, 2] * ref[:, 3] / (h * w)  # rejection of boxes that do not fit biases areas down
    assert area.min() >= 0.19 and area.max() <= 1.0 and abs(area.mean() - ref_area.mean()) < 0.015
    assert aspect.min() >= 0.74 and aspect.max() <= 1.34
    assert (ours[:, 0] + ours[:, 2] <= h).all() and (ours[:, 1] + ours[:, 3] <= w).all()


def test_crop_fallback_and_tiny_images():
    p = _draws(RECIPES["default"], 50, size=(1, 1))
    assert (p.boxes == torch.tensor([0, 0, 1, 1])).all()
    p = _draws(RECIPES["default"], 200, size=(10, 400))  # extreme ratio: central crop fallback happens
    assert (p.boxes[:, 2] <= 10).all() and (p.boxes[:, 3] <= 400).all()
    p = _draws(RECIPES["appearance"], 3, size=(375, 500))
    assert p.boxes.tolist() == [[0, 62, 375, 375]] * 3


def test_op_rates_and_ranges():
    n = 20000
    p = _draws(RECIPES["default"], n, seed=1)
    jitter, gray, blur = p.colour
    tol = 4 * math.sqrt(0.25 / n)
    assert abs(p.flip.double().mean() - 0.5) < tol
    assert abs(jitter.apply.double().mean() - 0.8) < tol
    assert abs(gray.apply.double().mean() - 0.2) < tol
    assert abs(blur.apply.double().mean() - 0.5) < tol
    for k, (low, high) in enumerate([(0.6, 1.4)] * 3 + [(-0.1, 0.1)]):
        v = jitter.values[:, k].double()
        assert stats.kstest(v.numpy(), stats.uniform(low, high - low).cdf).pvalue > 1e-3
    assert stats.kstest(blur.values[:, 0].double().numpy(), stats.uniform(0.1, 1.9).cdf).pvalue > 1e-3
    perms, counts = np.unique(jitter.order.numpy(), axis=0, return_counts=True)
    assert len(perms) == 24 and stats.chisquare(counts).pvalue > 1e-3
    assert (np.sort(perms, axis=1) == np.arange(4)).all()


def test_draws_are_seeded():
    a, b = _draws(RECIPES["default"], 64, seed=3), _draws(RECIPES["default"], 64, seed=3)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.colour[0].values, b.colour[0].values)
    assert not torch.equal(a.boxes, _draws(RECIPES["default"], 64, seed=4).boxes)


def test_blur_sigma_is_in_source_pixels_when_the_whole_image_is_resized():
    """SPEC 1: Appearance blurs the full-resolution image before its Resize + CenterCrop, so with
    the colour ops run after the resize the drawn sigma shrinks by output size / shorter side."""
    sizes = torch.tensor([[375, 500], [500, 375], [112, 112]] * 300)
    scale = 224 / sizes.min(dim=1).values.double()
    no_crop = Recipe("blur only", (GaussianBlur(p=1.0),))
    for recipe in (RECIPES["appearance"], no_crop):
        unscaled = sample_params(recipe, sizes, torch.Generator().manual_seed(7))
        scaled = sample_params(recipe, sizes, torch.Generator().manual_seed(7), size=224)
        blur_at = [i for i, op in enumerate(recipe.colour_ops) if isinstance(op, GaussianBlur)][0]
        raw, out = unscaled.colour[blur_at].values[:, 0].double(), scaled.colour[blur_at].values[:, 0].double()
        torch.testing.assert_close(out, raw * scale, rtol=1e-6, atol=0)
        assert raw.min() >= 0.1 and raw.max() <= 2.0  # the recipe's range, in source pixels
        assert torch.equal(unscaled.boxes, scaled.boxes)
        assert torch.equal(unscaled.colour[0].apply, scaled.colour[0].apply)
    crop_first = sample_params(RECIPES["default"], sizes, torch.Generator().manual_seed(7), size=224)
    assert torch.equal(crop_first.colour[2].values, sample_params(RECIPES["default"], sizes,
                                                                 torch.Generator().manual_seed(7)).colour[2].values)


def test_appearance_blur_matches_blurring_before_the_resize(tmp_path):
    """Through the loader, a sigma of 2 source pixels on a 240x320 image gives nearly the
    reference's view (blur at full resolution, then Resize 60 + CenterCrop 60), and far nearer
    than a sigma of 2 output pixels would."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from fastinv.pipelines import LoaderConfig, build_two_view_loader, decode_image
    (tmp_path / "c").mkdir()
    y, x = np.mgrid[0:240, 0:320]
    checks = (((y // 24 + x // 24) % 2) * 200 + 30).astype(np.uint8)
    Image.fromarray(np.stack([checks, 255 - checks, checks], -1)).save(tmp_path / "c" / "0.png")
    recipe = Recipe("blur 2 px", (ResizeCenterCrop(), GaussianBlur(sigma=(2.0, 2.0), p=1.0, kernel_fraction=0.2)))
    cfg = LoaderConfig(root=tmp_path, recipe=recipe, batch_size=1, workers=0, image_size=60, output="uint8")
    ours = next(iter(build_two_view_loader(cfg))).view1[0].double()
    image = decode_image(tmp_path / "c" / "0.png").double() / 255
    reference = F.center_crop(F.resize(F.gaussian_blur(image, [17, 17], [2.0, 2.0]), [60], antialias=True), [60])
    unscaled = F.gaussian_blur(F.center_crop(F.resize(image, [60], antialias=True), [60]), [13, 13], [2.0, 2.0])
    error = (ours / 255 - reference).abs().mean()  # what is left: the order of blur and resize, the borders
    assert error < 0.02 and error < 0.2 * (unscaled - reference).abs().mean()
