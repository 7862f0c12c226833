"""`fastinv profile`: time one stage. `loader` is built; `train` and `eval` come with later issues."""
import argparse
import time

from fastinv.errors import UsageError
from fastinv.train.config import LOADERS

HELP = "time the loader, trainer or evaluation stage (built: loader)"
MODES = ("loader", "train", "eval")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `fastinv profile`."""
    parser.add_argument("mode", choices=MODES, help="stage to time: loader (built), train, eval (not built yet)")
    parser.add_argument("--data", help="ImageFolder (torch, dali) or .beton file (ffcv) to read")
    parser.add_argument("--backend", choices=LOADERS, default="torch", help="decode + augment backend")
    parser.add_argument("--recipe", default="default",
                        help="augmentation recipe: default, spatial, appearance, or a .yaml/.json recipe file")
    parser.add_argument("--workers", type=int, default=2, help="decode workers (processes for torch, threads "
                        "for dali/ffcv); use about one per free CPU core")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (each gives two views)")
    parser.add_argument("--device", default="cpu", help="where the views end up, e.g. cpu or cuda:0")
    parser.add_argument("--image-size", type=int, default=224, help="output side in pixels")
    parser.add_argument("--batches", type=int, default=10, help="timed batches (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first (JIT, worker start, caches)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle and augmentation draws")


def profile_loader(loader, batches: int, warmup: int) -> tuple[int, float]:
    """Run `warmup` untimed then up to `batches` timed batches: (images timed, seconds)."""
    import torch
    it = iter(loader)
    for _ in range(warmup):
        next(it, None)
    images, start = 0, time.perf_counter()
    for _, batch in zip(range(batches), it):
        images += batch.view1.shape[0]
    if loader.device.type == "cuda":
        torch.cuda.synchronize(loader.device)
    return images, time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    """Time the requested stage and print its throughput."""
    if args.mode != "loader":
        raise UsageError(f"profile {args.mode}: not built yet")
    from fastinv.pipelines import LoaderConfig, build_two_view_loader
    if not args.data:
        raise UsageError("profile loader needs --data DIR (or FILE.beton for --backend ffcv)")
    for flag in ("workers", "batches", "warmup"):
        if getattr(args, flag) < 0:
            raise UsageError(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    if args.batches < 1:
        raise UsageError("--batches must be >= 1")
    cfg = LoaderConfig(root=args.data, recipe=args.recipe, backend=args.backend, image_size=args.image_size,
                       batch_size=args.batch_size, workers=args.workers, device=args.device, seed=args.seed)
    loader = build_two_view_loader(cfg)
    if len(loader) < args.warmup + 1:
        raise UsageError(f"--data has {len(loader)} batches of {args.batch_size}; need more than --warmup "
                         f"{args.warmup}: lower --batch-size or --warmup")
    images, seconds = profile_loader(loader, args.batches, args.warmup)
    print(f"loader backend={args.backend} recipe={cfg.recipe} workers={args.workers} batch={args.batch_size} "
          f"size={args.image_size} device={args.device}: {images / seconds:.1f} images/s (two views), "
          f"{images} images in {seconds:.2f} s, {len(loader.skipped)} skipped")
    return 0
