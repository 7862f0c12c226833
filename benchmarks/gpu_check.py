"""Validate every GPU path of fastinv in one call, against its CPU/torch counterpart.

Checks (each PASS, FAIL or SKIP with the reason): DALI `mixed` (nvJPEG) decode, torch nvJPEG
decode, the MoCo step with AMP bf16 + channels_last, the torch.compile'd step, feature
extraction, the torch solvers on CUDA, the cuML backend (cupy + cuml) and faiss-gpu kNN. A
CPU baseline (loader, step, solvers) always runs so the script is exercised anywhere. Prints a
table with images/s and solver seconds, writes --json, and exits 1 if any check FAILs.

    python benchmarks/gpu_check.py [--quick] [--json gpu_check.json] [--data IMAGEFOLDER]
"""
import argparse
import importlib.util
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from fastinv.profiling import synchronize, time_call

RECIPE = "spatial"  # crop + flip only: decoders and resizers differ by a few grey levels, colour ops would add more
DECODE_TOLERANCE = 6.0  # mean |difference| in grey levels (0-255) between GPU- and CPU-decoded views
PROBE_TOLERANCE = 0.005


class Skip(Exception):
    """A check that cannot run here; the message says why."""


@dataclass
class Check:
    """One check's outcome, what it compared, and its figures (images/s, seconds)."""

    name: str
    status: str
    detail: str
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Setup:
    """What every check reads: the images, sizes and step counts."""

    data: Path
    image_size: int
    batch_size: int
    batches: int
    arch: str


def _need_cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise Skip("no CUDA device")
    return torch.device("cuda", torch.cuda.current_device())


def _need(module: str, extra: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise Skip(f"{module} not installed (pip install 'fastinv[{extra}]')")


def _views(setup: Setup, backend: str, device: torch.device) -> tuple[list[torch.Tensor], float]:
    """uint8 first views of the first batches (CPU copies) and the loader's images/s after one warm-up batch."""
    from fastinv.pipelines import LoaderConfig, build_two_view_loader
    cfg = LoaderConfig(root=setup.data, recipe=RECIPE, backend=backend, image_size=setup.image_size,
                       batch_size=setup.batch_size, workers=2, device=device, seed=0, output="uint8")
    iterator = iter(build_two_view_loader(cfg))
    first = next(iterator)
    synchronize(device)
    start = time.perf_counter()
    rest = [batch for _, batch in zip(range(setup.batches), iterator)]
    synchronize(device)
    rate = sum(b.view1.shape[0] for b in rest) / max(time.perf_counter() - start, 1e-9)
    return [b.view1.cpu() for b in [first, *rest]], rate


def _compare_views(setup: Setup, backend: str) -> Check:
    device = _need_cuda()
    gpu, gpu_rate = _views(setup, backend, device)
    cpu, cpu_rate = _views(setup, backend, torch.device("cpu"))
    diff = max(float((a.float() - b.float()).abs().mean()) for a, b in zip(gpu, cpu))
    ok = len(gpu) == len(cpu) and diff <= DECODE_TOLERANCE
    return Check("", "PASS" if ok else "FAIL", f"max batch mean |gpu - cpu| = {diff:.2f} grey levels "
                 f"(<= {DECODE_TOLERANCE})", {"gpu_images_per_s": gpu_rate, "cpu_images_per_s": cpu_rate})


def check_dali_mixed(setup: Setup) -> Check:
    """DALI loader with device cuda (decoders.image_slice on 'mixed' = nvJPEG) vs DALI on the CPU."""
    _need("nvidia.dali", "dali")
    return _compare_views(setup, "dali")


def check_torch_nvjpeg(setup: Setup) -> Check:
    """torch loader on cuda (batched nvJPEG + device augmentation) vs the same loader on the CPU."""
    return _compare_views(setup, "torch")


def _train_config(setup: Setup, device: torch.device, amp: str, channels_last: bool, compiled: bool):
    from fastinv.train.config import DataConfig, ModelConfig, MoCoConfig, OptimConfig, RunConfig, TrainConfig
    return TrainConfig(data=DataConfig(root="-", image_size=setup.image_size, batch_size=setup.batch_size),
                       model=ModelConfig(arch=setup.arch, bn="split", bn_splits=2),
                       moco=MoCoConfig(K=setup.batch_size * 4, m=0.99), optim=OptimConfig(epochs=1),
                       run=RunConfig(out="-", device=str(device), amp=amp, channels_last=channels_last,
                                     compile=compiled))


def _steps(setup: Setup, device: torch.device, amp: str, channels_last: bool, compiled: bool,
           warmup: int) -> tuple[list[float], float]:
    """Losses of `setup.batches` MoCo steps on fixed seeded views after `warmup` (counted) steps, and images/s."""
    from fastinv.train.distributed import DistInfo
    from fastinv.train.step import build_engine, train_step
    cfg = _train_config(setup, device, amp, channels_last, compiled)
    engine = build_engine(cfg, DistInfo(0, 1, 0, device), steps_per_epoch=warmup + setup.batches)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    shape = (setup.batch_size, 3, setup.image_size, setup.image_size)
    views = [torch.randn(shape, generator=gen).to(device).contiguous(memory_format=fmt) for _ in range(2)]
    losses = [float(train_step(engine, *views, step)) for step in range(warmup)]
    start = time.perf_counter()
    timed = [train_step(engine, *views, step) for step in range(warmup, warmup + setup.batches)]
    losses += [float(loss) for loss in timed]  # float() synchronises
    return losses, setup.batches * setup.batch_size / (time.perf_counter() - start)


def check_amp_channels_last(setup: Setup) -> Check:
    """bf16 + channels_last MoCo step on CUDA vs the fp32 NCHW step on CUDA (same init and views)."""
    device = _need_cuda()
    ref, ref_rate = _steps(setup, device, "none", False, False, warmup=1)
    fast, fast_rate = _steps(setup, device, "bf16", True, False, warmup=1)
    gap = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(ref, fast))
    ok = all(np.isfinite(fast)) and gap <= 0.05
    return Check("", "PASS" if ok else "FAIL", f"max relative loss gap bf16/CL vs fp32 = {gap:.4f} (<= 0.05)",
                 {"fp32_images_per_s": ref_rate, "bf16_cl_images_per_s": fast_rate})


def check_compile(setup: Setup) -> Check:
    """torch.compile'd MoCo step on CUDA vs the eager step (fp32, same init and views)."""
    device = _need_cuda()
    eager, eager_rate = _steps(setup, device, "none", True, False, warmup=2)
    compiled, compiled_rate = _steps(setup, device, "none", True, True, warmup=2)
    gap = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(eager, compiled))
    ok = gap <= 1e-3
    return Check("", "PASS" if ok else "FAIL", f"max relative loss gap compiled vs eager = {gap:.2e} (<= 1e-3)",
                 {"eager_images_per_s": eager_rate, "compiled_images_per_s": compiled_rate})


def _images(setup: Setup) -> tuple[torch.Tensor, torch.Tensor]:
    from fastinv.train.data import clean_images
    return clean_images(setup.data, setup.image_size)


def _features(setup: Setup, device: torch.device, amp: str) -> tuple[torch.Tensor, float]:
    from fastinv.eval.features import FeatureExtractor
    from fastinv.models import load_backbone
    images, _ = _images(setup)
    extractor = FeatureExtractor(load_backbone("random", setup.arch, device=device), device, amp=amp,
                                 batch_size=setup.batch_size)
    extractor.extract([images[:setup.batch_size]])
    features, seconds = time_call(lambda: extractor.extract([images]), device)
    return features, images.shape[0] / seconds


def check_features(setup: Setup) -> Check:
    """Feature extraction on CUDA (bf16, channels_last) vs fp32 on the CPU: cosine of each image's features."""
    device = _need_cuda()
    gpu, gpu_rate = _features(setup, device, "bf16")
    cpu, cpu_rate = _features(setup, torch.device("cpu"), "none")
    cosine = float(torch.nn.functional.cosine_similarity(gpu.cpu(), cpu, dim=1).min())
    return Check("", "PASS" if cosine >= 0.99 else "FAIL", f"min cosine(gpu bf16, cpu fp32) = {cosine:.4f} (>= 0.99)",
                 {"gpu_images_per_s": gpu_rate, "cpu_images_per_s": cpu_rate})


def _solver_data(setup: Setup, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Separable feature-like data (train x, train y, test x, test y), seeded."""
    rng = np.random.default_rng(seed)
    n, d, classes = (120, 16, 4) if setup.batches <= 2 else (2000, 256, 10)
    centres = rng.normal(size=(classes, d))
    y = rng.integers(0, classes, size=2 * n)
    x = (centres[y] + 1.5 * rng.normal(size=(2 * n, d))).astype(np.float32)
    return x[:n], y[:n], x[n:], y[n:]


def _solve(setup: Setup, device: torch.device, backend: str, knn_backend: str) -> tuple[dict, dict]:
    """Scores and seconds of the probe, kernel ridge and kNN on `device` with the given backends."""
    from fastinv.kernels import kernel_ridge_cv, knn_classify, linear_probe, mahalanobis, reference_stats
    xtr, ytr, xte, yte = _solver_data(setup)
    xtr_t, xte_t = torch.from_numpy(xtr).to(device), torch.from_numpy(xte).to(device)
    onehot = lambda y: np.eye(int(ytr.max()) + 1)[y]  # noqa: E731
    grid = np.logspace(-6, 5, 8)
    calls = {
        "stats_mahalanobis": lambda: mahalanobis(xte_t, xte_t.roll(1, 0), reference_stats(xtr_t)).mean().item(),
        "linear_probe": lambda: linear_probe(xtr_t, ytr, grid=grid, folds=3, test_features=xte_t, test_targets=yte,
                                             backend=backend).test_score,
        "kernel_ridge_cv": lambda: kernel_ridge_cv(xtr_t[:300], onehot(ytr[:300]), folds=3, test_features=xte_t[:300],
                                                   test_targets=onehot(yte[:300]), backend=backend).test_r2,
        "knn_classify": lambda: knn_classify(xtr_t, ytr, xte_t, backend=knn_backend).predictions,
    }
    scores, seconds = {}, {}
    for name, call in calls.items():
        call()
        scores[name], seconds[name] = time_call(call, device)
    return scores, seconds


def _solver_gaps(got: dict, ref: dict) -> tuple[bool, str]:
    probe = abs(got["linear_probe"] - ref["linear_probe"])
    krr = abs(got["kernel_ridge_cv"] - ref["kernel_ridge_cv"])
    knn = float(np.mean(got["knn_classify"] == ref["knn_classify"]))
    ok = probe <= PROBE_TOLERANCE and krr <= PROBE_TOLERANCE and knn == 1.0
    return ok, (f"|probe acc gap| {probe:.4f}, |krr R^2 gap| {krr:.4f} (<= {PROBE_TOLERANCE}), kNN agreement "
                f"{knn:.4f} (= 1)")


def check_torch_solvers_cuda(setup: Setup) -> Check:
    """The torch solvers on CUDA vs the same solvers on the CPU."""
    device = _need_cuda()
    got, gpu_s = _solve(setup, device, "torch", "torch")
    ref, cpu_s = _solve(setup, torch.device("cpu"), "torch", "torch")
    mahal = abs(got["stats_mahalanobis"] - ref["stats_mahalanobis"]) / max(abs(ref["stats_mahalanobis"]), 1e-9)
    ok, detail = _solver_gaps(got, ref)
    ok = ok and mahal <= 1e-3
    figures = {f"gpu_{k}_s": v for k, v in gpu_s.items()} | {f"cpu_{k}_s": v for k, v in cpu_s.items()}
    return Check("", "PASS" if ok else "FAIL", f"{detail}; mahalanobis rel gap {mahal:.1e}", figures)


def check_cuml(setup: Setup) -> Check:
    """The cuML backend (cupy + cuml) of linear_probe / kernel_ridge_cv vs the torch solvers, both on CUDA."""
    device = _need_cuda()
    _need("cupy", "gpu")
    _need("cuml", "gpu")
    got, cuml_s = _solve(setup, device, "cuml", "torch")
    ref, torch_s = _solve(setup, device, "torch", "torch")
    ok, detail = _solver_gaps(got, ref)
    figures = {f"cuml_{k}_s": cuml_s[k] for k in ("linear_probe", "kernel_ridge_cv")}
    figures |= {f"torch_{k}_s": torch_s[k] for k in ("linear_probe", "kernel_ridge_cv")}
    return Check("", "PASS" if ok else "FAIL", detail, figures)


def check_faiss_gpu(setup: Setup) -> Check:
    """knn_classify with faiss on CUDA tensors (index on the GPU) vs the torch kNN: the same predictions."""
    from fastinv.kernels import knn_classify
    device = _need_cuda()
    _need("faiss", "gpu")
    import faiss
    if not hasattr(faiss, "StandardGpuResources"):
        raise Skip("faiss is the CPU build (pip install 'fastinv[gpu]' for faiss-gpu)")
    xtr, ytr, xte, _ = _solver_data(setup)
    xtr_t, xte_t = torch.from_numpy(xtr).to(device), torch.from_numpy(xte).to(device)
    got, faiss_s = time_call(lambda: knn_classify(xtr_t, ytr, xte_t, backend="faiss").predictions, device)
    ref, torch_s = time_call(lambda: knn_classify(xtr_t, ytr, xte_t, backend="torch").predictions, device)
    agree = float(np.mean(got == ref))
    return Check("", "PASS" if agree == 1.0 else "FAIL", f"kNN agreement faiss-gpu vs torch = {agree:.4f} (= 1)",
                 {"faiss_gpu_knn_s": faiss_s, "torch_cuda_knn_s": torch_s})


def check_cpu_baseline(setup: Setup) -> Check:
    """The CPU counterparts on their own: torch loader, fp32 step, solvers; finite numbers expected."""
    cpu = torch.device("cpu")
    views, loader_rate = _views(setup, "torch", cpu)
    losses, step_rate = _steps(replace(setup, batches=1), cpu, "none", True, False, warmup=1)
    scores, seconds = _solve(setup, cpu, "torch", "torch")
    ok = bool(views) and all(np.isfinite(losses)) and 0.0 <= scores["linear_probe"] <= 1.0
    return Check("", "PASS" if ok else "FAIL", f"{len(views)} loader batches, step losses {losses[0]:.3f}.., "
                 f"probe test acc {scores['linear_probe']:.3f}",
                 {"loader_images_per_s": loader_rate, "step_images_per_s": step_rate,
                  **{f"{k}_s": v for k, v in seconds.items()}})


CHECKS = {
    "cpu_baseline": check_cpu_baseline,
    "dali_mixed_decode": check_dali_mixed,
    "torch_nvjpeg_decode": check_torch_nvjpeg,
    "amp_bf16_channels_last_step": check_amp_channels_last,
    "compile_step": check_compile,
    "feature_extraction": check_features,
    "torch_solvers_cuda": check_torch_solvers_cuda,
    "cuml_backend": check_cuml,
    "faiss_gpu_knn": check_faiss_gpu,
}


def run_checks(setup: Setup, names: list[str]) -> list[Check]:
    """Run the named checks; an exception in a check is a FAIL naming it, a Skip a SKIP."""
    results = []
    for name in names:
        try:
            result = replace(CHECKS[name](setup), name=name)
        except Skip as reason:
            result = Check(name, "SKIP", str(reason))
        except Exception as exc:  # a GPU path that crashes is exactly what this script must report
            result = Check(name, "FAIL", f"{type(exc).__name__}: {exc}")
        print(f"{result.status:4} {name}: {result.detail}", flush=True)
        results.append(result)
    return results


def table(results: list[Check]) -> str:
    """An aligned Markdown table: check, status, figures, detail."""
    rows = [(r.name, r.status, ", ".join(f"{k}={v:.4g}" for k, v in r.figures.items()), r.detail) for r in results]
    head = ("check", "status", "figures (images/s, seconds)", "detail")
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows)])


def _environment() -> dict[str, str]:
    env = {"python": sys.version.split()[0], "torch": torch.__version__,
           "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else "none"}
    for module in ("nvidia.dali", "cupy", "cuml", "faiss"):
        try:
            env[module] = str(getattr(__import__(module, fromlist=["__version__"]), "__version__", "?"))
        except ImportError:
            env[module] = "not installed"
    return env


def main(argv: list[str] | None = None) -> int:
    """Run the checks, print the table, write the JSON; exit 1 if any check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images, batches and solver data (seconds on a CPU)")
    parser.add_argument("--data", default=None, help="ImageFolder to read (default: a synthetic world written to a "
                        "temporary folder)")
    parser.add_argument("--json", default="gpu_check.json", help="where to write the results")
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), default=None, help="run only these checks")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else _world(Path(tmp), args.quick)
        setup = Setup(data, 32 if args.quick else 128, 8 if args.quick else 64, 2 if args.quick else 8,
                      "resnet10x0.25" if args.quick else "resnet50")
        results = run_checks(setup, args.only or list(CHECKS))
    print(table(results))
    Path(args.json).write_text(json.dumps({"environment": _environment(), "setup": {**asdict(setup), "data": str(setup.data)},
                                           "checks": [asdict(r) for r in results]}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 1 if any(r.status == "FAIL" for r in results) else 0


def _world(tmp: Path, quick: bool) -> Path:
    """A synthetic world's trainset as the ImageFolder of the checks."""
    from fastinv.world import WorldConfig, generate_world
    cfg = WorldConfig(size=32 if quick else 128, per_class=8 if quick else 80, test_per_class=1, pose_groups=1,
                      light_groups=1, group_size=2, seed=0, workers=1 if quick else 4)
    generate_world(cfg, tmp / "world", progress=False)
    return tmp / "world" / "trainset"


if __name__ == "__main__":
    raise SystemExit(main())
