"""`fastinv eval`: measure the invariances and transfer of trained models."""
import argparse
import sys
from dataclasses import replace
from pathlib import Path

from fastinv.devices import AMP_MODES, parse_device
from fastinv.errors import DataError, UsageError
from fastinv.eval.config import EVAL_PRESETS, SUITE_NAMES
from fastinv.eval.modelspec import parse_fusion, parse_model
from fastinv.paths import DEFAULT_CACHE, existing_dir, writable_dir
from fastinv.presets import WORLD_PRESETS
from fastinv.world import ensure_world, read_world_config

HELP = "measure synthetic and real-world invariance and downstream transfer of trained models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `fastinv eval`."""
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="a model to evaluate (repeatable): a checkpoint in any supported layout (fastinv, the "
                        "paper's module.encoder_q.*, torchvision, timm, .safetensors); NAME=random or a bare 'random' "
                        "is the seeded random-init baseline")
    parser.add_argument("--fuse", action="append", default=[], metavar="A+B[+C]",
                        help="also evaluate the concatenated features of these models (repeatable); the probe grid "
                        "shifts by --fusion-shift decades per added model")
    parser.add_argument("--suite", action="append", choices=SUITE_NAMES, default=[],
                        help="a suite to run (repeatable); default: all")
    parser.add_argument("--all", action="store_true",
                        help="run every suite on every dataset present (the synthetic world is always present)")
    parser.add_argument("--out", required=True, help="folder for results.json, tables/*.csv, report.md and figures/")
    parser.add_argument("--arch", default=None,
                        help="backbone architecture (resnet18, resnet50, resnet50x3, ...); default: what the "
                        "checkpoint records, else resnet18")
    parser.add_argument("--preset", choices=sorted(EVAL_PRESETS), default=None,
                        help="image views and sizes: 'world' (64 px views, 200 images, 8-point grids, for models "
                        "trained on the synthetic world) or 'paper' (SPEC: 256/224 views, 1000 images, full grids; needs "
                        "--reference); default: 'paper' with --reference, else 'world'")
    parser.add_argument("--reference", default=None, metavar="DIR",
                        help="reference images (an ImageFolder or a flat folder, e.g. ImageNet val): mu and S come from "
                        "the clean features of all of them, streamed, and the synthetic suite draws --synthetic-images "
                        "from them (as the paper did); default: the synthetic world's training split")
    parser.add_argument("--compare", default=None, metavar="A,B,C",
                        help="the models of the significance test (the best must beat each other one at delta / (m-1)); "
                        "default: those of default, spatial, appearance that are present (baselines and fusions are "
                        "shown but not tested)")
    parser.add_argument("--world", default=None,
                        help="a world folder made by `fastinv world`; default: generated on demand into --cache-dir")
    parser.add_argument("--world-preset", choices=sorted(WORLD_PRESETS), default="default",
                        help="settings of the world generated on demand when --world is not given")
    parser.add_argument("--data-root", default=None,
                        help="folder holding real datasets in their native layouts (see README); missing ones are skipped")
    parser.add_argument("--grid-size", type=int, default=None,
                        help="magnitudes per synthetic transform (evenly subsampled, identity kept); default: the "
                        "preset's (all for 'paper')")
    parser.add_argument("--synthetic-images", type=int, default=None,
                        help="images in the synthetic suite (the paper: 1000); default: the preset's")
    parser.add_argument("--folds", type=int, default=None, help="cross-validation folds of the probes (default 5)")
    parser.add_argument("--fusion-shift", type=float, default=None,
                        help="decades the probe grid shifts per model added to a fusion (paper text: 1)")
    parser.add_argument("--device", default="auto", help="torch device for features and solvers: auto (CUDA when "
                        "present, else the CPU), cpu, cuda, cuda:1, ...")
    parser.add_argument("--solver-backend", choices=["torch", "cuml"], default="torch",
                        help="probes and kernel ridge: torch (batched grids on --device) or cuml (one cuML fit per grid "
                        "value, a cross-check on a GPU; the 'gpu' extra)")
    parser.add_argument("--knn-backend", choices=["torch", "faiss"], default="torch",
                        help="kNN search: torch (chunked matmul + top-k on --device) or faiss (faiss-gpu on CUDA, "
                        "faiss-cpu otherwise)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default 128)")
    parser.add_argument("--amp", choices=AMP_MODES, default="none",
                        help="autocast dtype of the forward pass; 'none' keeps float32 features, 'auto' is bf16 where "
                        "the device runs it natively (CUDA, CPUs with AVX-512 BF16 or AMX), else none")
    parser.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory (channels_last is faster on most devices)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE),
                        help="where features (and the on-demand world) are cached; a re-run recomputes nothing")
    parser.add_argument("--seed", type=int, default=0, help="seed of image draws, folds and random-init backbones")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise UsageError(f"{name} must be at least 1, got {value}")
    return value


def _config(args: argparse.Namespace):
    overrides = {
        "grid_size": _positive("--grid-size", args.grid_size),
        "synthetic_images": _positive("--synthetic-images", args.synthetic_images),
        "folds": _positive("--folds", args.folds),
        "fusion_grid_shift": args.fusion_shift,
        "batch_size": _positive("--batch-size", args.batch_size),
    }
    if args.folds is not None and args.folds < 2:
        raise UsageError(f"--folds must be at least 2, got {args.folds}")
    return replace(EVAL_PRESETS[_preset(args)], device=str(parse_device(args.device)), compare=_compare(args),
                   solver_backend=args.solver_backend, knn_backend=args.knn_backend, amp=args.amp, seed=args.seed,
                   channels_last=not args.no_channels_last, cache_dir=Path(args.cache_dir),
                   progress=not args.no_progress, **{k: v for k, v in overrides.items() if v is not None})


def _preset(args: argparse.Namespace) -> str:
    if args.preset is None:
        return "paper" if args.reference is not None else "world"
    if args.preset == "paper" and args.reference is None:
        raise UsageError("--preset paper measures against reference images: pass --reference DIR (an ImageFolder or "
                         "a flat folder of images, e.g. ImageNet val)")
    return args.preset


def _compare(args: argparse.Namespace) -> tuple[str, ...] | None:
    if args.compare is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in args.compare.split(",") if n.strip()))
    known = [parse_model(text, args.arch).name for text in args.model] + list(args.fuse)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"--compare {args.compare}: unknown model(s) {', '.join(unknown)}; models: {', '.join(known)}")
    if len(names) < 2:
        raise UsageError(f"--compare {args.compare}: name two or more models, separated by commas")
    return names


def _world(args: argparse.Namespace, cache: Path) -> Path:
    if args.world is None:
        return ensure_world(WORLD_PRESETS[args.world_preset], cache / "worlds", progress=not args.no_progress)
    root = existing_dir(args.world, what="--world")
    if read_world_config(root) is None:
        raise UsageError(f"--world {root}: no world.json there; make one with `fastinv world --out {root}`")
    return root


def run(args: argparse.Namespace) -> int:
    """Evaluate the models, write results.json, CSV tables and report.md."""
    from fastinv.eval.runner import evaluate
    from fastinv.report import write_report
    from fastinv.results import save_results

    if not args.model:
        raise UsageError("name at least one model: --model NAME=PATH (or --model random)")
    specs = [parse_model(text, args.arch) for text in args.model]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"model names must differ, got {', '.join(names)}")
    for spec in specs:
        if spec.source != "random" and not Path(spec.source).is_file():
            raise DataError(f"--model {spec.name}={spec.source}: no such checkpoint file")
    fusions = dict(parse_fusion(text, names) for text in args.fuse)
    suites = list(SUITE_NAMES) if args.all or not args.suite else list(dict.fromkeys(args.suite))
    config = _config(args)
    out = writable_dir(args.out)
    writable_dir(config.cache_dir, what="--cache-dir")
    if args.data_root is not None:
        existing_dir(args.data_root, what="--data-root")
    reference = existing_dir(args.reference, what="--reference") if args.reference is not None else None
    world = _world(args, config.cache_dir)
    data_root = Path(args.data_root) if args.data_root is not None else None
    results = evaluate(specs, fusions, suites, config, world, data_root=data_root, reference=reference,
                       meta={"command": " ".join(sys.argv), "preset": _preset(args), "world": str(world)})
    for name, reason in results.skipped.items():
        print(f"skipped {name}: {reason}", file=sys.stderr)
    save_results(results, out)
    report = write_report(results, out)
    print(f"wrote {out / 'results.json'} and {report}")
    return 0
