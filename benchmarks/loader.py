"""Two-view loader throughput: each installed fastinv backend against the torchvision + PIL
MoCo-v2 reference (ImageFolder + PIL transforms + TwoCropsTransform in a DataLoader), with the
same number of CPU workers, on ImageNet-sized JPEGs (about 500x375, q90) written to a temp folder.

    python benchmarks/loader.py --images 512 --workers 2 --batch-size 64

With --per-op it builds the recipe up one op at a time and prints what each op adds per image,
for the reference and each backend:

    python benchmarks/loader.py --per-op --images 512 --workers 2 --batch-size 64

With --strategies it instead times the torch backend's two augmentation strategies (per image,
batched) on one decoded batch on --device, and on CUDA counts the kernels each launches:

    python benchmarks/loader.py --strategies --device cuda --batch-size 256
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter


def write_jpegs(root: Path, n: int, classes: int = 4, seed: int = 0) -> None:
    """n photo-like 500x375 JPEGs (q90): smooth colour fields plus noise, in `classes` folders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / f"c{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        base = Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8)).resize((500, 375), Image.BICUBIC)
        pixels = np.asarray(base, dtype=np.float32) + rng.normal(0, 10, (375, 500, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


class _PilBlur:
    """The MoCo-v2 reference blur: PIL GaussianBlur with radius ~ U[0.1, 2.0]."""

    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=float(np.random.uniform(0.1, 2.0))))


class _TwoCrops:
    def __init__(self, transform):
        self.transform = transform

    def __call__(self, img):
        return self.transform(img), self.transform(img)


STAGES = ("crop + flip", "+ color_jitter", "+ grayscale", "+ gaussian_blur")  # the Default recipe, op by op


def reference_loader(root: Path, size: int, batch_size: int, workers: int, stages: int = len(STAGES)):
    """torchvision ImageFolder + the MoCo-v2 PIL augmentation, two crops, in a DataLoader; with
    `stages` < 4, only the first `stages` of STAGES."""
    from torchvision import datasets, transforms as T

    from fastinv.pipelines.ops.normalize import IMAGENET_MEAN, IMAGENET_STD
    colour = [T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
              T.RandomApply([_PilBlur()], p=0.5)]
    aug = T.Compose([
        T.RandomResizedCrop(size, scale=(0.2, 1.0)),
        *colour[:stages - 1],
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ])
    data = datasets.ImageFolder(str(root), _TwoCrops(aug))
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)


def stage_recipe(stages: int = len(STAGES)):
    """The Default recipe with only its first `stages` of STAGES (crop and flip always)."""
    from fastinv.pipelines import get_recipe
    from fastinv.pipelines.recipes import Recipe
    crop, flip, *colour, normalize = get_recipe("default").ops
    return Recipe(f"default, {STAGES[stages - 1].lstrip('+ ')} and before", (crop, flip, *colour[:stages - 1], normalize))


def time_loader(loader, warmup: int, passes: int = 1) -> float:
    """Images per second (two views each): the median over `passes` passes through the loader,
    each timed after its first `warmup` batches."""
    rates = []
    for _ in range(passes):
        it = iter(loader)
        for _ in range(warmup):
            next(it)
        images, start = 0, time.perf_counter()
        for batch in it:
            images += len(batch[0] if isinstance(batch[0], torch.Tensor) else batch[0][0])
        rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates)


def time_strategies(root: Path, device: torch.device, batch_size: int, size: int, batches: int = 3
                    ) -> list[tuple[str, float, int | None]]:
    """(strategy, ms per batch of two Default-recipe views, CUDA kernels per batch or None) of the
    torch backend's per-image and batched augmentation on `device`, decode excluded."""
    from torch.profiler import ProfilerActivity, profile

    from fastinv.pipelines import get_recipe, scan_image_folder
    from fastinv.pipelines.augment import draw_views, image_sizes, render_views
    from fastinv.pipelines.decode import decode_many, read_bytes
    from fastinv.pipelines.sampler import batch_generator
    paths = scan_image_folder(root)[0][:batch_size]
    images = [img for img in decode_many([read_bytes(p) for p in paths], paths, device)[0] if img is not None]
    recipe, sync = get_recipe("default"), (torch.cuda.synchronize if device.type == "cuda" else lambda: None)
    rows = []
    for name, batched in (("per image", False), ("batched", True)):
        def batch(b: int) -> None:
            plan = draw_views(recipe, image_sizes(images), size, batch_generator(0, 0, 0, b), device, batched)
            render_views(images, plan)
        batch(0)
        sync()
        start = time.perf_counter()
        for b in range(1, batches + 1):
            batch(b)
        sync()
        ms = 1000 * (time.perf_counter() - start) / batches
        kernels = None
        if device.type == "cuda":
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                batch(batches + 1)
                sync()
            kernels = sum(1 for event in prof.events() if event.device_type.name == "CUDA")
        rows.append((name, ms, kernels))
    return rows


def main() -> None:
    """Write the images, time every backend and the reference, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="JPEG files to write")
    parser.add_argument("--workers", type=int, default=2, help="CPU workers for every loader")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch")
    parser.add_argument("--size", type=int, default=224, help="output side in pixels")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches at the start of each pass")
    parser.add_argument("--passes", type=int, default=3, help="passes per loader; the table shows the median rate")
    parser.add_argument("--backends", default="torch,dali,ffcv", help="comma-separated fastinv backends to try")
    parser.add_argument("--strategies", action="store_true", help="time the torch backend's two augmentation "
                        "strategies on --device instead of the loaders")
    parser.add_argument("--device", default="cpu", help="device for --strategies, e.g. cpu or cuda")
    parser.add_argument("--per-op", action="store_true", help="build the recipe up op by op (crop + flip, then "
                        "colour jitter, grayscale, blur) and print what each op adds per image, per loader")
    args = parser.parse_args()
    if args.passes < 1 or args.warmup < 0:
        parser.error("--passes must be at least 1 and --warmup at least 0")
    if args.strategies:
        with tempfile.TemporaryDirectory() as tmp:
            write_jpegs(Path(tmp), args.batch_size)
            rows = time_strategies(Path(tmp), torch.device(args.device), args.batch_size, args.size)
        print(f"two Default-recipe views of {args.batch_size} decoded 500x375 JPEGs at {args.size} px on {args.device}")
        print(f"| {'strategy':<10} | {'ms / batch':>10} | {'kernels / batch':>15} |")
        print(f"|{'-' * 12}|{'-' * 12}|{'-' * 17}|")
        for name, ms, kernels in rows:
            print(f"| {name:<10} | {ms:10.1f} | {'-' if kernels is None else kernels:>15} |")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        write_jpegs(root, args.images)
        sources = _sources(root, Path(tmp), args)
        if args.per_op:
            _print_per_op(args, [[rate for _, rate in _time_all(sources, args, stages)]
                                 for stages in range(1, len(STAGES) + 1)], [name for name, _ in sources])
            return
        rows = _time_all(sources, args)
    ref = rows[0][1]
    print(f"two-view Default recipe at {args.size} px, {args.images} JPEGs 500x375 q90, {args.workers} workers, "
          f"batch {args.batch_size}, median of {args.passes} passes")
    print(f"| {'loader':<40} | {'images/s':>9} | {'vs reference':>12} |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 14}|")
    for name, rate in rows:
        print(f"| {name:<40} | {rate:9.1f} | {rate / ref:11.2f}x |")


def _sources(root: Path, tmp: Path, args: argparse.Namespace) -> list[tuple[str, Path | None]]:
    """(row name, data path or None where the backend is not installed) of the reference and each backend."""
    from fastinv.errors import MissingExtraError
    sources: list[tuple[str, Path | None]] = [("torchvision+PIL reference", root)]
    for backend in args.backends.split(","):
        try:
            if backend == "ffcv":
                from fastinv.pipelines.ffcv_backend import write_beton
                sources.append(("fastinv ffcv", write_beton(root, tmp / "images.beton", workers=args.workers).path))
            else:
                sources.append((f"fastinv {backend}", root))
        except MissingExtraError as exc:
            sources.append((f"fastinv {backend} (not installed: {exc})", None))
    return sources


def _time_all(sources: list[tuple[str, Path | None]], args: argparse.Namespace, stages: int = len(STAGES)
              ) -> list[tuple[str, float]]:
    """(row name, images/s) of the reference and each backend with the first `stages` of STAGES."""
    from fastinv.errors import MissingExtraError
    from fastinv.pipelines import LoaderConfig, build_two_view_loader
    rows = []
    for name, data in sources:
        if data is None:
            rows.append((name, float("nan")))
            continue
        if name.startswith("torchvision"):
            loader = reference_loader(data, args.size, args.batch_size, args.workers, stages)
        else:
            cfg = LoaderConfig(root=data, backend=name.split()[1], recipe=stage_recipe(stages), image_size=args.size,
                               batch_size=args.batch_size, workers=args.workers)
            try:
                loader = build_two_view_loader(cfg)
            except MissingExtraError as exc:
                rows.append((f"{name} (not installed: {exc})", float("nan")))
                continue
        rows.append((name, time_loader(loader, args.warmup, args.passes)))
    return rows


def _print_per_op(args: argparse.Namespace, rates: list[list[float]], names: list[str]) -> None:
    """Per loader and stage of the recipe: the wall milliseconds each image costs with the ops so
    far, and what the stage's op added to it."""
    print(f"two-view Default recipe built up op by op at {args.size} px, {args.images} JPEGs, {args.workers} workers, "
          f"batch {args.batch_size}, median of {args.passes} passes: ms per image (added by the op)")
    print("| stage | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for k, row in enumerate(rates):
        cells = []
        for j, rate in enumerate(row):
            ms = 1000 / rate
            cells.append(f"{ms:.2f}" if k == 0 else f"{ms:.2f} ({ms - 1000 / rates[k - 1][j]:+.2f})")
        print(f"| {STAGES[k]} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
