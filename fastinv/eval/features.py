"""Frozen-backbone feature extraction on the device, batched, with AMP and channels_last."""
import hashlib
from collections.abc import Callable, Iterable
from functools import cached_property

import torch
from torch import nn

from fastinv.devices import amp_dtype
from fastinv.pipelines.ops.normalize import normalise


def weights_hash(model: nn.Module) -> str:
    """SHA-256 of a model's parameter and buffer names and values: the model part of cache keys."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FeatureExtractor:
    """Turns batches of images into pooled backbone features, on the model's device: for the
    evaluation and for the training run's kNN monitor alike.

    Images come as uint8 (0-255) or float (0-1) tensors of shape (N, 3, H, W); they are
    normalised with the ImageNet statistics here. The backbone is put in eval mode (a caller
    that trains it sets train mode back) and runs under inference mode, so no gradients are kept.
    """

    def __init__(self, backbone: nn.Module, device: str | torch.device, *, amp: str = "none",
                 channels_last: bool = True, batch_size: int = 128):
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype(amp, self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = backbone.to(self.device, memory_format=self.memory_format).eval()
        self.amp = amp
        self.batch_size = batch_size

    @cached_property
    def hash(self) -> str:
        """`weights_hash` of the backbone (computed on first use): its part of cache keys."""
        return weights_hash(self.model)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Scale to [0, 1] if uint8 and apply the ImageNet mean and std."""
        images = images.to(self.device, non_blocking=True)
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return normalise(images, levels=False).contiguous(memory_format=self.memory_format)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features (N, D) float32 for one batch of images."""
        batch = self.normalise(images)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            return self.model(batch).float()

    def extract(self, batches: Iterable[torch.Tensor], transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Features (N, D) of every image in `batches`, optionally transformed first (on the device)."""
        chunks = []
        for images in batches:
            images = images.to(self.device, non_blocking=True)
            for start in range(0, images.shape[0], self.batch_size):
                part = images[start:start + self.batch_size]
                chunks.append(self.forward(transform(part) if transform is not None else part))
        return torch.cat(chunks) if chunks else torch.empty(0, 0, device=self.device)
