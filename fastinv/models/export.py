"""Write a backbone as a torchvision-named state dict (.pt/.pth via torch.save, or .safetensors)."""
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from fastinv.checkpoint import save_checkpoint
from fastinv.errors import UsageError

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
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        save_file(state, str(tmp))
        os.replace(tmp, target)
        return target
    return save_checkpoint(state, target)
