"""The synthetic world: files, latents, determinism, and latents that really control the pixels."""
import colorsys
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastinv.world import LATENT_NAMES, SHAPES, WorldConfig, ensure_world, generate_world, render, world_cache_dir

SIZE = 64
COL = {name: i for i, name in enumerate(LATENT_NAMES)}


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "world.json"):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _latents(**values: float) -> np.ndarray:
    base = {"pos_x": 0.0, "pos_y": 0.0, "rotation": 0.0, "scale": 1.0, "object_hue": 0.3,
            "background_hue": 0.7, "light_angle": 0.0, "light_hue": 0.1}
    base.update(values)
    return np.array([base[name] for name in LATENT_NAMES], dtype=np.float32)


def _object_mask(shape: str, lat: np.ndarray) -> np.ndarray:
    """Pixels that change when only the object's hue changes are the object's pixels."""
    other = lat.copy()
    other[COL["object_hue"]] = (lat[COL["object_hue"]] + 0.4) % 0.8
    a = render(shape, lat, SIZE).astype(int)
    b = render(shape, other, SIZE).astype(int)
    return np.abs(a - b).sum(-1) > 30


def test_layout_latents_align_with_files(tiny_world: Path, tiny_world_config: WorldConfig) -> None:
    meta = json.loads((tiny_world / "world.json").read_text())
    assert [lat["name"] for lat in meta["latents"]] == list(LATENT_NAMES)
    assert meta["classes"] == list(SHAPES)
    for split, per_class in (("trainset", tiny_world_config.per_class), ("testset", tiny_world_config.test_per_class)):
        for shape in SHAPES:
            files = sorted((tiny_world / split / shape).glob("*.jpg"))
            latents = np.load(tiny_world / split / f"latents_{shape}.npy")
            assert len(files) == per_class == latents.shape[0]
            assert latents.shape[1] == len(LATENT_NAMES) and latents.dtype == np.float32
            with Image.open(files[0]) as image:
                assert image.format == "JPEG" and image.size == (32, 32) and image.mode == "RGB"
    for kind, varying in (("pose", {"pos_x", "pos_y", "rotation", "scale"}), ("light", {"light_angle", "light_hue"})):
        groups = sorted((tiny_world / "groups" / kind).iterdir())
        assert len(groups) == 3
        for group in groups:
            latents = np.load(group / "latents.npy")
            assert len(sorted(group.glob("*.jpg"))) == latents.shape[0] == tiny_world_config.group_size
            changing = {name for name in LATENT_NAMES if np.ptp(latents[:, COL[name]]) > 0}
            assert changing == varying


def test_first_image_is_the_render_of_its_latents(tiny_world: Path) -> None:
    latents = np.load(tiny_world / "trainset" / "latents_heart.npy")
    decoded = np.asarray(Image.open(tiny_world / "trainset" / "heart" / "000000.jpg")).astype(float)
    expected = render("heart", latents[0], 32).astype(float)
    assert np.abs(decoded - expected).mean() < 4.0


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, tiny_world_config: WorldConfig) -> None:
    config = replace(tiny_world_config, per_class=3, test_per_class=1, pose_groups=1, light_groups=1)
    generate_world(config, tmp_path / "a", progress=False)
    generate_world(replace(config, workers=2), tmp_path / "b", progress=False)
    generate_world(replace(config, seed=1), tmp_path / "c", progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


@pytest.mark.parametrize("shape", SHAPES)
def test_centroid_tracks_position(shape: str) -> None:
    centroids = []
    for pos_x, pos_y in ((-0.8, 0.0), (0.8, 0.0), (0.0, -0.8), (0.0, 0.8)):
        mask = _object_mask(shape, _latents(pos_x=pos_x, pos_y=pos_y))
        rows, cols = np.nonzero(mask)
        centroids.append((cols.mean(), rows.mean()))
    (lx, _), (rx, _), (_, ty), (_, by) = centroids
    assert rx - lx > 0.2 * SIZE and by - ty > 0.2 * SIZE


def test_object_colour_tracks_object_hue() -> None:
    hues = np.linspace(0.05, 0.75, 8)
    measured = []
    for hue in hues:
        lat = _latents(object_hue=hue, light_hue=0.0)
        mask = _object_mask("halfdisk", lat)
        mean_rgb = render("halfdisk", lat, SIZE)[mask].mean(0) / 255.0
        measured.append(colorsys.rgb_to_hsv(*mean_rgb)[0])
    errors = np.abs((np.array(measured) - hues + 0.5) % 1.0 - 0.5)
    assert errors.max() < 0.06


def test_scale_and_rotation_change_the_silhouette() -> None:
    small = _object_mask("arrow", _latents(scale=0.7)).sum()
    large = _object_mask("arrow", _latents(scale=1.3)).sum()
    assert large / small == pytest.approx((1.3 / 0.7) ** 2, rel=0.15)
    up = _object_mask("arrow", _latents(rotation=0.0))
    turned = _object_mask("arrow", _latents(rotation=1.2))
    assert (up ^ turned).sum() > 0.3 * up.sum()


def test_light_angle_moves_the_bright_side() -> None:
    left = render("halfdisk", _latents(light_angle=-1.4), SIZE).astype(float).sum(-1)
    right = render("halfdisk", _latents(light_angle=1.4), SIZE).astype(float).sum(-1)
    half = SIZE // 2
    assert left[:, :half].mean() > left[:, half:].mean()
    assert right[:, half:].mean() > right[:, :half].mean()


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="size"):
        WorldConfig(size=0).validate()
    with pytest.raises(ValueError, match="unknown shapes"):
        WorldConfig(shapes=("blob",)).validate()


def test_ensure_world_caches_by_settings(tmp_path: Path, tiny_world_config: WorldConfig) -> None:
    config = replace(tiny_world_config, per_class=2, test_per_class=1, pose_groups=1, light_groups=1)
    root = ensure_world(config, tmp_path, progress=False)
    assert root == world_cache_dir(config, tmp_path) and (root / "world.json").is_file()
    stamp = (root / "world.json").stat().st_mtime_ns
    assert ensure_world(config, tmp_path, progress=False) == root
    assert (root / "world.json").stat().st_mtime_ns == stamp
    assert ensure_world(replace(config, seed=5), tmp_path, progress=False) != root
    assert not list(tmp_path.glob("*.partial-*"))
