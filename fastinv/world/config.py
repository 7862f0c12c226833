"""Typed configuration of the synthetic world and the meaning of its latents."""
from dataclasses import asdict, dataclass, field

SHAPES: tuple[str, ...] = ("arrow", "ell", "halfdisk", "heart", "tee", "teardrop", "triangle")


@dataclass(frozen=True)
class Latent:
    """One generative factor: its column name, range (inclusive low, exclusive high) and unit."""

    name: str
    low: float
    high: float
    unit: str
    meaning: str


LATENTS: tuple[Latent, ...] = (
    Latent("pos_x", -1.0, 1.0, "half-range", "object centre, left (-1) to right (+1); 1 = 0.25 x image size"),
    Latent("pos_y", -1.0, 1.0, "half-range", "object centre, top (-1) to bottom (+1); 1 = 0.25 x image size"),
    Latent("rotation", -1.5708, 1.5708, "radians", "in-plane rotation, counter-clockwise; shapes have no 180-degree symmetry"),
    Latent("scale", 0.7, 1.3, "factor", "object size relative to the base radius of 0.35 x half the image"),
    Latent("object_hue", 0.0, 0.8, "hue turn", "object hue (HSV, s=0.85 v=0.95); capped below 1 so hue never wraps"),
    Latent("background_hue", 0.0, 0.8, "hue turn", "background hue (HSV, s=0.45 v=0.55)"),
    Latent("light_angle", -1.5708, 1.5708, "radians", "direction the light comes from; 0 = from the top, + = from the right"),
    Latent("light_hue", 0.0, 0.8, "hue turn", "hue of the light's tint (HSV, s=0.5 v=1)"),
)
LATENT_NAMES: tuple[str, ...] = tuple(latent.name for latent in LATENTS)
POSE_LATENTS: tuple[str, ...] = ("pos_x", "pos_y", "rotation", "scale")
LIGHT_LATENTS: tuple[str, ...] = ("light_angle", "light_hue")


@dataclass(frozen=True)
class WorldConfig:
    """What to generate: image size, images per class and split, groups, JPEG quality, seed."""

    size: int = 64
    per_class: int = 400
    test_per_class: int = 200
    shapes: tuple[str, ...] = SHAPES
    pose_groups: int = 24
    light_groups: int = 24
    group_size: int = 12
    jpeg_quality: int = 90
    seed: int = 0
    workers: int | None = field(default=None, compare=False)

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot produce a world."""
        if self.size < 16:
            raise ValueError(f"size must be at least 16 px, got {self.size}")
        if self.per_class < 1:
            raise ValueError(f"per_class must be at least 1, got {self.per_class}")
        if self.test_per_class < 0 or self.pose_groups < 0 or self.light_groups < 0:
            raise ValueError("test_per_class, pose_groups and light_groups must be >= 0")
        if self.group_size < 2:
            raise ValueError(f"group_size must be at least 2 (pairs are compared), got {self.group_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        unknown = sorted(set(self.shapes) - set(SHAPES))
        if unknown or not self.shapes:
            raise ValueError(f"unknown shapes {unknown}; valid: {', '.join(SHAPES)}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")

    def identity(self) -> dict:
        """The settings that determine the bytes written (everything but the worker count)."""
        data = asdict(self)
        data.pop("workers")
        data["shapes"] = list(self.shapes)
        return data
