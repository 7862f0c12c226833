"""Reference statistics from a folder of images (streamed), the three-recipe significance test, and
the eval flags that choose them (and the device)."""
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fastinv.errors import DataError
from fastinv.eval.config import EVAL_PRESETS, ViewConfig
from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData
from fastinv.pipelines.evaltf.views import resize_crop
from fastinv.eval.modelspec import ModelSpec
from fastinv.eval.reference import scan_reference, stream_moments
from fastinv.eval.runner import build_context
from fastinv.kernels import reference_stats
from fastinv.pipelines.decode import decode_image


@pytest.fixture()
def config(tmp_path: Path):
    return replace(EVAL_PRESETS["world"], cache_dir=tmp_path / "cache", batch_size=16, progress=False)


def _models() -> list[ModelSpec]:
    return [ModelSpec("a", "random", "resnet10x0.25"), ModelSpec("b", "random", "resnet10x0.5")]


def test_streamed_moments_equal_the_statistics_of_all_features_at_once(tiny_world: Path, config) -> None:
    ctx = build_context(_models(), {"a+b": ["a", "b"]}, config)
    images = scan_reference(tiny_world / "trainset")
    view = ViewConfig(40, 32)
    skipped: dict[str, str] = {}
    moments = stream_moments(ctx, ["a", "a+b"], images, view, skipped)
    clean = torch.stack([resize_crop(decode_image(p), view.resize, view.crop) for p in images.paths])
    a = ctx.extractors["a"].extract(clean.split(7))
    b = ctx.extractors["b"].extract(clean.split(7))
    for name, features in (("a", a), ("a+b", torch.cat([a, b], dim=1))):
        streamed, at_once = reference_stats(moments[name]), reference_stats(features)
        assert streamed.n == at_once.n == len(images.paths) and not skipped
        torch.testing.assert_close(streamed.mean, at_once.mean, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(streamed.covariance, at_once.covariance, rtol=1e-7, atol=1e-9)
        assert streamed.estimator == at_once.estimator == "ledoit-wolf"


def test_reference_folder_may_be_flat_or_an_image_folder_and_bad_files_are_skipped(tiny_world: Path, tmp_path: Path,
                                                                                  config) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    sources = sorted((tiny_world / "trainset").rglob("*.jpg"))[:6]
    for i, path in enumerate(sources):
        shutil.copy(path, flat / f"{i}.jpg")
    (flat / "broken.jpg").write_bytes(sources[0].read_bytes()[:200])
    (flat / "notes.txt").write_text("not an image")
    images = scan_reference(flat)
    assert len(images.paths) == 7 and len(scan_reference(tiny_world / "trainset").paths) == 84
    ctx = build_context(_models()[:1], {}, config)
    skipped: dict[str, str] = {}
    moments = stream_moments(ctx, ["a"], images, ViewConfig(40, 32), skipped)
    assert moments["a"].n == 6 and list(skipped) == [str(flat / "broken.jpg")]


@pytest.mark.parametrize("make, needle", [
    (lambda root: root / "missing", "no such folder"),
    (lambda root: (root / "empty").mkdir() or root / "empty", "no images there"),
])
def test_a_reference_folder_without_images_is_a_one_line_error(tmp_path: Path, make, needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        scan_reference(make(tmp_path))


def test_reference_moments_are_cached_and_a_changed_folder_is_not(tiny_world: Path, tmp_path: Path, config) -> None:
    folder = tmp_path / "ref"
    shutil.copytree(tiny_world / "trainset", folder)
    ctx = build_context(_models()[:1], {}, config)
    first = EvalData(config, tiny_world, reference=folder).reference_stats(ctx, "a")
    misses = ctx.cache.misses
    again = EvalData(config, tiny_world, reference=folder).reference_stats(ctx, "a")
    assert ctx.cache.misses == misses and torch.equal(first.covariance, again.covariance)
    next(folder.rglob("*.jpg")).unlink()
    fewer = EvalData(config, tiny_world, reference=folder).reference_stats(ctx, "a")
    assert ctx.cache.misses == misses + 1 and fewer.n == first.n - 1


def test_significance_is_among_the_recipe_models_only(config) -> None:
    rng = np.random.default_rng(0)
    n = 400
    scores = {"default": torch.from_numpy(0.9 + 0.01 * rng.standard_normal(n)),
              "spatial": torch.from_numpy(0.5 + 0.01 * rng.standard_normal(n)),
              "appearance": torch.from_numpy(0.2 + 0.01 * rng.standard_normal(n)),
              "random": torch.from_numpy(0.95 + 0.01 * rng.standard_normal(n)),
              "spatial+appearance": torch.from_numpy(0.99 + 0.001 * rng.standard_normal(n))}
    ctx = EvalContext(config, {m: None for m in ("random", "default", "spatial", "appearance")},
                      {"spatial+appearance": ["spatial", "appearance"]})
    assert ctx.compared == ["default", "spatial", "appearance"]
    assert ctx.winner(scores, (-2.0, 2.0)) == "default"
    note = ctx.significance_note("images", (-2.0, 2.0))
    assert "default, spatial, appearance" in note and "not tested: random, spatial+appearance" in note
    named = EvalContext(replace(config, compare=("spatial", "appearance")), ctx.extractors, ctx.fusions)
    assert named.winner(scores, (-2.0, 2.0)) == "spatial"
    alone = EvalContext(config, {"random": None, "default": None})
    assert alone.winner(scores, (-2.0, 2.0)) is None and "No significance test" in alone.significance_note("images", (-1, 1))


@pytest.mark.parametrize("args, needle", [
    (["--preset", "paper"], "--preset paper measures against reference images: pass --reference DIR"),
    (["--reference", "/no/such/folder"], "--reference /no/such/folder: does not exist"),
    (["--compare", "random,ghost"], "--compare random,ghost: unknown model(s) ghost"),
    (["--compare", "random"], "name two or more models"),
    (["--device", "tpu"], "--device 'tpu': unknown device"),
])
def test_reference_and_compare_flags_give_one_line_errors(tmp_path: Path, args: list[str], needle: str,
                                                          fastinv_cli) -> None:
    result = fastinv_cli("eval", "--model", "random", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), *args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and result.stderr.strip().count("\n") == 0
