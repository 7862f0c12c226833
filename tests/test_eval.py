"""The evaluation engine end to end on the tiny world: tables, identity exactness, significance,
the feature cache (hits, corrupt entries), fusion, and the `fastinv eval` command."""
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fastinv.eval.cache import FeatureCache
from fastinv.eval.config import EVAL_PRESETS
from fastinv.eval.data import EvalData
from fastinv.eval.modelspec import ModelSpec, fusion_grid, parse_fusion, parse_model
from fastinv.eval.runner import build_context, evaluate
from fastinv.errors import UsageError
from fastinv.kernels import mahalanobis, whitened_cosine
from fastinv.pipelines.eval_transforms import EVAL_TRANSFORMS
from fastinv.pipelines.evaltf.views import resize_crop, to_float

TINY_VIEW = dict(synthetic_images=12, grid_size=2, folds=2, batch_size=64, progress=False)


@pytest.fixture()
def config(tmp_path: Path):
    return replace(EVAL_PRESETS["world"], cache_dir=tmp_path / "cache", **TINY_VIEW)


def _models() -> list[ModelSpec]:
    return [ModelSpec("a", "random", "resnet10x0.25"), ModelSpec("b", "random", "resnet10x0.25")]


def test_identity_magnitude_gives_distance_zero_and_similarity_one(tiny_world: Path, config) -> None:
    ctx = build_context(_models()[:1], {}, config)
    data = EvalData(config, tiny_world)
    native, dataset = data.synthetic
    stats = data.reference_stats(ctx, "a")
    view = config.synthetic_view
    clean = ctx.features("a", _clean_views(native, view), dataset=dataset, view=view, prepare=to_float)
    for name in ("rotation", "h_flip", "shear", "blur", "sharpness"):
        transform = EVAL_TRANSFORMS[name]
        views = torch.cat([transform.views(image, [transform.identity_index], resize=view.resize, crop=view.crop,
                                           pixel_scale=view.resize / 256) for image in native.images])
        moved = ctx.extractors["a"].forward(views)
        assert torch.equal(moved, clean), name
        assert torch.all(mahalanobis(clean, moved, stats) == 0)
        assert torch.all(whitened_cosine(clean, moved, stats) == 1)


def _clean_views(native, view) -> torch.Tensor:
    return torch.stack([resize_crop(image, view.resize, view.crop) for image in native.images])


@pytest.mark.slow
def test_suites_end_to_end_identical_models_have_no_winner(tiny_world: Path, config, tmp_path: Path) -> None:
    results = evaluate(_models(), {"a+b": ["a", "b"]}, ["synthetic", "realworld", "extrinsic", "downstream", "knn"],
                       config, tiny_world)
    keys = {t.key for t in results.tables}
    assert {"synthetic_mahalanobis", "synthetic_cosine", "realworld_cosine", "extrinsic_r2", "downstream_cv",
            "downstream_test", "knn_top1"} <= keys
    assert results.models == ["a", "b", "a+b"]
    cosine = results.table("synthetic_cosine")
    assert set(cosine.columns) == set(EVAL_TRANSFORMS)
    for column in cosine.columns:
        assert cosine.rows["a"][column] == cosine.rows["b"][column]
        assert cosine.winners.get(column) is None
    assert all(w is None for w in results.table("realworld_cosine").winners.values())
    groups = results.table("knn_groups")
    assert set(groups.columns) == set(results.table("realworld_cosine").columns)
    assert groups.rows["a"] == groups.rows["b"] and all(0.0 <= v <= 1.0 for v in groups.rows["a"].values())
    assert all(w is None for w in groups.winners.values())
    assert "cifar10" in results.skipped and "no --data-root" in results.skipped["cifar10"]
    misses = results.meta["feature_cache"]["misses"]
    assert misses > 0
    again = evaluate(_models(), {}, ["synthetic"], config, tiny_world)
    assert again.meta["feature_cache"]["misses"] == 0


def test_corrupt_cache_entry_is_recomputed(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    key = cache.key(model="m", dataset="d")
    first = cache.get_or_compute(key, lambda: torch.arange(12.0).reshape(3, 4), "cpu")
    path = cache.path(key)
    path.write_bytes(path.read_bytes()[:-7])
    calls = []
    again = cache.get_or_compute(key, lambda: calls.append(1) or torch.arange(12.0).reshape(3, 4), "cpu")
    assert calls == [1] and cache.rebuilt == 1 and torch.equal(first, again)
    assert torch.equal(cache.get_or_compute(key, lambda: torch.zeros(1), "cpu"), first)


def test_cache_entry_with_wrong_checksum_is_not_trusted(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    key = cache.key(model="m")
    cache.get_or_compute(key, lambda: torch.ones(2, 2), "cpu")
    other = cache.key(model="other")
    cache.get_or_compute(other, lambda: torch.zeros(2, 2), "cpu")
    cache.path(key).write_bytes(cache.path(other).read_bytes())
    assert torch.equal(cache.get_or_compute(key, lambda: torch.full((2, 2), 5.0), "cpu"), torch.full((2, 2), 5.0))


def test_fusion_concatenates_component_features(tiny_world: Path, config) -> None:
    ctx = build_context(_models(), {"a+b": ["a", "b"]}, config)
    images = _clean_views(EvalData(config, tiny_world).synthetic[0], config.synthetic_view)
    a = ctx.features("a", images, dataset="x", view=config.synthetic_view)
    b = ctx.features("b", images, dataset="x", view=config.synthetic_view)
    fused = ctx.features("a+b", images, dataset="x", view=config.synthetic_view)
    assert torch.equal(fused, torch.cat([a, b], dim=1))


def test_model_and_fusion_parsing() -> None:
    assert parse_model("random") == ModelSpec("random", "random")
    assert parse_model("def=/x/y.pt", "resnet50") == ModelSpec("def", "/x/y.pt", "resnet50")
    for bad in ("nameonly", "=path", "a+b=path"):
        with pytest.raises(UsageError):
            parse_model(bad)
    assert parse_fusion("a+b", ["a", "b"]) == ("a+b", ["a", "b"])
    with pytest.raises(UsageError, match="unknown model"):
        parse_fusion("a+c", ["a", "b"])
    assert fusion_grid((-6.0, 5.0, 45), 2, 1.0) == (-5.0, 6.0, 45)
    assert fusion_grid((-6.0, 5.0, 45), 3, 1.0) == (-4.0, 7.0, 45)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastinv", "eval", *args], capture_output=True, text=True,
                          timeout=600, cwd=tempfile.gettempdir())


@pytest.mark.parametrize("args, needle", [
    ([], "name at least one model"),
    (["--model", "nofile"], "write NAME=PATH"),
    (["--model", "a=/no/such/file.pt"], "/no/such/file.pt"),
    (["--model", "random", "--fuse", "random+x"], "unknown model"),
    (["--model", "random", "--world", "/no/such/world"], "does not exist"),
    (["--model", "random", "--grid-size", "0"], "--grid-size must be at least 1"),
])
def test_eval_cli_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], needle: str, fastinv_cli) -> None:
    result = fastinv_cli("eval", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), *args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and result.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_eval_cli_writes_results_and_report(tiny_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _cli("--model", "random", "--arch", "resnet10x0.25", "--world", str(tiny_world), "--out", str(out),
                  "--suite", "realworld", "--suite", "knn", "--synthetic-images", "8", "--grid-size", "2",
                  "--cache-dir", str(tmp_path / "cache"), "--no-progress")
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "results.json").read_text())
    assert {t["key"] for t in doc["tables"]} == {"realworld_mahalanobis", "realworld_cosine", "knn_top1", "knn_groups"}
    assert (out / "report.md").is_file() and (out / "tables" / "knn_top1.csv").is_file()
    assert "skipped cifar10" in result.stderr
