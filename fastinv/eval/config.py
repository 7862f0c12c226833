"""Typed settings of an evaluation run; presets for ImageNet-scale and synthetic-world images."""
from dataclasses import dataclass, field
from pathlib import Path

from fastinv.eval.suites import SUITES

# The registered suites' names in run order, for the command line and the presets.
SUITE_NAMES: tuple[str, ...] = tuple(SUITES.names())


@dataclass(frozen=True)
class ViewConfig:
    """The deterministic view a feature is computed from: Resize (short side) then CenterCrop."""

    resize: int
    crop: int

    def describe(self) -> str:
        """A short label for cache keys and reports."""
        return f"resize{self.resize}-crop{self.crop}"


@dataclass(frozen=True)
class EvalConfig:
    """Everything that decides an evaluation's numbers, plus where and how fast to compute them.

    `synthetic_view` is the final Resize + CenterCrop after a synthetic transform (SPEC 3:
    256/224); `clean_view` is the view of real-world and downstream images (SPEC 2: 224/224).
    Images are first brought to a square working size of `synthetic_view.resize` pixels.
    """

    synthetic_view: ViewConfig = ViewConfig(256, 224)
    clean_view: ViewConfig = ViewConfig(224, 224)
    synthetic_images: int = 1000
    grid_size: int | None = None
    folds: int = 5
    probe_grid: tuple[float, float, int] = (-6.0, 5.0, 45)
    fusion_grid_shift: float = 1.0
    krr_alphas: tuple[float, float, int] = (0.0, -4.0, 5)
    krr_gammas: tuple[float, float, int] = (-5.0, 2.0, 8)
    knn_k: int = 20
    knn_temperature: float = 0.07
    delta: float = 0.05
    compare: tuple[str, ...] | None = None
    solver_backend: str = "torch"
    knn_backend: str = "torch"
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 128
    amp: str = "none"
    channels_last: bool = True
    cache_dir: Path = field(default=Path.home() / ".cache" / "fastinv", compare=False)
    progress: bool = field(default=True, compare=False)
    # SPEC 5: the extrinsic suite's seeded draws of training and test images (all of them when fewer)
    extrinsic_train_images: int = 20480
    extrinsic_test_images: int = 40960


EVAL_PRESETS: dict[str, EvalConfig] = {
    "paper": EvalConfig(),
    "world": EvalConfig(synthetic_view=ViewConfig(73, 64), clean_view=ViewConfig(64, 64),
                        synthetic_images=200, grid_size=8),
}
