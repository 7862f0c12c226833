"""Data for pre-training: the two-view loader of fastinv.pipelines, device transfer, and the
clean (resize + centre-crop) images the kNN monitor embeds (with fastinv.eval's FeatureExtractor)."""
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from fastinv.datasets import ImageSet
from fastinv.eval.images import load_square
from fastinv.pipelines import LoaderConfig, TwoViewBatch, TwoViewLoaderBase, build_two_view_loader
from fastinv.pipelines import scan_image_folder
from fastinv.train.config import TrainConfig
from fastinv.train.distributed import DistInfo


def build_pretrain_loader(cfg: TrainConfig, dist: DistInfo) -> TwoViewLoaderBase:
    """This rank's share of the global batch, augmented by the run's recipe on its device."""
    return build_two_view_loader(LoaderConfig(
        root=cfg.data.root, recipe=cfg.data.recipe, backend=cfg.data.loader, image_size=cfg.data.image_size,
        batch_size=cfg.data.batch_size // dist.world_size, workers=cfg.data.workers, device=dist.device,
        seed=cfg.run.seed, rank=dist.rank, world_size=dist.world_size, drop_last=True, shuffle=True,
        output="float", channels_last=cfg.run.channels_last))


def timed_batches(loader: TwoViewLoaderBase, device: torch.device, channels_last: bool, batch_size: int
                  ) -> Iterator[tuple[TwoViewBatch, float]]:
    """Yield (batch on `device`, seconds spent waiting for it). The next batch is requested only
    after the caller has queued the current step; on CUDA the torch loader has already queued
    that batch on its own stream, so the wait is the loader's own work, not the step's. Nothing
    here waits for the device: transfers are non-blocking and the top-up below indexes on the
    device. A batch the loader shortened (undecodable files skipped) is topped up to
    `batch_size` by repeating its own images: split BN, the queue and the ranks' collectives all
    need the same batch size at every step."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    iterator = iter(loader)
    while True:
        start = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        views = [v.to(device, non_blocking=True, memory_format=memory_format) for v in (batch.view1, batch.view2)]
        labels, indices = batch.labels, batch.indices
        if views[0].shape[0] < batch_size:
            repeat = torch.arange(batch_size, device=device) % views[0].shape[0]
            views = [v[repeat].contiguous(memory_format=memory_format) for v in views]
            labels = labels.to(device, non_blocking=True)[repeat]
            indices = indices.to(device, non_blocking=True)[repeat]
        yield TwoViewBatch(views[0], views[1], labels, indices), time.perf_counter() - start


def clean_images(root: str | Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every decodable image of an ImageFolder resized (shorter side) and centre-cropped to `size`:
    ((N, 3, size, size) uint8, (N,) labels); undecodable files are skipped with a warning."""
    paths, labels, _ = scan_image_folder(root)
    loaded = load_square(ImageSet(Path(root).name, tuple(paths), targets=np.asarray(labels)), size)
    return loaded.images, torch.from_numpy(np.asarray(labels)[loaded.kept])
