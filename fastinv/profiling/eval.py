"""`fastinv profile eval`: feature extraction images/s and each solver's time on those features."""
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastinv.profiling.report import ProfileReport
from fastinv.profiling.timing import StageTimer, time_call

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


@dataclass(frozen=True)
class EvalProfileConfig:
    """What `profile_eval` times: a world folder (its trainset/ and testset/) or an ImageFolder
    (even/odd files as train/test), a checkpoint or 'random' of `arch`, the forward pass's device,
    autocast dtype, memory format, image side and batch, the solvers' folds, probe grid points and
    backends, the seed, and the untimed warm-up batches (and one untimed call per solver)."""

    data: Path
    model: str = "random"
    arch: str | None = None
    device: str = "auto"
    amp: str = "none"
    channels_last: bool = True
    image_size: int = 64
    batch_size: int = 128
    folds: int = 5
    probe_points: int = 45
    knn_backend: str = "torch"
    solver_backend: str = "torch"
    seed: int = 0
    warmup: int = 2


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


def _extract(extractor, images: torch.Tensor, batch_size: int, warmup: int, timer: StageTimer) -> torch.Tensor:
    """Features of `images` batch by batch; the first `warmup` batches are not timed."""
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


def profile_eval(cfg: EvalProfileConfig) -> ProfileReport:
    """Decode the images, extract their features (timed per batch after the warm-up), then time
    each solver once on them (after one untimed call unless cfg.warmup is 0)."""
    from fastinv.devices import parse_device
    from fastinv.eval.config import EvalConfig
    from fastinv.eval.features import FeatureExtractor
    from fastinv.kernels import kernel_ridge_cv, knn_classify, linear_probe, mahalanobis, reference_stats, \
        whitened_cosine
    from fastinv.models import load_backbone
    from fastinv.paths import existing_dir

    root = existing_dir(cfg.data)
    device = parse_device(cfg.device)
    defaults = EvalConfig()
    prep = StageTimer("cpu")
    train_x, train_y, test_x, test_y = _eval_splits(root, cfg.image_size, prep)
    extractor = FeatureExtractor(load_backbone(cfg.model, cfg.arch, device=device, seed=cfg.seed), device,
                                 amp=cfg.amp, channels_last=cfg.channels_last, batch_size=cfg.batch_size)
    timer = StageTimer(device)
    train_f = _extract(extractor, train_x, cfg.batch_size, cfg.warmup, timer)
    test_f = _extract(extractor, test_x, cfg.batch_size, 0, timer)
    timed_images = train_x.shape[0] + test_x.shape[0] - min(cfg.warmup * cfg.batch_size, train_x.shape[0])
    train_y, test_y = train_y.numpy(), test_y.numpy()
    classes = np.unique(np.concatenate([train_y, test_y]))
    onehot = lambda y: (y[:, None] == classes[None, :]).astype(np.float64)  # noqa: E731
    low, high, _ = defaults.probe_grid
    grid = np.logspace(low, high, cfg.probe_points)
    pairs = torch.roll(test_f, 1, dims=0)
    stats_holder = {}
    solvers = {
        "reference_stats": lambda: stats_holder.setdefault("stats", reference_stats(train_f)),
        "mahalanobis": lambda: mahalanobis(test_f, pairs, stats_holder["stats"]),
        "whitened_cosine": lambda: whitened_cosine(test_f, pairs, stats_holder["stats"]),
        "linear_probe": lambda: linear_probe(train_f, train_y, grid=grid, folds=cfg.folds, seed=cfg.seed,
                                             test_features=test_f, test_targets=test_y, backend=cfg.solver_backend),
        "kernel_ridge_cv": lambda: kernel_ridge_cv(train_f, onehot(train_y), folds=cfg.folds, seed=cfg.seed,
                                                   test_features=test_f, test_targets=onehot(test_y),
                                                   backend=cfg.solver_backend),
        "knn_classify": lambda: knn_classify(train_f, train_y, test_f, test_y, k=defaults.knn_k,
                                             temperature=defaults.knn_temperature, backend=cfg.knn_backend),
    }
    solver_timer = StageTimer(device)
    scores = {}
    for name, solve in solvers.items():
        if cfg.warmup:
            solve()
        result, seconds = time_call(solve, device)
        solver_timer.add(name, seconds)
        scores[name] = result
    settings = {"data": str(root), "model": cfg.model, "arch": cfg.arch, "amp": cfg.amp,
                "channels_last": cfg.channels_last, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
                "train_images": int(train_x.shape[0]), "test_images": int(test_x.shape[0]),
                "feature_dim": int(train_f.shape[1]), "folds": cfg.folds, "probe_points": cfg.probe_points,
                "knn_backend": cfg.knn_backend, "solver_backend": cfg.solver_backend, "warmup": cfg.warmup}
    report = ProfileReport("eval", str(device), settings)
    report.add_stages(prep, "images", EVAL_HOW)
    report.add_stages(timer, "extract", EVAL_HOW)
    report.add_stages(solver_timer, "solvers", EVAL_HOW)
    extract_seconds = report.group_seconds("extract")
    report.rates["extract_images_per_s"] = timed_images / extract_seconds if extract_seconds > 0 else 0.0
    report.notes.append(f"solver results: probe test accuracy {scores['linear_probe'].test_score:.3f}, kernel "
                        f"ridge test R^2 {scores['kernel_ridge_cv'].test_r2:.3f}, kNN top-1 "
                        f"{scores['knn_classify'].top1:.3f}; each solver is timed on one call after "
                        f"{'one untimed call' if cfg.warmup else 'no warm-up (--warmup 0)'}")
    return report
