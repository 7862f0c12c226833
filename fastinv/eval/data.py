"""The images each suite evaluates on, read through the dataset registry, loaded once per run.

The synthetic world is always there: its test split feeds the synthetic suite (a seeded draw),
its train split gives the reference statistics (the role ImageNet-val plays in the paper), its
pose and light groups join the real-world suite, and its latents and classes make the
extrinsic and downstream tasks. Datasets found under `data_root` join their suites.
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
from fastinv.eval.images import load_square
from fastinv.kernels import ReferenceStats, reference_stats

WORLD_FOLDER = "world"
SPATIAL_SETS = {"coil100", "aloi_viewpoint", "alot_viewpoint", "flickr1024", "world_pose"}
PER_CLASS_METRIC = {"caltech101", "flowers102"}


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
    skipped: dict[str, str] = field(default_factory=dict)
    _stats: dict[str, ReferenceStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._present: dict[str, Path] = {}
        if self.data_root is not None:
            present, missing = find_datasets(self.data_root)
            self._present = {n: p for n, p in present.items() if DATASETS[n].folder != WORLD_FOLDER}
            self.skipped.update({n: why for n, why in missing.items() if DATASETS[n].folder != WORLD_FOLDER})
        else:
            self.skipped.update({n: f"no --data-root given (expected layout: {spec.layout})"
                                 for n, spec in DATASETS.items() if spec.folder != WORLD_FOLDER})
        for spec in DATASETS.values():
            if spec.folder == WORLD_FOLDER:
                self._present[spec.name] = self.world

    def names(self, suite: str) -> list[str]:
        """The datasets of `suite` that are present, world first."""
        found = [n for n, spec in DATASETS.items() if spec.suite == suite and n in self._present]
        return sorted(found, key=lambda n: DATASETS[n].folder != WORLD_FOLDER)

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
        return DATASETS[name].read(self._present[name])

    @cached_property
    def _world_latents(self) -> Splits:
        return self._read("world_latents")

    @cached_property
    def _reference(self) -> Loaded:
        return self._load(self._world_latents.train, self.config.synthetic_view.resize)

    @cached_property
    def synthetic(self) -> tuple[torch.Tensor, str]:
        """The seeded draw of world test images at the working size, and its dataset key."""
        test = self._world_latents.test
        rng = np.random.default_rng(self.config.seed)
        pick = np.sort(rng.choice(len(test), size=min(self.config.synthetic_images, len(test)), replace=False))
        images = self._load(test.subset(pick), self.config.synthetic_view.resize).images
        return images, self.dataset_key("world_latents", f"test-draw{len(pick)}-seed{self.config.seed}")

    def reference_stats(self, ctx: EvalContext, model: str) -> ReferenceStats:
        """Mean, covariance and whitening of `model`'s clean features of the reference images."""
        if model not in self._stats:
            features = ctx.features(model, self._reference.images, dataset=self.dataset_key("world_latents", "train"),
                                    view=self.config.synthetic_view)
            self._stats[model] = reference_stats(features)
        return self._stats[model]

    @cached_property
    def group_sets(self) -> list[tuple[Loaded, str]]:
        """Every present real-world group set at the clean view, with its kind (spatial / appearance)."""
        sets = []
        for name in self.names("realworld"):
            loaded = self._load(self._read(name), self.config.clean_view.resize)
            sets.append((loaded, "spatial" if name in SPATIAL_SETS else "appearance"))
        return sets

    def group_set_sizes(self) -> str:
        """'name: G groups, N images' for each group set, for table notes."""
        return ", ".join(f"{s.name}: {len(set(s.groups.tolist()))} groups, {len(s.groups)} images"
                         for s, _ in self.group_sets)

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
                size = self.config.clean_view.resize
                metric = ("mean_per_class_accuracy" if name in PER_CLASS_METRIC else "accuracy") \
                    if splits.task == "classification" else "r2"
                kind = "recognition" if splits.task == "classification" else "pose"
                if "colour" in name:
                    kind = "appearance"
                out[suite].append(Task(name, kind, splits.task, self._load(train_set, size), self._load(splits.test, size),
                                       splits.train.target_names, metric))
        return out


def _concat(a: ImageSet, b: ImageSet) -> ImageSet:
    """Train and validation images as one training set (the protocol's train(+val))."""
    def cat(x: np.ndarray | None, y: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else np.concatenate([x, y])

    return replace(a, paths=a.paths + b.paths, pixels=cat(a.pixels, b.pixels), targets=cat(a.targets, b.targets),
                   boxes=cat(a.boxes, b.boxes), groups=cat(a.groups, b.groups))
