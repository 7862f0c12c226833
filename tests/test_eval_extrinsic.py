"""Paper-exact choices of the extrinsic, downstream and correlation suites: the seeded draw and the
per-latent kernel ridge of Table 4, the probe grid that follows the feature width (Table 5), and
Fig. E.1 over the base models."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fastinv.datasets import ImageSet
from fastinv.eval.config import EVAL_PRESETS
from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData, seeded_draw
from fastinv.eval.features import FeatureExtractor
from fastinv.eval.modelspec import ModelSpec, fusion_grid, width_units
from fastinv.eval.runner import build_context
from fastinv.eval.suites import correlation, downstream, extrinsic
from fastinv.kernels import KernelRidgeResult, kernel_ridge_cv
from fastinv.models import random_backbone
from fastinv.results import Table


@pytest.fixture()
def config(tmp_path: Path):
    return replace(EVAL_PRESETS["world"], cache_dir=tmp_path / "cache", folds=3, batch_size=64, progress=False,
                   extrinsic_train_images=40, extrinsic_test_images=20)


def test_seeded_draw_is_deterministic_sorted_and_named() -> None:
    images = ImageSet("set/train", paths=tuple(Path(f"{i:03d}.png") for i in range(50)),
                      targets=np.arange(50, dtype=np.float32)[:, None])
    drawn = seeded_draw(images, 20, seed=3)
    assert len(drawn) == 20 and drawn.paths == seeded_draw(images, 20, seed=3).paths
    assert list(drawn.paths) == sorted(drawn.paths) and drawn.paths != seeded_draw(images, 20, seed=4).paths
    assert drawn.targets[:, 0].tolist() == [float(p.stem) for p in drawn.paths]
    assert drawn.name == "set/train[draw 20 of 50, seed 3]"
    assert seeded_draw(images, 50, seed=3) is images


def test_chosen_pairs_list_latents_sharing_a_pair_together() -> None:
    scores = np.zeros((2, 2, 3))
    result = KernelRidgeResult(np.array([1.0, 0.1]), np.array([1e-3, 0.5]), scores[None], scores, scores,
                               np.array([[1, 0], [0, 1], [1, 0]]), False)
    assert extrinsic.chosen_pairs(["x", "y", "z"], result) == "1e-1/1e-3 x, z; 1e0/0.5 y"


def test_extrinsic_suite_draws_images_and_refits_each_latent_with_its_own_pair(tiny_world: Path, config) -> None:
    ctx = build_context([ModelSpec("a", "random", "resnet10x0.25")], {}, config)
    data = EvalData(config, tiny_world)
    task = data.tasks("extrinsic")[0]
    assert (len(task.train.images), len(task.test.images)) == (40, 20)  # drawn from the world's 84 / 42
    table = extrinsic.run(ctx, data)[0]
    train_x = ctx.features("a", task.train.images, dataset=data.dataset_key(task.name, f"train:{task.train.name}"),
                           view=config.clean_view)
    test_x = ctx.features("a", task.test.images, dataset=data.dataset_key(task.name, f"test:{task.test.name}"),
                          view=config.clean_view)
    assert ctx.cache.misses == 2  # the suite's own features, read back from the cache
    direct = kernel_ridge_cv(train_x, task.train.targets, np.logspace(*config.krr_alphas), np.logspace(*config.krr_gammas),
                             folds=3, seed=config.seed, test_features=test_x, test_targets=task.test.targets)
    assert [table.rows["a"][name] for name in table.columns] == pytest.approx(direct.test_r2_per_output.tolist())
    assert extrinsic.chosen_pairs(table.columns, direct) in table.note
    assert "chosen for each latent" in table.note and "a seeded draw of at most 40" in table.note


def _extractor(arch: str) -> FeatureExtractor:
    return FeatureExtractor(random_backbone(arch), "cpu")


def test_probe_grid_shifts_with_the_feature_width(config) -> None:
    assert fusion_grid((-6.0, 5.0, 45), width_units([1.0, 1.0]), 1.0) == (-5.0, 6.0, 45)  # Spa+App
    assert fusion_grid((-6.0, 5.0, 45), width_units([1.0, 1.0, 1.0]), 1.0) == (-4.0, 7.0, 45)  # Def+Spa+App
    assert fusion_grid((-6.0, 5.0, 45), width_units([3.0]), 1.0) == (-4.0, 7.0, 45)  # ResNet50(x3)
    assert width_units([0.25]) == 1.0 and width_units([0.25, 2.0]) == 3.0
    ctx = EvalContext(config, {"a": _extractor("resnet10x0.25"), "b": _extractor("resnet10x0.25"),
                               "wide": _extractor("resnet10x1.5")}, {"a+b": ["a", "b"], "a+wide": ["a", "wide"]})
    assert {m: downstream.probe_grid(ctx, m) for m in ctx.models} == {
        "a": (-6.0, 5.0, 45), "b": (-6.0, 5.0, 45), "wide": (-5.5, 5.5, 45), "a+b": (-5.0, 6.0, 45),
        "a+wide": (-4.5, 6.5, 45)}


def _cosine_table(key: str, columns: list[str], rows: dict[str, list[float]]) -> Table:
    return Table(key=key, title=key, columns=columns, rows={m: dict(zip(columns, v)) for m, v in rows.items()})


def test_correlation_is_over_the_base_models_only(config) -> None:
    ctx = EvalContext(config, {"a": None, "b": None, "c": None}, {"a+b": ["a", "b"]})
    assert correlation.models(ctx) == ["a", "b", "c"]
    tables = [_cosine_table("synthetic_cosine", ["blur"], {"a": [0.1], "b": [0.2], "c": [0.3], "a+b": [0.9]}),
              _cosine_table("realworld_cosine", ["coil100"], {"a": [0.3], "b": [0.2], "c": [0.1], "a+b": [0.9]})]
    table = correlation.run(tables, ctx)[0]
    assert table.rows["blur"]["coil100"] == pytest.approx(-1.0)  # with the fusion it would be 0.2
    assert "Over 3 models (a, b, c), fusions left out" in table.note
