"""`fastinv profile {loader,train,eval}`: per-stage timings on the chosen device and backend.

Each mode prints an aligned table (fastinv.profiling.format_table) and, with --json FILE, writes
the same numbers with a note per stage on how it was measured. Warm-up is never timed.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from fastinv.devices import DEVICE_CHOICES, kernel_settings, parse_device
from fastinv.errors import DataError, UsageError
from fastinv.profiling import ProfileReport, StageRow, StageTimer, format_table, synchronize, time_call, write_json
from fastinv.train.config import LOADERS

HELP = "time the loader, the training step or the evaluation stage by stage (table + --json)"
MODES = ("loader", "train", "eval")

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
TRAIN_HOW = {
    "data_wait": "host wait for the next batch from the real loader (perf_counter)",
    "h2d": "views to --device (non_blocking, memory format of the run), as timed_batches does",
    "forward_query": "query encoder on the view(s) under autocast",
    "momentum_update": "key encoder <- m * key encoder + (1 - m) * query encoder",
    "forward_keys_loss": "key encoder on the shuffled view(s) under autocast, then the float32 InfoNCE loss",
    "backward": "zero_grad + (scaled) loss.backward()",
    "optimizer": "unscale/clip when set, fused SGD step, GradScaler update",
    "enqueue": "write the step's keys over the oldest queue entries",
}
EVAL_HOW = {
    "decode_resize": "read, decode, resize (short side) and centre-crop every image, one split per call (host)",
    "h2d": "one batch of uint8 images to --device",
    "forward": "FeatureExtractor.forward: normalise + backbone (+ autocast) per batch",
    "reference_stats": "mean, covariance, whitening of the train features",
    "mahalanobis": "Mahalanobis distance of each test feature to the next one",
    "whitened_cosine": "whitened cosine of the same pairs",
    "linear_probe": "logistic-regression probe: k-fold CV over the grid, refit, test score",
    "kernel_ridge_cv": "RBF kernel ridge on one-hot class targets: k-fold CV over the default alpha x gamma grid, "
                       "refit, test R^2",
    "knn_classify": "weighted kNN of test features against train features",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `fastinv profile loader|train|eval` and their flags."""
    modes = parser.add_subparsers(dest="mode", required=True, metavar="MODE", parser_class=type(parser),
                                  help="stage to time: loader, train or eval (see 'fastinv profile MODE --help')")
    _add_loader(modes.add_parser("loader", help="decode + augment throughput of a two-view loader, with the "
                                 "read/decode/augment split", formatter_class=argparse.ArgumentDefaultsHelpFormatter))
    _add_train(modes.add_parser("train", help="MoCo-v2 step split into data wait, transfer, forward, backward, "
                                "optimiser and momentum/queue", conflict_handler="resolve",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter))
    _add_eval(modes.add_parser("eval", help="feature extraction images/s and the solvers' times on those "
                               "features", formatter_class=argparse.ArgumentDefaultsHelpFormatter))


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches/steps first (JIT, torch.compile, "
                        "worker start, caches); raise it with --compile")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the table's numbers and how each "
                        "was measured to this JSON file")


def _add_loader(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="ImageFolder (torch, dali) or .beton file (ffcv) to read")
    parser.add_argument("--backend", choices=LOADERS, default="torch", help="decode + augment backend")
    parser.add_argument("--recipe", default="default",
                        help="augmentation recipe: default, spatial, appearance, or a .yaml/.json recipe file")
    parser.add_argument("--workers", type=int, default=2, help="decode workers (processes for torch, threads "
                        "for dali/ffcv); use about one per free CPU core")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (each gives two views)")
    parser.add_argument("--device", default="auto", help=f"where decode and augmentation run and the views end "
                        f"up: {DEVICE_CHOICES}")
    parser.add_argument("--image-size", type=int, default=224, help="output side in pixels")
    parser.add_argument("--batches", type=int, default=10, help="timed batches (after the warm-up)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle and augmentation draws")
    parser.add_argument("--no-split", action="store_true", help="skip the read/decode/augment split (it re-reads "
                        "the timed batches' files in the calling process)")
    _add_common(parser)


def _add_train(parser: argparse.ArgumentParser) -> None:
    from fastinv.commands import pretrain
    pretrain.add_arguments(parser)
    parser.add_argument("--out", default=None, help="ignored (profile writes no checkpoint); accepted so a "
                        "pretrain command line can be profiled by changing only the subcommand")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each kind: the real train_step "
                        "(images/s) and the instrumented replica (stage split)")
    _add_common(parser)


def _add_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="a world folder (its trainset/ and testset/ are used) or an ImageFolder "
                        "(split into even/odd files as train/test)")
    parser.add_argument("--model", default="random", help="checkpoint to extract features with (any layout "
                        "`fastinv eval --model` reads), or 'random' for a seeded random init")
    parser.add_argument("--arch", default=None, help="backbone architecture; default: what the checkpoint "
                        "records, else resnet18")
    parser.add_argument("--device", default="auto", help=f"device of the features and solvers: {DEVICE_CHOICES}")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="autocast dtype of the "
                        "forward pass")
    parser.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory for the forward pass")
    parser.add_argument("--image-size", type=int, default=64, help="square side images are resized and cropped "
                        "to (64 for the world preset, 224 for the paper)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward pass")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds of the probe and kernel ridge")
    parser.add_argument("--probe-points", type=int, default=45, help="weight-decay values of the probe grid "
                        "(log-spaced over the paper's 1e-6..1e5; 45 in the paper)")
    parser.add_argument("--knn-backend", choices=["torch", "faiss"], default="torch", help="kNN search backend "
                        "(faiss needs faiss-cpu or faiss-gpu)")
    parser.add_argument("--solver-backend", choices=["torch", "cuml"], default="torch", help="backend of the "
                        "probe and kernel ridge (cuml needs the 'gpu' extra)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-init backbone and the CV folds")
    _add_common(parser)


def run(args: argparse.Namespace) -> int:
    """Time the requested mode, print its table and write --json if asked."""
    for flag in ("warmup", "workers"):
        if getattr(args, flag, 0) < 0:
            raise UsageError(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    report = {"loader": _profile_loader, "train": _profile_train, "eval": _profile_eval}[args.mode](args)
    print(format_table(report))
    for note in report.notes:
        print(f"note: {note}")
    if args.json:
        print(f"wrote {write_json(report, args.json)}")
    return 0


# -- loader ------------------------------------------------------------------------------------

def profile_loader(loader, batches: int, warmup: int) -> tuple[int, float, list]:
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


def _split_batch(timer: StageTimer, files: list[str], b: int, recipe, size: int, device, seed: int) -> None:
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


def loader_split(paths: list[str], batches: list, recipe, size: int, device, seed: int) -> StageTimer:
    """Time read / decode / augment / (h2d on cuda) / normalise with the torch backend's functions
    on the files of `batches` (tensors of dataset indices), one batch at a time in this process,
    after one untimed warm-up pass over the first batch."""
    def files(idx) -> list[str]:
        return [paths[i] for i in idx.tolist()]

    _split_batch(StageTimer(device), files(batches[0]), 0, recipe, size, device, seed)
    timer = StageTimer(device)
    for b, idx in enumerate(batches):
        _split_batch(timer, files(idx), b, recipe, size, device, seed)
    return timer


def _profile_loader(args: argparse.Namespace) -> ProfileReport:
    from fastinv.pipelines import LoaderConfig, build_two_view_loader, scan_image_folder
    if not args.data:
        raise UsageError("profile loader needs --data DIR (or FILE.beton for --backend ffcv)")
    if args.batches < 1:
        raise UsageError("--batches must be >= 1")
    device = parse_device(args.device)
    cfg = LoaderConfig(root=args.data, recipe=args.recipe, backend=args.backend, image_size=args.image_size,
                       batch_size=args.batch_size, workers=args.workers, device=device, seed=args.seed)
    loader = build_two_view_loader(cfg)
    if len(loader) < args.warmup + 1:
        raise UsageError(f"--data has {len(loader)} batches of {args.batch_size}; need more than --warmup "
                         f"{args.warmup}: lower --batch-size or --warmup")
    images, seconds, indices = profile_loader(loader, args.batches, args.warmup)
    print(f"loader backend={args.backend} recipe={cfg.recipe} workers={args.workers} batch={args.batch_size} "
          f"size={args.image_size} device={device}: {images / seconds:.1f} images/s (two views), "
          f"{images} images in {seconds:.2f} s, {len(loader.skipped)} skipped")
    settings = {k: getattr(args, k) for k in ("data", "backend", "recipe", "workers", "batch_size", "image_size",
                                              "batches", "warmup", "seed")}
    report = ProfileReport("loader", str(device), settings)
    report.stages.append(StageRow("end_to_end", "loader", seconds, len(indices), LOADER_HOW["end_to_end"]))
    report.rates["images_per_s"] = images / seconds
    if args.backend == "ffcv" or args.no_split:
        report.notes.append("no read/decode/augment split: " + ("the .beton holds no files to re-read"
                                                               if args.backend == "ffcv" else "--no-split"))
        return report
    paths = scan_image_folder(args.data)[0]
    split = loader_split(paths, indices, loader.recipe, args.image_size, device, args.seed)
    report.add_stages(split, "split", LOADER_HOW)
    split_seconds = sum(row.seconds for row in report.stages if row.group == "split")
    report.rates["split_images_per_s"] = images / split_seconds if split_seconds > 0 else 0.0
    report.notes.append("split: the torch backend's functions run one batch at a time in this process on the "
                        "timed batches' files (one core, no workers); it shows where an image's time goes, not "
                        f"the {args.backend} loader's parallel throughput")
    return report


# -- train -------------------------------------------------------------------------------------

def instrumented_step(engine, view1, view2, step: int, timer: StageTimer):
    """The phases of fastinv.train.step.train_step, in its order and with its modules, each under
    a timer stage (train_step itself runs them fused, so this replica is what gets split; a test
    checks it matches train_step). Returns the detached loss."""
    import torch
    from torch import nn
    for group in engine.optimizer.param_groups:
        group["lr"] = float(engine.lr[step % len(engine.lr)])
    moco = engine.moco
    autocast = dict(device_type=engine.device.type, dtype=engine.amp_dtype or torch.float32,
                    enabled=engine.amp_dtype is not None)
    with timer.stage("forward_query"), torch.autocast(**autocast):
        queries = engine.query(view1, view2) if engine.symmetric else engine.query(view1)
    with timer.stage("momentum_update"):
        moco.momentum_update(engine.m)
    with timer.stage("forward_keys_loss"):
        with torch.autocast(**autocast):
            keys, gathered = moco.encode_keys([view1, view2] if engine.symmetric else [view2], step)
        loss = moco.pair_loss(queries, keys)
    with timer.stage("backward"):
        engine.optimizer.zero_grad(set_to_none=True)
        engine.scaler.scale(loss).backward()
    with timer.stage("optimizer"):
        if engine.clip_grad > 0:
            engine.scaler.unscale_(engine.optimizer)
            nn.utils.clip_grad_norm_(moco.encoder_q.parameters(), engine.clip_grad)
        engine.scaler.step(engine.optimizer)
        engine.scaler.update()
    with timer.stage("enqueue"):
        moco.enqueue(torch.cat(gathered))
    return loss.detach()


def _endless(loader):
    """The loader's batches epoch after epoch."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def _time_train(cfg, args: argparse.Namespace, device):
    """(engine, seconds of the real steps, the replica's stage timer) after the warm-up."""
    import torch
    from fastinv.train.data import build_pretrain_loader
    from fastinv.train.distributed import DistInfo
    from fastinv.train.step import build_engine, train_step

    dist = DistInfo(0, 1, 0, device)
    loader = build_pretrain_loader(cfg, dist)
    if len(loader) == 0:
        raise UsageError(f"--data {args.data}: fewer images than --batch-size {args.batch_size}; lower it")
    engine = build_engine(cfg, dist, len(loader))
    fmt = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    batches = _endless(loader)
    timer = StageTimer(device)

    def next_views() -> tuple[torch.Tensor, torch.Tensor]:
        begin = time.perf_counter()
        batch = next(batches)
        timer.add("data_wait", time.perf_counter() - begin)
        with timer.stage("h2d"):
            return tuple(v.to(device, non_blocking=True, memory_format=fmt) for v in (batch.view1, batch.view2))

    for step in range(args.warmup):
        train_step(engine, *next_views(), step % len(engine.lr))
    synchronize(device)
    begin = time.perf_counter()
    for step in range(args.warmup, args.warmup + args.steps):
        train_step(engine, *next_views(), step % len(engine.lr))
    synchronize(device)
    end_to_end = time.perf_counter() - begin
    timer.reset()
    for step in range(args.warmup + args.steps, args.warmup + 2 * args.steps):
        instrumented_step(engine, *next_views(), step, timer)
    return engine, end_to_end, timer


def _profile_train(args: argparse.Namespace) -> ProfileReport:
    from fastinv.commands.pretrain import config_from_args
    from fastinv.models import parse_arch
    from fastinv.paths import existing_dir

    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    cfg = config_from_args(args)
    cfg.validate(1)
    parse_arch(cfg.model.arch)
    if not args.data.endswith(".beton"):
        existing_dir(args.data)
    device = parse_device(cfg.run.device)
    with kernel_settings(device, cfg.run.deterministic):  # the settings a training run has
        engine, end_to_end, timer = _time_train(cfg, args, device)
    settings = {"arch": cfg.model.arch, "loader": cfg.data.loader, "recipe": cfg.data.recipe,
                "image_size": cfg.data.image_size, "batch_size": cfg.data.batch_size, "workers": cfg.data.workers,
                "amp": str(engine.amp_dtype).replace("torch.", "") if engine.amp_dtype else "none",
                "channels_last": cfg.run.channels_last, "compile": cfg.run.compile, "bn": cfg.bn_mode(1),
                "symmetric": cfg.moco.symmetric, "queue_size": cfg.moco.K, "steps": args.steps, "warmup": args.warmup}
    report = ProfileReport("train", str(device), settings)
    report.stages.append(StageRow("train_step", "end_to_end", end_to_end, args.steps,
                                  "the real loader + timed_batches-style transfer + fastinv.train.step.train_step, "
                                  "wall time, device synchronised at the end"))
    report.add_stages(timer, "step", TRAIN_HOW)
    split_total = sum(row.seconds for row in report.stages if row.group == "step")
    report.rates["images_per_s"] = args.steps * cfg.data.batch_size / end_to_end
    report.rates["images_per_s_instrumented"] = args.steps * cfg.data.batch_size / split_total
    report.notes.append("the stage split comes from a replica of train_step's phases with the engine's modules, "
                        "timed stage by stage (each stage boundary is a CUDA event on GPU, so queued work is not "
                        "overlapped across stages the way the fused step overlaps it)")
    return report


# -- eval --------------------------------------------------------------------------------------

def _eval_splits(root: Path, size: int, timer: StageTimer):
    """(train images, train labels, test images, test labels): a world's trainset/testset, or an
    ImageFolder's even/odd files."""
    from fastinv.train.data import clean_images
    splits = []
    if (root / "trainset").is_dir() and (root / "testset").is_dir():
        for name in ("trainset", "testset"):
            begin = time.perf_counter()
            splits.append(clean_images(root / name, size))
            timer.add("decode_resize", time.perf_counter() - begin)
        return (*splits[0], *splits[1])
    begin = time.perf_counter()
    images, labels = clean_images(root, size)
    timer.add("decode_resize", time.perf_counter() - begin)
    return images[0::2], labels[0::2], images[1::2], labels[1::2]


def _extract(extractor, images, batch_size: int, warmup: int, timer: StageTimer):
    """Features of `images` batch by batch; the first `warmup` batches are not timed."""
    import torch
    chunks = []
    for b, part in enumerate(images.split(batch_size)):
        if b < warmup:
            chunks.append(extractor.forward(part.to(extractor.device)))
            continue
        with timer.stage("h2d"):
            part = part.to(extractor.device, non_blocking=True)
        with timer.stage("forward"):
            chunks.append(extractor.forward(part))
    return torch.cat(chunks)


def _profile_eval(args: argparse.Namespace) -> ProfileReport:
    import torch
    from fastinv.eval.config import EvalConfig
    from fastinv.eval.features import FeatureExtractor
    from fastinv.kernels import kernel_ridge_cv, knn_classify, linear_probe, mahalanobis, reference_stats, \
        whitened_cosine
    from fastinv.models import load_backbone
    from fastinv.paths import existing_dir

    if not args.data:
        raise UsageError("profile eval needs --data WORLD (or an ImageFolder)")
    for flag, low in (("image_size", 16), ("batch_size", 1), ("folds", 2), ("probe_points", 1)):
        if getattr(args, flag) < low:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least {low}, got {getattr(args, flag)}")
    root = existing_dir(args.data)
    device = parse_device(args.device)
    defaults = EvalConfig()
    prep = StageTimer("cpu")
    train_x, train_y, test_x, test_y = _eval_splits(root, args.image_size, prep)
    extractor = FeatureExtractor(load_backbone(args.model, args.arch, device=device, seed=args.seed), device,
                                 amp=args.amp, channels_last=not args.no_channels_last, batch_size=args.batch_size)
    timer = StageTimer(device)
    train_f = _extract(extractor, train_x, args.batch_size, args.warmup, timer)
    test_f = _extract(extractor, test_x, args.batch_size, 0, timer)
    timed_images = train_x.shape[0] + test_x.shape[0] - min(args.warmup * args.batch_size, train_x.shape[0])
    train_y, test_y = train_y.numpy(), test_y.numpy()
    classes = np.unique(np.concatenate([train_y, test_y]))
    onehot = lambda y: (y[:, None] == classes[None, :]).astype(np.float64)  # noqa: E731
    low, high, _ = defaults.probe_grid
    grid = np.logspace(low, high, args.probe_points)
    pairs = torch.roll(test_f, 1, dims=0)
    stats_holder = {}
    solvers = {
        "reference_stats": lambda: stats_holder.setdefault("stats", reference_stats(train_f)),
        "mahalanobis": lambda: mahalanobis(test_f, pairs, stats_holder["stats"]),
        "whitened_cosine": lambda: whitened_cosine(test_f, pairs, stats_holder["stats"]),
        "linear_probe": lambda: linear_probe(train_f, train_y, grid=grid, folds=args.folds, seed=args.seed,
                                             test_features=test_f, test_targets=test_y, backend=args.solver_backend),
        "kernel_ridge_cv": lambda: kernel_ridge_cv(train_f, onehot(train_y), folds=args.folds, seed=args.seed,
                                                   test_features=test_f, test_targets=onehot(test_y),
                                                   backend=args.solver_backend),
        "knn_classify": lambda: knn_classify(train_f, train_y, test_f, test_y, k=defaults.knn_k,
                                             temperature=defaults.knn_temperature, backend=args.knn_backend),
    }
    solver_timer = StageTimer(device)
    scores = {}
    for name, solve in solvers.items():
        if args.warmup:
            solve()
        result, seconds = time_call(solve, device)
        solver_timer.add(name, seconds)
        scores[name] = result
    settings = {"data": str(root), "model": args.model, "arch": args.arch, "amp": args.amp,
                "channels_last": not args.no_channels_last, "image_size": args.image_size,
                "batch_size": args.batch_size, "train_images": int(train_x.shape[0]),
                "test_images": int(test_x.shape[0]), "feature_dim": int(train_f.shape[1]), "folds": args.folds,
                "probe_points": args.probe_points, "knn_backend": args.knn_backend,
                "solver_backend": args.solver_backend, "warmup": args.warmup}
    report = ProfileReport("eval", str(device), settings)
    report.add_stages(prep, "images", EVAL_HOW)
    report.add_stages(timer, "extract", EVAL_HOW)
    report.add_stages(solver_timer, "solvers", EVAL_HOW)
    extract_seconds = sum(row.seconds for row in report.stages if row.group == "extract")
    report.rates["extract_images_per_s"] = timed_images / extract_seconds if extract_seconds > 0 else 0.0
    report.notes.append(f"solver results: probe test accuracy {scores['linear_probe'].test_score:.3f}, kernel "
                        f"ridge test R^2 {scores['kernel_ridge_cv'].test_r2:.3f}, kNN top-1 "
                        f"{scores['knn_classify'].top1:.3f}; each solver is timed on one call after "
                        f"{'one untimed call' if args.warmup else 'no warm-up (--warmup 0)'}")
    return report
