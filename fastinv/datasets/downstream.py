"""Readers of the downstream probe tasks (SPEC section 6, paper Table 5).

torchvision.datasets is not used for CIFAR10 / Flowers102 / Caltech101: its readers check the
MD5 of the official files (so no faithful tiny copy can be tested) and its Caltech101 drops
the BACKGROUND_Google class that the protocol keeps. We read the same native files directly.

Regression targets are coordinates in the 224 x 224 frame of a crop; the crop is carried as
`ImageSet.boxes` (left, top, right, bottom) in original pixels: crop the image to its box, then
resize the crop to 224 x 224 (no further centre crop).
"""
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import loadmat

from fastinv.datasets.base import ImageSet, Splits, layout_error, require_dir, seeded_split
from fastinv.datasets.extrinsic import LATENT_LAYOUT, read_latent_split, world_latent_names
from fastinv.world import POSE_LATENTS

FRAME = 224
CIFAR10_LAYOUT = "root/data_batch_1..5, test_batch, batches.meta (the python pickle batches of cifar-10-batches-py)"
CALTECH101_LAYOUT = "root/101_ObjectCategories/{class}/*.jpg (102 classes including BACKGROUND_Google)"
FLOWERS102_LAYOUT = "root/jpg/image_{id:05d}.jpg, root/imagelabels.mat ('labels'), root/setid.mat ('trnid', 'valid', 'tstid')"
W300_LAYOUT = "root/{01_Indoor,02_Outdoor}/*.png|jpg, each with a 68-point .pts file of the same name"
CELEBA_LAYOUT = "root/img_align_celeba/*.jpg, root/list_landmarks_align_celeba.txt, root/list_eval_partition.txt"
LSP_LAYOUT = "root/images/im%04d.jpg and root/joints.mat ('joints', 3 x 14 x N: x, y, visibility)"
COLOUR_LATENTS = ("object_hue", "background_hue", "light_hue")


def _unpickle(path: Path, root: Path) -> dict:
    if not path.is_file():
        raise layout_error("cifar10", root, CIFAR10_LAYOUT, f"{path.name} is missing")
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="bytes")


def read_cifar10(root: Path) -> Splits:
    """CIFAR10 from its python pickle batches: 50,000 train / 10,000 test 32 x 32 images in memory."""
    root = require_dir(root, "cifar10", CIFAR10_LAYOUT)
    classes = tuple(n.decode() for n in _unpickle(root / "batches.meta", root)[b"label_names"])

    def split(files: list[str], name: str) -> ImageSet:
        batches = [_unpickle(root / f, root) for f in files]
        pixels = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in batches])
        return ImageSet(name, pixels=np.ascontiguousarray(pixels, dtype=np.uint8), targets=labels, classes=classes)

    return Splits("cifar10", "classification", split([f"data_batch_{i}" for i in range(1, 6)], "cifar10/train"),
                  split(["test_batch"], "cifar10/test"))


def read_caltech101(root: Path, per_class_train: int = 30, seed: int = 0) -> Splits:
    """Caltech101 with 102 classes: `per_class_train` random images per class train, the rest test."""
    folder = require_dir(Path(root) / "101_ObjectCategories", "caltech101", CALTECH101_LAYOUT)
    classes = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    rng = np.random.default_rng(seed)
    parts: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    for label, cls in enumerate(classes):
        files = sorted((folder / cls).glob("*.jpg"))
        chosen = set(rng.permutation(len(files))[:per_class_train].tolist())
        for k, path in enumerate(files):
            parts["train" if k in chosen else "test"].append((path, label))
    if not parts["train"] or not parts["test"]:
        raise layout_error("caltech101", root, CALTECH101_LAYOUT, "too few images for a train and a test split")

    def split(name: str) -> ImageSet:
        pairs = parts[name]
        return ImageSet(f"caltech101/{name}", paths=tuple(p for p, _ in pairs), targets=np.array([c for _, c in pairs], dtype=np.int64), classes=classes)

    return Splits("caltech101", "classification", split("train"), split("test"))


def _mat(path: Path, key: str, name: str, root: Path, layout: str) -> np.ndarray:
    if not path.is_file():
        raise layout_error(name, root, layout, f"{path.name} is missing")
    data = loadmat(path)
    if key not in data:
        raise layout_error(name, root, layout, f"{path.name} has no '{key}' entry")
    return np.asarray(data[key])


def read_flowers102(root: Path) -> Splits:
    """Flowers102: the official train / val / test ids of setid.mat, labels 0..101."""
    root = require_dir(root, "flowers102", FLOWERS102_LAYOUT)
    labels = _mat(root / "imagelabels.mat", "labels", "flowers102", root, FLOWERS102_LAYOUT).ravel().astype(np.int64) - 1

    def split(key: str, name: str) -> ImageSet:
        ids = _mat(root / "setid.mat", key, "flowers102", root, FLOWERS102_LAYOUT).ravel().astype(np.int64)
        paths = tuple(root / "jpg" / f"image_{i:05d}.jpg" for i in ids)
        missing = [p.name for p in paths if not p.is_file()]
        if missing or ids.max(initial=0) > len(labels):
            raise layout_error("flowers102", root, FLOWERS102_LAYOUT, f"{len(missing)} images of '{key}' are missing (e.g. {missing[:1]}) or ids exceed the labels")
        return ImageSet(f"flowers102/{name}", paths=paths, targets=labels[ids - 1])

    return Splits("flowers102", "classification", split("trnid", "train"), split("tstid", "test"), split("valid", "val"))


def read_pts(path: Path) -> np.ndarray:
    """The (n, 2) float32 points of an iBUG .pts file; DataError if it is malformed."""
    text = Path(path).read_text()
    match = re.search(r"n_points:\s*(\d+).*?\{(.*?)\}", text, re.S)
    if match is None:
        raise layout_error("300w", path.parent, W300_LAYOUT, f"{path.name} is not a .pts file (version / n_points / {{ x y ... }})")
    points = np.array(match.group(2).split(), dtype=np.float32).reshape(-1, 2)
    if len(points) != int(match.group(1)):
        raise layout_error("300w", path.parent, W300_LAYOUT, f"{path.name} declares {match.group(1)} points but holds {len(points)}")
    return points


def _square_box_targets(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n, k, 2) points -> (n, 2k) coordinates in the 224 frame of each (left, top, right, bottom) box."""
    scale = FRAME / (boxes[:, 2] - boxes[:, 0])
    return ((points - boxes[:, None, :2]) * scale[:, None, None]).reshape(len(points), -1).astype(np.float32)


def _centre_square(width: float, height: float) -> tuple[float, float, float, float]:
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def _xy_names(count: int) -> tuple[str, ...]:
    return tuple(f"{axis}{k}" for k in range(count) for axis in ("x", "y"))


def _split_by(name: str, full: ImageSet, parts: list[np.ndarray]) -> Splits:
    train, *rest = [full.subset(p) for p in parts]
    return Splits(name, "regression", train, rest[-1], rest[0] if len(rest) == 2 else None)


def read_300w(root: Path, seed: int = 0) -> Splits:
    """300W indoor + outdoor: 136 landmark coordinates in the square box around the 68 points;
    random 30 / 30 / 40 train / val / test split (seed 0)."""
    root = require_dir(root, "300w", W300_LAYOUT)
    paths, points = [], []
    for sub in ("01_Indoor", "02_Outdoor"):
        for image in sorted(p for p in (root / sub).glob("*") if p.suffix.lower() in (".png", ".jpg")):
            pts = image.with_suffix(".pts")
            if not pts.is_file():
                raise layout_error("300w", root, W300_LAYOUT, f"{image.name} has no {pts.name}")
            paths.append(image)
            points.append(read_pts(pts))
    if len(paths) < 3:
        raise layout_error("300w", root, W300_LAYOUT, f"found {len(paths)} annotated images, need at least 3")
    pts = np.stack(points)
    low, high = pts.min(1), pts.max(1)
    side = (high - low).max(1)
    centre = (low + high) / 2
    boxes = np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], 1).astype(np.float32)
    full = ImageSet("300w", paths=tuple(paths), targets=_square_box_targets(pts, boxes), boxes=boxes, target_names=_xy_names(68))
    return _split_by("300w", full, seeded_split(len(paths), (0.3, 0.3, 0.4), seed))


def _table(path: Path, root: Path, skip: int) -> list[list[str]]:
    if not path.is_file():
        raise layout_error("celeba", root, CELEBA_LAYOUT, f"{path.name} is missing")
    return [line.split() for line in path.read_text().splitlines()[skip:] if line.strip()]


def read_celeba(root: Path) -> Splits:
    """CelebA aligned: 10 landmark coordinates in the 224 frame of the centre square; official partitions.

    All aligned images share one size (178 x 218); it is read from the first image.
    """
    root = require_dir(root, "celeba", CELEBA_LAYOUT)
    rows = _table(root / "list_landmarks_align_celeba.txt", root, skip=2)
    partition = {name: int(part) for name, part in _table(root / "list_eval_partition.txt", root, skip=0)}
    if not rows or any(len(r) != 11 for r in rows) or any(r[0] not in partition for r in rows):
        raise layout_error("celeba", root, CELEBA_LAYOUT, "landmark rows must be 'file x1 y1 ... x5 y5' and every file needs a partition")
    paths = tuple(root / "img_align_celeba" / r[0] for r in rows)
    if not paths[0].is_file():
        raise layout_error("celeba", root, CELEBA_LAYOUT, f"{paths[0].name} is missing")
    with Image.open(paths[0]) as first:
        box = np.array(_centre_square(*first.size), dtype=np.float32)
    boxes = np.repeat(box[None], len(rows), 0)
    points = np.array([r[1:] for r in rows], dtype=np.float32).reshape(-1, 5, 2)
    full = ImageSet("celeba", paths=paths, targets=_square_box_targets(points, boxes), boxes=boxes, target_names=_xy_names(5))
    parts = np.array([partition[r[0]] for r in rows])
    return _split_by("celeba", full, [np.flatnonzero(parts == k) for k in (0, 1, 2)])


def read_lsp(root: Path, seed: int = 0) -> Splits:
    """Leeds Sports Pose: 28 joint coordinates (visibility dropped) in the 224 frame of the centre
    square; random 60 / 40 train / test split (seed 0)."""
    root = require_dir(root, "lsp", LSP_LAYOUT)
    joints = _mat(root / "joints.mat", "joints", "lsp", root, LSP_LAYOUT)
    if joints.ndim != 3 or joints.shape[:2] != (3, 14):
        raise layout_error("lsp", root, LSP_LAYOUT, f"joints has shape {joints.shape}, expected (3, 14, N)")
    paths = tuple(root / "images" / f"im{k + 1:04d}.jpg" for k in range(joints.shape[2]))
    sizes = []
    for path in paths:
        if not path.is_file():
            raise layout_error("lsp", root, LSP_LAYOUT, f"{path.name} is missing")
        with Image.open(path) as image:
            sizes.append(image.size)
    boxes = np.array([_centre_square(w, h) for w, h in sizes], dtype=np.float32)
    points = joints[:2].transpose(2, 1, 0).astype(np.float32)
    full = ImageSet("lsp", paths=paths, targets=_square_box_targets(points, boxes), boxes=boxes, target_names=_xy_names(14))
    return _split_by("lsp", full, seeded_split(len(paths), (0.6, 0.4), seed))


def read_world_shapes(root: Path) -> Splits:
    """The synthetic world's recognition task: the shape class of each image."""
    root = require_dir(root, "world", LATENT_LAYOUT)
    names = world_latent_names(root)

    def labelled(split: str) -> ImageSet:
        images, labels = read_latent_split("world", root, split, names)
        return ImageSet(f"world_shapes/{split}", paths=images.paths, targets=labels, classes=images.classes)

    return Splits("world_shapes", "classification", labelled("trainset"), labelled("testset"))


def _world_columns(name: str, columns: tuple[str, ...]) -> Callable[[Path], Splits]:
    def read(root: Path) -> Splits:
        root = require_dir(root, "world", LATENT_LAYOUT)
        names = world_latent_names(root)
        index = [names.index(c) for c in columns]

        def pick(split: str) -> ImageSet:
            images, _ = read_latent_split("world", root, split, names)
            return ImageSet(f"{name}/{split}", paths=images.paths, targets=images.targets[:, index], target_names=columns)

        return Splits(name, "regression", pick("trainset"), pick("testset"))

    read.__doc__ = f"The synthetic world's {name} task: regress {', '.join(columns)}."
    return read


read_world_pose_regression = _world_columns("world_pose_regression", POSE_LATENTS)
read_world_colour_regression = _world_columns("world_colour_regression", COLOUR_LATENTS)
