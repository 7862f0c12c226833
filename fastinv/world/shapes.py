"""Signed distance fields of the world's shape classes, in object units (radius about 1).

Negative inside, positive outside. y points down (image convention). No shape has a
180-degree rotational symmetry, so the rotation latent is recoverable from the pixels.
"""
from collections.abc import Callable

import numpy as np

Field = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _box(x: np.ndarray, y: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    qx, qy = np.abs(x - cx) - hx, np.abs(y - cy) - hy
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _disk(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    return np.hypot(x - cx, y - cy) - r


def _convex(x: np.ndarray, y: np.ndarray, vertices: list[tuple[float, float]]) -> np.ndarray:
    pts = np.asarray(vertices, dtype=np.float64)
    area = np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
    orientation = 1.0 if area > 0 else -1.0
    dist = np.full(x.shape, -np.inf)
    for (ax, ay), (bx, by) in zip(pts, np.roll(pts, -1, axis=0)):
        ex, ey = bx - ax, by - ay
        nx, ny = orientation * ey, -orientation * ex
        norm = np.hypot(nx, ny)
        dist = np.maximum(dist, ((x - ax) * nx + (y - ay) * ny) / norm)
    return dist


def arrow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An arrow pointing up: triangular head on a shaft."""
    head = _convex(x, y, [(0.0, -1.0), (0.75, -0.15), (-0.75, -0.15)])
    return np.minimum(head, _box(x, y, -0.25, 0.25, -0.2, 0.95))


def ell(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A capital L."""
    return np.minimum(_box(x, y, -0.7, -0.2, -0.95, 0.9), _box(x, y, -0.7, 0.75, 0.4, 0.9))


def halfdisk(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The lower half of a disk, flat side up."""
    return np.maximum(_disk(x, y, 0.0, -0.35, 1.1), -0.35 - y)


def heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A heart: two lobes on top of a downward triangle."""
    lobes = np.minimum(_disk(x, y, -0.42, -0.35, 0.5), _disk(x, y, 0.42, -0.35, 0.5))
    return np.minimum(lobes, _convex(x, y, [(-0.88, -0.15), (0.88, -0.15), (0.0, 0.95)]))


def tee(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A capital T."""
    return np.minimum(_box(x, y, -0.85, 0.85, -0.9, -0.45), _box(x, y, -0.25, 0.25, -0.9, 0.9))


def teardrop(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A drop with its point up."""
    return np.minimum(_disk(x, y, 0.0, 0.3, 0.62), _convex(x, y, [(0.0, -1.0), (0.57, 0.08), (-0.57, 0.08)]))


def triangle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An isosceles triangle pointing up."""
    return _convex(x, y, [(0.0, -1.0), (0.85, 0.75), (-0.85, 0.75)])


SHAPE_FIELDS: dict[str, Field] = {
    "arrow": arrow, "ell": ell, "halfdisk": halfdisk, "heart": heart,
    "tee": tee, "teardrop": teardrop, "triangle": triangle,
}
