"""`fastinv profile loader`: a two-view loader end to end, then where an image's time goes
(read, decode, augment, transfer, normalise) with the torch backend's functions."""
import time

import torch

from fastinv.errors import DataError, UsageError
from fastinv.profiling.report import ProfileReport, StageRow
from fastinv.profiling.timing import StageTimer, synchronize

LOADER_HOW = {
    "end_to_end": "the configured loader with its workers: wall time of the timed batches, device synchronised "
                  "at the end (perf_counter)",
    "read": "torch-backend functions, calling process, same files as the timed batches: read the bytes (host "
            "perf_counter)",
    "decode": "decode_many on --device (libjpeg-turbo on cpu, batched nvJPEG on cuda)",
    "augment": "two_views: the recipe's crops, flips and colour ops for both views on --device",
    "h2d": "copy one batch's two uint8 views from pinned host memory to --device (what a CPU-decoding loader "
           "pays); cuda only",
    "normalise": "to_float: uint8 views to normalised float32 (channels_last) on --device",
}


def profile_loader(loader, batches: int, warmup: int) -> tuple[int, float, list[torch.Tensor]]:
    """Run `warmup` untimed then up to `batches` timed batches: (images timed, seconds, the timed
    batches' dataset indices as CPU tensors)."""
    it = iter(loader)
    for _ in range(warmup):
        next(it, None)
    images, indices, start = 0, [], time.perf_counter()
    for _, batch in zip(range(batches), it):
        images += batch.view1.shape[0]
        indices.append(batch.indices)
    synchronize(loader.device)
    return images, time.perf_counter() - start, [i.cpu() for i in indices]


def _split_batch(timer: StageTimer, files: list[str], b: int, recipe, size: int, device: torch.device,
                 seed: int) -> None:
    from fastinv.pipelines.augment import to_float
    from fastinv.pipelines.decode import decode_many, read_bytes
    from fastinv.pipelines.sampler import batch_generator
    from fastinv.pipelines.torch_backend import two_views

    begin = time.perf_counter()
    encoded, kept = [], []
    for path in files:
        try:
            encoded.append(read_bytes(path))
            kept.append(path)
        except DataError:
            continue
    timer.add("read", time.perf_counter() - begin)
    with timer.stage("decode"):
        images = [img for img in decode_many(encoded, kept, device)[0] if img is not None]
    if not images:
        return
    with timer.stage("augment"):
        views = two_views(images, recipe, size, batch_generator(seed, 0, 0, b))
    if device.type == "cuda":
        host = [v.cpu().pin_memory() for v in views]
        with timer.stage("h2d"):
            views = tuple(v.to(device, non_blocking=True) for v in host)
    with timer.stage("normalise"):
        for view in views:
            to_float(view, recipe.normalize, True)


def loader_split(paths: list[str], batches: list[torch.Tensor], recipe, size: int, device: torch.device,
                 seed: int) -> StageTimer:
    """Time read / decode / augment / (h2d on cuda) / normalise with the torch backend's functions
    on the files of `batches` (tensors of dataset indices), one batch at a time in this process,
    after one untimed warm-up pass over the first batch."""
    def files(idx: torch.Tensor) -> list[str]:
        return [paths[i] for i in idx.tolist()]

    _split_batch(StageTimer(device), files(batches[0]), 0, recipe, size, device, seed)
    timer = StageTimer(device)
    for b, idx in enumerate(batches):
        _split_batch(timer, files(idx), b, recipe, size, device, seed)
    return timer


def profile_loader_report(cfg, batches: int, warmup: int, split: bool = True) -> ProfileReport:
    """The loader `cfg` (a fastinv.pipelines.LoaderConfig) timed over `batches` batches after
    `warmup` untimed ones, with the read/decode/augment split unless `split` is False (never for
    a .beton, which holds no files to re-read)."""
    from fastinv.pipelines import build_two_view_loader, scan_image_folder

    loader = build_two_view_loader(cfg)
    if len(loader) < warmup + 1:
        raise UsageError(f"--data has {len(loader)} batches of {cfg.batch_size}; need more than --warmup "
                         f"{warmup}: lower --batch-size or --warmup")
    images, seconds, indices = profile_loader(loader, batches, warmup)
    device = torch.device(cfg.device)
    settings = {"data": str(cfg.root), "backend": cfg.backend, "recipe": cfg.recipe, "workers": cfg.workers,
                "batch_size": cfg.batch_size, "image_size": cfg.image_size, "batches": batches, "warmup": warmup,
                "seed": cfg.seed}
    report = ProfileReport("loader", str(device), settings)
    report.summary = (f"loader backend={cfg.backend} recipe={cfg.recipe} workers={cfg.workers} "
                      f"batch={cfg.batch_size} size={cfg.image_size} device={device}: {images / seconds:.1f} "
                      f"images/s (two views), {images} images in {seconds:.2f} s, {len(loader.skipped)} skipped")
    report.stages.append(StageRow("end_to_end", "loader", seconds, len(indices), LOADER_HOW["end_to_end"]))
    report.rates["images_per_s"] = images / seconds
    if cfg.backend == "ffcv" or not split:
        report.notes.append("no read/decode/augment split: " + ("the .beton holds no files to re-read"
                                                               if cfg.backend == "ffcv" else "--no-split"))
        return report
    paths = scan_image_folder(cfg.root)[0]
    report.add_stages(loader_split(paths, indices, loader.recipe, cfg.image_size, device, cfg.seed), "split",
                      LOADER_HOW)
    split_seconds = report.group_seconds("split")
    report.rates["split_images_per_s"] = images / split_seconds if split_seconds > 0 else 0.0
    report.notes.append("split: the torch backend's functions run one batch at a time in this process on the "
                        "timed batches' files (one core, no workers); it shows where an image's time goes, not "
                        f"the {cfg.backend} loader's parallel throughput")
    return report
