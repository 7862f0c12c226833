"""The embedded synthetic world: shapes with known latents, written as real JPEG files."""
from fastinv.world.config import LATENT_NAMES, LATENTS, LIGHT_LATENTS, POSE_LATENTS, SHAPES, Latent, WorldConfig
from fastinv.world.generate import WorldSummary, ensure_world, generate_world, read_world_config, world_cache_dir
from fastinv.world.render import render

__all__ = [
    "LATENT_NAMES", "LATENTS", "LIGHT_LATENTS", "POSE_LATENTS", "SHAPES", "Latent", "WorldConfig",
    "WorldSummary", "ensure_world", "generate_world", "read_world_config", "render",
    "world_cache_dir",
]
