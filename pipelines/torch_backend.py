"""The torch backend: torchvision.io decode, then batched per-image augmentation on the device.

On the CPU, worker processes each build whole batches (read, decode, crop, colour ops) and hand
back uint8 views; on an accelerator the workers only read the bytes and the calling process
decodes (batched nvJPEG on CUDA) and augments on the device. Either way the draws of batch b
come from `batch_generator(seed, epoch, rank, b)`, so the batches do not depend on the number
of workers and a resumed run sees the same batches. A batch holding undecodable files is
shortened (those images are dropped and reported), never refilled; an all-bad batch is skipped.
"""
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fastinv.errors import DataError
from fastinv.pipelines.augment import augment_view, image_sizes, sample_params, to_float
from fastinv.pipelines.config import LoaderConfig, TwoViewBatch, TwoViewLoaderBase
from fastinv.pipelines.decode import decode_many, read_bytes
from fastinv.pipelines.recipes import Recipe
from fastinv.pipelines.sampler import ShardedBatches, batch_generator


@dataclass
class _Fetched:
    """What a worker hands back for batch b: uint8 views (CPU decode) or encoded bytes."""

    batch: int
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: list[tuple[str, str]]
    views: tuple[torch.Tensor, torch.Tensor] | None = None
    encoded: list[torch.Tensor] | None = None
    paths: list[str] | None = None


def two_views(images: list[torch.Tensor], recipe: Recipe, size: int, gen: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently augmented uint8 views of decoded images, drawn from `gen` (view 1 first)."""
    sizes = image_sizes(images)
    p1 = sample_params(recipe, sizes, gen)
    p2 = sample_params(recipe, sizes, gen)
    return augment_view(images, recipe, p1, size), augment_view(images, recipe, p2, size)


class _BatchSource(Dataset):
    """Map-style dataset over batch numbers of one epoch (picklable for worker processes)."""

    def __init__(self, paths: list[str], labels: np.ndarray, batches: ShardedBatches, epoch: int,
                 recipe: Recipe, size: int, decode_here: bool):
        self.paths, self.labels, self.batches, self.epoch = paths, labels, batches, epoch
        self.recipe, self.size, self.decode_here = recipe, size, decode_here

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> _Fetched:
        indices = self.batches.batch(self.epoch, b)
        paths = [self.paths[i] for i in indices]
        encoded, skipped, keep = [], [], []
        for k, path in enumerate(paths):
            try:
                encoded.append(read_bytes(path))
                keep.append(k)
            except DataError as exc:
                skipped.append((path, str(exc)))
        if not self.decode_here:
            return _Fetched(b, torch.from_numpy(self.labels[indices[keep]]), torch.from_numpy(indices[keep]),
                            skipped, encoded=encoded, paths=[paths[k] for k in keep])
        images, bad = decode_many(encoded, [paths[k] for k in keep], torch.device("cpu"))
        keep = [k for k, img in zip(keep, images) if img is not None]
        images = [img for img in images if img is not None]
        views = None
        if images:
            gen = batch_generator(self.batches.seed, self.epoch, self.batches.rank, b)
            views = two_views(images, self.recipe, self.size, gen)
        return _Fetched(b, torch.from_numpy(self.labels[indices[keep]]), torch.from_numpy(indices[keep]),
                        skipped + bad, views=views)


class TorchTwoViewLoader(TwoViewLoaderBase):
    """Two-view loader over an ImageFolder with the torch backend (see the module docstring)."""

    def __init__(self, cfg: LoaderConfig, recipe: Recipe, paths: list[str], labels: list[int], classes: list[str]):
        super().__init__(cfg, recipe, classes, len(paths))
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batches = ShardedBatches(len(paths), cfg.batch_size, cfg.seed, cfg.rank, cfg.world_size,
                                      cfg.shuffle, cfg.drop_last)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self.batches)

    def _fetches(self, start: int) -> Iterator[_Fetched]:
        source = _BatchSource(self.paths, self.labels, self.batches, self.epoch, self.recipe,
                              self.cfg.image_size, decode_here=self.device.type == "cpu")
        numbers = range(start, len(self))
        if self.cfg.workers == 0:
            return map(source.__getitem__, numbers)
        return iter(DataLoader(source, batch_size=None, sampler=numbers, num_workers=self.cfg.workers,
                               prefetch_factor=2, pin_memory=self.device.type == "cuda"))

    def _finish(self, fetched: _Fetched) -> TwoViewBatch | None:
        skipped, labels, indices = list(fetched.skipped), fetched.labels, fetched.indices
        views = fetched.views
        if fetched.encoded is not None:  # decode and augment on the device
            images, bad = decode_many(fetched.encoded, fetched.paths, self.device)
            skipped += bad
            ok = torch.tensor([img is not None for img in images], dtype=torch.bool)
            labels, indices = labels[ok], indices[ok]
            images = [img for img in images if img is not None]
            gen = batch_generator(self.cfg.seed, self.epoch, self.cfg.rank, fetched.batch)
            views = two_views(images, self.recipe, self.cfg.image_size, gen) if images else None
        self._record_skipped(skipped)
        if views is None:
            return None
        v1, v2 = (v.to(self.device, non_blocking=True) for v in views)
        if self.cfg.output == "float":
            v1, v2 = (to_float(v, self.recipe.normalize, self.cfg.channels_last) for v in (v1, v2))
        elif not self.cfg.channels_last:
            v1, v2 = v1.contiguous(), v2.contiguous()
        return TwoViewBatch(v1, v2, labels.to(self.device), indices.to(self.device))

    def __iter__(self) -> Iterator[TwoViewBatch]:
        """Yield this rank's batches of the current epoch, from the `start_at` batch on."""
        for fetched in self._fetches(self._take_start()):
            batch = self._finish(fetched)
            if batch is not None:
                yield batch
