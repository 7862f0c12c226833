"""The DALI and FFCV backends on awkward and broken files, and against the torch backend's draws."""
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from awkward_files import BAD, GOOD, HEADER_ONLY_VALID
from PIL import Image

from fastinv.pipelines import LoaderConfig, build_two_view_loader, recipe_from_dict, scan_image_folder

def _names(skipped: list[tuple[str, str]]) -> set[str]:
    return {Path(path).name for path, _ in skipped}


def test_the_broken_files_have_readable_headers(awkward_files):
    for name in HEADER_ONLY_VALID:
        with Image.open(awkward_files / "bad" / name) as img:
            assert img.size == (320, 240)  # what a header-only check sees: a valid JPEG


@pytest.mark.slow
def test_dali_finishes_the_epoch_and_skips_exactly_the_undecodable_files(awkward_files, caplog):
    pytest.importorskip("nvidia.dali", reason="the dali extra is not installed")
    cfg = LoaderConfig(root=awkward_files, backend="dali", batch_size=4, workers=1, image_size=16, drop_last=False, seed=3)
    loader = build_two_view_loader(cfg)
    paths = scan_image_folder(awkward_files)[0]
    with caplog.at_level(logging.WARNING, logger="fastinv"):
        batches = list(loader)
    assert _names(loader.skipped) == BAD
    for name in BAD:  # each named once, with what was wrong
        assert sum(name in r.message for r in caplog.records if "skipping undecodable image" in r.message) == 1
    assert "DALI" in dict(loader.skipped)[str(awkward_files / "bad" / "corrupt.jpg")]  # found by the graph itself
    seen = torch.cat([b.indices for b in batches]).tolist()
    assert sorted(Path(paths[i]).name for i in seen) == sorted(GOOD)
    shards = [set(loader.batches.batch(0, b).tolist()) for b in range(len(loader))]
    assert all(any(set(b.indices.tolist()) <= shard for shard in shards) for b in batches)  # shortened, not refilled
    for b in batches:
        assert b.view1.shape == (len(b.indices), 3, 16, 16) and torch.isfinite(b.view1).all()
        assert b.view1.is_contiguous(memory_format=torch.channels_last)
    loader.set_epoch(1)
    again = list(loader)  # the bad files are left out up front now
    fresh = build_two_view_loader(cfg)
    fresh.set_epoch(1)  # meets them for the first time in this epoch
    for x, y in zip(again, list(fresh), strict=True):
        assert torch.equal(x.indices, y.indices) and torch.equal(x.view1, y.view1) and torch.equal(x.view2, y.view2)
    assert len(loader.skipped) == len(BAD)


@pytest.mark.slow
def test_dali_graph_has_no_constant_nodes(tiny_world):
    """A constant given as an op's positional input becomes a constant node (in a GPU graph, on the
    GPU, read back by the host every batch); the graph takes every per-image number from the host."""
    pytest.importorskip("nvidia.dali", reason="the dali extra is not installed")
    loader = build_two_view_loader(LoaderConfig(root=tiny_world / "trainset", backend="dali", image_size=16,
                                                batch_size=4, workers=1))
    assert b"Constant" not in loader._pipe.serialize()  # the built graph, as DALI stores it


@pytest.mark.slow
@pytest.mark.parametrize("op, bound", [
    ({"op": "color_jitter", "brightness": 0.4, "contrast": 0, "saturation": 0, "hue": 0, "p": 1.0}, 1.0),
    ({"op": "color_jitter", "brightness": 0, "contrast": 0.4, "saturation": 0, "hue": 0, "p": 1.0}, 1.0),
    ({"op": "color_jitter", "brightness": 0, "contrast": 0, "saturation": 0.4, "hue": 0, "p": 1.0}, 1.0),
    ({"op": "grayscale", "p": 1.0}, 1.0),
    ({"op": "gaussian_blur", "p": 1.0}, 1.0),
    ({"op": "color_jitter", "p": 1.0}, 12.0),  # with hue: a linear rotation about the grey axis, not HSV's
], ids=["brightness", "contrast", "saturation", "grayscale", "blur", "jitter"])
def test_dali_colour_ops_match_the_torch_backend(tiny_world, op, bound):
    pytest.importorskip("nvidia.dali", reason="the dali extra is not installed")
    recipe = recipe_from_dict({"name": op["op"], "ops": [{"op": "resize_center_crop"}, op]})
    views = {}
    for backend in ("torch", "dali"):
        cfg = LoaderConfig(root=tiny_world / "trainset", backend=backend, recipe=recipe, image_size=24, batch_size=16,
                           workers=1, output="uint8", seed=2)
        views[backend] = next(iter(build_two_view_loader(cfg)))
    assert torch.equal(views["torch"].indices, views["dali"].indices)
    for v in ("view1", "view2"):  # the same draws; the resampling kernels differ slightly
        assert (getattr(views["torch"], v).float() - getattr(views["dali"], v).float()).abs().mean() < bound


def _ffcv_file(root: Path, out: Path, **kw) -> Path:
    from fastinv.pipelines.ffcv_backend import write_beton
    return write_beton(root, out, **kw).path


@pytest.mark.slow
def test_ffcv_convert_leaves_out_exactly_the_undecodable_files(awkward_files, tmp_path, caplog):
    pytest.importorskip("ffcv", reason="the ffcv extra is not installed")
    from fastinv.pipelines.ffcv_backend import write_beton
    with caplog.at_level(logging.WARNING, logger="fastinv"):
        summary = write_beton(awkward_files, tmp_path / "awkward.beton")
    assert _names(summary.skipped) == BAD and summary.images == len(GOOD)
    for name in BAD:
        assert sum(name in r.message for r in caplog.records if "leaving out undecodable image" in r.message) == 1
    loader = build_two_view_loader(LoaderConfig(root=summary.path, backend="ffcv", batch_size=2, workers=1,
                                                image_size=16, drop_last=False))
    assert loader.classes == ["bad", "ok"] and len(loader) == -(-len(GOOD) // 2)
    batches = list(loader)
    assert sorted(torch.cat([b.indices for b in batches]).tolist()) == list(range(len(GOOD)))
    assert all((b.labels == loader.classes.index("ok")).all() for b in batches)
    for b in batches:
        assert b.view1.shape == (len(b.indices), 3, 16, 16) and torch.isfinite(b.view1).all()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """16 textured 80x60 / 60x80 JPEGs in two classes (smooth colour plus grey grain, which chroma
    subsampling keeps), larger than the views cut from them."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for i in range(16):
        size = (80, 60) if i % 3 else (60, 80)
        base = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(size, Image.BICUBIC))
        grain = rng.normal(0, 25, base.shape[:2])[..., None]
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8)).save(root / f"c{i % 2}" / f"{i:02d}.jpg",
                                                                            quality=100, subsampling=0)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["spatial", "appearance", "default"])
def test_ffcv_views_use_the_shared_draws(photos, tmp_path, recipe):
    pytest.importorskip("ffcv", reason="the ffcv extra is not installed")
    beton = _ffcv_file(photos, tmp_path / "photos.beton", quality=100)
    kw = dict(recipe=recipe, image_size=24, batch_size=8, workers=1, output="uint8", seed=7)
    ffcv = build_two_view_loader(LoaderConfig(root=beton, backend="ffcv", **kw))
    reference = build_two_view_loader(LoaderConfig(root=photos, backend="torch", **kw))
    ffcv.set_epoch(1), reference.set_epoch(1)
    full = list(ffcv)
    for f, r in zip(full, list(reference), strict=True):
        assert torch.equal(f.indices, r.indices)
        for a, b in ((f.view1, r.view1), (f.view2, r.view2)):
            # same crop boxes, flips and colour draws (other boxes differ by tens of grey levels); FFCV
            # resizes with area interpolation and re-encodes the JPEG
            assert (a.float() - b.float()).abs().mean() < 6.0
    ffcv.start_at(1)  # the same loader, a second pass: exact resume, crops included
    for x, y in zip(list(ffcv), full[1:], strict=True):
        assert torch.equal(x.view1, y.view1) and torch.equal(x.view2, y.view2)


@pytest.fixture(scope="module")
def stripes(tmp_path_factory) -> Path:
    """8 JPEGs of sharp 8-px colour stripes, 64x48, in two classes."""
    root = tmp_path_factory.mktemp("stripes")
    for i in range(8):
        on = (np.arange(64) // 8 + i) % 2
        row = np.stack([on * 220 + 20, (1 - on) * 200 + 30, np.full(64, 90)], -1).astype(np.uint8)
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        Image.fromarray(np.repeat(row[None], 48, 0)).save(root / f"c{i % 2}" / f"{i}.jpg", quality=100, subsampling=0)
    return root


@pytest.mark.slow
def test_ffcv_blur_scales_with_each_images_size(stripes, tmp_path):
    pytest.importorskip("ffcv", reason="the ffcv extra is not installed")
    beton = _ffcv_file(stripes, tmp_path / "stripes.beton", quality=100)
    effect = {}
    for backend, root in (("ffcv", beton), ("torch", stripes)):
        views = []
        for blur in (True, False):
            ops = [{"op": "resize_center_crop"}] + [{"op": "gaussian_blur", "p": 1.0}] * blur
            cfg = LoaderConfig(root=root, backend=backend, recipe=recipe_from_dict({"name": "b", "ops": ops}),
                               image_size=24, batch_size=8, workers=1, output="uint8", seed=7)
            views.append(next(iter(build_two_view_loader(cfg))).view1.float())
        effect[backend] = (views[0] - views[1]).abs().mean()
    # sigma is drawn in source pixels and scaled by 24 / 48 here; drawn as if the images were 24 px,
    # FFCV's blur changed the stripes about 2.5 times as much as the torch backend's
    assert 0.6 < effect["ffcv"] / effect["torch"] < 1.6
