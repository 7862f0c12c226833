"""`fastinv profile {loader,train,eval}`: per-stage timings on the chosen device and backend.

Each mode prints an aligned table and, with --json FILE, writes the same numbers with a note per
stage on how it was measured (fastinv.profiling). Warm-up is never timed.
"""
import argparse

from fastinv.devices import DEVICE_CHOICES
from fastinv.errors import UsageError
from fastinv.train.config import LOADERS
from fastinv.train.flags import add_training_arguments, config_from_args, errors_in_flag_terms

HELP = "time the loader, the training step or the evaluation stage by stage (table + --json)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `fastinv profile loader|train|eval` and their flags."""
    modes = parser.add_subparsers(dest="mode", required=True, metavar="MODE", parser_class=type(parser),
                                  help="stage to time: loader, train or eval (see 'fastinv profile MODE --help')")
    _add_loader(modes.add_parser("loader", help="decode + augment throughput of a two-view loader, with the "
                                 "read/decode/augment split", formatter_class=argparse.ArgumentDefaultsHelpFormatter))
    _add_train(modes.add_parser("train", help="MoCo-v2 step split into data wait, transfer, forward, backward, "
                                "optimiser and momentum/queue", formatter_class=argparse.ArgumentDefaultsHelpFormatter))
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
    add_training_arguments(parser, whole_run=False)
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each kind: train_step untimed "
                        "(images/s), then train_step with a stage timer (the stage split)")
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


def _loader(args: argparse.Namespace):
    from fastinv.devices import parse_device
    from fastinv.pipelines import LoaderConfig
    from fastinv.profiling.loader import profile_loader_report

    if not args.data:
        raise UsageError("profile loader needs --data DIR (or FILE.beton for --backend ffcv)")
    if args.batches < 1:
        raise UsageError("--batches must be >= 1")
    cfg = LoaderConfig(root=args.data, recipe=args.recipe, backend=args.backend, image_size=args.image_size,
                       batch_size=args.batch_size, workers=args.workers, device=parse_device(args.device),
                       seed=args.seed)
    return profile_loader_report(cfg, args.batches, args.warmup, split=not args.no_split)


def _train(args: argparse.Namespace):
    from fastinv.profiling.train import profile_train

    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    with errors_in_flag_terms():
        return profile_train(config_from_args(args), args.steps, args.warmup)


def _eval(args: argparse.Namespace):
    from pathlib import Path

    from fastinv.profiling.eval import EvalProfileConfig, profile_eval

    if not args.data:
        raise UsageError("profile eval needs --data WORLD (or an ImageFolder)")
    for flag, low in (("image_size", 16), ("batch_size", 1), ("folds", 2), ("probe_points", 1)):
        if getattr(args, flag) < low:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least {low}, got {getattr(args, flag)}")
    return profile_eval(EvalProfileConfig(
        data=Path(args.data), model=args.model, arch=args.arch, device=args.device, amp=args.amp,
        channels_last=not args.no_channels_last, image_size=args.image_size, batch_size=args.batch_size,
        folds=args.folds, probe_points=args.probe_points, knn_backend=args.knn_backend,
        solver_backend=args.solver_backend, seed=args.seed, warmup=args.warmup))


def run(args: argparse.Namespace) -> int:
    """Time the requested mode, print its table and write --json if asked."""
    from fastinv.profiling.report import format_table, write_json

    for flag in ("warmup", "workers"):
        if getattr(args, flag, 0) < 0:
            raise UsageError(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    report = {"loader": _loader, "train": _train, "eval": _eval}[args.mode](args)
    print(format_table(report))
    for note in report.notes:
        print(f"note: {note}")
    if args.json:
        print(f"wrote {write_json(report, args.json)}")
    return 0
