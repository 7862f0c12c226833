"""`fastinv reproduce`: the paper in miniature on the synthetic world (or in full on ImageNet)."""
import argparse
import sys

from fastinv.devices import DEVICE_CHOICES
from fastinv.errors import UsageError
from fastinv.paths import DEFAULT_CACHE, existing_dir, writable_dir
from fastinv.presets import REPRODUCE_PRESETS

HELP = "generate the world, pre-train Default/Spatial/Appearance, evaluate them all, write the report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `fastinv reproduce`."""
    parser.add_argument("--preset", choices=sorted(REPRODUCE_PRESETS), default="tiny",
                        help="'tiny': 64-px world, ResNet-18, 8 epochs, 13 minutes on an idle 2-core CPU with native bf16, 48 in float32 on one without; "
                        "'paper': ImageNet, ResNet-50, 200 epochs, for a GPU cluster (prints what it needs)")
    parser.add_argument("--out", default="reproduce", help="folder for the models, results.json, report.md, figures")
    parser.add_argument("--imagenet", default=None, metavar="DIR",
                        help="ImageNet folder holding train/ and val/ (ImageFolder layout), required by --preset paper: "
                        "the models train on train/; val/ gives the reference statistics and the Table 2 images")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="folder of the evaluation datasets (layouts in the README); those missing are listed "
                        "as skipped in the report. Without it only the world's tasks and groups are evaluated")
    parser.add_argument("--device", default="auto", help=f"device for training and evaluation: {DEVICE_CHOICES}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the world draws, training and evaluation")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="where the world and features are cached")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the study and print where the report is."""
    from fastinv.devices import parse_device
    from fastinv.reproduce import reproduce, world_for

    preset = REPRODUCE_PRESETS[args.preset]
    device = str(parse_device(args.device))
    data_root = existing_dir(args.data_root, what="--data-root") if args.data_root is not None else None
    cache = writable_dir(args.cache_dir, what="--cache-dir")
    reference = None
    if preset.world is None:
        if args.imagenet is None:
            raise UsageError(f"--preset {args.preset} needs {preset.needs}")
        imagenet = existing_dir(args.imagenet, what="--imagenet")
        train_root = existing_dir(imagenet / "train", what="--imagenet")
        reference = existing_dir(imagenet / "val", what="--imagenet")
        world = world_for(REPRODUCE_PRESETS["tiny"], cache, not args.no_progress)
    else:
        world = world_for(preset, cache, not args.no_progress)
        train_root = world / "trainset"
    out = writable_dir(args.out)
    report = reproduce(args.preset, out, world_root=world, train_root=train_root, device=device, seed=args.seed,
                       progress=not args.no_progress, cache_dir=cache, data_root=data_root, reference=reference)
    print(f"report: {report}", file=sys.stdout)
    return 0
