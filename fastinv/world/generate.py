"""Write the synthetic world to disk: Causal3DIdent-style splits plus pose and light groups.

Layout under the output folder:

    world.json                       settings, latent names/ranges/units, counts
    trainset/{shape}/{i:06d}.jpg     images of each shape class
    trainset/latents_{shape}.npy     (n, 8) float32, one row per image in file order
    testset/...                      the same for the test split
    groups/pose/{g:03d}_{shape}/     one object instance under changing pose only
        {k:03d}.jpg, latents.npy
    groups/light/{g:03d}_{shape}/    one object instance under changing light only

Latents are drawn in the parent process from the seed; rendering and JPEG encoding run in
worker processes and are pure functions of the latents, so the bytes do not depend on the
number of workers. PIL and tqdm are imported only when a world is written: the command line
imports this module (through the presets) at start-up.
"""
import hashlib
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastinv import __version__
from fastinv.world.config import LATENT_NAMES, LATENTS, LIGHT_LATENTS, POSE_LATENTS, WorldConfig
from fastinv.world.render import render

FORMAT_VERSION = 1
_SPLIT_STREAM = {"trainset": 1, "testset": 2, "pose": 3, "light": 4}


@dataclass(frozen=True)
class _Job:
    path: str
    shape: str
    latents: tuple[float, ...]


@dataclass(frozen=True)
class WorldSummary:
    """What was written: the root folder and the number of images per part."""

    root: Path
    images: dict[str, int]


def _sample(rng: np.random.Generator, n: int) -> np.ndarray:
    low = np.array([lat.low for lat in LATENTS])
    high = np.array([lat.high for lat in LATENTS])
    return (low + (high - low) * rng.random((n, len(LATENTS)))).astype(np.float32)


def _rng(config: WorldConfig, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([config.seed, _SPLIT_STREAM[stream]]))


def _split_jobs(config: WorldConfig, root: Path, split: str, per_class: int) -> list[_Job]:
    rng = _rng(config, split)
    jobs = []
    for shape in config.shapes:
        latents = _sample(rng, per_class)
        folder = root / split / shape
        folder.mkdir(parents=True, exist_ok=True)
        np.save(root / split / f"latents_{shape}.npy", latents)
        jobs += [_Job(str(folder / f"{i:06d}.jpg"), shape, tuple(map(float, row))) for i, row in enumerate(latents)]
    return jobs


def _group_jobs(config: WorldConfig, root: Path, kind: str, count: int, varying: tuple[str, ...]) -> list[_Job]:
    rng = _rng(config, kind)
    columns = [LATENT_NAMES.index(name) for name in varying]
    jobs = []
    for g in range(count):
        shape = config.shapes[int(rng.integers(len(config.shapes)))]
        base = _sample(rng, 1)
        latents = np.repeat(base, config.group_size, axis=0)
        latents[:, columns] = _sample(rng, config.group_size)[:, columns]
        folder = root / "groups" / kind / f"{g:03d}_{shape}"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "latents.npy", latents)
        jobs += [_Job(str(folder / f"{k:03d}.jpg"), shape, tuple(map(float, row))) for k, row in enumerate(latents)]
    return jobs


def _write_chunk(args: tuple[list[_Job], int, int]) -> int:
    from PIL import Image

    jobs, size, quality = args
    for job in jobs:
        pixels = render(job.shape, np.asarray(job.latents), size)
        Image.fromarray(pixels).save(job.path, format="JPEG", quality=quality)
    return len(jobs)


def _metadata(config: WorldConfig, counts: dict[str, int]) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "generator": f"fastinv {__version__}",
        "config": config.identity(),
        "classes": list(config.shapes),
        "latents": [{"name": l.name, "low": l.low, "high": l.high, "unit": l.unit, "meaning": l.meaning} for l in LATENTS],
        "groups": {"pose": {"varying": list(POSE_LATENTS)}, "light": {"varying": list(LIGHT_LATENTS)}},
        "images": counts,
    }


def generate_world(config: WorldConfig, out: Path, *, progress: bool = True) -> WorldSummary:
    """Render the world described by `config` into the folder `out` (created if needed)."""
    from tqdm import tqdm

    config.validate()
    out = Path(out)
    parts = {
        "trainset": _split_jobs(config, out, "trainset", config.per_class),
        "testset": _split_jobs(config, out, "testset", config.test_per_class),
        "groups/pose": _group_jobs(config, out, "pose", config.pose_groups, POSE_LATENTS),
        "groups/light": _group_jobs(config, out, "light", config.light_groups, LIGHT_LATENTS),
    }
    jobs = [job for part in parts.values() for job in part]
    workers = config.workers or os.cpu_count() or 1
    chunk = max(1, min(256, len(jobs) // (workers * 8) or 1))
    tasks = [(jobs[i:i + chunk], config.size, config.jpeg_quality) for i in range(0, len(jobs), chunk)]
    bar = tqdm(total=len(jobs), desc="world", unit="img", disable=not progress)
    if workers == 1:
        for task in tasks:
            bar.update(_write_chunk(task))
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            for done in pool.imap_unordered(_write_chunk, tasks):
                bar.update(done)
    bar.close()
    counts = {name: len(part) for name, part in parts.items()}
    (out / "world.json").write_text(json.dumps(_metadata(config, counts), indent=2) + "\n")
    return WorldSummary(root=out, images=counts)


def read_world_config(root: Path) -> WorldConfig | None:
    """Return the configuration a complete world at `root` was made with, or None if there is none."""
    meta = Path(root) / "world.json"
    if not meta.is_file():
        return None
    data = json.loads(meta.read_text())["config"]
    data["shapes"] = tuple(data["shapes"])
    return WorldConfig(**data)


def world_cache_dir(config: WorldConfig, cache_root: Path) -> Path:
    """The folder under `cache_root` that holds the world for `config` (named by its settings' hash)."""
    digest = hashlib.sha256(json.dumps(config.identity(), sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_root) / f"world-{digest}"


def ensure_world(config: WorldConfig, cache_root: Path, *, progress: bool = True) -> Path:
    """Return the cached world for `config` under `cache_root`, generating it first if absent.

    A world is generated into a temporary sibling folder and renamed into place when complete,
    so an interrupted generation never leaves a half-written world that looks finished.
    """
    root = world_cache_dir(config, cache_root)
    if read_world_config(root) is not None:
        return root
    partial = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    generate_world(config, partial, progress=progress)
    try:
        partial.rename(root)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if read_world_config(root) is None:
            raise
    return root
