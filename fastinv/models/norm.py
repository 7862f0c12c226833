"""Batch-norm variants used by the MoCo encoders."""
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

NormLayer = Callable[[int], nn.Module]


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training, normalises each of `num_splits` contiguous sub-batches on
    its own statistics (ghost BN). With keys shuffled before the key encoder, a query and its
    positive key never share batch statistics on one device. Eval mode is plain BatchNorm2d, and
    the state dict is the same as BatchNorm2d's."""

    def __init__(self, num_features: int, num_splits: int, **kwargs):
        super().__init__(num_features, **kwargs)
        if num_splits < 1:
            raise ValueError(f"num_splits must be >= 1, got {num_splits}")
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise (N, C, H, W) with per-sub-batch statistics in training; N % num_splits == 0."""
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        s = self.num_splits
        if n % s:
            raise ValueError(f"split batch norm: batch {n} is not a multiple of {s} splits; "
                             "choose a per-device batch divisible by --bn-splits")
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        grouped = x.unflatten(0, (s, n // s)).transpose(0, 1).reshape(n // s, s * c, h, w)
        mean = self.running_mean.repeat(s)
        var = self.running_var.repeat(s)
        out = F.batch_norm(grouped, mean, var, self.weight.repeat(s), self.bias.repeat(s),
                           True, self.momentum, self.eps)
        with torch.no_grad():
            self.running_mean.copy_(mean.view(s, c).mean(0))
            self.running_var.copy_(var.view(s, c).mean(0))
        out = out.view(n // s, s, c, h, w).transpose(0, 1).reshape(n, c, h, w)
        if x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out


def norm_layer(kind: str, splits: int = 1) -> NormLayer:
    """The norm-layer factory for an encoder: 'split' gives SplitBatchNorm2d, anything else
    BatchNorm2d (SyncBN is applied after construction, shuffle-BN is done on the inputs)."""
    if kind == "split":
        return partial(SplitBatchNorm2d, num_splits=splits)
    return nn.BatchNorm2d
