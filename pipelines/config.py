"""The loader's typed configuration, its batch type, and the work every backend shares."""
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from fastinv.errors import UsageError
from fastinv.log import get_logger
from fastinv.pipelines.augment import ViewParams, sample_params, to_device, to_float
from fastinv.pipelines.recipes import Recipe
from fastinv.pipelines.sampler import ShardedBatches, batch_generator

BACKENDS = ("torch", "dali", "ffcv")
OUTPUTS = ("float", "uint8")
DECODE_SITES = ("auto", "workers", "main")
_log = get_logger(__name__)


class TwoViewBatch(NamedTuple):
    """Two augmented views (B, 3, H, W) of the same images, their labels (B,) and dataset indices (B,)."""

    view1: torch.Tensor
    view2: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


@dataclass(frozen=True)
class LoaderConfig:
    """Settings of a two-view loader.

    root: an ImageFolder (class sub-folders of images), or a .beton file for backend="ffcv".
    recipe: a preset name ("default", "spatial", "appearance"), a Recipe, or a .yaml/.json path.
    output: "float" (float32, normalised by the recipe) or "uint8" (0-255, not normalised).
    workers: decode processes (0 = in the calling process); results do not depend on it.
    decode_in (torch backend): where images are decoded and augmented. "workers": the worker
    processes, on the CPU, send finished uint8 views (the calling process only moves them to
    `device`); "main": the workers only read files and send their bytes, and the calling process
    decodes (batched nvJPEG on CUDA) and augments on `device`; "auto": "workers" when `device`
    is the CPU, "main" on an accelerator. On the CPU both give the same batches.
    """

    root: str | Path
    recipe: "str | Path | Recipe" = "default"
    backend: str = "torch"
    image_size: int = 224
    batch_size: int = 256
    workers: int = 2
    device: str | torch.device = "cpu"
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = True
    shuffle: bool = True
    output: str = "float"
    channels_last: bool = True
    decode_in: str = "auto"

    def validate(self) -> None:
        """Raise UsageError saying how to fix the first bad setting."""
        if self.backend not in BACKENDS:
            raise UsageError(f"unknown loader backend {self.backend!r}; valid: {', '.join(BACKENDS)}")
        if self.output not in OUTPUTS:
            raise UsageError(f"unknown loader output {self.output!r}; valid: {', '.join(OUTPUTS)}")
        if self.decode_in not in DECODE_SITES:
            raise UsageError(f"unknown loader decode_in {self.decode_in!r}; valid: {', '.join(DECODE_SITES)}")
        for key, low in (("image_size", 1), ("batch_size", 1), ("workers", 0), ("world_size", 1), ("rank", 0)):
            value = getattr(self, key)
            if not isinstance(value, int) or value < low:
                raise UsageError(f"loader {key} must be an integer >= {low}, got {value!r}")
        if self.rank >= self.world_size:
            raise UsageError(f"loader rank {self.rank} must be below world_size {self.world_size}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise UsageError(f"unknown device {self.device!r}; use e.g. 'cpu' or 'cuda:0'") from None

    def decodes_in_workers(self) -> bool:
        """Whether the torch backend's workers decode and augment (see `decode_in`)."""
        if self.decode_in == "auto":
            return torch.device(self.device).type == "cpu"
        return self.decode_in == "workers"


class TwoViewLoaderBase:
    """What every backend's loader shares: the batch order of this rank (`batches`), epoch and
    resume point, the draws of each batch, skipped files, class names and the output conversion.

    A backend reads and decodes the images of `batches.batch(epoch, b)`, applies the recipe's ops
    with `draws(...)`, and defines `__iter__` (TwoViewBatch, from `start_at` on)."""

    def __init__(self, cfg: LoaderConfig, recipe: Recipe, classes: list[str], labels: np.ndarray | list[int]):
        self.cfg = cfg
        self.recipe = recipe
        self.classes = list(classes)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.device = torch.device(cfg.device)
        self.batches = ShardedBatches(len(self.labels), cfg.batch_size, cfg.seed, cfg.rank, cfg.world_size,
                                      cfg.shuffle, cfg.drop_last)
        self.epoch = 0
        self._start = 0
        self._skipped: dict[str, str] = {}

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self.batches)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of every undecodable file seen so far (each listed once)."""
        return list(self._skipped.items())

    def _record_skipped(self, items: list[tuple[str, str]]) -> None:
        for path, reason in items:
            if path not in self._skipped:
                self._skipped[path] = reason
                _log.warning("skipping undecodable image %s: %s", path, reason)

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle (and augmentation draws) of `epoch`; the same on every rank."""
        if epoch < 0:
            raise UsageError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)
        self._start = 0

    def start_at(self, batch: int) -> None:
        """Make the next iteration begin at batch `batch` of the current epoch (exact resume)."""
        if not 0 <= batch <= len(self):
            raise UsageError(f"start_at({batch}): this loader has {len(self)} batches per epoch")
        self._start = int(batch)

    def _take_start(self) -> int:
        start, self._start = self._start, 0
        return start

    def generator(self, b: int) -> torch.Generator:
        """The generator of batch b's draws in the current epoch on this rank."""
        return batch_generator(self.cfg.seed, self.epoch, self.cfg.rank, b)

    def draws(self, b: int, sizes: torch.Tensor) -> tuple[ViewParams, ViewParams]:
        """Both views' draws (view 1 first) for batch b of the current epoch, whose images have
        sizes (N, 2) = (height, width)."""
        gen = self.generator(b)
        return tuple(sample_params(self.recipe, sizes, gen, self.cfg.image_size, view) for view in range(2))

    def _output(self, views: torch.Tensor, copy: bool = False) -> torch.Tensor:
        """Views (N, 3, S, S) of 0-255 grey levels in the configured output: float normalised by the
        recipe, or uint8; channels_last or contiguous. `copy`: never return `views` itself."""
        if self.cfg.output == "float":
            return to_float(views, self.recipe.normalize, self.cfg.channels_last)
        fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        return views.to(torch.uint8, memory_format=fmt, copy=copy)

    def _batch(self, view1: torch.Tensor, view2: torch.Tensor, indices: np.ndarray) -> TwoViewBatch:
        """A TwoViewBatch of finished views and the dataset indices of their images, labels looked up,
        both moved to the device in one transfer."""
        labels, indices = to_device((torch.from_numpy(self.labels[indices]), torch.from_numpy(indices)), self.device)
        return TwoViewBatch(view1, view2, labels, indices)
