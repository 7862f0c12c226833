"""The paper in miniature: generate the world, pre-train Default, Spatial and Appearance models,
evaluate them with random init and the fusions, write the report. The presets live in
`fastinv.presets`."""
import time
from dataclasses import replace
from pathlib import Path

from fastinv.eval.modelspec import ModelSpec
from fastinv.eval.runner import evaluate
from fastinv.log import get_logger
from fastinv.presets import REPRODUCE_PRESETS, ReproducePreset
from fastinv.report import write_report
from fastinv.results import save_results
from fastinv.train.config import RunConfig, TrainConfig
from fastinv.train.loop import train
from fastinv.world import ensure_world

log = get_logger(__name__)


def pretrain_recipe(preset: ReproducePreset, recipe: str, data_root: Path, out: Path, *, device: str,
                    seed: int, progress: bool) -> Path:
    """Pre-train one recipe (resuming if its folder holds a checkpoint); return its backbone file."""
    cfg = TrainConfig(
        data=replace(preset.data, root=str(data_root), recipe=recipe),
        run=RunConfig(out=str(out), device=device, amp=preset.amp, seed=seed, tensorboard=False, progress=progress,
                      ckpt_every=200),
        model=preset.model, moco=preset.moco, optim=preset.optim,
    )
    summary = train(cfg)
    if summary.backbone is None:
        raise RuntimeError(f"pre-training {recipe} stopped at step {summary.step} of {summary.total_steps}")
    return summary.backbone


def reproduce(name: str, out: Path, *, world_root: Path, train_root: Path, device: str, seed: int,
              progress: bool, cache_dir: Path, data_root: Path | None = None, reference: Path | None = None) -> Path:
    """Run the whole study of preset `name` into `out`; return the path of report.md. `data_root`
    holds the evaluation datasets and `reference` the reference images (as `fastinv eval`'s
    --data-root and --reference); without them only the world is evaluated."""
    preset = REPRODUCE_PRESETS[name]
    timings = {}
    started = time.perf_counter()
    specs = [ModelSpec("random", "random", preset.model.arch)]
    for recipe in preset.recipes:
        begin = time.perf_counter()
        backbone = pretrain_recipe(preset, recipe, train_root, out / "models" / recipe, device=device, seed=seed,
                                   progress=progress)
        timings[f"pretrain_{recipe}_s"] = round(time.perf_counter() - begin, 1)
        specs.append(ModelSpec(recipe, str(backbone), preset.model.arch))
    fusions = {"+".join(parts): list(parts) for parts in preset.fusions}
    config = replace(preset.evaluation, device=device, seed=seed, progress=progress, cache_dir=cache_dir)
    begin = time.perf_counter()
    results = evaluate(specs, fusions, list(preset.suites), config, world_root, data_root=data_root,
                       reference=reference, meta={"command": "fastinv reproduce", "preset": name, "world": str(world_root),
                             "pretrain": {"recipes": list(preset.recipes), "arch": preset.model.arch,
                                          "epochs": preset.optim.epochs, "image_size": preset.data.image_size,
                                          "batch_size": preset.data.batch_size, "K": preset.moco.K,
                                          "m": preset.moco.m, "T": preset.moco.T}})
    timings["evaluate_s"] = round(time.perf_counter() - begin, 1)
    timings["total_s"] = round(time.perf_counter() - started, 1)
    results.meta["timings"] = timings
    save_results(results, out)
    return write_report(results, out)


def world_for(preset: ReproducePreset, cache_dir: Path, progress: bool) -> Path:
    """The preset's synthetic world, generated into the cache on first use."""
    if preset.world is None:
        raise ValueError("this preset trains on ImageNet, not on the synthetic world")
    return ensure_world(preset.world, cache_dir / "worlds", progress=progress)
