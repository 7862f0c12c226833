"""Backbones for evaluation: a plain ResNet (fc = Identity) from a checkpoint or a seeded init."""
import os
from pathlib import Path

import torch
from torch import nn

from fastinv.checkpoint import load_checkpoint
from fastinv.errors import DataError
from fastinv.models.formats import backbone_state
from fastinv.models.resnet import build_resnet

DEFAULT_ARCH = "resnet18"


def random_backbone(arch: str = DEFAULT_ARCH, seed: int = 0) -> nn.Module:
    """A randomly initialised backbone, identical for the same (arch, seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_resnet(arch)


def load_backbone(spec: str | os.PathLike, arch: str | None = None, *, device: str | torch.device = "cpu",
                  seed: int = 0) -> nn.Module:
    """A plain backbone in eval mode on `device`, outputting global-average-pooled features.

    spec: a checkpoint path in any registered format (fastinv, MoCo reference, module./encoder./
    backbone. prefixes, torchvision, timm, .safetensors), or "random" for a seeded random init.
    arch: the architecture; None uses the one a fastinv checkpoint records, else resnet18.
    Shape or key mismatches raise DataError naming the keys; loading is always strict.
    """
    if str(spec) == "random":
        return random_backbone(arch or DEFAULT_ARCH, seed).to(device).eval()
    checkpoint = load_checkpoint(spec)
    recorded = checkpoint.get("arch") if isinstance(checkpoint.get("arch"), str) else None
    model = random_backbone(arch or recorded or DEFAULT_ARCH, seed)
    layout, state = backbone_state(checkpoint)
    _load_strict(model, state, f"checkpoint {Path(spec).name} ({layout} layout, arch {arch or recorded or DEFAULT_ARCH})")
    return model.to(device).eval()


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            shown = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:4])
            parts.append(f"{len(wrong)} shape mismatches ({shown})")
        if missing:
            parts.append(f"{len(missing)} missing keys ({', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:4])})")
        raise DataError(f"{what} does not fit the architecture: {'; '.join(parts)}; pass the arch it was trained with")
    model.load_state_dict(state, strict=True)


def feature_dim(module: nn.Module) -> int:
    """Width of the features `module` outputs (e.g. 512 for resnet18, 2048 for resnet50)."""
    if isinstance(getattr(module, "fc", None), nn.Identity) and isinstance(getattr(module, "inplanes", None), int):
        return module.inplanes
    param = next(module.parameters(), None)
    if param is None:
        raise ValueError("feature_dim: the module has no parameters to infer a device from")
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(1, 3, 64, 64, device=param.device, dtype=param.dtype))
    module.train(was_training)
    return int(out.flatten(1).shape[1])
