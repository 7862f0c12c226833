"""`fastinv convert`: write an ImageFolder in another format (FFCV .beton)."""
import argparse
import json

from fastinv.errors import UsageError
from fastinv.paths import existing_dir

HELP = "convert an ImageFolder (class sub-folders of images) to an FFCV .beton file"
FORMATS = ("beton",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `fastinv convert`."""
    parser.add_argument("--to", required=True, choices=FORMATS, help="output format (beton: FFCV dataset file)")
    parser.add_argument("--data", required=True, help="ImageFolder to read: one sub-folder of images per class")
    parser.add_argument("--out", required=True, help="file to write, ending in .beton (a .classes.txt with the "
                        "class names is written beside it)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100 of the re-encoded images")
    parser.add_argument("--max-resolution", type=int, default=None,
                        help="cap the longer image side at this many pixels (default: keep the size; the FFCV "
                        "loader keeps room for the largest image for every image of the batches in flight)")
    parser.add_argument("--workers", type=int, default=1, help="processes that check (decode) and write the images")


def run(args: argparse.Namespace) -> int:
    """Convert and print a one-line JSON summary; each file left out is named in a warning."""
    from fastinv.pipelines.ffcv_backend import write_beton
    if args.max_resolution is not None and args.max_resolution < 1:
        raise UsageError(f"--max-resolution must be >= 1, got {args.max_resolution}")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    summary = write_beton(existing_dir(args.data), args.out, max_resolution=args.max_resolution,
                          quality=args.quality, workers=args.workers)
    print(json.dumps({"out": str(summary.path), "images": summary.images, "classes": len(summary.classes),
                      "skipped": len(summary.skipped)}))
    return 0
