"""Scan an ImageFolder: one sub-folder per class, image files inside (the world's trainset/ layout)."""
from pathlib import Path

from fastinv.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")


def scan_image_folder(root: str | Path) -> tuple[list[str], list[int], list[str]]:
    """List the images of an ImageFolder: (paths, labels, classes), classes sorted by name.

    Files are taken by suffix (case-insensitive, see IMAGE_SUFFIXES), sorted within each class;
    other files (e.g. latents_*.npy beside the class folders) are ignored. Content is not checked
    here: undecodable files are skipped by the loaders when read."""
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} {'is not a folder' if folder.exists() else 'does not exist'}")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(f for f in (folder / name).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        paths.extend(str(f) for f in files)
        labels.extend([label] * len(files))
    if not paths:
        raise DataError(f"image folder {folder} holds no images: expected class sub-folders of "
                        f"{'/'.join(s[1:] for s in IMAGE_SUFFIXES[:3])} files")
    return paths, labels, classes
