"""The registry of dataset readers and the scan of a --data-root for the datasets it holds.

Expected folders under the data root (each is the root its reader takes):

    coil-100/                 COIL-100 (obj{N}__{angle}.png)
    ALOI/                     ALOI: viewpoint/, illumination/, temperature/ each {object}/*.png
    ALOT/                     ALOT: {m}/{m}_c{cam}l{light}.png, {m}_c{cam}l{light}r{rot}.png, {m}_c{cam}i.png
    ExposureErrors/           GT_IMAGES/*.jpg + INPUT_IMAGES/*.JPG
    Flickr1024/               {split}/{name}_L.png + {name}_R.png
    RealBlur-J/               {scene}/gt/*.png + {scene}/blur/*.png
    Causal3DIdent/            {trainset,testset}/{class}/* + latents_{class}.npy
    cifar-10-batches-py/      data_batch_1..5, test_batch, batches.meta
    caltech101/               101_ObjectCategories/{class}/*.jpg
    flowers-102/              jpg/, imagelabels.mat, setid.mat
    300W/                     01_Indoor/, 02_Outdoor/ (*.png + *.pts)
    celeba/                   img_align_celeba/, list_landmarks_align_celeba.txt, list_eval_partition.txt
    lsp/                      images/im0001.jpg ..., joints.mat
    world/                    a synthetic world written by `fastinv world --out DATA_ROOT/world`
"""
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastinv.datasets import downstream, extrinsic, realworld
from fastinv.datasets.base import ImageSet, Splits
from fastinv.errors import DataError
from fastinv.registry import Registry

# What a dataset's `kind` may be in each suite, and the metrics a task may be scored by.
KINDS: dict[str, tuple[str, ...]] = {"realworld": ("spatial", "appearance"),
                                     "extrinsic": ("latents",),
                                     "downstream": ("recognition", "pose", "appearance")}
METRICS = ("accuracy", "mean_per_class_accuracy", "r2")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its suite ("realworld", "extrinsic" or "downstream"), the folder under the
    data root, the layout it expects there, its reader, what it varies or asks, and how it is scored.

    kind: for a group set, what changes within a group ("spatial": pose, viewpoint, stereo;
    "appearance": light, colour, exposure, blur); for a downstream task, what it predicts
    ("recognition", "pose", "appearance"); "latents" for an extrinsic set, whose columns carry
    their own kinds. metric: how a task is scored ("accuracy", "mean_per_class_accuracy" or "r2");
    None for a group set. note: a sentence for the table note wherever we read the dataset
    differently from the reference code ("" when we do not)."""

    name: str
    suite: str
    folder: str
    layout: str
    read: Callable[[Path], ImageSet | Splits]
    kind: str
    metric: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS.get(self.suite, ()):
            raise ValueError(f"dataset {self.name}: kind {self.kind!r} is not one of {KINDS.get(self.suite)} "
                             f"(suite {self.suite!r})")
        if (self.metric is None) != (self.suite == "realworld") or self.metric not in (None, *METRICS):
            raise ValueError(f"dataset {self.name}: metric {self.metric!r} does not fit suite {self.suite!r} "
                             f"(a task takes one of {METRICS}, a group set none)")


DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _spec in (
    DatasetSpec("coil100", "realworld", "coil-100", realworld.COIL100_LAYOUT, realworld.read_coil100, "spatial"),
    DatasetSpec("aloi_viewpoint", "realworld", "ALOI", realworld.ALOI_LAYOUT, realworld.read_aloi_viewpoint, "spatial"),
    DatasetSpec("aloi_illumination", "realworld", "ALOI", realworld.ALOI_LAYOUT, realworld.read_aloi_illumination,
                "appearance"),
    DatasetSpec("aloi_temperature", "realworld", "ALOI", realworld.ALOI_LAYOUT, realworld.read_aloi_temperature,
                "appearance"),
    DatasetSpec("alot_viewpoint", "realworld", "ALOT", realworld.ALOT_LAYOUT, realworld.read_alot_viewpoint, "spatial",
                note=realworld.ALOT_VIEWPOINT_NOTE),
    DatasetSpec("alot_illumination", "realworld", "ALOT", realworld.ALOT_LAYOUT, realworld.read_alot_illumination,
                "appearance"),
    DatasetSpec("alot_temperature", "realworld", "ALOT", realworld.ALOT_LAYOUT, realworld.read_alot_temperature,
                "appearance"),
    DatasetSpec("exposure_errors", "realworld", "ExposureErrors", realworld.EXPOSURE_LAYOUT,
                realworld.read_exposure_errors, "appearance"),
    DatasetSpec("flickr1024", "realworld", "Flickr1024", realworld.FLICKR1024_LAYOUT, realworld.read_flickr1024,
                "spatial"),
    DatasetSpec("realblur_j", "realworld", "RealBlur-J", realworld.REALBLUR_LAYOUT, realworld.read_realblur_j,
                "appearance"),
    DatasetSpec("world_pose", "realworld", "world", realworld.WORLD_GROUPS_LAYOUT, realworld.read_world_pose, "spatial"),
    DatasetSpec("world_light", "realworld", "world", realworld.WORLD_GROUPS_LAYOUT, realworld.read_world_light,
                "appearance"),
    DatasetSpec("causal3dident", "extrinsic", "Causal3DIdent", extrinsic.LATENT_LAYOUT, extrinsic.read_causal3dident,
                "latents", "r2"),
    DatasetSpec("world_latents", "extrinsic", "world", extrinsic.LATENT_LAYOUT, extrinsic.read_world_latents,
                "latents", "r2"),
    DatasetSpec("cifar10", "downstream", "cifar-10-batches-py", downstream.CIFAR10_LAYOUT, downstream.read_cifar10,
                "recognition", "accuracy"),
    DatasetSpec("caltech101", "downstream", "caltech101", downstream.CALTECH101_LAYOUT, downstream.read_caltech101,
                "recognition", "mean_per_class_accuracy"),
    DatasetSpec("flowers102", "downstream", "flowers-102", downstream.FLOWERS102_LAYOUT, downstream.read_flowers102,
                "recognition", "mean_per_class_accuracy"),
    DatasetSpec("300w", "downstream", "300W", downstream.W300_LAYOUT, downstream.read_300w, "pose", "r2"),
    DatasetSpec("celeba", "downstream", "celeba", downstream.CELEBA_LAYOUT, downstream.read_celeba, "pose", "r2"),
    DatasetSpec("lsp", "downstream", "lsp", downstream.LSP_LAYOUT, downstream.read_lsp, "pose", "r2"),
    DatasetSpec("world_shapes", "downstream", "world", extrinsic.LATENT_LAYOUT, downstream.read_world_shapes,
                "recognition", "accuracy"),
    DatasetSpec("world_pose_regression", "downstream", "world", extrinsic.LATENT_LAYOUT,
                downstream.read_world_pose_regression, "pose", "r2"),
    DatasetSpec("world_colour_regression", "downstream", "world", extrinsic.LATENT_LAYOUT,
                downstream.read_world_colour_regression, "appearance", "r2"),
):
    DATASETS.register(_spec.name, _spec)


def read_dataset(name: str, data_root: Path) -> ImageSet | Splits:
    """Read dataset `name` from its folder under `data_root`; UsageError listing the valid names if unknown."""
    spec = DATASETS.get(name)
    return spec.read(Path(data_root) / spec.folder)


def find_datasets(data_root: Path, suite: str | None = None, *, validate: bool = False) -> tuple[dict[str, Path], dict[str, str]]:
    """Which datasets `data_root` holds: ({name: its folder}, {name: why it is skipped}).

    A dataset is present when its folder exists; with validate=True its reader must also
    succeed (a malformed copy is then skipped with the reader's message). `suite` restricts
    the scan to "realworld", "extrinsic" or "downstream".
    """
    root = Path(data_root)
    if not root.is_dir():
        raise DataError(f"--data-root {root} is not a folder")
    present, skipped = {}, {}
    for _, spec in DATASETS:
        if suite is not None and spec.suite != suite:
            continue
        folder = root / spec.folder
        if not folder.is_dir():
            skipped[spec.name] = f"no folder {folder} (expected layout: {spec.layout})"
            continue
        if validate:
            try:
                spec.read(folder)
            except DataError as exc:
                skipped[spec.name] = str(exc)
                continue
        present[spec.name] = folder
    return present, skipped
