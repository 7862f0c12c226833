"""Readers of the extrinsic regression sets (SPEC section 5, paper Table 4): images with latents.

Both the real Causal3DIdent and the synthetic world use the layout
`{trainset,testset}/{class}/*` plus `{split}/latents_{class}.npy`, one row per image in sorted
file order. Targets are the latents (n, k) float32; the class index is not a target here. The
image files of a class folder are those an ImageFolder holds (`fastinv.pipelines.folder.IMAGE_SUFFIXES`,
as training reads them); other files there are not counted against the latents.
"""
import json
from pathlib import Path

import numpy as np

from fastinv.datasets.base import ImageSet, Splits, layout_error, require_dir
from fastinv.pipelines.folder import IMAGE_SUFFIXES
from fastinv.world import LATENT_NAMES

CAUSAL3DIDENT_LATENTS: tuple[str, ...] = (
    "pos_x", "pos_y", "pos_z", "rot_x", "rot_y", "rot_z", "spotlight_angle", "object_hue", "spotlight_hue", "background_hue",
)
LATENT_LAYOUT = "root/{trainset,testset}/{class}/*.png|jpg and root/{trainset,testset}/latents_{class}.npy (one row per file, sorted order)"


def read_latent_split(name: str, root: Path, split: str, latent_names: tuple[str, ...]) -> tuple[ImageSet, np.ndarray]:
    """One split of a latent-annotated set: the ImageSet with latents as targets, and the (n,)
    int64 class index of each image; DataError if a latents file is missing or its rows do not
    match the files."""
    folder = require_dir(root / split, name, LATENT_LAYOUT)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise layout_error(name, root, LATENT_LAYOUT, f"no class folders in {split}")
    paths, rows, labels = [], [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (folder / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        latents_file = folder / f"latents_{cls}.npy"
        if not latents_file.is_file():
            raise layout_error(name, root, LATENT_LAYOUT, f"{latents_file.name} is missing in {split}")
        latents = np.load(latents_file, allow_pickle=False)
        if latents.ndim != 2 or latents.shape != (len(files), len(latent_names)):
            raise layout_error(name, root, LATENT_LAYOUT, f"{split}/{latents_file.name} has shape {latents.shape} "
                               f"for {len(files)} images and {len(latent_names)} latents")
        paths += files
        rows.append(latents.astype(np.float32))
        labels += [label] * len(files)
    images = ImageSet(f"{name}/{split}", paths=tuple(paths), targets=np.concatenate(rows), classes=tuple(classes),
                      target_names=latent_names)
    return images, np.array(labels, dtype=np.int64)


def read_causal3dident(root: Path) -> Splits:
    """Causal3DIdent: 10 latents per image in the SPEC order (`CAUSAL3DIDENT_LATENTS`)."""
    root = require_dir(root, "causal3dident", LATENT_LAYOUT)
    train, test = (read_latent_split("causal3dident", root, s, CAUSAL3DIDENT_LATENTS)[0] for s in ("trainset", "testset"))
    return Splits("causal3dident", "regression", train, test)


def world_latent_names(root: Path) -> tuple[str, ...]:
    """The latent column names of the world at `root` (world.json, else fastinv.world.LATENT_NAMES)."""
    meta = Path(root) / "world.json"
    if not meta.is_file():
        return LATENT_NAMES
    return tuple(entry["name"] for entry in json.loads(meta.read_text())["latents"])


def read_world_latents(root: Path) -> Splits:
    """The synthetic world's train/test splits with its latents (pose, colours, light) as targets."""
    root = require_dir(root, "world", LATENT_LAYOUT)
    names = world_latent_names(root)
    train, test = (read_latent_split("world", root, s, names)[0] for s in ("trainset", "testset"))
    return Splits("world", "regression", train, test)
