"""The images each suite evaluates on, read through the dataset registry, loaded once per run.

The reference set gives mu and S (the role ImageNet-val plays in the paper): a user's folder
(`reference`) or, by default, the synthetic world's train split. The synthetic suite draws its
images from the reference folder (as the paper did), or from the world's test split when the
world is the reference. The world's pose and light groups join the real-world suite, and its
latents and classes make the extrinsic and downstream tasks. Datasets found under `data_root`
join their suites.
"""
import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from fastinv.datasets import DATASETS, ImageSet, Splits, find_datasets
from fastinv.eval.config import EvalConfig
from fastinv.eval.context import EvalContext
from fastinv.eval.images import NativeImages, load_native, load_square
from fastinv.eval.reference import ReferenceImages, scan_reference, stream_moments
from fastinv.kernels import ReferenceStats, RunningMoments, reference_stats

WORLD_FOLDER = "world"


@dataclass(frozen=True)
class Loaded:
    """An image set decoded to uint8 squares, with its annotations for the kept images."""

    name: str
    images: torch.Tensor
    targets: np.ndarray | None
    groups: np.ndarray | None


@dataclass(frozen=True)
class Task:
    """A train/test task (extrinsic or downstream) with its decoded images."""

    name: str
    kind: str
    task: str
    train: Loaded
    test: Loaded
    target_names: tuple[str, ...] | None
    metric: str


@dataclass
class EvalData:
    """Lazily loaded evaluation images of the synthetic world and of datasets under `data_root`."""

    config: EvalConfig
    world: Path
    data_root: Path | None = None
    reference: Path | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    _stats: dict[str, ReferenceStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._present: dict[str, Path] = {}
        if self.data_root is not None:
            present, missing = find_datasets(self.data_root)
            self._present = {n: p for n, p in present.items() if DATASETS.get(n).folder != WORLD_FOLDER}
            self.skipped.update({n: why for n, why in missing.items() if DATASETS.get(n).folder != WORLD_FOLDER})
        else:
            self.skipped.update({n: f"no --data-root given (expected layout: {spec.layout})"
                                 for n, spec in DATASETS if spec.folder != WORLD_FOLDER})
        for name, spec in DATASETS:
            if spec.folder == WORLD_FOLDER:
                self._present[name] = self.world

    def names(self, suite: str) -> list[str]:
        """The datasets of `suite` that are present, world first."""
        found = [n for n, spec in DATASETS if spec.suite == suite and n in self._present]
        return sorted(found, key=lambda n: DATASETS.get(n).folder != WORLD_FOLDER)

    @cached_property
    def _world_digest(self) -> str:
        settings = json.dumps(json.loads((self.world / "world.json").read_text())["config"], sort_keys=True)
        return hashlib.sha256(settings.encode()).hexdigest()[:16]

    def dataset_key(self, name: str, part: str) -> str:
        """The identity of a dataset part in feature-cache keys."""
        root = self._present[name]
        if root == self.world:
            return f"{name}:{part}:world-{self._world_digest}"
        return f"{name}:{part}:{root.resolve()}"

    def _load(self, image_set: ImageSet, size: int) -> Loaded:
        loaded = load_square(image_set, size)
        for number, (where, reason) in enumerate(loaded.skipped, 1):
            self.skipped[f"{where} image {number}"] = reason
        keep = loaded.kept
        return Loaded(image_set.name, loaded.images,
                      None if image_set.targets is None else image_set.targets[keep],
                      None if image_set.groups is None else image_set.groups[keep])

    def _read(self, name: str) -> ImageSet | Splits:
        return DATASETS.get(name).read(self._present[name])

    @cached_property
    def _world_latents(self) -> Splits:
        return self._read("world_latents")

    @cached_property
    def reference_images(self) -> ReferenceImages:
        """The reference set: the `reference` folder, else the world's training images."""
        if self.reference is not None:
            return scan_reference(self.reference)
        train = self._world_latents.train
        return ReferenceImages("world/trainset", tuple(train.paths), self.dataset_key("world_latents", "train"))

    @cached_property
    def synthetic(self) -> tuple[NativeImages, str]:
        """The synthetic suite's images at their native sizes, and their dataset key: a seeded draw of
        `synthetic_images` from the reference folder, or from the world's test split by default."""
        count, seed = self.config.synthetic_images, self.config.seed
        if self.reference is not None:
            paths = self.reference_images.draw(count, seed)
            key = f"reference-draw{len(paths)}-seed{seed}:{self.reference_images.key}"
        else:
            test = self._world_latents.test
            pick = np.sort(np.random.default_rng(seed).choice(len(test), size=min(count, len(test)), replace=False))
            paths = tuple(test.paths[i] for i in pick)
            key = self.dataset_key("world_latents", f"test-draw{len(pick)}-seed{seed}")
        loaded = load_native([str(p) for p in paths])
        for path, reason in loaded.skipped:
            self.skipped[path] = reason
        return loaded, key

    def reference_stats(self, ctx: EvalContext, model: str) -> ReferenceStats:
        """Mean, covariance and whitening of `model`'s clean features of the reference images.

        The first call computes (or reads from the cache) the moments of every model and fusion of
        `ctx` in one pass over the reference images."""
        if model not in self._stats:
            view = self.config.synthetic_view
            keys = {m: ctx.cache.key(kind="reference-moments", models=",".join(ctx.extractors[c].hash for c in ctx.components(m)),
                                     reference=self.reference_images.key, view=view.describe()) for m in ctx.models}
            moments: dict[str, RunningMoments] = {}
            for m, key in keys.items():
                state = ctx.cache.load(key)
                if state is not None:
                    moments[m] = RunningMoments.from_state(state, ctx.extractors[ctx.components(m)[0]].device)
            missing = [m for m in ctx.models if m not in moments]
            if missing:
                computed = stream_moments(ctx, missing, self.reference_images, view, self.skipped)
                for m, state in computed.items():
                    ctx.cache.store(keys[m], state.state())
                moments.update(computed)
            for m, state in moments.items():
                self._stats[m] = reference_stats(state)
        return self._stats[model]

    def reference_meta(self) -> dict | None:
        """Where the reference statistics came from: the folder, its image count, and per model the
        images used, the feature dimension and the covariance estimate (for results.json); None
        when no suite needed them."""
        if not self._stats:
            return None
        return {"folder": self.reference_images.name, "images": len(self.reference_images.paths),
                "models": {m: {"n": s.n, "d": s.d, "estimator": s.estimator, "reason": s.reason}
                           for m, s in self._stats.items()}}

    @cached_property
    def group_sets(self) -> list[Loaded]:
        """Every present real-world group set at the clean view, named after its dataset."""
        return [self._load(self._read(name), self.config.clean_view.resize) for name in self.names("realworld")]

    def group_set_sizes(self) -> str:
        """'name: G groups, N images' for each group set, for table notes."""
        return ", ".join(f"{s.name}: {len(set(s.groups.tolist()))} groups, {len(s.groups)} images"
                         for s in self.group_sets)

    def tasks(self, suite: str) -> list[Task]:
        """Every present extrinsic or downstream task, decoded at the clean view."""
        return self._tasks[suite]

    @cached_property
    def _tasks(self) -> dict[str, list[Task]]:
        out: dict[str, list[Task]] = {"extrinsic": [], "downstream": []}
        for suite in out:
            for name in self.names(suite):
                splits = self._read(name)
                train_set = splits.train if splits.val is None else _concat(splits.train, splits.val)
                test_set = splits.test
                if suite == "extrinsic":
                    train_set = seeded_draw(train_set, self.config.extrinsic_train_images, self.config.seed)
                    test_set = seeded_draw(test_set, self.config.extrinsic_test_images, self.config.seed)
                size, spec = self.config.clean_view.resize, DATASETS.get(name)
                out[suite].append(Task(name, spec.kind, splits.task, self._load(train_set, size), self._load(test_set, size),
                                       splits.train.target_names, spec.metric))
        return out


def seeded_draw(images: ImageSet, count: int, seed: int) -> ImageSet:
    """`count` images of `images` drawn without replacement (numpy default_rng(seed)), in file order, named
    after the draw; all of them, unchanged, when there are no more than `count`."""
    if len(images) <= count:
        return images
    pick = np.sort(np.random.default_rng(seed).choice(len(images), size=count, replace=False))
    return replace(images.subset(pick), name=f"{images.name}[draw {count} of {len(images)}, seed {seed}]")


def _concat(a: ImageSet, b: ImageSet) -> ImageSet:
    """Train and validation images as one training set (the protocol's train(+val))."""
    def cat(x: np.ndarray | None, y: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else np.concatenate([x, y])

    return replace(a, paths=a.paths + b.paths, pixels=cat(a.pixels, b.pixels), targets=cat(a.targets, b.targets),
                   boxes=cat(a.boxes, b.boxes), groups=cat(a.groups, b.groups))
