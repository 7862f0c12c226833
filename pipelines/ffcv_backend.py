"""The FFCV backend: write an ImageFolder as a .beton, and read two views back from it.

FFCV's JIT-compiled decoders do decode + random-resized-crop (or centre crop) + flip on CPU
threads; two FFCV loaders over the same file, fed the same index order, give the two views.
The colour ops (FFCV 1.0.2 has no hue, grayscale or blur) then run as the torch backend's
batched ops on the device, drawn from `batch_generator(seed, epoch, rank, b)`. The sample order
and sharding are ours (`ShardedBatches`, passed to FFCV as a sequential index list), so `start_at`
and `set_epoch` behave as on the other backends; the crop and flip draws are FFCV's own (seeded
by FFCV per epoch), so exact mid-epoch resume holds for the order and colour draws only.
Undecodable images are left out when the .beton is written (`convert`), not at read time.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from fastinv.errors import DataError, MissingExtraError, UsageError
from fastinv.log import get_logger
from fastinv.pipelines.augment import apply_colour, sample_params, to_float
from fastinv.pipelines.config import LoaderConfig, TwoViewBatch, TwoViewLoaderBase
from fastinv.pipelines.decode import decode_image
from fastinv.pipelines.folder import scan_image_folder
from fastinv.pipelines.recipes import RandomResizedCrop, Recipe, ResizeCenterCrop
from fastinv.pipelines.sampler import ShardedBatches, batch_generator

_log = get_logger(__name__)


def _ffcv():
    try:
        import ffcv  # noqa: F401 - the import proves the extra is usable
        from ffcv import fields, loader, transforms, writer
        from ffcv.fields import decoders
    except ImportError as exc:
        raise MissingExtraError("FFCV backend", "ffcv", exc) from None
    return fields, decoders, loader, transforms, writer


@dataclass(frozen=True)
class ConvertSummary:
    """What `write_beton` wrote: the file, the images kept, and (path, reason) of those left out."""

    path: Path
    images: int
    skipped: list[tuple[str, str]]
    classes: list[str]


class _FolderSamples:
    """(HWC uint8 array, label) per readable image, the indexable dataset FFCV's writer wants."""

    def __init__(self, paths: list[str], labels: list[int]):
        self.paths, self.labels = paths, labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return decode_image(self.paths[i]).permute(1, 2, 0).numpy(), self.labels[i]


def write_beton(root: str | Path, out: str | Path, *, max_resolution: int | None = None, quality: int = 90,
                workers: int = 1) -> ConvertSummary:
    """Write the ImageFolder `root` to the FFCV file `out` (images re-encoded as JPEG at `quality`,
    longer side capped at `max_resolution` if given); undecodable files are left out and listed."""
    fields, _, _, _, writer = _ffcv()
    out = Path(out)
    if out.suffix != ".beton":
        raise UsageError(f"--out {out}: an FFCV file must end in .beton")
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality must lie in 1..100, got {quality}")
    paths, labels, classes = scan_image_folder(root)
    good, kept_labels, skipped = [], [], []
    for path, label in zip(paths, labels):
        try:
            decode_image(path)
        except DataError as exc:
            skipped.append((path, str(exc)))
            _log.warning("leaving out undecodable image %s", path)
            continue
        good.append(path)
        kept_labels.append(label)
    if not good:
        raise DataError(f"image folder {root}: no decodable images")
    out.parent.mkdir(parents=True, exist_ok=True)
    field_spec = {"image": fields.RGBImageField(write_mode="jpg", max_resolution=max_resolution, jpeg_quality=quality),
                  "label": fields.IntField()}
    writer.DatasetWriter(str(out), field_spec, num_workers=max(1, workers)).from_indexed_dataset(
        _FolderSamples(good, kept_labels))
    (out.with_suffix(".classes.txt")).write_text("\n".join(classes) + "\n", encoding="utf-8")
    return ConvertSummary(out, len(good), skipped, classes)


def _read_classes(path: Path, labels: np.ndarray) -> list[str]:
    names = path.with_suffix(".classes.txt")
    if names.is_file():
        return names.read_text(encoding="utf-8").split()
    return [str(c) for c in range(int(labels.max()) + 1)]


class FfcvTwoViewLoader(TwoViewLoaderBase):
    """Two-view loader over a .beton file (see the module docstring)."""

    def __init__(self, cfg: LoaderConfig, recipe: Recipe):
        self._ffcv = _ffcv()
        path = Path(cfg.root)
        if not path.is_file():
            raise DataError(f"FFCV file {path} does not exist; write it with 'fastinv convert --to beton'")
        from ffcv.reader import Reader
        reader = Reader(str(path))
        labels = np.asarray(reader.metadata["f1"]).astype(np.int64)
        super().__init__(cfg, recipe, _read_classes(path, labels), len(labels))
        self.path, self.labels = path, labels
        self.batches = ShardedBatches(len(labels), cfg.batch_size, cfg.seed, cfg.rank, cfg.world_size,
                                      cfg.shuffle, cfg.drop_last)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self.batches)

    def _decoder(self):
        _, decoders, _, _, _ = self._ffcv
        size, crop = (self.cfg.image_size,) * 2, self.recipe.crop
        if isinstance(crop, RandomResizedCrop):
            return decoders.RandomResizedCropRGBImageDecoder(size, scale=crop.scale, ratio=crop.ratio)
        if isinstance(crop, ResizeCenterCrop):
            return decoders.CenterCropRGBImageDecoder(size, ratio=1.0)
        raise UsageError(f"recipe {self.recipe.name!r}: the ffcv backend needs a crop op "
                         "(random_resized_crop or resize_center_crop)")

    def _view_loader(self, order: np.ndarray, view: int):
        _, _, loader, transforms, _ = self._ffcv
        ops = [self._decoder()]
        if self.recipe.flip is not None:
            ops.append(transforms.RandomHorizontalFlip(self.recipe.flip.p))
        ops += [transforms.ToTensor(), transforms.ToTorchImage(channels_last=True)]
        return loader.Loader(str(self.path), batch_size=self.cfg.batch_size, num_workers=max(1, self.cfg.workers),
                             order=loader.OrderOption.SEQUENTIAL, indices=order.tolist(), drop_last=False,
                             seed=self.cfg.seed * 1000003 + self.epoch * 2 + view,
                             pipelines={"image": ops, "label": None})

    def __iter__(self) -> Iterator[TwoViewBatch]:
        """Yield this rank's batches of the current epoch, from the `start_at` batch on."""
        start = self._take_start()
        order = self.batches.rank_indices(self.epoch)[start * self.cfg.batch_size:len(self) * self.cfg.batch_size]
        if order.size == 0:
            return
        size = torch.tensor([[self.cfg.image_size] * 2])
        for b, ((view1,), (view2,)) in enumerate(zip(self._view_loader(order, 0), self._view_loader(order, 1)), start):
            idx = torch.from_numpy(self.batches.batch(self.epoch, b))
            gen = batch_generator(self.cfg.seed, self.epoch, self.cfg.rank, b)
            views = []
            for v in (view1, view2):
                v = v.to(self.device, non_blocking=True)
                params = sample_params(self.recipe, size.expand(v.shape[0], 2), gen)
                if self.recipe.colour_ops:
                    x = apply_colour(v.float().div_(255), self.recipe, params)
                    v = x.mul_(255).round_().clamp_(0, 255).to(torch.uint8)
                views.append(to_float(v, self.recipe.normalize, self.cfg.channels_last) if self.cfg.output == "float"
                             else v.contiguous(memory_format=torch.channels_last if self.cfg.channels_last
                                               else torch.contiguous_format))
            labels = torch.from_numpy(self.labels[idx.numpy()])
            yield TwoViewBatch(views[0], views[1], labels.to(self.device), idx.to(self.device))
