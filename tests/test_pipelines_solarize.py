"""Solarize, added as one op module: against torchvision's `solarize` on every backend it runs
on, and BYOL's recipe, which solarizes only its second view, end to end."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image

from fastinv.errors import UsageError
from fastinv.pipelines import LoaderConfig, build_two_view_loader, get_recipe, recipe_from_dict
from fastinv.pipelines.augment import sample_params
from fastinv.pipelines.ops.solarize import solarize
from fastinv.pipelines.sampler import batch_generator
from fastinv.pipelines.torch_backend import two_views

BYOL = Path(__file__).resolve().parents[1] / "examples" / "recipes" / "byol.yaml"

_ALONE = "FASTINV_TEST_FFCV_ALONE"


def _recipe(p=1.0, threshold=0.5, crop="resize_center_crop"):
    return recipe_from_dict({"name": "solarize", "ops": [{"op": crop}, {"op": "solarize", "p": p,
                                                                        "threshold": threshold}]})


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 1.0])
def test_solarize_matches_torchvision(threshold):
    x = torch.rand((4, 3, 9, 11), generator=torch.Generator().manual_seed(0))
    x[0, 0, 0, :3] = torch.tensor([threshold, 0.0, 1.0])
    torch.testing.assert_close(solarize(x, threshold), F.solarize(x, threshold), atol=0, rtol=0)


def test_bad_thresholds_say_what_is_wrong():
    with pytest.raises(UsageError, match="solarize.threshold must lie in"):
        _recipe(threshold=1.5)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """8 smooth colour JPEGs of two sizes in two classes."""
    root = tmp_path_factory.mktemp("solarize")
    rng = np.random.default_rng(2)
    for i in range(8):
        size = (48, 40) if i % 2 else (40, 48)
        pixels = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        pixels.save(root / f"c{i % 2}" / f"{i}.jpg", quality=100, subsampling=0)
    return root


@pytest.mark.parametrize("batched", [False, True])
def test_both_torch_strategies_solarize_as_torchvision_does_on_uint8(photos, batched):
    from fastinv.pipelines.decode import decode_image
    from fastinv.pipelines.folder import scan_image_folder
    images = [decode_image(p) for p in scan_image_folder(photos)[0]]
    plain = two_views(images, _recipe(p=0.0), 24, batch_generator(0, 0, 0, 0), batched=batched)
    ours = two_views(images, _recipe(p=1.0), 24, batch_generator(0, 0, 0, 0), batched=batched)
    assert torch.equal(ours, F.solarize(plain, 128))  # 0.5 on [0, 1]: levels 128 and up


def _first_batch(root, backend, recipe, output="uint8"):
    """The first batch of a whole epoch (every loader is run to its end, so none leaves threads behind)."""
    cfg = LoaderConfig(root=root, backend=backend, recipe=recipe, image_size=24, batch_size=8, workers=1,
                       output=output, seed=3)
    return list(build_two_view_loader(cfg))[0]


@pytest.mark.slow
def test_dali_solarizes_as_the_torch_backend(photos):
    pytest.importorskip("nvidia.dali", reason="the dali extra is not installed")
    torch_views, dali_views = (_first_batch(photos, backend, _recipe()) for backend in ("torch", "dali"))
    plain = _first_batch(photos, "dali", _recipe(p=0.0))
    assert torch.equal(torch_views.indices, dali_views.indices)
    loader = build_two_view_loader(LoaderConfig(root=photos, backend="dali", recipe=_recipe(), image_size=24,
                                                batch_size=8, workers=1))
    assert b"Constant" not in loader._pipe.serialize()  # every number is fed from the host
    for v in ("view1", "view2"):  # the same draws; the resampling kernels differ slightly
        ours = getattr(dali_views, v)
        assert torch.equal(ours, F.solarize(getattr(plain, v), 128))
        assert (ours.float() - getattr(torch_views, v).float()).abs().mean() < 1.0


@pytest.mark.slow
def test_ffcv_solarizes_through_the_batched_ops(photos, tmp_path):
    pytest.importorskip("ffcv", reason="the ffcv extra is not installed")
    if os.environ.get(_ALONE) != "1":  # FFCV's loader threads can deadlock beside earlier loaders' in one process
        name = f"{__file__}::test_ffcv_solarizes_through_the_batched_ops"
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name],
                                env={**os.environ, _ALONE: "1"}, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:]
        return
    from fastinv.pipelines.ffcv_backend import write_beton
    beton = write_beton(photos, tmp_path / "photos.beton", quality=100).path
    ffcv_views, plain = (_first_batch(beton, "ffcv", _recipe(p=p)) for p in (1.0, 0.0))
    torch_views = _first_batch(photos, "torch", _recipe())
    for v in ("view1", "view2"):
        assert torch.equal(getattr(ffcv_views, v), F.solarize(getattr(plain, v), 128))
        assert (getattr(ffcv_views, v).float() - getattr(torch_views, v).float()).abs().mean() < 6.0


def test_the_byol_recipe_loads_with_its_per_view_rates():
    recipe = get_recipe(BYOL)
    assert recipe.name == "byol" and [op.name for op in recipe.ops] == [
        "random_resized_crop", "horizontal_flip", "color_jitter", "grayscale", "gaussian_blur", "solarize", "normalize"]
    assert recipe.crop.scale == (0.08, 1.0)
    n = 20000
    gen = torch.Generator().manual_seed(0)
    views = [sample_params(recipe, torch.tensor([[375, 500]] * n), gen, 224, view) for view in (0, 1)]
    tol = 4 * math.sqrt(0.25 / n)
    for params, rates in zip(views, ((0.5, 0.8, 0.2, 1.0, 0.0), (0.5, 0.8, 0.2, 0.1, 0.2))):
        jitter, gray, blur, solar = params.colour
        for draw, rate in zip((params.flip, jitter.apply, gray.apply, blur.apply, solar.apply), rates):
            assert abs(draw.double().mean() - rate) < tol
    area = views[0].boxes[:, 2] * views[0].boxes[:, 3] / (375 * 500)
    assert area.min() >= 0.079 and area.max() <= 1.0


def test_the_byol_recipe_runs_through_the_loader(photos):
    batch = _first_batch(photos, "torch", BYOL, output="float")
    assert batch.view1.shape == batch.view2.shape == (8, 3, 24, 24) and torch.isfinite(batch.view1).all()
    assert not torch.equal(batch.view1, batch.view2)
