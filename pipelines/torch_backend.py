"""The torch backend: torchvision.io decode, then batched per-image augmentation on the device.

Where a batch is decoded and augmented follows `LoaderConfig.decode_in`. With "workers" (the
default on the CPU) each worker process builds whole batches (read, decode, crop, colour ops) and
hands back both uint8 views in one buffer (on the CPU, a slot of a shared-memory ring made once
per epoch, see `_ViewSlots`). With "main" (the default on an accelerator) the workers only read
the files and hand back the batch's bytes in one buffer with offsets; the calling process decodes
them (batched nvJPEG on CUDA) and augments on the device, never waiting for it (see `augment`).
Either way a worker sends at most one shared-memory buffer per batch, never a tensor per image,
so batches of any size stay far below the open-file limit.

On CUDA the calling process prepares the next batch on a side stream while the caller's
training step runs on its own stream: the hand-off makes the caller's stream wait for the
batch's kernels and marks its tensors as used there, so the time the caller waits for a batch
is the loader's, not the step's.

The draws of batch b always come from `batch_generator(seed, epoch, rank, b)`, so the batches do
not depend on the number of workers or, on the CPU, on `decode_in`, and a resumed run sees the
same batches. A batch holding undecodable files is shortened (those images are dropped and
reported), never refilled; an all-bad batch is skipped.
"""
import ctypes
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fastinv.errors import DataError, FastinvError
from fastinv.pipelines.augment import draw_views, image_sizes, render_views, view_buffer
from fastinv.pipelines.config import LoaderConfig, TwoViewBatch, TwoViewLoaderBase
from fastinv.pipelines.decode import decode_many, pack_bytes, read_file, unpack_bytes
from fastinv.pipelines.recipes import Recipe
from fastinv.pipelines.sampler import ShardedBatches, batch_generator

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_KEEP_BLOCKS = 32 << 20  # the most glibc lets the mmap threshold rise to on 64-bit systems
_PREFETCH = 2  # batches each worker prepares ahead (the DataLoader's prefetch_factor)


@dataclass
class _Fetched:
    """What a worker hands back for batch b: the dataset indices of the images kept, the files
    skipped, and either both uint8 views (2, N, 3, S, S) (in one buffer, or in slot `slot` of the
    loader's `_ViewSlots`) or the files' bytes in one buffer with their (N + 1,) offsets."""

    batch: int
    indices: np.ndarray
    skipped: list[tuple[str, str]]
    views: torch.Tensor | None = None
    slot: int | None = None
    encoded: torch.Tensor | None = None
    offsets: np.ndarray | None = None
    paths: list[str] | None = None

    def pin_memory(self) -> "_Fetched":
        """The same batch with its views in page-locked memory (called by the DataLoader's pin thread)."""
        return self if self.views is None else replace(self, views=self.views.pin_memory())


def two_views(images: list[torch.Tensor], recipe: Recipe, size: int, gen: torch.Generator,
              batched: bool | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Two independently augmented uint8 views (2, N, 3, size, size) of decoded images, drawn from
    `gen` (view 1 first), on the images' device (in `out` if given); `batched` as in
    `augment.plan_views`."""
    plan = draw_views(recipe, image_sizes(images), size, gen, images[0].device, batched)
    return render_views(images, plan, out)


def _keep_freed_memory(_worker: int = 0) -> None:
    """Let this worker process keep freed blocks of up to 32 MiB for reuse (glibc only).

    By default glibc hands every freed block of more than a few hundred KiB back to the system,
    so each new image-sized tensor is zero-filled page by page again; that made the colour ops
    2-6x slower than the arithmetic. Elsewhere (other C libraries) this does nothing."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BLOCKS)
        libc.mallopt(_M_TRIM_THRESHOLD, 4 * _KEEP_BLOCKS)
    except (OSError, AttributeError):
        pass


class _ViewSlots:
    """A ring of uint8 two-view batch buffers in shared memory, made once per epoch by the calling
    process: batch b's worker renders into slot b mod `len(self)` and hands back only the slot's
    number, and the calling process reads it there.

    Handing back each batch as a tensor costs a fresh shared-memory segment per batch and a page
    fault for each of its 4 KiB pages (about 4 us each on the 2-core VM: 20 ms per batch of 64 at
    224 px); the ring's pages are faulted in once per epoch.

    Reuse is safe with workers * prefetch + 1 slots: the DataLoader keeps at most workers *
    prefetch batches dispatched beyond the last one it handed to the calling process, and
    dispatches another only when the calling process asks for the next batch, by which time it
    is done with the slot (`TorchTwoViewLoader._finish` converts or copies the views out of it)."""

    def __init__(self, batches: int, batch_size: int, size: int, workers: int):
        slots = min(batches, workers * _PREFETCH + 1)
        try:
            self.buffers = view_buffer(slots, 2 * batch_size, size).share_memory_()
        except RuntimeError as exc:  # /dev/shm too small (a container's default is 64 MiB)
            mib = slots * 2 * batch_size * 3 * size * size / 2 ** 20
            raise FastinvError(f"the torch loader needs {mib:.0f} MiB of shared memory for {slots} batches in "
                               f"flight and cannot get it ({str(exc).rsplit(': ', 1)[-1]}): give /dev/shm more "
                               f"room (docker run --shm-size), or use fewer --workers or a smaller --batch-size"
                               ) from None

    def __len__(self) -> int:
        return self.buffers.shape[0]

    def views(self, b: int, n: int) -> torch.Tensor:
        """Batch b's slot as two views of its first `n` images: (2, n, 3, S, S) uint8, channels_last."""
        slot = self.buffers[b % len(self)]
        return slot.unflatten(0, (2, -1))[:, :n]


class _BatchSource(Dataset):
    """Map-style dataset over batch numbers of one epoch (picklable for worker processes); with
    `slots`, decoded batches are rendered there."""

    def __init__(self, paths: list[str], batches: ShardedBatches, epoch: int, recipe: Recipe, size: int,
                 decode_here: bool, slots: _ViewSlots | None = None):
        self.paths, self.batches, self.epoch = paths, batches, epoch
        self.recipe, self.size, self.decode_here, self.slots = recipe, size, decode_here, slots

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> _Fetched:
        indices = self.batches.batch(self.epoch, b)
        paths = [self.paths[i] for i in indices]
        chunks, skipped, keep = [], [], []
        for k, path in enumerate(paths):
            try:
                chunks.append(read_file(path))
                keep.append(k)
            except DataError as exc:
                skipped.append((path, str(exc)))
        indices, paths = indices[keep], [paths[k] for k in keep]
        encoded, offsets = pack_bytes(chunks)
        if not self.decode_here:
            return _Fetched(b, indices, skipped, encoded=encoded, offsets=offsets, paths=paths)
        images, bad = decode_many(unpack_bytes(encoded, offsets), paths, torch.device("cpu"))
        good = [k for k, img in enumerate(images) if img is not None]
        if not good:
            return _Fetched(b, indices[good], skipped + bad)
        gen = batch_generator(self.batches.seed, self.epoch, self.batches.rank, b)
        out = None if self.slots is None else self.slots.views(b, len(good))
        views = two_views([images[k] for k in good], self.recipe, self.size, gen, out=out)
        if self.slots is None:
            return _Fetched(b, indices[good], skipped + bad, views=views)
        return _Fetched(b, indices[good], skipped + bad, slot=b)


class TorchTwoViewLoader(TwoViewLoaderBase):
    """Two-view loader over an ImageFolder with the torch backend (see the module docstring)."""

    def __init__(self, cfg: LoaderConfig, recipe: Recipe, paths: list[str], labels: list[int], classes: list[str]):
        super().__init__(cfg, recipe, classes, labels)
        self.paths = paths

    def _fetches(self, start: int) -> tuple[Iterable[_Fetched], _ViewSlots | None]:
        """What the workers hand back for the batches from `start` on, and the ring their views are
        rendered in (CPU worker processes only)."""
        decode_here = self.cfg.decodes_in_workers()
        slots = None
        if decode_here and self.cfg.workers and self.device.type == "cpu":
            slots = _ViewSlots(len(self) - start, self.cfg.batch_size, self.cfg.image_size, self.cfg.workers)
        source = _BatchSource(self.paths, self.batches, self.epoch, self.recipe, self.cfg.image_size,
                              decode_here, slots)
        numbers = range(start, len(self))
        if self.cfg.workers == 0:
            return map(source.__getitem__, numbers), slots
        return DataLoader(source, batch_size=None, sampler=numbers, num_workers=self.cfg.workers,
                          prefetch_factor=_PREFETCH, pin_memory=self.device.type == "cuda",
                          worker_init_fn=_keep_freed_memory), slots

    def _finish(self, fetched: _Fetched, slots: _ViewSlots | None = None) -> TwoViewBatch | None:
        skipped, indices, views = list(fetched.skipped), fetched.indices, fetched.views
        if fetched.slot is not None:
            views = slots.views(fetched.slot, len(indices))
        if fetched.encoded is not None:  # decode and augment here, on the device
            images, bad = decode_many(unpack_bytes(fetched.encoded, fetched.offsets), fetched.paths, self.device)
            skipped += bad
            good = [k for k, img in enumerate(images) if img is not None]
            indices = indices[good]
            if good:
                views = two_views([images[k] for k in good], self.recipe, self.cfg.image_size,
                                  self.generator(fetched.batch))
        self._record_skipped(skipped)
        if views is None:
            return None
        copy = fetched.slot is not None  # the slot is reused: the batch must not be a view of it
        v1, v2 = (self._output(v, copy) for v in views.to(self.device, non_blocking=True).unbind(0))
        return self._batch(v1, v2, indices)

    def _one_ahead(self, fetches: Iterable[_Fetched]) -> Iterator[TwoViewBatch]:
        """CUDA: batch b + 1 is queued on a side stream before batch b is handed to the caller."""
        stream = torch.cuda.Stream(device=self.device)
        pending = None
        for fetched in fetches:
            ready = None if pending is None else self._hand_off(pending, stream)
            with torch.cuda.stream(stream):
                pending = self._finish(fetched)
            if ready is not None:
                yield ready
        if pending is not None:
            yield self._hand_off(pending, stream)

    def _hand_off(self, batch: TwoViewBatch, stream: torch.cuda.Stream) -> TwoViewBatch:
        """Make the caller's current stream wait for what `stream` has queued so far (this batch) and
        keep the batch's memory from reuse until the caller's stream is done with it."""
        consumer = torch.cuda.current_stream(self.device)
        consumer.wait_stream(stream)
        for tensor in batch:
            tensor.record_stream(consumer)
        return batch

    def __iter__(self) -> Iterator[TwoViewBatch]:
        """Yield this rank's batches of the current epoch, from the `start_at` batch on."""
        fetches, slots = self._fetches(self._take_start())
        if self.device.type == "cuda":
            yield from self._one_ahead(fetches)
            return
        for fetched in fetches:
            batch = self._finish(fetched, slots)
            if batch is not None:
                yield batch
