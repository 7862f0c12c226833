"""The FFCV backend: write an ImageFolder as a .beton, and read two views back from it.

One FFCV loader, built once per run and reused every epoch, reads the file. Its graph decodes
each image once (a JIT-compiled decoder, on FFCV's CPU threads) and feeds two pipelines, one per
view, in the way FFCV lets several outputs share a decoded field (a `PipelineSpec` whose source
is the first pipeline's decoder). Each view's pipeline crops and resizes its boxes (FFCV's OpenCV
`resize_crop`, area interpolation) and flips, then `ToTensor`, `ToDevice` and `ToTorchImage` hand
over a channels_last uint8 batch on the loader's device. The colour ops (FFCV 1.0.2 has no hue,
grayscale or blur) then run as the torch backend's ops on that device: its batched steps
(`apply_colour`) on the whole batch on an accelerator; on the CPU, where these memory-bound ops
are fastest on one planar image at a time (it stays in cache), its per-image steps
(`colour_levels`) on `workers` threads with one intra-op thread each, while FFCV's threads decode
the next batches.

Every draw, crops and flips included, comes from `sample_params` with `batch_generator(seed,
epoch, rank, b)` and each image's size as stored in the .beton, so batch b of an epoch depends
only on (seed, epoch, rank, b), as on the other backends. The sample order and sharding are ours
too (`ShardedBatches`, handed to FFCV as the traversal order of each pass), so `set_epoch` and
`start_at` behave as on the other backends. Undecodable images are left out, and named, when the
.beton is written (`convert`), so reading never meets one.
"""
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from fastinv.errors import DataError, MissingExtraError, UsageError
from fastinv.log import get_logger
from fastinv.pipelines.augment import ViewParams, apply_colour, colour_levels, image_colour_steps
from fastinv.pipelines.config import LoaderConfig, TwoViewBatch, TwoViewLoaderBase
from fastinv.pipelines.decode import decode_image
from fastinv.pipelines.folder import scan_image_folder
from fastinv.pipelines.recipes import Recipe

_log = get_logger(__name__)


def _ffcv():
    try:
        import ffcv  # noqa: F401 - the import proves the extra is usable
        from ffcv import fields, loader, transforms, writer
        from ffcv.pipeline import operation, pipeline_spec
        from ffcv.reader import Reader
    except ImportError as exc:
        raise MissingExtraError("FFCV backend", "ffcv", exc) from None
    return fields, loader, transforms, writer, operation, pipeline_spec, Reader


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


def _why_undecodable(path: str) -> str | None:
    """Why the image file `path` cannot be decoded, or None if it can."""
    try:
        decode_image(path)
    except DataError as exc:
        return str(exc)
    return None


def write_beton(root: str | Path, out: str | Path, *, max_resolution: int | None = None, quality: int = 90,
                workers: int = 1) -> ConvertSummary:
    """Write the ImageFolder `root` to the FFCV file `out` (images re-encoded as JPEG at `quality`,
    longer side capped at `max_resolution` if given), checking and writing with `workers`
    processes; undecodable files are left out, each named in a warning and listed in the summary."""
    fields, _, _, writer, _, _, _ = _ffcv()
    out = Path(out)
    if out.suffix != ".beton":
        raise UsageError(f"--out {out}: an FFCV file must end in .beton")
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality must lie in 1..100, got {quality}")
    paths, labels, classes = scan_image_folder(root)
    if workers > 1:
        with multiprocessing.Pool(workers) as pool:
            reasons = pool.map(_why_undecodable, paths, chunksize=max(1, len(paths) // (8 * workers)))
    else:
        reasons = [_why_undecodable(path) for path in paths]
    good, kept_labels, skipped = [], [], []
    for path, label, reason in zip(paths, labels, reasons):
        if reason is None:
            good.append(path)
            kept_labels.append(label)
        else:
            skipped.append((path, reason))
            _log.warning("leaving out undecodable image %s: %s", path, reason)
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


@lru_cache(maxsize=1)
def _graph_ops():
    """The FFCV operations and traversal order the loader's graph is made of (defined once FFCV is imported)."""
    _, _, _, _, operation, _, _ = _ffcv()
    from ffcv.libffcv import imdecode, memcpy, resize_crop
    from ffcv.pipeline.allocation_query import AllocationQuery
    from ffcv.pipeline.compiler import Compiler
    from ffcv.traversal_order.base import TraversalOrder

    jpeg = 0  # RGBImageField's mode code of a JPEG-encoded image (1: raw pixels)

    class DecodeWhole(operation.Operation):
        """Decoder of an RGBImageField: each image decoded whole into its own flat buffer (room for
        the largest image), so one decode serves both views."""

        def declare_state_and_memory(self, previous_state):
            area = int((self.metadata["height"].astype(np.uint64) * self.metadata["width"]).max())
            shape, dtype = (3 * area,), np.dtype("u1")
            return replace(previous_state, jit_mode=True, shape=shape, dtype=dtype), AllocationQuery(shape, dtype)

        def generate_code(self) -> Callable:
            read, decode_c, copy_c = self.memory_read, Compiler.compile(imdecode), Compiler.compile(memcpy)
            images = Compiler.get_iterator()

            def decode(batch_indices, destination, metadata, storage_state):
                for k in images(len(batch_indices)):
                    field = metadata[batch_indices[k]]
                    data = read(field["data_ptr"], storage_state)
                    height, width = field["height"], field["width"]
                    if field["mode"] == jpeg:
                        decode_c(data, destination[k], height, width, height, width, 0, 0, 1, 1, False, False)
                    else:
                        copy_c(data, destination[k])
                return destination[:len(batch_indices)]

            decode.is_parallel = True
            return decode

    class CropView(operation.Operation):
        """One view: each decoded image's crop box resized to size x size and flipped as its draws
        say (`boxes_of(indices)` -> boxes (N, 4) = (top, left, height, width), flips (N,))."""

        def __init__(self, size: int, boxes_of: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]):
            super().__init__()
            self.size, self.boxes_of = size, boxes_of

        def declare_state_and_memory(self, previous_state):
            shape, dtype = (self.size, self.size, 3), np.dtype("u1")
            return replace(previous_state, jit_mode=False, shape=shape, dtype=dtype), AllocationQuery(shape, dtype)

        def generate_code(self) -> Callable:
            resize_c, images = Compiler.compile(resize_crop), Compiler.get_iterator()
            heights, widths = self.metadata["height"].astype(np.int64), self.metadata["width"].astype(np.int64)

            def crop_all(decoded, height, width, boxes, flips, destination):
                for k in images(destination.shape[0]):
                    image = decoded[k][:3 * height[k] * width[k]].reshape(height[k], width[k], 3)
                    top, left = boxes[k, 0], boxes[k, 1]
                    resize_c(image, top, top + boxes[k, 2], left, left + boxes[k, 3], destination[k])
                    if flips[k]:
                        destination[k] = destination[k][:, ::-1].copy()
                return destination

            crop_all.is_parallel = True
            kernel, boxes_of = Compiler.compile(crop_all), self.boxes_of

            def crop(decoded, destination, indices):
                boxes, flips = boxes_of(indices)
                return kernel(decoded, heights[indices], widths[indices], boxes, flips, destination[:len(indices)])

            crop.with_indices = True
            return crop

    class PassOrder(TraversalOrder):
        """The traversal order of each pass, chosen by our sampler and set before the pass."""

        def __init__(self, order: np.ndarray):  # no FFCV loader yet: FFCV's constructor calls us with it
            self.order = order

        def __call__(self, loader) -> "PassOrder":
            return self

        def sample_order(self, epoch: int) -> np.ndarray:
            return self.order

    return DecodeWhole, CropView, PassOrder


class FfcvTwoViewLoader(TwoViewLoaderBase):
    """Two-view loader over a .beton file (see the module docstring)."""

    def __init__(self, cfg: LoaderConfig, recipe: Recipe):
        _, loader, transforms, _, _, pipeline_spec, Reader = self._ffcv = _ffcv()
        path = Path(cfg.root)
        if not path.is_file():
            raise DataError(f"FFCV file {path} does not exist; write it with 'fastinv convert --to beton'")
        try:
            reader = Reader(str(path))
        except (AssertionError, IndexError, ValueError, OSError) as exc:
            raise DataError(f"{path} is not an FFCV file ({exc}); write one with "
                            "'fastinv convert --to beton'") from None
        if not {"image", "label"} <= set(reader.handlers):
            raise DataError(f"{path} has fields {', '.join(reader.handlers)}; this loader reads 'image' and 'label'")
        names = list(reader.handlers)
        images = reader.metadata[f"f{names.index('image')}"]
        labels = np.asarray(reader.metadata[f"f{names.index('label')}"]).astype(np.int64)
        super().__init__(cfg, recipe, _read_classes(path, labels), labels)
        self._sizes = torch.from_numpy(np.stack([images["height"], images["width"]], axis=1).astype(np.int64))
        self._batch_of = np.zeros(len(labels), dtype=np.int64)  # batch number of each index in this pass
        self._drawn: dict[int, tuple[ViewParams, ViewParams]] = {}
        decode_whole, crop_view, pass_order = _graph_ops()
        self._order = pass_order(self._pass_order(0, 0))  # the longest pass: FFCV sizes its loader by it
        decoder = decode_whole()
        tail = [transforms.ToTensor(), transforms.ToDevice(self.device, non_blocking=True),
                transforms.ToTorchImage(channels_last=True)]
        views = {f"view{v}": pipeline_spec.PipelineSpec(
            "image" if v == 0 else decoder, decoder if v == 0 else None,
            [crop_view(cfg.image_size, lambda indices, v=v: self._boxes(indices, v))] + tail) for v in range(2)}
        # one intra-op thread each: many small ops, where OpenMP's hand-offs cost more than they save
        self._pool = ThreadPoolExecutor(max(1, cfg.workers), initializer=torch.set_num_threads, initargs=(1,))
        self._loader = loader.Loader(str(path), batch_size=cfg.batch_size, num_workers=max(1, cfg.workers),
                                     order=self._order, drop_last=False,
                                     pipelines={"image": None, "label": None, **views})

    def _pass_order(self, epoch: int, start: int) -> np.ndarray:
        """Dataset indices this rank reads in `epoch` from batch `start` on."""
        return self.batches.rank_indices(epoch)[start * self.cfg.batch_size:len(self) * self.cfg.batch_size]

    def _params(self, b: int) -> tuple[ViewParams, ViewParams]:
        """Both views' draws for batch b of this epoch (drawn once, by whichever side asks first)."""
        params = self._drawn.get(b)
        if params is None:
            params = self._drawn[b] = self.draws(b, self._sizes[torch.from_numpy(self.batches.batch(self.epoch, b))])
        return params

    def _boxes(self, indices: np.ndarray, view: int) -> tuple[np.ndarray, np.ndarray]:
        """Crop boxes and flips of one view for the images of an FFCV batch (one of our batches)."""
        params = self._params(int(self._batch_of[indices[0]]))[view]
        return params.boxes.numpy(), params.flip.numpy()

    def _finish(self, view: torch.Tensor, params: ViewParams) -> torch.Tensor:
        """FFCV's uint8 batch (whose buffer FFCV reuses) with the recipe's colour ops, in the
        configured output, as a new tensor: the whole batch at once, except for colour ops on
        the CPU, which are memory-bound and run fastest on one image at a time (the torch
        backend's per-image strategy): there image by image, on the worker threads."""
        if not self.recipe.colour_ops:
            return self._output(view, copy=True)
        if self.device.type != "cpu":
            levels = apply_colour(view.float().div_(255), self.recipe, params).mul_(255).round_().clamp_(0, 255)
            return self._output(levels)
        fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        out = torch.empty(view.shape, dtype=torch.float32 if self.cfg.output == "float" else torch.uint8,
                          memory_format=fmt)
        steps = image_colour_steps(self.recipe, params, view.shape[-1])

        def one(i: int) -> None:
            out[i:i + 1] = self._output(colour_levels(view[i], steps[i]))

        list(self._pool.map(one, range(view.shape[0])))
        return out

    def __iter__(self) -> Iterator[TwoViewBatch]:
        """Yield this rank's batches of the current epoch, from the `start_at` batch on."""
        start = self._take_start()
        order = self._pass_order(self.epoch, start)
        if order.size == 0:
            return
        self._order.order = order
        self._batch_of[order] = start + np.arange(order.size) // self.cfg.batch_size
        self._drawn.clear()
        passing = iter(self._loader)
        try:
            for b, (view1, view2) in enumerate(passing, start):
                params = self._params(b)
                self._drawn.pop(b, None)
                yield self._batch(self._finish(view1, params[0]), self._finish(view2, params[1]),
                                  self.batches.batch(self.epoch, b))
        finally:
            passing.close()
