"""The DALI backend: a DALI graph compiled from the recipe, fed the torch backend's draws.

Every random parameter comes from `augment.sample_params` with `batch_generator(seed, epoch,
rank, b)` and enters the graph through one external source, so DALI and torch draw from one
distribution by construction, the determinism/resume contract holds, and the graph only has
to apply the ops correctly (what the statistical tests check). The graph is each op's DALI form
(`Op.dali_inputs`, `Op.dali`) in the recipe's run order, closed by one `crop_mirror_normalize`.

The graph decodes each image once (`mixed` = nvJPEG on a GPU, `cpu` without one; EXIF
orientation ignored, as torchvision does) and resizes each view's crop box straight from the
decoded image (`fn.resize` with a region of interest). The colour ops run on uint8 HWC images,
each rounding and clamping its output like PIL: brightness is `fn.brightness`; contrast blends
with the image's mean luma (an arithmetic expression: as a named argument of `fn.contrast` the
centre would have to live on the CPU); saturation (the blend with luma) and hue are one
`fn.coord_transform` with a per-image 3x3 matrix computed on the host; the per-image random
jitter order is one conditional per step. Hue is a rotation about the grey axis: close to, not
identical with, the HSV rotation of torchvision and PIL. Grayscale is a constant luma matrix,
and Gaussian blur two separable `fn.filter` passes with each image's torchvision kernel (reflect
padding, taps beyond 4 sigma left out as the torch backend does). `crop_mirror_normalize` then
flips, normalises and lays out the batch (HWC for channels_last, CHW otherwise), and the outputs
become torch tensors through DLPack without a copy (on torch's current stream on a GPU). No op
takes a constant as a positional input (DALI makes those constant nodes, on the GPU in a GPU
graph, which the host then has to read back), so a GPU graph never waits on a device-to-host
copy: every per-image number enters from the host, as a named argument, a conditional's
predicate or (the blur kernels) a CPU input that `fn.filter` takes on the GPU too.

The feeding runs `prefetch_queue_depth` (2) batches ahead of the consumer, from the calling
process. Bad files are skipped and named, and a batch holding them is shortened, never refilled.
Before the graph: empty files, files whose header PIL cannot read or whose format DALI does not
decode, and JPEGs cut off before their end marker that libjpeg-turbo cannot decode either (a GPU
decoder may turn those into garbage rather than fail). In the graph: files whose data DALI fails
to decode (corrupt); the graph then reports the file, is rebuilt (a failed DALI graph is not
usable again) and is fed the batch again without it. A file found bad is left out up front in
later epochs.
"""
import io
import re
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fastinv.errors import DataError, MissingExtraError, UsageError
from fastinv.pipelines.augment import ViewParams
from fastinv.pipelines.config import LoaderConfig, TwoViewBatch, TwoViewLoaderBase
from fastinv.pipelines.decode import decode_bytes
from fastinv.pipelines.ops import Op
from fastinv.pipelines.ops.base import DaliView
from fastinv.pipelines.recipes import Recipe

PREFETCH = 2
# What PIL calls the formats DALI's decoders read (JPEG, JPEG 2000, TIFF, PNG, BMP, PNM, WebP).
_DALI_FORMATS = frozenset({"JPEG", "MPO", "JPEG2000", "TIFF", "PNG", "BMP", "PPM", "WEBP"})
_JPEG_FORMATS, _JPEG_END = ("JPEG", "MPO"), b"\xff\xd9"
_FAILED_SAMPLE = re.compile(r"Failed to decode sample #(\d+)")


def _dali():
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
    except ImportError as exc:
        raise MissingExtraError("DALI backend", "dali", exc) from None
    return dali, fn, types


def _header_size(data: np.ndarray, path: str) -> tuple[int, int]:
    """(height, width) of an image file from its bytes (1-D uint8); DataError if PIL cannot read its
    header, DALI does not decode its format, or it is a JPEG cut off before its end marker (which a
    GPU decoder may turn into garbage) that libjpeg-turbo cannot decode either."""
    if data.size == 0:
        raise DataError(f"cannot decode image {path}: the file is empty")
    try:
        with Image.open(io.BytesIO(memoryview(data))) as img:
            width, height = img.size
            fmt = img.format
    except UnidentifiedImageError:
        raise DataError(f"cannot decode image {path}: not an image file PIL can identify") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None
    if fmt not in _DALI_FORMATS:
        raise DataError(f"cannot decode image {path}: DALI does not decode {fmt} files")
    if fmt in _JPEG_FORMATS and data[-2:].tobytes() != _JPEG_END:
        decode_bytes(torch.from_numpy(data), path)
    return height, width


def _view_arrays(recipe: Recipe, params: ViewParams, size: int) -> list:
    """The graph's inputs for one view, in the order the graph takes them: each step's DALI inputs."""
    return [array for op, draw in zip(recipe.steps, params.draws) for array in op.dali_inputs(draw, size)]


def _check_dali_forms(recipe: Recipe) -> None:
    """UsageError naming the first op of `recipe` that has no DALI form."""
    for op in recipe.steps:
        if type(op).dali is Op.dali:
            raise UsageError(f"recipe {recipe.name!r}: op {op.name} has no DALI form; use --loader torch or ffcv")


def _view_graph(recipe: Recipe, view: DaliView, inputs: list) -> DaliView:
    """One view's graph: each step's DALI form in run order, fed its share of `inputs`."""
    for op in recipe.steps:
        view, inputs = op.dali(view, inputs[:op.dali_arity]), inputs[op.dali_arity:]
    return view


@dataclass
class _Fed:
    """One batch handed to the graph: its number, the dataset indices kept in it, and the arrays
    fed (held here until its output is taken, since the graph reads them without a copy)."""

    batch: int
    indices: np.ndarray
    arrays: tuple


class DaliTwoViewLoader(TwoViewLoaderBase):
    """Two-view loader over an ImageFolder with a DALI graph (see the module docstring)."""

    def __init__(self, cfg: LoaderConfig, recipe: Recipe, paths: list[str], labels: list[int], classes: list[str]):
        super().__init__(cfg, recipe, classes, labels)
        _check_dali_forms(recipe)
        self._dali = _dali()
        self.paths = paths
        self._sizes = np.zeros((len(paths), 2), dtype=np.int64)  # (height, width) once read; 0 = not yet
        self._bad: set[int] = set()
        self._feed: Iterator[_Fed] = iter(())
        self._in_flight: deque[_Fed] = deque()
        self._fed_all = True  # the last pass handed the graph every batch it had
        self._pipe = self._build()

    def _build(self):
        dali, fn, types = self._dali
        gpu = self.device.type == "cuda"
        size, recipe = self.cfg.image_size, self.recipe
        uint8 = self.cfg.output == "uint8"
        per_view = sum(op.dali_arity for op in recipe.steps)

        @dali.pipeline_def(enable_conditionals=True)
        def graph():
            fed = fn.external_source(source=self._next_arrays, num_outputs=1 + 2 * per_view, batch=True,
                                     no_copy=True)
            decoded = fn.decoders.image(fed[0], device="mixed" if gpu else "cpu", output_type=types.RGB,
                                        adjust_orientation=False)
            views = []
            for v in range(2):
                start = DaliView(decoded, fn, types, size, uint8, std=(1.0,) * 3 if uint8 else (255.0,) * 3)
                view = _view_graph(recipe, start, list(fed[1 + v * per_view:1 + (v + 1) * per_view]))
                views.append(fn.crop_mirror_normalize(view.img, mirror=view.mirror, mean=list(view.mean),
                                                      std=list(view.std), dtype=types.UINT8 if uint8 else types.FLOAT,
                                                      output_layout="HWC" if self.cfg.channels_last else "CHW"))
            return tuple(views)

        pipe = graph(batch_size=self.cfg.batch_size, num_threads=max(1, self.cfg.workers),
                     device_id=(self.device.index or 0) if gpu else None, seed=self.cfg.seed,
                     prefetch_queue_depth=PREFETCH, exec_dynamic=True)
        pipe.build()
        return pipe

    def _read(self, b: int) -> _Fed | None:
        """Batch b's bytes and draws, leaving out files known or found bad; None if none is left."""
        encoded, kept, skipped = [], [], []
        for i in self.batches.batch(self.epoch, b):
            if i in self._bad:
                continue
            path = self.paths[i]
            try:
                data = np.fromfile(path, dtype=np.uint8)
                if not self._sizes[i, 0]:
                    self._sizes[i] = _header_size(data, path)
            except OSError as exc:
                self._bad.add(int(i))
                skipped.append((path, f"cannot read image {path}: {exc.strerror or exc}"))
                continue
            except DataError as exc:
                self._bad.add(int(i))
                skipped.append((path, str(exc)))
                continue
            encoded.append(data)
            kept.append(i)
        self._record_skipped(skipped)
        if not kept:
            return None
        indices = np.asarray(kept, dtype=np.int64)
        arrays = [encoded]
        for params in self.draws(b, torch.from_numpy(self._sizes[indices])):
            arrays += _view_arrays(self.recipe, params, self.cfg.image_size)
        return _Fed(b, indices, tuple(arrays))

    def _batches_from(self, start: int) -> Iterator[_Fed]:
        for b in range(start, len(self)):
            fed = self._read(b)
            if fed is not None:
                yield fed
        self._fed_all = True

    def _next_arrays(self) -> tuple:
        """The graph's external source: the next batch's arrays (StopIteration ends the pass)."""
        fed = next(self._feed)
        self._in_flight.append(fed)
        return fed.arrays

    def _restart(self, start: int) -> None:
        """Point the graph's source at batches `start`, `start + 1`, ... of this epoch, on a fresh
        graph if the previous pass failed or was left before its end."""
        if self._pipe is None or self._in_flight or not self._fed_all:
            self._pipe = self._build()
        else:
            self._pipe.reset()
        self._in_flight.clear()
        self._fed_all = False
        self._feed = self._batches_from(start)

    def _undecodable(self, fed: _Fed, error: RuntimeError) -> list[int]:
        """Positions in `fed` of the files the graph failed on: the one its error names, else
        those a one-image graph on the same device fails to decode."""
        encoded = fed.arrays[0]
        match = _FAILED_SAMPLE.search(str(error))
        if match and int(match.group(1)) < len(encoded):
            return [int(match.group(1))]
        bad, probe = [], None
        for k, data in enumerate(encoded):
            if probe is None:
                probe = self._probe()
            try:
                probe.feed_input("encoded", [data])
                probe.run()
            except RuntimeError:
                bad.append(k)
                probe = None
        return bad

    def _probe(self):
        """A graph that only decodes, one fed image at a time, as the loader's graph does."""
        dali, fn, types = self._dali
        gpu = self.device.type == "cuda"

        @dali.pipeline_def(batch_size=1, num_threads=1, device_id=(self.device.index or 0) if gpu else None,
                           prefetch_queue_depth=1)
        def probe():
            return fn.decoders.image(fn.external_source(name="encoded"), device="mixed" if gpu else "cpu",
                                     output_type=types.RGB, adjust_orientation=False)

        pipe = probe()
        pipe.build()
        return pipe

    def _drop_undecodable(self, fed: _Fed, error: RuntimeError) -> None:
        """Mark the files of `fed` that made the graph fail as bad, or re-raise if none did."""
        bad = self._undecodable(fed, error)
        if not bad:
            raise error
        paths = [self.paths[int(fed.indices[k])] for k in bad]
        self._bad.update(int(fed.indices[k]) for k in bad)
        self._record_skipped([(path, f"cannot decode image {path}: DALI's decoder rejects its data "
                                     "(truncated or corrupt)") for path in paths])

    def _tensor(self, out) -> torch.Tensor:
        x = torch.from_dlpack(out.as_tensor())  # the graph's own buffer, no copy
        return x.permute(0, 3, 1, 2) if self.cfg.channels_last else x

    def __iter__(self) -> Iterator[TwoViewBatch]:
        """Yield this rank's batches of the current epoch, from the `start_at` batch on."""
        start = self._take_start()
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        while True:
            self._restart(start)
            try:
                while True:
                    try:
                        out1, out2 = self._pipe.run(stream)
                    except StopIteration:
                        return
                    fed = self._in_flight.popleft()
                    start = fed.batch + 1
                    yield self._batch(self._tensor(out1), self._tensor(out2), fed.indices)
            except RuntimeError as error:
                if not self._in_flight:
                    raise
                fed = self._in_flight[0]
                self._pipe = None  # DALI leaves a failed graph unusable
                self._drop_undecodable(fed, error)
                start = fed.batch
