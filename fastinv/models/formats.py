"""Checkpoint layouts that hold a ResNet backbone, and their conversion to a plain state dict.

Each layout is a registered `CheckpointFormat`: where its state dict lives in the file and the
key prefix in front of the torchvision names. Detection looks for `{prefix}conv1.weight`, which
no two layouts share. Head and classifier keys (`fc.*`) are dropped: the backbone has none.
"""
from dataclasses import dataclass
from typing import Any

import torch

from fastinv.errors import DataError
from fastinv.registry import Registry

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class CheckpointFormat:
    """A layout: the container key holding the state dict ('' = top level) and the key prefix."""

    container: str
    prefix: str
    description: str

    def state_dict(self, checkpoint: dict[str, Any]) -> StateDict | None:
        """The raw state dict of this layout inside `checkpoint`, or None if it is not this layout."""
        state = checkpoint.get(self.container) if self.container else checkpoint
        if not isinstance(state, dict) or f"{self.prefix}conv1.weight" not in state:
            return None
        return state

    def backbone_state(self, checkpoint: dict[str, Any]) -> StateDict:
        """The backbone's torchvision-named tensors (no fc.*); DataError if not this layout."""
        state = self.state_dict(checkpoint)
        if state is None:
            raise DataError(f"checkpoint is not in the {self.description} layout")
        n = len(self.prefix)
        return {key[n:]: value for key, value in state.items()
                if key.startswith(self.prefix) and not key[n:].startswith("fc.") and torch.is_tensor(value)}


FORMATS: Registry[CheckpointFormat] = Registry("checkpoint format")
FORMATS.register("fastinv")(CheckpointFormat("model", "encoder_q.", "fastinv pretrain checkpoint (model.encoder_q.*)"))
FORMATS.register("moco")(CheckpointFormat("state_dict", "module.encoder_q.",
                                          "MoCo reference checkpoint (state_dict.module.encoder_q.*)"))
for _container in ("state_dict", "model", ""):
    _where = f"{_container}." if _container else ""
    for _prefix in ("module.encoder.", "module.", "encoder.", "backbone.", ""):
        _name = f"{_where}{_prefix}".rstrip(".") or "plain"
        FORMATS.register(_name)(CheckpointFormat(_container, _prefix, f"{_where}{_prefix}* (torchvision names)"))


def detect_format(checkpoint: dict[str, Any]) -> str:
    """The name of the registered layout of `checkpoint`; DataError naming a few keys if none fits."""
    for name, fmt in FORMATS:
        if fmt.state_dict(checkpoint) is not None:
            return name
    keys = ", ".join(list(checkpoint)[:5])
    raise DataError(f"no known checkpoint layout (looked for conv1.weight under the prefixes "
                    f"{', '.join(FORMATS.names())}); first keys: {keys or 'none'}")


def backbone_state(checkpoint: dict[str, Any]) -> tuple[str, StateDict]:
    """Detect the layout of `checkpoint` and return (format name, backbone state dict)."""
    name = detect_format(checkpoint)
    return name, FORMATS.get(name).backbone_state(checkpoint)
