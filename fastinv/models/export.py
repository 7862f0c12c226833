"""Write a backbone as a torchvision-named state dict (.pt/.pth via torch.save, or .safetensors)."""
import os
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from fastinv.checkpoint import save_checkpoint
from fastinv.errors import UsageError
from fastinv.files import atomic_write

EXPORT_SUFFIXES = (".pt", ".pth", ".safetensors")


def backbone_tensors(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The encoder's state dict without its head (`fc.*`), as contiguous CPU tensors."""
    return {key: value.detach().to("cpu").contiguous() for key, value in encoder.state_dict().items()
            if not key.startswith("fc.")}


def export_backbone(encoder: nn.Module, path: str | os.PathLike) -> Path:
    """Save the backbone of `encoder` with torchvision key names (no fc); the suffix picks the
    format. torchvision's ResNet loads it with only fc.weight/fc.bias missing."""
    target = Path(path)
    if target.suffix not in EXPORT_SUFFIXES:
        raise UsageError(f"export {target}: use one of the suffixes {', '.join(EXPORT_SUFFIXES)}")
    state = backbone_tensors(encoder)
    if target.suffix == ".safetensors":
        with atomic_write(target) as handle:
            handle.write(save(state))
        return target
    return save_checkpoint(state, target)
