"""Readers of the real-world invariance sets (SPEC section 4, paper Table 3): images with group ids.

Each reader takes the dataset's own root folder and returns an `ImageSet` whose `groups` say
which images show the same object / scene / material; groups with fewer than two images are
dropped (the suite compares pairs).
"""
import re
from collections.abc import Callable
from pathlib import Path

from fastinv.datasets.base import ImageSet, grouped, layout_error, require_dir

COIL100_LAYOUT = "root/obj{N}__{angle}.png (e.g. obj1__0.png)"
ALOI_LAYOUT = "root/{viewpoint,illumination,temperature}/{object}/*.png; illumination files end in the camera digit before .png"
ALOT_LAYOUT = ("root/{m}/{m}_c{cam}l{light}.png at rotation 0, root/{m}/{m}_c{cam}l{light}r{rot}.png at rotations "
               "60/120/180, root/{m}/{m}_c{cam}i.png under reddish light (e.g. 1/1_c1l1.png, 1/1_c1l1r60.png, 1/1_c1i.png)")
EXPOSURE_LAYOUT = "root/GT_IMAGES/*.jpg and root/INPUT_IMAGES/*.JPG, grouped by the name up to the first '-'"
FLICKR1024_LAYOUT = "root/{split}/{name}_L.png next to {name}_R.png"
REALBLUR_LAYOUT = "root/{scene}/gt/*.png and root/{scene}/blur/*.png, paired by sorted order"
WORLD_GROUPS_LAYOUT = "root/groups/{pose,light}/{g}_{shape}/*.jpg (a world from `fastinv world`)"

_ALOT_NAME = re.compile(r"^[^_]+_c(?P<cam>\d+)(?:l(?P<light>\d+)(?:r(?P<rot>\d+))?|(?P<reddish>i))\.png$")
ALOT_LIGHTS = (1, 2, 3, 4, 5, 8)
ALOT_VIEWPOINT_NOTE = ("alot_viewpoint: one group per (material, light) pair (250 x 6 = 1,500 on the full set), each over "
                       "4 cameras x 4 rotations; the reference code's indexing (material = i mod 250, light = i mod 6) "
                       "reaches only the pairs of equal parity, each twice; here every pair counts once.")


def _nonempty(result: ImageSet, root: Path, layout: str, what: str) -> ImageSet:
    if len(result) == 0:
        raise layout_error(result.name, root, layout, f"no {what} found")
    return result


def read_coil100(root: Path) -> ImageSet:
    """COIL-100: 100 objects x 72 turntable angles; group = object number N."""
    root = require_dir(root, "coil100", COIL100_LAYOUT)
    paths, keys = [], []
    for path in sorted(root.glob("obj*__*.png")):
        match = re.fullmatch(r"obj(\d+)__(\d+)\.png", path.name)
        if match:
            paths.append(path)
            keys.append(f"obj{int(match.group(1)):03d}")
    return _nonempty(grouped("coil100", paths, keys), root, COIL100_LAYOUT, "obj{N}__{angle}.png files")


def _aloi(mode: str) -> Callable[[Path], ImageSet]:
    def read(root: Path) -> ImageSet:
        name = f"aloi_{mode}"
        folder = require_dir(Path(root) / mode, name, ALOI_LAYOUT)
        paths = sorted(folder.glob("*/*.png"))
        if mode == "illumination":
            keys = [f"{p.parent.name}/c{p.stem[-1]}" for p in paths]
        else:
            keys = [p.parent.name for p in paths]
        return _nonempty(grouped(name, paths, keys), folder, ALOI_LAYOUT, "{object}/*.png files")

    read.__doc__ = f"ALOI {mode}: group = object" + (" x camera (last character before .png)." if mode == "illumination" else ".")
    return read


read_aloi_viewpoint = _aloi("viewpoint")
read_aloi_illumination = _aloi("illumination")
read_aloi_temperature = _aloi("temperature")


def _alot_key(mode: str, material: str, match: re.Match) -> str | None:
    """The group of one ALOT file in `mode`, or None when the mode leaves the file out."""
    camera = f"{material}/c{int(match['cam'])}"
    if mode == "temperature":
        light_8_at_rotation_0 = match["light"] is not None and int(match["light"]) == 8 and match["rot"] is None
        return camera if match["reddish"] or light_8_at_rotation_0 else None
    if match["reddish"] or int(match["light"]) not in ALOT_LIGHTS:
        return None
    if mode == "viewpoint":
        return f"{material}/l{int(match['light'])}"
    return f"{camera}/r{int(match['rot'] or 0)}"


def _alot(mode: str) -> Callable[[Path], ImageSet]:
    def read(root: Path) -> ImageSet:
        name = f"alot_{mode}"
        root = require_dir(root, name, ALOT_LAYOUT)
        paths, keys = [], []
        for path in sorted(root.glob("*/*.png")):
            match = _ALOT_NAME.match(path.name)
            key = None if match is None else _alot_key(mode, path.parent.name, match)
            if key is not None:
                paths.append(path)
                keys.append(key)
        return _nonempty(grouped(name, paths, keys), root, ALOT_LAYOUT, f"{mode} groups of >= 2 files")

    read.__doc__ = {
        "viewpoint": "ALOT viewpoint: group = material x light (lights 1-5, 8), over its cameras and rotations; no reddish image.",
        "illumination": "ALOT illumination: group = material x camera x rotation, over the lights 1-5, 8; no reddish image.",
        "temperature": "ALOT temperature: group = material x camera, the pair c{cam}l8.png (rotation 0) and c{cam}i.png.",
    }[mode]
    return read


read_alot_viewpoint = _alot("viewpoint")
read_alot_illumination = _alot("illumination")
read_alot_temperature = _alot("temperature")


def read_exposure_errors(root: Path) -> ImageSet:
    """ExposureErrors: a ground-truth JPEG and its exposure variants; group = name before the first '-'."""
    root = require_dir(root, "exposure_errors", EXPOSURE_LAYOUT)
    paths = sorted((root / "GT_IMAGES").glob("*.jpg")) + sorted((root / "INPUT_IMAGES").glob("*.JPG"))
    keys = [p.name.split("-")[0] for p in paths]
    return _nonempty(grouped("exposure_errors", paths, keys), root, EXPOSURE_LAYOUT, "GT_IMAGES/INPUT_IMAGES groups")


def read_flickr1024(root: Path) -> ImageSet:
    """Flickr1024: stereo pairs; group = the pair ({name}_L.png with {name}_R.png)."""
    root = require_dir(root, "flickr1024", FLICKR1024_LAYOUT)
    paths, keys = [], []
    for left in sorted(root.glob("*/*_L.png")):
        right = left.with_name(left.name[:-6] + "_R.png")
        if right.is_file():
            key = f"{left.parent.name}/{left.name[:-6]}"
            paths += [left, right]
            keys += [key, key]
    return _nonempty(grouped("flickr1024", paths, keys), root, FLICKR1024_LAYOUT, "complete _L/_R pairs")


def read_realblur_j(root: Path) -> ImageSet:
    """RealBlur-J: sharp and blurred photos of a scene, paired by sorted order; group = the pair."""
    root = require_dir(root, "realblur_j", REALBLUR_LAYOUT)
    paths, keys = [], []
    for scene in sorted(p for p in root.iterdir() if p.is_dir()):
        sharp, blurred = sorted((scene / "gt").glob("*.png")), sorted((scene / "blur").glob("*.png"))
        if len(sharp) != len(blurred):
            raise layout_error("realblur_j", root, REALBLUR_LAYOUT, f"{scene.name} has {len(sharp)} gt but {len(blurred)} blur images")
        for k, pair in enumerate(zip(sharp, blurred)):
            paths += list(pair)
            keys += [f"{scene.name}/{k:05d}"] * 2
    return _nonempty(grouped("realblur_j", paths, keys), root, REALBLUR_LAYOUT, "gt/blur pairs")


def _world_groups(kind: str) -> Callable[[Path], ImageSet]:
    def read(root: Path) -> ImageSet:
        name = f"world_{kind}"
        folder = require_dir(Path(root) / "groups" / kind, name, WORLD_GROUPS_LAYOUT)
        paths = sorted(folder.glob("*/*.jpg"))
        return _nonempty(grouped(name, paths, [p.parent.name for p in paths]), folder, WORLD_GROUPS_LAYOUT, "group images")

    read.__doc__ = f"The synthetic world's {kind} groups: one object instance per group, only its {kind} varies."
    return read


read_world_pose = _world_groups("pose")
read_world_light = _world_groups("light")
