"""The GPU validation run of fastinv: every GPU path measured (and where it has a CPU or torch
counterpart, checked against it) in one call that stays within a time limit.

benchmarks/device_check.sh installs fastinv and runs this. Each step runs in its own process under
its own time budget (and never past the overall limit), so a hang or a crash costs one step:

  environment       versions, device, what is installed
  data              ImageNet-like 500x375 JPEGs (q90) written in parallel
  loader            two-view loader images/s (torch backend: nvJPEG + device augmentation); nvJPEG vs CPU decode
  step              MoCo-v2 step (bf16, channels_last, split BN) images/s; split vs plain BN; bf16 vs fp32 loss
  overlap           `fastinv pretrain` end to end: loader and step overlapped, the data_wait share
  syncs             host synchronisations per batch in decode, augmentation and normalisation, and the loader
  features          evaluation feature extraction images/s (bf16); GPU vs CPU features
  cupy              the cupy distance backend vs torch on CUDA: values and speed (the table backend="auto" reads)
  solvers           linear probe and kernel ridge on the device vs scikit-learn on the CPU
  optional          DALI mixed decode, cuML, faiss-gpu: run when installed, else skipped with the reason
  deterministic     `fastinv pretrain --deterministic` twice: identical weights, settings restored
  table2            `fastinv eval --suite synthetic --preset paper` at two image counts, extrapolated to 1,000
  compile           the torch.compile'd step images/s

Writes OUT/device_check.json (all steps, a summary, the environment) and OUT/steps/<step>.json,
prints a table, exits 1 if a step failed or ran out of time. Without CUDA (--device auto) the
GPU steps are skipped with the reason; --device cpu runs them on the CPU (use --quick), to
exercise the script itself.

    python benchmarks/device_check.py --out OUT [--quick] [--device auto|cuda|cpu] [--only STEP ...]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DECODE_TOLERANCE = 6.0  # mean |difference| in grey levels between nvJPEG- and libjpeg-turbo-decoded images
VALUE_TOLERANCE = 1e-4  # relative difference allowed between the cupy and torch distances
MIN_STEP_S = 10.0  # a step is not started with less time than this left
NO_CUDA = "no CUDA device here (torch.cuda.is_available() is False); --device cpu runs this step on the CPU"


class Skip(Exception):
    """A step that cannot run here; the message says why."""


@dataclass
class Result:
    """A step's outcome: PASS, FAIL, SKIP or TIMEOUT, what it found, its figures and facts."""

    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    budget_s: float = 0.0
    figures: dict[str, float] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Sizes:
    """Every size a step depends on: the validation sizes, or tiny ones for a dry run (--quick)."""

    images: int
    image_size: int
    batch_size: int
    arch: str
    queue: int
    workers: int
    loader_batches: int
    warmup: int
    steps: int
    overlap_steps: int
    feature_images: int
    probe_n: int
    probe_d: int
    krr_n: int
    krr_d: int
    distance_rows: tuple[int, ...]
    distance_d: int
    groups: int
    group_sizes: tuple[int, int]
    table2_images: tuple[int, int]
    table2_arch: str
    table2_grid: int | None


FULL = Sizes(images=4096, image_size=224, batch_size=256, arch="resnet50", queue=65536, workers=12,
             loader_batches=8, warmup=3, steps=10, overlap_steps=40, feature_images=4096, probe_n=2000,
             probe_d=256, krr_n=2000, krr_d=256, distance_rows=(1024, 16384, 131072), distance_d=2048, groups=400,
             group_sizes=(4, 72), table2_images=(4, 12), table2_arch="resnet50", table2_grid=None)
QUICK = Sizes(images=48, image_size=32, batch_size=8, arch="resnet10x0.25", queue=64, workers=0,
              loader_batches=2, warmup=1, steps=2, overlap_steps=4, feature_images=16, probe_n=120, probe_d=16,
              krr_n=80, krr_d=8, distance_rows=(64,), distance_d=16, groups=6, group_sizes=(2, 9),
              table2_images=(1, 2), table2_arch="resnet10x0.25", table2_grid=2)


@dataclass(frozen=True)
class Context:
    """What a step reads: the device (None: no CUDA here), the sizes and the output folder."""

    device: object
    sizes: Sizes
    out: Path

    @property
    def data(self) -> Path:
        """The generated JPEG ImageFolder."""
        return self.out / "data" / "jpegs"


# -- helpers shared by the steps --------------------------------------------------------------

def _device(ctx: Context):
    """The device a GPU step runs on; Skip when there is none (no CUDA, --device auto)."""
    if ctx.device is None:
        raise Skip(NO_CUDA)
    return ctx.device


def _cuda_only(ctx: Context, why: str):
    """The CUDA device a CUDA-only step runs on; Skip, saying `why`, when it is not CUDA."""
    device = _device(ctx)
    if device.type != "cuda":
        raise Skip(f"needs CUDA: {why}")
    return device


def _installed(module: str) -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _sync(device) -> None:
    import torch

    from fastinv.profiling.timing import synchronize
    synchronize(torch.device(device))


def _rate(items: int, seconds: float) -> float:
    return items / seconds if seconds > 0 else 0.0


def _fastinv(argv: list[str]) -> int:
    """Run the `fastinv` command line in this process; its exit code."""
    from fastinv.cli import main
    return main(argv)


def _bn_splits(sizes: Sizes) -> int:
    """Split-BN sub-batches: 8 as a single-device run has them, 2 for dry-run batches."""
    return 8 if sizes.batch_size >= 64 else 2


def _images_from(ctx: Context, count: int) -> list[str]:
    from fastinv.pipelines import scan_image_folder
    return scan_image_folder(ctx.data)[0][:count]


# -- steps ------------------------------------------------------------------------------------

def step_environment(ctx: Context) -> Result:
    """Versions of Python, torch and the optional packages, and the device."""
    import platform

    import torch
    info: dict[str, object] = {"python": platform.python_version(), "torch": torch.__version__,
                               "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                               "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info.update(device=torch.cuda.get_device_name(), devices=torch.cuda.device_count(),
                    capability=".".join(map(str, torch.cuda.get_device_capability())),
                    cudnn=torch.backends.cudnn.version(),
                    memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    for module in ("torchvision", "cupy", "sklearn", "timm", "nvidia.dali", "cuml", "faiss", "ffcv"):
        if not _installed(module):
            info[module] = "not installed"
            continue
        try:
            info[module] = str(getattr(__import__(module, fromlist=["__version__"]), "__version__", "?"))
        except Exception as exc:  # an installed but broken package is worth reporting, not a crash
            info[module] = f"import fails: {type(exc).__name__}: {exc}"
    if info.get("faiss", "not installed") != "not installed":
        import faiss
        info["faiss_gpu"] = hasattr(faiss, "StandardGpuResources")
    return Result("environment", "PASS", f"torch {torch.__version__}, "
                  f"{info.get('device', 'no CUDA device')}", info=info)


def _write_class(task: tuple[str, int, int]) -> None:
    """Write one class folder of JPEGs (in a worker process)."""
    from loader import write_jpegs
    root, label, count = Path(task[0]), task[1], task[2]
    part = root / f".part{label:03d}"
    write_jpegs(part, count, classes=1, seed=label)
    os.replace(part / "c0", root / f"c{label:03d}")
    part.rmdir()


def step_data(ctx: Context) -> Result:
    """ImageNet-like JPEGs (500x375, q90, benchmarks/loader.write_jpegs), one class per worker."""
    from concurrent.futures import ProcessPoolExecutor
    root, n = ctx.data, ctx.sizes.images
    done = root / ".complete"
    begin = time.perf_counter()
    if not done.is_file() or done.read_text() != str(n):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        classes = min(32, max(1, n // 16))
        counts = [n // classes + (1 if k < n % classes else 0) for k in range(classes)]
        with ProcessPoolExecutor(max(1, min(classes, os.cpu_count() or 1))) as pool:
            list(pool.map(_write_class, [(str(root), k, c) for k, c in enumerate(counts)]))
        done.write_text(str(n))
    size = sum(p.stat().st_size for p in root.rglob("*.jpg"))
    return Result("data", "PASS", f"{n} JPEGs 500x375 q90 in {root}",
                  figures={"images": n, "megabytes": size / 2**20, "write_s": time.perf_counter() - begin})


def _loader_rate(ctx: Context, backend: str, device) -> tuple[float, int]:
    """(two-view images/s over the timed batches after a warm-up, images timed) of a loader."""
    from fastinv.pipelines import LoaderConfig, build_two_view_loader
    s = ctx.sizes
    cfg = LoaderConfig(root=ctx.data, recipe="default", backend=backend, image_size=s.image_size,
                       batch_size=s.batch_size, workers=s.workers, device=device, seed=0)
    iterator = iter(build_two_view_loader(cfg))
    for _ in range(s.warmup):
        next(iterator)
    _sync(device)
    begin, images = time.perf_counter(), 0
    for _, batch in zip(range(s.loader_batches), iterator):
        images += batch.view1.shape[0]
    _sync(device)
    return _rate(images, time.perf_counter() - begin), images


def step_loader(ctx: Context) -> Result:
    """The torch two-view loader at the validation size (Default recipe) on the device, and nvJPEG
    against libjpeg-turbo on the same files."""
    import torch

    from fastinv.pipelines.decode import decode_many, read_bytes
    device = _device(ctx)
    rate, images = _loader_rate(ctx, "torch", device)
    figures = {"images_per_s": rate, "images_timed": images}
    detail = f"{rate:.0f} img/s (two views, {ctx.sizes.image_size} px, batch {ctx.sizes.batch_size})"
    status = "PASS" if rate > 0 else "FAIL"
    if device.type == "cuda":
        paths = _images_from(ctx, 32)
        encoded = [read_bytes(p) for p in paths]
        gpu, _ = decode_many(encoded, paths, device)
        cpu, _ = decode_many(encoded, paths, torch.device("cpu"))
        gap = max(float((a.cpu().float() - b.float()).abs().mean()) for a, b in zip(gpu, cpu))
        figures["decode_gap_grey_levels"] = gap
        status = status if gap <= DECODE_TOLERANCE else "FAIL"
        detail += f"; nvJPEG vs CPU decode: max mean |diff| {gap:.2f} grey levels (<= {DECODE_TOLERANCE})"
    return Result("loader", status, detail, figures=figures)


def _step_config(ctx: Context, device, amp: str, channels_last: bool, compiled: bool, bn: str = "split"):
    from dataclasses import replace

    from train_step import step_config
    s = ctx.sizes
    cfg = step_config(s.arch, s.image_size, s.batch_size, _bn_splits(s), str(device), s.queue, head_hidden=None)
    return replace(cfg, model=replace(cfg.model, bn=bn),
                   run=replace(cfg.run, amp=amp, channels_last=channels_last, compile=compiled))


def _timed_step(ctx: Context, device, **settings) -> tuple[float, float]:
    """(images/s, final loss) of the MoCo step with these settings (benchmarks/train_step.time_step)."""
    import torch

    from train_step import time_step
    seconds, loss = time_step(_step_config(ctx, device, **settings), device, ctx.sizes.warmup, ctx.sizes.steps)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return _rate(ctx.sizes.batch_size, seconds), loss


def step_step(ctx: Context) -> Result:
    """The MoCo-v2 step as trained (bf16, channels_last, split BN), plain BN beside it, and the
    bf16 step's loss against fp32 NCHW from the same init and views."""
    device = _device(ctx)
    rate, loss = _timed_step(ctx, device, amp="bf16", channels_last=True, compiled=False)
    plain, _ = _timed_step(ctx, device, amp="bf16", channels_last=True, compiled=False, bn="plain")
    _, reference = _timed_step(ctx, device, amp="none", channels_last=False, compiled=False)
    gap = abs(loss - reference) / max(abs(reference), 1e-6)
    ok = math.isfinite(loss) and gap <= 0.05
    s = ctx.sizes
    return Result("step", "PASS" if ok else "FAIL",
                  f"{s.arch} {s.image_size} px batch {s.batch_size} bf16 channels_last: {rate:.0f} img/s with split "
                  f"BN, {plain:.0f} with plain BN; loss gap bf16 vs fp32 {gap:.4f} (<= 0.05)",
                  figures={"images_per_s": rate, "plain_bn_images_per_s": plain, "split_over_plain_time": plain / rate,
                           "loss_gap_bf16_fp32": gap, "final_loss": loss})


def step_compile(ctx: Context) -> Result:
    """The torch.compile'd step (bf16, channels_last, split BN), compile time in the warm-up; its
    final loss against the eager step's (the summary's compile_loss_gap)."""
    device = _device(ctx)
    begin = time.perf_counter()
    rate, loss = _timed_step(ctx, device, amp="bf16", channels_last=True, compiled=True)
    return Result("compile", "PASS" if math.isfinite(loss) else "FAIL",
                  f"{rate:.0f} img/s compiled (loss {loss:.3f})",
                  figures={"images_per_s": rate, "with_compile_s": time.perf_counter() - begin, "final_loss": loss})


def step_overlap(ctx: Context) -> Result:
    """`fastinv pretrain` end to end (loader and step overlapped): images/s and the data_wait share
    of the logged windows after the first (which holds start-up and autotuning)."""
    from fastinv.train.monitor import read_metrics
    device = _device(ctx)
    s = ctx.sizes
    run = ctx.out / "overlap_run"
    shutil.rmtree(run, ignore_errors=True)
    log_every = max(1, s.overlap_steps // 4)
    argv = ["pretrain", "--data", str(ctx.data), "--out", str(run), "--arch", s.arch, "--image-size", str(s.image_size),
            "--batch-size", str(s.batch_size), "--workers", str(s.workers), "--queue-size", str(s.queue),
            "--bn-splits", str(_bn_splits(s)), "--amp", "bf16", "--epochs", "100",
            "--max-steps", str(s.overlap_steps), "--log-every", str(log_every), "--ckpt-every", "1000000",
            "--no-tensorboard", "--no-progress", "--device", str(device)]
    code = _fastinv(argv)
    windows = [row for row in read_metrics(run) if "data_wait" in row][1:]
    shutil.rmtree(run, ignore_errors=True)
    if code != 0 or not windows:
        return Result("overlap", "FAIL", f"fastinv pretrain exited {code} with {len(windows)} timed windows")
    rate = sum(w["img_per_s"] for w in windows) / len(windows)
    wait = sum(w["data_wait"] for w in windows) / len(windows)
    return Result("overlap", "PASS", f"{rate:.0f} img/s end to end, data_wait {100 * wait:.1f}% of the time",
                  figures={"images_per_s": rate, "data_wait_share": wait, "windows": len(windows)})


class _SyncCounter:
    """Counts the synchronising CUDA operations torch reports (set_sync_debug_mode 'warn') inside it."""

    def __enter__(self) -> "_SyncCounter":
        import warnings
        self._catch = warnings.catch_warnings(record=True)
        self._records = self._catch.__enter__()
        warnings.simplefilter("always")
        self.count = 0
        return self

    def __exit__(self, *exc) -> None:
        self.count = sum("synchroniz" in str(w.message) for w in self._records)
        self._catch.__exit__(*exc)


def step_syncs(ctx: Context) -> Result:
    """Host synchronisations per batch (torch.cuda.set_sync_debug_mode) in nvJPEG decode, the
    augmentation of both views, normalisation, and the whole loader, after a warm-up batch."""
    import torch

    from fastinv.pipelines import get_recipe
    from fastinv.pipelines.augment import to_float
    from fastinv.pipelines.decode import decode_many, read_bytes
    from fastinv.pipelines.sampler import batch_generator
    from fastinv.pipelines.torch_backend import two_views
    device = _cuda_only(ctx, "torch.cuda.set_sync_debug_mode counts CUDA synchronisations")
    s = ctx.sizes
    recipe = get_recipe("default")
    paths = _images_from(ctx, s.batch_size * (s.loader_batches + 1))
    counts = {"decode": [], "augment": [], "normalise": []}
    torch.cuda.set_sync_debug_mode("warn")
    try:
        for b in range(s.loader_batches + 1):
            files = paths[b * s.batch_size:(b + 1) * s.batch_size]
            encoded = [read_bytes(p) for p in files]
            with _SyncCounter() as decode:
                images, _ = decode_many(encoded, files, device)
            with _SyncCounter() as augment:
                views = two_views([img for img in images if img is not None], recipe, s.image_size,
                                  batch_generator(0, 0, 0, b))
            with _SyncCounter() as normalise:
                for view in views:
                    to_float(view, recipe.normalize, True)
            if b:  # batch 0 is the warm-up
                for name, counter in (("decode", decode), ("augment", augment), ("normalise", normalise)):
                    counts[name].append(counter.count)
        loader_counts = _loader_syncs(ctx, device)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    figures = {f"{name}_syncs_per_batch": sum(v) / len(v) for name, v in counts.items()}
    figures["loader_syncs_per_batch"] = sum(loader_counts) / len(loader_counts)
    hot = figures["augment_syncs_per_batch"] + figures["normalise_syncs_per_batch"]
    return Result("syncs", "PASS" if hot == 0 else "FAIL",
                  ", ".join(f"{k.replace('_syncs_per_batch', '')} {v:g}" for k, v in figures.items())
                  + " host syncs per batch (augmentation and normalisation must have none; decode's are its own)",
                  figures=figures)


def _loader_syncs(ctx: Context, device) -> list[int]:
    """Synchronisations per batch while iterating the torch loader (workers read, this process decodes)."""
    from fastinv.pipelines import LoaderConfig, build_two_view_loader
    s = ctx.sizes
    cfg = LoaderConfig(root=ctx.data, recipe="default", backend="torch", image_size=s.image_size,
                       batch_size=s.batch_size, workers=s.workers, device=device, seed=0)
    iterator, counts = iter(build_two_view_loader(cfg)), []
    next(iterator)
    for _ in range(s.loader_batches):
        with _SyncCounter() as counter:
            next(iterator)
        counts.append(counter.count)
    return counts


def step_features(ctx: Context) -> Result:
    """Feature extraction (random-init backbone, bf16, channels_last) images/s, and on CUDA the
    minimum cosine between GPU bf16 and CPU fp32 features of the same images."""
    import torch

    from fastinv.eval.features import FeatureExtractor
    from fastinv.models import load_backbone
    device = _device(ctx)
    s = ctx.sizes
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (s.feature_images, 3, s.image_size, s.image_size), dtype=torch.uint8,
                           generator=gen).to(device)
    extractor = FeatureExtractor(load_backbone("random", s.arch, device=device), device, amp="bf16",
                                 batch_size=s.batch_size)
    extractor.extract([images[:s.batch_size]])
    _sync(device)
    begin = time.perf_counter()
    features = extractor.extract([images])
    _sync(device)
    rate = _rate(s.feature_images, time.perf_counter() - begin)
    figures = {"images_per_s": rate}
    detail, status = f"{rate:.0f} img/s ({s.arch}, {s.image_size} px, bf16)", "PASS"
    if device.type == "cuda":
        cpu = FeatureExtractor(load_backbone("random", s.arch), "cpu", batch_size=8).extract([images[:8].cpu()])
        cosine = float(torch.nn.functional.cosine_similarity(features[:8].float().cpu(), cpu, dim=1).min())
        figures["min_cosine_gpu_bf16_cpu_fp32"] = cosine
        status = "PASS" if cosine >= 0.99 else "FAIL"
        detail += f"; min cosine GPU bf16 vs CPU fp32 {cosine:.4f} (>= 0.99)"
    return Result("features", status, detail, figures=figures)


def _timed_call(fn: Callable, device, repeats: int = 1) -> tuple[object, float]:
    """(the last result, mean seconds per call) over `repeats` calls, device work included."""
    _sync(device)
    begin = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    _sync(device)
    return result, (time.perf_counter() - begin) / repeats


def _ragged_groups(count: int, sizes: tuple[int, int], seed: int):
    import numpy as np
    rng = np.random.default_rng(seed)
    return np.repeat(np.arange(count), rng.integers(sizes[0], sizes[1] + 1, count))


def step_cupy(ctx: Context) -> Result:
    """backend='cupy' against backend='torch' on CUDA: the largest relative difference and the speed
    ratio of mahalanobis and whitened_cosine at several row counts and of group_pairwise over ragged
    groups; `faster_from_rows` is what CUPY_FASTER_FROM_ROWS in fastinv.kernels.backends should hold."""
    import torch

    from fastinv.kernels import group_pairwise, mahalanobis, reference_stats, whitened_cosine
    device = _cuda_only(ctx, "the cupy kernels are CUDA kernels")
    if not _installed("cupy"):
        raise Skip("cupy is not installed (pip install 'fastinv[gpu]')")
    s = ctx.sizes
    gen = torch.Generator(device=device).manual_seed(0)
    d = s.distance_d
    stats = reference_stats(torch.randn(4 * d, d, device=device, generator=gen))
    figures, worst, faster = {}, 0.0, {}

    def compare(op: str, rows: int, run: Callable[[str], torch.Tensor]) -> None:
        nonlocal worst
        run("cupy"), run("torch")  # compile, autotune, allocate
        repeats = max(1, 2**20 // max(rows, 1))
        mine, t_cupy = _timed_call(lambda: run("cupy"), device, repeats)
        ref, t_torch = _timed_call(lambda: run("torch"), device, repeats)
        gap = float(((mine - ref).abs() / ref.abs().clamp_min(1e-6)).max())
        worst = max(worst, gap)
        figures.update({f"{op}_{rows}_torch_ms": 1e3 * t_torch, f"{op}_{rows}_cupy_ms": 1e3 * t_cupy,
                        f"{op}_{rows}_speedup": t_torch / t_cupy, f"{op}_{rows}_max_rel_diff": gap})
        if t_torch / t_cupy > 1.05:
            faster.setdefault(op, []).append(rows)
        else:
            faster.setdefault(op, []).clear()

    for rows in s.distance_rows:
        x = torch.randn(rows, d, device=device, generator=gen)
        y = x + 0.1 * torch.randn(rows, d, device=device, generator=gen)
        compare("mahalanobis", rows, lambda backend: mahalanobis(x, y, stats, backend=backend))
        compare("whitened_cosine", rows, lambda backend: whitened_cosine(x, y, stats, backend=backend))
    groups = torch.as_tensor(_ragged_groups(s.groups, s.group_sizes, 0))
    feats = torch.randn(groups.shape[0], d, device=device, generator=gen)

    def pairwise(backend: str) -> torch.Tensor:
        scores = group_pairwise(feats, groups, stats, backend=backend)
        return torch.cat([scores.distance, scores.similarity])

    compare("group_pairwise", int(groups.shape[0]), pairwise)
    table = {op: min(rows) for op, rows in faster.items() if rows}
    return Result("cupy", "PASS" if worst <= VALUE_TOLERANCE else "FAIL",
                  f"max relative difference cupy vs torch {worst:.1e} (<= {VALUE_TOLERANCE}); "
                  f"faster_from_rows {table or 'none'}", figures=figures, info={"faster_from_rows": table})


def _probe_data(n: int, d: int, seed: int):
    """Feature-like data (benchmarks/solvers.feature_like): features (n, d), labels of 10 classes
    and one regression target, each a noisy function of the latent factors."""
    import numpy as np

    from solvers import feature_like
    x, factors = feature_like(n, d, 16, seed)
    noise = np.random.default_rng(seed + 1).normal(size=(n, 11))
    return x, (factors[:, :10] + 0.8 * noise[:, :10]).argmax(1), np.tanh(factors[:, 10]) + 0.1 * noise[:, 10]


def step_solvers(ctx: Context) -> Result:
    """fastinv's linear probe (45-value grid, 5 folds) and kernel ridge of one target (5 alpha x 8
    gamma, 5 folds) on the device against scikit-learn on the CPU over the same grids and folds:
    seconds, the ratio, and the gap between the best CV scores."""
    import warnings

    import numpy as np
    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold

    from fastinv.kernels import DEFAULT_ALPHAS, DEFAULT_GAMMAS, DEFAULT_WD_GRID, kernel_ridge_cv, linear_probe
    device = _device(ctx)
    s = ctx.sizes
    x, labels, _ = _probe_data(s.probe_n, s.probe_d, 0)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, labels))
    xt = torch.from_numpy(x).to(device)
    probe = lambda: linear_probe(xt, labels, "classification", DEFAULT_WD_GRID, folds)  # noqa: E731
    probe()
    ours, t_probe = _timed_call(probe, device)

    def sklearn_probe() -> np.ndarray:
        scores = np.zeros((len(folds), len(DEFAULT_WD_GRID)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for f, (tr, va) in enumerate(folds):
                model = LogisticRegression(max_iter=100, warm_start=True)
                for g, wd in enumerate(DEFAULT_WD_GRID):
                    scores[f, g] = model.set_params(C=1.0 / wd).fit(x[tr], labels[tr]).score(x[va], labels[va])
        return scores.mean(0)

    theirs, t_sk_probe = _timed_call(sklearn_probe, "cpu")
    xk, _, targets = _probe_data(s.krr_n, s.krr_d, 1)
    xk = (xk - xk.mean(0)) / np.where(xk.std(0) > 0, xk.std(0), 1)
    kfolds = list(KFold(5, shuffle=True, random_state=0).split(xk))
    xkt = torch.from_numpy(xk).to(device)
    krr = lambda: kernel_ridge_cv(xkt, targets, folds=kfolds)  # noqa: E731
    krr()
    best_krr, t_krr = _timed_call(krr, device)

    def sklearn_krr() -> float:
        from sklearn.model_selection import GridSearchCV
        grid = {"alpha": list(DEFAULT_ALPHAS), "gamma": list(DEFAULT_GAMMAS)}
        return GridSearchCV(KernelRidge(kernel="rbf"), grid, cv=kfolds).fit(xk, targets).best_score_

    best_sk_krr, t_sk_krr = _timed_call(sklearn_krr, "cpu")
    gap = abs(float(np.max(ours.cv_mean)) - float(theirs.max()))
    krr_gap = abs(float(np.max(best_krr.cv_mean)) - best_sk_krr)
    figures = {"probe_s": t_probe, "sklearn_probe_s": t_sk_probe, "probe_speedup": t_sk_probe / t_probe,
               "probe_best_cv_gap": gap, "krr_s": t_krr, "sklearn_krr_s": t_sk_krr, "krr_speedup": t_sk_krr / t_krr,
               "krr_best_cv_gap": krr_gap}
    tolerance = max(0.02, 5 / s.probe_n)  # five validation images: what tiny dry-run sizes can resolve
    return Result("solvers", "PASS" if max(gap, krr_gap) <= tolerance else "FAIL",
                  f"probe {t_probe:.2f} s vs sklearn {t_sk_probe:.2f} s ({t_sk_probe / t_probe:.1f}x), kernel ridge "
                  f"{t_krr:.2f} s vs sklearn {t_sk_krr:.2f} s ({t_sk_krr / t_krr:.1f}x); best CV score gaps "
                  f"{gap:.4f} and {krr_gap:.4f} (<= {tolerance:.3f})", figures=figures)


def step_optional(ctx: Context) -> Result:
    """The backends the validation machine cannot install, run when present: DALI's mixed
    (nvJPEG) loader, the cuML probe against torch, faiss-gpu kNN against torch (and its GPU
    resources built once)."""
    import numpy as np
    import torch

    from fastinv.kernels import knn_classify, linear_probe
    device = _cuda_only(ctx, "DALI mixed decode, cuML and faiss-gpu are GPU backends")
    figures, notes, failed = {}, [], False
    if _installed("nvidia.dali"):
        rate, _ = _loader_rate(ctx, "dali", device)
        figures["dali_images_per_s"] = rate
        notes.append(f"DALI mixed {rate:.0f} img/s")
    else:
        notes.append("DALI not installed (pip install 'fastinv[dali]')")
    x, labels, _ = _probe_data(ctx.sizes.probe_n, ctx.sizes.probe_d, 2)
    xt = torch.from_numpy(x).to(device)
    if _installed("cuml"):
        grid = np.logspace(-6, 5, 8)
        got = linear_probe(xt, labels, grid=grid, folds=3, test_features=xt, test_targets=labels, backend="cuml")
        ref = linear_probe(xt, labels, grid=grid, folds=3, test_features=xt, test_targets=labels)
        gap = abs(got.test_score - ref.test_score)
        figures["cuml_probe_gap"] = gap
        failed |= gap > 0.005
        notes.append(f"cuML probe gap {gap:.4f} (<= 0.005)")
    else:
        notes.append("cuML not installed (pip install 'fastinv[gpu]')")
    faiss_gpu = _installed("faiss") and hasattr(__import__("faiss"), "StandardGpuResources")
    if faiss_gpu:
        from fastinv.kernels.backend_faiss import gpu_resources
        got = [knn_classify(xt, labels, xt, backend="faiss").predictions for _ in range(2)]
        agree = float(np.mean(got[-1] == knn_classify(xt, labels, xt).predictions))
        figures["faiss_gpu_agreement"] = agree
        failed |= agree < 1.0 or gpu_resources.cache_info().currsize != 1
        notes.append(f"faiss-gpu kNN agreement {agree:.4f} (= 1), GPU resources built "
                     f"{gpu_resources.cache_info().currsize} time(s) for 2 searches")
    else:
        notes.append("faiss-gpu not installed (pip install 'fastinv[gpu]')")
    if not figures:
        raise Skip("; ".join(notes))
    return Result("optional", "FAIL" if failed else "PASS", "; ".join(notes), figures=figures)


def step_deterministic(ctx: Context) -> Result:
    """`fastinv pretrain --deterministic` twice on the same data: the same weights bit for bit, and
    torch's determinism setting and CUBLAS_WORKSPACE_CONFIG as they were before each run."""
    import torch

    from fastinv.checkpoint import load_checkpoint
    device = _device(ctx)
    before = (torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    states = []
    for run in ("a", "b"):
        out = ctx.out / f"deterministic_{run}"
        shutil.rmtree(out, ignore_errors=True)
        argv = ["pretrain", "--data", str(ctx.data), "--out", str(out), "--arch", "resnet10x0.25", "--image-size", "32",
                "--batch-size", "16", "--workers", "0", "--head-hidden", "32", "--head-dim", "16", "--bn-splits", "4",
                "--queue-size", "64", "--epochs", "1", "--max-steps", "3", "--no-tensorboard", "--no-progress",
                "--deterministic", "--device", str(device)]
        if _fastinv(argv) != 0:
            return Result("deterministic", "FAIL", f"fastinv pretrain --deterministic on {device} failed")
        states.append(load_checkpoint(out / "checkpoint.pt")["model"])
        shutil.rmtree(out, ignore_errors=True)
    differ = [k for k in states[0] if not torch.equal(states[0][k], states[1][k])]
    after = (torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    ok = not differ and after == before
    return Result("deterministic", "PASS" if ok else "FAIL",
                  f"two runs: {len(differ)} of {len(states[0])} tensors differ (0 expected); settings after the runs "
                  f"{after} vs before {before}")


def step_table2(ctx: Context) -> Result:
    """The synthetic suite (Table 2) of `fastinv eval` at the paper's views and grids on the
    generated JPEGs as the reference set, for two image counts; the per-image time, the fixed
    time and their extrapolation to the paper's 1,000 images (one model)."""
    device = _device(ctx)
    s = ctx.sizes
    seconds = []
    for n in s.table2_images:
        out = ctx.out / f"table2_{n}"
        shutil.rmtree(out, ignore_errors=True)
        argv = [sys.executable, "-m", "fastinv", "eval", "--suite", "synthetic", "--preset", "paper", "--reference",
                str(ctx.data), "--synthetic-images", str(n), "--model", "r50=random", "--arch", s.table2_arch,
                "--device", str(device), "--amp", "bf16", "--out", str(out / "eval"), "--cache-dir",
                str(out / "cache"), "--no-progress"]
        if s.table2_grid is not None:
            argv += ["--grid-size", str(s.table2_grid)]
        begin = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        seconds.append(time.perf_counter() - begin)
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            if "--reference" in message:
                raise Skip(f"fastinv eval does not take --reference yet: {message}")
            return Result("table2", "FAIL", f"fastinv eval exited {done.returncode}: {message}")
        shutil.rmtree(out / "cache", ignore_errors=True)
    (n1, n2), (t1, t2) = s.table2_images, seconds
    per_image = (t2 - t1) / (n2 - n1)
    fixed = t1 - n1 * per_image
    return Result("table2", "PASS", f"{per_image:.2f} s per image, {fixed:.1f} s fixed: about "
                  f"{(fixed + 1000 * per_image) / 60:.1f} min per model for 1,000 images",
                  figures={f"seconds_{n1}": t1, f"seconds_{n2}": t2, "per_image_s": per_image, "fixed_s": fixed,
                           "extrapolated_1000_s": fixed + 1000 * per_image})


@dataclass(frozen=True)
class Step:
    """A step: its function, its time budgets (validation, --quick) and what it needs: 'host'
    (runs anywhere) or 'device' (a GPU step; --device cpu runs it on the CPU)."""

    run: Callable[[Context], Result]
    budget_s: float
    quick_budget_s: float
    needs: str = "device"


# In priority order: when time runs short, the last steps are the ones left out.
STEPS = {
    "environment": Step(step_environment, 30, 60, "host"),
    "data": Step(step_data, 60, 120, "host"),
    "loader": Step(step_loader, 60, 120),
    "step": Step(step_step, 100, 180),
    "overlap": Step(step_overlap, 75, 180),
    "syncs": Step(step_syncs, 45, 60),
    "features": Step(step_features, 45, 120),
    "cupy": Step(step_cupy, 45, 60),
    "solvers": Step(step_solvers, 75, 300),
    "optional": Step(step_optional, 45, 60),
    "deterministic": Step(step_deterministic, 45, 180),
    "table2": Step(step_table2, 120, 300),
    "compile": Step(step_compile, 150, 300),
}


# -- driver -----------------------------------------------------------------------------------

def _context(args: argparse.Namespace) -> Context:
    import torch

    from fastinv.devices import parse_device
    device = None if args.device == "auto" and not torch.cuda.is_available() else parse_device(args.device)
    return Context(device, QUICK if args.quick else FULL, Path(args.out))


def run_step(name: str, args: argparse.Namespace) -> int:
    """Run one step in this process and write OUT/steps/<name>.json."""
    sys.path.insert(0, str(HERE))
    begin = time.perf_counter()
    try:
        result = STEPS[name].run(_context(args))
    except Skip as reason:
        result = Result(name, "SKIP", str(reason))
    except Exception as exc:  # a GPU path that crashes is what this run is for: report it, do not stop
        tail = traceback.format_exc().strip().splitlines()[-6:]
        result = Result(name, "FAIL", f"{type(exc).__name__}: {exc}", info={"traceback": tail})
    result.seconds = time.perf_counter() - begin
    target = Path(args.out) / "steps" / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(asdict(result), indent=2, default=str) + "\n")
    return 0


def _kill_group(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


def _child(name: str, args: argparse.Namespace, budget: float) -> Result:
    """Run a step in a child process within `budget` seconds and read what it wrote."""
    target = Path(args.out) / "steps" / f"{name}.json"
    target.unlink(missing_ok=True)
    argv = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--out", args.out, "--device", args.device]
    argv += ["--quick"] if args.quick else []
    begin = time.perf_counter()
    # its own process group, so that a step out of time goes with every process it started; so
    # does the step running when this driver is told to stop
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    signal.signal(signal.SIGTERM, lambda *_: (_kill_group(child), sys.exit(143)))
    try:
        _, stderr = child.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        _kill_group(child)
        child.communicate()
        return Result(name, "TIMEOUT", f"still running after its budget of {budget:.0f} s; stopped", budget, budget)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not target.is_file():
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        return Result(name, "FAIL", f"the step process exited {child.returncode} without a result: {tail}",
                      time.perf_counter() - begin, budget)
    result = Result(**json.loads(target.read_text()))
    result.budget_s = budget
    return result


def _summary(results: dict[str, Result]) -> dict[str, float]:
    """The headline figures, and the ratios between steps."""
    pick = {"loader_images_per_s": ("loader", "images_per_s"), "step_images_per_s": ("step", "images_per_s"),
            "compiled_step_images_per_s": ("compile", "images_per_s"),
            "split_over_plain_bn_time": ("step", "split_over_plain_time"),
            "pretrain_images_per_s": ("overlap", "images_per_s"), "data_wait_share": ("overlap", "data_wait_share"),
            "augment_syncs_per_batch": ("syncs", "augment_syncs_per_batch"),
            "decode_syncs_per_batch": ("syncs", "decode_syncs_per_batch"),
            "features_images_per_s": ("features", "images_per_s"), "probe_speedup": ("solvers", "probe_speedup"),
            "krr_speedup": ("solvers", "krr_speedup"), "table2_1000_images_s": ("table2", "extrapolated_1000_s")}
    summary = {key: results[step].figures[figure] for key, (step, figure) in pick.items()
               if step in results and figure in results[step].figures}
    if "compiled_step_images_per_s" in summary and "step_images_per_s" in summary:
        summary["compile_speedup"] = summary["compiled_step_images_per_s"] / summary["step_images_per_s"]
        eager, compiled = results["step"].figures["final_loss"], results["compile"].figures["final_loss"]
        summary["compile_loss_gap"] = abs(compiled - eager) / max(abs(eager), 1e-6)  # same init, views and steps
    if "pretrain_images_per_s" in summary and "step_images_per_s" in summary:
        summary["pretrain_over_step_alone"] = summary["pretrain_images_per_s"] / summary["step_images_per_s"]
    return summary


def _table(results: dict[str, Result]) -> str:
    rows = [(r.name, r.status, f"{r.seconds:.0f}/{r.budget_s:.0f}", r.detail) for r in results.values()]
    head = ("step", "status", "s/budget", "detail")
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head[:3])]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths + [0])) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths + [6]) + "|", *map(line, rows)])


def _write_report(results: dict[str, Result], args: argparse.Namespace) -> Path:
    """Write OUT/device_check.json: the environment, the settings, the summary and every step so far."""
    report = {"environment": results["environment"].info, "quick": args.quick, "device": args.device,
              "time_limit_s": args.time_limit, "summary": _summary(results),
              "steps": {name: asdict(r) for name, r in results.items()}}
    target = Path(args.out) / "device_check.json"
    target.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    """Run the steps, each in its own process, within --time-limit; write the JSON; exit 1 on a
    FAIL or TIMEOUT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for device_check.json, steps/, and the generated data")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a dry run of the script, seconds per step)")
    parser.add_argument("--device", default="auto", help="auto: CUDA, GPU steps skipped without it; cuda or cuda:N; "
                        "cpu: run the GPU steps on the CPU (with --quick) to exercise them")
    parser.add_argument("--only", nargs="+", choices=sorted(STEPS), default=None, help="run only these steps (and "
                        "environment and data, which the others need)")
    parser.add_argument("--time-limit", type=float, default=450.0, help="seconds for all steps together")
    parser.add_argument("--step", choices=sorted(STEPS), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step is not None:
        return run_step(args.step, args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + args.time_limit
    names = [n for n in STEPS if args.only is None or n in args.only or STEPS[n].needs == "host"]
    results: dict[str, Result] = {}
    for name in names:
        step = STEPS[name]
        left = deadline - time.perf_counter()
        cuda = results.get("environment", Result("", "")).info.get("cuda_available", False)
        if step.needs == "device" and args.device == "auto" and not cuda:
            result = Result(name, "SKIP", NO_CUDA)
        elif left < MIN_STEP_S:
            result = Result(name, "SKIP", f"out of time: {left:.0f} s left of the {args.time_limit:.0f} s limit")
        else:
            result = _child(name, args, min(step.quick_budget_s if args.quick else step.budget_s, left))
        results[name] = result
        print(f"{result.status:7} {name}: {result.detail}", flush=True)
        target = _write_report(results, args)  # after every step: a run stopped from outside keeps what it did
    print(_table(results))
    print(f"wrote {target}")
    return 1 if any(r.status in ("FAIL", "TIMEOUT") for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
