"""Named presets: data, not code. Each maps a name to a typed configuration."""
from dataclasses import dataclass, field, replace

from fastinv.eval.config import EVAL_PRESETS, SUITE_NAMES, EvalConfig
from fastinv.train.config import DataConfig, ModelConfig, MoCoConfig, OptimConfig
from fastinv.world.config import WorldConfig

WORLD_PRESETS: dict[str, WorldConfig] = {
    "default": WorldConfig(),
    "tiny": WorldConfig(size=64, per_class=120, test_per_class=60, pose_groups=8, light_groups=8, group_size=8),
}


RECIPES = ("default", "spatial", "appearance")


@dataclass(frozen=True)
class ReproducePreset:
    """One end-to-end configuration of `fastinv reproduce`: the world, the pre-training settings
    shared by every recipe, the evaluation settings and the fusions to report."""

    world: WorldConfig | None
    data: DataConfig
    model: ModelConfig
    moco: MoCoConfig
    optim: OptimConfig
    evaluation: EvalConfig
    fusions: tuple[tuple[str, ...], ...] = (("spatial", "appearance"), ("default", "spatial", "appearance"))
    needs: str = ""
    recipes: tuple[str, ...] = RECIPES
    amp: str = "auto"
    suites: tuple[str, ...] = field(default=SUITE_NAMES)


REPRODUCE_PRESETS: dict[str, ReproducePreset] = {
    "tiny": ReproducePreset(
        world=WorldConfig(size=64, per_class=430, test_per_class=100, pose_groups=16, light_groups=16, group_size=8),
        data=DataConfig(root="", image_size=64, batch_size=128, workers=2),
        model=ModelConfig(arch="resnet18", head_hidden=512, head_dim=128, bn="split", bn_splits=2),
        moco=MoCoConfig(K=2048, m=0.99, T=0.2),  # below the 3,010 training images
        optim=OptimConfig(epochs=8, lr=0.06),
        evaluation=replace(EVAL_PRESETS["world"], synthetic_images=150, grid_size=6),
    ),
    "paper": ReproducePreset(
        world=None,
        data=DataConfig(root="", image_size=224, batch_size=256, workers=8, loader="dali"),
        model=ModelConfig(arch="resnet50", bn="auto"),
        moco=MoCoConfig(),
        optim=OptimConfig(epochs=200),
        evaluation=EVAL_PRESETS["paper"],
        needs=("ImageNet-1k in ImageFolder layout (--imagenet DIR with train/ and val/), the evaluation datasets "
               "under --data-root (see README), and GPUs: the reference took 53 hours per model on 8 V100s "
               "(launch with torchrun --nproc_per_node 8 and --device cuda)"),
        amp="bf16",
    ),
}
