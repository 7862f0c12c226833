"""Shared fixtures: a tiny synthetic world on disk, written once per test session."""
from pathlib import Path

import pytest

from fastinv.world import WorldConfig, generate_world

TINY_WORLD = WorldConfig(size=32, per_class=12, test_per_class=6, pose_groups=3, light_groups=3, group_size=4, seed=0, workers=1)


@pytest.fixture(scope="session")
def tiny_world_config() -> WorldConfig:
    """The settings of the `tiny_world` fixture."""
    return TINY_WORLD


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-px world with 12 train / 6 test images per class and 3 pose and 3 light groups."""
    root = tmp_path_factory.mktemp("world")
    generate_world(TINY_WORLD, root, progress=False)
    return root
