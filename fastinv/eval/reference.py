"""The reference set of an evaluation: the images whose clean-view features give mu and S (SPEC 3).

The paper took mu and S from the clean features of all 50,000 ImageNet-val images and drew the
Table 2 images from the same folder. A `ReferenceImages` is such a folder (an ImageFolder or a
flat folder of images), or the synthetic world's training split when no folder is given. Its
features are never held at once: `stream_moments` decodes the images in a thread pool, takes each
one's clean view, runs every base model on the batch on the device and adds the batch to the
running first and second moments of every model and fusion (fusions need the cross-covariance of
their parts, so their moments come from the concatenated features of the same batch).
"""
import hashlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fastinv.errors import DataError
from fastinv.eval.config import ViewConfig
from fastinv.eval.context import EvalContext
from fastinv.pipelines.evaltf.views import resize_crop
from fastinv.kernels import RunningMoments
from fastinv.log import get_logger
from fastinv.pipelines.decode import decode_image
from fastinv.pipelines.folder import IMAGE_SUFFIXES

log = get_logger(__name__)


@dataclass(frozen=True)
class ReferenceImages:
    """The image files of a reference set, its display name, and a key that changes with its content."""

    name: str
    paths: tuple[Path, ...]
    key: str

    def draw(self, count: int, seed: int) -> tuple[Path, ...]:
        """A seeded draw of `count` distinct images (all of them when there are fewer), in file order."""
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(self.paths), size=min(count, len(self.paths)), replace=False))
        return tuple(self.paths[i] for i in pick)


def scan_reference(root: str | Path) -> ReferenceImages:
    """Every image file under `root` (an ImageFolder or a flat folder), sorted; DataError if none.

    The key digests the folder, each file's relative path, size and modification time, so a
    changed folder never reuses statistics cached for the old one."""
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"--reference {folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    paths = tuple(sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                         and not any(part.startswith(".") for part in p.relative_to(folder).parts)))
    if not paths:
        raise DataError(f"--reference {folder}: no images there (expected an ImageFolder of class sub-folders or a "
                        f"flat folder of {', '.join(IMAGE_SUFFIXES[:3])} files)")
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return ReferenceImages(str(folder), paths, f"folder-{digest.hexdigest()[:24]}")


def _clean_or_reason(path: Path, view: ViewConfig) -> torch.Tensor | str:
    try:
        return resize_crop(decode_image(path), view.resize, view.crop)
    except DataError as exc:
        return str(exc)


def clean_batches(paths: Sequence[Path], view: ViewConfig, batch_size: int, workers: int = 2
                  ) -> Iterator[tuple[torch.Tensor, list[tuple[str, str]]]]:
    """Clean views (B, 3, crop, crop) uint8 of `paths` in order, `batch_size` at a time, with the
    (path, reason) of the files in that stretch that could not be decoded."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            results = list(pool.map(_clean_or_reason, chunk, [view] * len(chunk)))
            good = [r for r in results if not isinstance(r, str)]
            skipped = [(str(p), r) for p, r in zip(chunk, results) if isinstance(r, str)]
            if good:
                yield torch.stack(good), skipped
            elif skipped:
                yield torch.empty((0, 3, view.crop, view.crop), dtype=torch.uint8), skipped


def stream_moments(ctx: EvalContext, targets: Sequence[str], images: ReferenceImages, view: ViewConfig,
                   skipped: dict[str, str]) -> dict[str, RunningMoments]:
    """Running moments of the clean features of every reference image, for each model or fusion in
    `targets`; undecodable files are skipped and recorded in `skipped` (path -> reason)."""
    bases = list(dict.fromkeys(part for target in targets for part in ctx.components(target)))
    moments = {target: RunningMoments(ctx.extractors[bases[0]].device) for target in targets}
    batches = clean_batches(images.paths, view, ctx.config.batch_size)
    bar = tqdm(total=len(images.paths), desc=f"reference {Path(images.name).name}", unit="img", leave=False,
               disable=not ctx.config.progress)
    with bar:
        for batch, bad in batches:
            for path, reason in bad:
                log.warning("reference: skipping %s: %s", path, reason)
                skipped[path] = reason
            if batch.shape[0]:
                features = {name: ctx.extractors[name].forward(batch) for name in bases}
                for target in targets:
                    parts = [features[name] for name in ctx.components(target)]
                    moments[target].update(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
            bar.update(batch.shape[0] + len(bad))
    if any(m.n < 2 for m in moments.values()):
        raise DataError(f"reference {images.name}: fewer than 2 decodable images; the statistics need more")
    return moments
