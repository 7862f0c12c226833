"""`fastinv world`: generate the embedded synthetic world."""
import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

from fastinv.errors import UsageError
from fastinv.paths import writable_dir
from fastinv.presets import WORLD_PRESETS
from fastinv.world import generate_world, read_world_config

HELP = "generate the embedded synthetic world: JPEG images + latents + pose/light groups"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `fastinv world`."""
    default = WORLD_PRESETS["default"]
    parser.add_argument("--out", required=True, help="folder to write the world into (created; must be empty "
                        "unless --overwrite)")
    parser.add_argument("--preset", choices=sorted(WORLD_PRESETS), default="default",
                        help="starting settings; the flags below override them")
    parser.add_argument("--size", type=int, help=f"image side in pixels, at least 16 (preset: {default.size})")
    parser.add_argument("--per-class", type=int, help=f"training images per shape class (preset: {default.per_class})")
    parser.add_argument("--test-per-class", type=int,
                        help=f"test images per shape class (preset: {default.test_per_class})")
    parser.add_argument("--groups", type=int, help="object instances in each of the pose and light groups "
                        f"(preset: {default.pose_groups})")
    parser.add_argument("--group-size", type=int, help=f"images per group instance (preset: {default.group_size})")
    parser.add_argument("--quality", type=int, help=f"JPEG quality 1-100 (preset: {default.jpeg_quality})")
    parser.add_argument("--seed", type=int, help="seed; the same seed and settings give identical bytes (preset: 0)")
    parser.add_argument("--workers", type=int, default=None,
                        help="rendering processes (default: one per CPU core); does not change the output")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing world in --out (only a folder holding a world.json is ever removed)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _config(args: argparse.Namespace):
    overrides = {
        "size": args.size, "per_class": args.per_class, "test_per_class": args.test_per_class,
        "pose_groups": args.groups, "light_groups": args.groups, "group_size": args.group_size,
        "jpeg_quality": args.quality, "seed": args.seed, "workers": args.workers,
    }
    config = replace(WORLD_PRESETS[args.preset], **{k: v for k, v in overrides.items() if v is not None})
    try:
        config.validate()
    except ValueError as exc:
        raise UsageError(str(exc).replace("_", "-")) from None
    return config


def _prepare_out(path: str, overwrite: bool) -> Path:
    out = Path(path)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"--out {out} is not empty; choose an empty folder or pass --overwrite")
        if read_world_config(out) is None:
            raise UsageError(f"--out {out} holds files that are not a fastinv world; refusing to overwrite them")
        shutil.rmtree(out)
    return writable_dir(out)


def run(args: argparse.Namespace) -> int:
    """Generate the world and print what was written."""
    config = _config(args)
    out = _prepare_out(args.out, args.overwrite)
    summary = generate_world(config, out, progress=not args.no_progress)
    print(json.dumps({"root": str(summary.root), "images": summary.images}))
    return 0
