"""Decode evaluation images: to one square working size, to clean views, or as they are.

Images differ in size, so each is decoded and resized on its own (in a thread pool); the
result is one uint8 batch (N, 3, S, S), or for the synthetic suite, which transforms each image
at its native resolution, a list of the decoded images. Files that cannot be decoded are
skipped, named in a warning and reported in `skipped`, and the mask `kept` keeps targets aligned.
"""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from fastinv.datasets import ImageSet
from fastinv.errors import DataError
from fastinv.log import get_logger
from fastinv.pipelines.decode import decode_image
from fastinv.pipelines.evaltf.views import to_working_size

log = get_logger(__name__)


@dataclass
class LoadedImages:
    """A uint8 batch (N, 3, S, S) on the CPU, which inputs it holds, and which were skipped."""

    images: torch.Tensor
    kept: np.ndarray
    skipped: list[tuple[str, str]]


def square_of(image: torch.Tensor, size: int, box: np.ndarray | None = None) -> torch.Tensor:
    """Crop `box` (left, top, right, bottom in pixels) and resize it to a square, or else
    Resize (short side) + CenterCrop to a `size` square."""
    if box is None:
        return to_working_size(image, size)
    left, top, right, bottom = (int(round(float(v))) for v in box)
    crop = F.crop(image, top, left, max(1, bottom - top), max(1, right - left))
    return F.resize(crop, [size, size], antialias=True)


def load_square(image_set: ImageSet, size: int, *, workers: int = 2) -> LoadedImages:
    """Decode every image of `image_set` into one uint8 batch of `size` squares."""
    def task(i: int) -> torch.Tensor | str:
        try:
            return square_of(image_set.image(i), size, None if image_set.boxes is None else image_set.boxes[i])
        except DataError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(task, range(len(image_set))))
    kept = np.array([not isinstance(r, str) for r in results], dtype=bool)
    skipped = [(image_set.name, r) for r in results if isinstance(r, str)]
    for name, reason in skipped:
        log.warning("%s: skipping an image: %s", name, reason)
    good = [r for r in results if not isinstance(r, str)]
    if not good:
        raise DataError(f"{image_set.name}: none of its {len(image_set)} images could be decoded")
    return LoadedImages(torch.stack(good), kept, skipped)


@dataclass
class NativeImages:
    """Decoded images (3, H_i, W_i) uint8 at their own sizes, on the CPU, and the files left out."""

    images: list[torch.Tensor]
    paths: list[str]
    skipped: list[tuple[str, str]]


def load_native(paths: list[str], *, workers: int = 2) -> NativeImages:
    """Decode every file of `paths` (torchvision's decoders); undecodable ones are skipped and named."""
    def task(path: str) -> torch.Tensor | str:
        try:
            return decode_image(path)
        except DataError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(task, paths))
    skipped = [(path, r) for path, r in zip(paths, results) if isinstance(r, str)]
    for path, reason in skipped:
        log.warning("skipping an image: %s", reason)
    kept = [(path, r) for path, r in zip(paths, results) if not isinstance(r, str)]
    if not kept:
        raise DataError(f"none of the {len(paths)} images could be decoded (first: {paths[0] if paths else '-'})")
    return NativeImages([r for _, r in kept], [p for p, _ in kept], skipped)
