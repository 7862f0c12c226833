"""Batch-norm variants used by the MoCo encoders."""
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

NormLayer = Callable[[int], nn.Module]


class _SplitNorm(torch.autograd.Function):
    """Training-mode batch norm of each of `splits` contiguous sub-batches on its own statistics.

    The sub-batches are views of the input (the batch is the outermost dimension in NCHW and
    channels_last alike) and each one's output is written straight into its slice of one output
    tensor of the input's memory format, so the forward pass copies nothing (the backward kernel
    has no such form: the sub-batches' input gradients are concatenated, one copy).
    Each sub-batch goes through the device's own batch-norm kernels, so the values are those of
    BatchNorm2d applied to each sub-batch. Returns (output, per-split means, per-split inverse
    std), the last two (splits, C) and not differentiable."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, splits: int, eps: float):
        out = torch.empty_like(x)
        mean = torch.empty(splits, x.shape[1], dtype=weight.dtype, device=x.device)
        invstd = torch.empty_like(mean)
        for part, part_out, part_mean, part_invstd in zip(x.unflatten(0, (splits, -1)), out.unflatten(0, (splits, -1)),
                                                          mean, invstd):
            torch.ops.aten.native_batch_norm.out(part, weight, bias, None, None, True, 0.0, eps,
                                                 out=part_out, save_mean=part_mean, save_invstd=part_invstd)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.splits, ctx.eps = splits, eps
        ctx.mark_non_differentiable(mean, invstd)
        return out, mean, invstd

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _mean: torch.Tensor, _invstd: torch.Tensor):
        x, weight, mean, invstd = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        split = (ctx.splits, -1)
        parts = zip(grad.unflatten(0, split), x.unflatten(0, split), mean, invstd)
        dx, dw, db = zip(*(torch.ops.aten.native_batch_norm_backward(part_grad, part, weight, None, None, part_mean,
                                                                     part_invstd, True, ctx.eps, mask)
                           for part_grad, part, part_mean, part_invstd in parts))
        return (torch.cat(dx) if mask[0] else None, torch.stack(dw).sum(0) if mask[1] else None,
                torch.stack(db).sum(0) if mask[2] else None, None, None)


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training, normalises each of `num_splits` contiguous sub-batches on
    its own statistics (ghost BN). With keys shuffled before the key encoder, a query and its
    positive key never share batch statistics on one device. The running statistics move towards
    the mean over sub-batches of their statistics (unbiased variance), as if each sub-batch had
    updated them from the same starting point. Eval mode is plain BatchNorm2d, and the state dict
    is the same as BatchNorm2d's."""

    def __init__(self, num_features: int, num_splits: int, **kwargs):
        super().__init__(num_features, **kwargs)
        if num_splits < 1:
            raise ValueError(f"num_splits must be >= 1, got {num_splits}")
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise (N, C, H, W) with per-sub-batch statistics in training; N % num_splits == 0.
        The output has the input's memory format (NCHW or channels_last)."""
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        self._check_input_dim(x)
        n, c = x.shape[:2]
        s = self.num_splits
        if n % s:
            raise ValueError(f"split batch norm: batch {n} is not a multiple of {s} splits; "
                             "choose a per-device batch divisible by --bn-splits")
        if x.numel() // (s * c) == 1:
            raise ValueError(f"split batch norm: one value per channel in each of the {s} sub-batches of "
                             f"{tuple(x.shape)}; batch statistics need more (raise the batch or lower --bn-splits)")
        # The kernels keep statistics in float32 (float64 for float64 input) when the affine
        # parameters are float32; giving them float32 parameters makes that so for every input.
        stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        weight = self.weight.to(stat_dtype) if self.affine else torch.ones(c, dtype=stat_dtype, device=x.device)
        bias = self.bias.to(stat_dtype) if self.affine else torch.zeros(c, dtype=stat_dtype, device=x.device)
        out, mean, invstd = _SplitNorm.apply(x, weight, bias, s, self.eps)
        if self.track_running_stats:
            self._update_running_stats(mean, invstd, x.numel() // (s * c))
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, invstd: torch.Tensor, count: int) -> None:
        self.num_batches_tracked.add_(1)
        factor = self.momentum
        if factor is None:  # cumulative average, as BatchNorm2d; a tensor, so the host never waits
            factor = self.num_batches_tracked.to(self.running_mean.dtype).reciprocal()
        biased_var = invstd.pow(-2).sub_(self.eps).clamp_(min=0)
        unbiased_var = biased_var * (count / (count - 1))
        self.running_mean.lerp_(mean.mean(0).to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased_var.mean(0).to(self.running_var.dtype), factor)


def norm_layer(kind: str, splits: int = 1) -> NormLayer:
    """The norm-layer factory for an encoder: 'split' gives SplitBatchNorm2d, anything else
    BatchNorm2d (SyncBN is applied after construction, shuffle-BN is done on the inputs)."""
    if kind == "split":
        return partial(SplitBatchNorm2d, num_splits=splits)
    return nn.BatchNorm2d
