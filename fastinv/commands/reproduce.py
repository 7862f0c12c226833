"""`fastinv reproduce`: the paper in miniature on the synthetic world (or in full on ImageNet)."""
import argparse
import sys
from pathlib import Path

from fastinv.commands.eval import DEFAULT_CACHE
from fastinv.errors import UsageError
from fastinv.paths import existing_dir, writable_dir
from fastinv.presets import REPRODUCE_PRESETS

HELP = "generate the world, pre-train Default/Spatial/Appearance, evaluate them all, write the report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `fastinv reproduce`."""
    parser.add_argument("--preset", choices=sorted(REPRODUCE_PRESETS), default="tiny",
                        help="'tiny': 64-px world, ResNet-18, 8 epochs, about 13 minutes on an idle 2-core CPU; "
                        "'paper': ImageNet, ResNet-50, 200 epochs, for a GPU cluster (prints what it needs)")
    parser.add_argument("--out", default="reproduce", help="folder for the models, results.json, report.md, figures")
    parser.add_argument("--imagenet", default=None,
                        help="ImageNet train folder (ImageFolder layout), required by --preset paper")
    parser.add_argument("--device", default="cpu", help="torch device for training and evaluation, e.g. cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the world draws, training and evaluation")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="where the world and features are cached")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the study and print where the report is."""
    from fastinv.reproduce import reproduce, world_for

    preset = REPRODUCE_PRESETS[args.preset]
    cache = writable_dir(args.cache_dir, what="--cache-dir")
    if preset.world is None:
        if args.imagenet is None:
            raise UsageError(f"--preset {args.preset} needs {preset.needs}")
        train_root = existing_dir(args.imagenet, what="--imagenet")
        world = world_for(REPRODUCE_PRESETS["tiny"], cache, not args.no_progress)
    else:
        world = world_for(preset, cache, not args.no_progress)
        train_root = world / "trainset"
    out = writable_dir(args.out)
    report = reproduce(args.preset, out, world_root=world, train_root=train_root, device=args.device,
                       seed=args.seed, progress=not args.no_progress, cache_dir=cache)
    print(f"report: {report}", file=sys.stdout)
    return 0
