"""Named presets: data, not code. Each maps a name to a typed configuration."""
from fastinv.world.config import WorldConfig

WORLD_PRESETS: dict[str, WorldConfig] = {
    "default": WorldConfig(),
    "tiny": WorldConfig(size=64, per_class=120, test_per_class=60, pose_groups=8, light_groups=8, group_size=8),
}


def world_preset(name: str) -> WorldConfig:
    """Return the world preset `name`; raise KeyError listing the valid names."""
    try:
        return WORLD_PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown world preset {name!r}; valid: {', '.join(WORLD_PRESETS)}") from None
