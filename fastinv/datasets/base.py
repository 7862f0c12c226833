"""The typed result every dataset reader returns, and the shared checks on folders and files."""
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from fastinv.errors import DataError
from fastinv.pipelines.decode import decode_image


@dataclass(frozen=True)
class ImageSet:
    """A list of images (files or an in-memory uint8 array) with optional per-image annotations.

    paths: image files, or empty when `pixels` (n, H, W, 3) uint8 holds the images (CIFAR10).
    targets: (n,) int64 class labels or (n, k) float32 regression targets.
    groups: (n,) int64 group id (real-world invariance: same object / scene / material);
        `group_names[g]` names group g.
    boxes: (n, 4) float32 crop boxes (left, top, right, bottom) in original pixel coordinates;
        the feature extractor crops each image to its box and resizes the crop to 224 x 224
        (regression targets are already expressed in that 224 frame).
    classes / target_names: the meaning of class labels / target columns.
    """

    name: str
    paths: tuple[Path, ...] = ()
    pixels: np.ndarray | None = None
    targets: np.ndarray | None = None
    groups: np.ndarray | None = None
    group_names: tuple[str, ...] | None = None
    boxes: np.ndarray | None = None
    classes: tuple[str, ...] | None = None
    target_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if (self.pixels is None) == (not self.paths):
            raise ValueError("an ImageSet holds either paths or pixels, exactly one of them")
        n = len(self)
        for label, array in (("targets", self.targets), ("groups", self.groups), ("boxes", self.boxes)):
            if array is not None and len(array) != n:
                raise ValueError(f"{self.name}: {label} has {len(array)} rows for {n} images")

    def __len__(self) -> int:
        return len(self.paths) if self.pixels is None else len(self.pixels)

    def image(self, index: int) -> torch.Tensor:
        """Image `index` as a (3, H, W) uint8 RGB tensor: decoded from its file as training decodes
        (`fastinv.pipelines.decode`; DataError naming the file if it cannot be), or taken from pixels."""
        if self.pixels is not None:
            return torch.from_numpy(np.ascontiguousarray(self.pixels[index])).permute(2, 0, 1)
        return decode_image(self.paths[index])

    def subset(self, indices: Sequence[int] | np.ndarray) -> "ImageSet":
        """The images at `indices` with their annotations (group ids and names are kept as they are)."""
        idx = np.asarray(indices, dtype=np.int64)

        def take(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[idx]

        return replace(self, paths=tuple(self.paths[i] for i in idx) if self.paths else (), pixels=take(self.pixels),
                       targets=take(self.targets), groups=take(self.groups), boxes=take(self.boxes))


@dataclass(frozen=True)
class Splits:
    """A task's splits: `task` is "classification" or "regression"; `val` may be None."""

    name: str
    task: str
    train: ImageSet
    test: ImageSet
    val: ImageSet | None = None


def require_dir(root: Path, name: str, layout: str) -> Path:
    """`root` as a Path if it is a folder; DataError naming the dataset and its layout otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{name}: {root} is not a folder; expected layout: {layout}")
    return root


def layout_error(name: str, root: Path, layout: str, problem: str) -> DataError:
    """A DataError saying what is wrong with dataset `name` at `root` and the layout it needs."""
    return DataError(f"{name} at {root}: {problem}; expected layout: {layout}")


def grouped(name: str, paths: Sequence[Path], keys: Sequence[str], min_size: int = 2) -> ImageSet:
    """An ImageSet of `paths` grouped by `keys` (sorted by key, then path); groups smaller than
    `min_size` are dropped (a group needs pairs)."""
    order = sorted(range(len(paths)), key=lambda i: (keys[i], str(paths[i])))
    counts: dict[str, int] = {}
    for i in order:
        counts[keys[i]] = counts.get(keys[i], 0) + 1
    kept = [i for i in order if counts[keys[i]] >= min_size]
    names = tuple(sorted({keys[i] for i in kept}))
    lookup = {key: g for g, key in enumerate(names)}
    return ImageSet(name, paths=tuple(paths[i] for i in kept), groups=np.array([lookup[keys[i]] for i in kept], dtype=np.int64),
                    group_names=names)


def seeded_split(n: int, fractions: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """Split range(n) at random (numpy default_rng(seed) permutation) into parts of `fractions`."""
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum(fractions)[:-1] / np.sum(fractions) * n).astype(int)
    return [np.sort(part) for part in np.split(order, bounds)]
