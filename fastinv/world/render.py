"""Render one image of the synthetic world from its latents, as an (H, W, 3) uint8 array."""
import colorsys

import numpy as np

from fastinv.world.config import LATENT_NAMES
from fastinv.world.shapes import SHAPE_FIELDS

BASE_RADIUS = 0.35
POSITION_RANGE = 0.5
OBJECT_SV = (0.85, 0.95)
BACKGROUND_SV = (0.45, 0.55)
LIGHT_SV = (0.5, 1.0)
_COLUMN = {name: i for i, name in enumerate(LATENT_NAMES)}


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float64)


def render(shape: str, latents: np.ndarray, size: int) -> np.ndarray:
    """Draw `shape` with the latent vector `latents` (ordered as LATENT_NAMES) at `size` px."""
    lat = {name: float(latents[i]) for name, i in _COLUMN.items()}
    coords = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    v, u = np.meshgrid(coords, coords, indexing="ij")
    cx, cy = lat["pos_x"] * POSITION_RANGE, lat["pos_y"] * POSITION_RANGE
    radius = BASE_RADIUS * lat["scale"]
    du, dv = (u - cx) / radius, (v - cy) / radius
    cos_r, sin_r = np.cos(lat["rotation"]), np.sin(lat["rotation"])
    # Counter-clockwise on screen (y down) means rotating the sampling frame clockwise.
    x_obj = cos_r * du - sin_r * dv
    y_obj = sin_r * du + cos_r * dv
    distance_px = SHAPE_FIELDS[shape](x_obj, y_obj) * radius * size / 2.0
    coverage = np.clip(0.5 - distance_px, 0.0, 1.0)[..., None]

    angle = lat["light_angle"]
    light_dir = np.array([np.sin(angle) * 0.8, -np.cos(angle) * 0.8, 0.6])
    tint = 0.55 + 0.45 * _rgb(lat["light_hue"], *LIGHT_SV)
    dome_z = np.sqrt(np.clip(1.0 - (du**2 + dv**2) / 2.0, 0.0, 1.0))
    normal = np.stack([du / np.sqrt(2.0), dv / np.sqrt(2.0), dome_z], axis=-1)
    diffuse = np.clip(normal @ light_dir, 0.0, 1.0)[..., None]
    obj = _rgb(lat["object_hue"], *OBJECT_SV) * (0.3 + 0.8 * diffuse) * tint

    spot = np.clip(0.75 + 0.3 * (u * light_dir[0] + v * light_dir[1]), 0.4, 1.1)[..., None]
    background = _rgb(lat["background_hue"], *BACKGROUND_SV) * spot * (0.8 + 0.2 * tint)
    image = coverage * obj + (1.0 - coverage) * background
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
