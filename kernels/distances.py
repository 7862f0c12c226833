"""Invariance distances under reference statistics: paired Mahalanobis and whitened cosine, and within-group all-pairs means.

`backend` is "torch", "cupy" (fused CUDA kernels, the 'gpu' extra; fastinv.kernels.backend_cupy)
or "auto", which picks cupy only where it was measured faster (fastinv.kernels.backends).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._validate import KernelInputError, as_matrix, check_rows, check_same_width, resolve_device
from .backends import cupy_adapter
from .stats import ReferenceStats


def _check_dim(x: torch.Tensor, stats: ReferenceStats) -> None:
    if x.shape[1] != stats.d:
        raise KernelInputError(f"features have {x.shape[1]} dimensions but the reference statistics have {stats.d}")


def whiten(features: Any, stats: ReferenceStats, dtype: torch.dtype = torch.float32,
           device: str | torch.device | None = None) -> torch.Tensor:
    """W (x - mu) for each row: (n, d) features -> (n, d) whitened, centred features."""
    dev = resolve_device(device, features)
    x = as_matrix("features", features, dev, dtype)
    _check_dim(x, stats)
    return (x - stats.mean.to(dev, dtype)) @ stats.whitening.to(dev, dtype).T


def mahalanobis(x: Any, y: Any, stats: ReferenceStats, dtype: torch.dtype = torch.float32,
                device: str | torch.device | None = None, backend: str = "auto") -> torch.Tensor:
    """sqrt((x-y)^T S^-1 (x-y)) for each pair of rows of x and y, (n,)."""
    dev = resolve_device(device, x, y)
    a, b = as_matrix("x", x, dev, dtype), as_matrix("y", y, dev, dtype)
    check_rows("x", a, "y", b)
    check_same_width("x", a, "y", b)
    _check_dim(a, stats)
    fused = cupy_adapter(backend, "mahalanobis", dev, a.shape[0], dtype)
    z = (a - b) @ stats.whitening.to(dev, dtype).T
    return z.norm(dim=1) if fused is None else fused.row_norms(z)


def whitened_cosine(x: Any, y: Any, stats: ReferenceStats, dtype: torch.dtype = torch.float32,
                    device: str | torch.device | None = None, backend: str = "auto") -> torch.Tensor:
    """cos(W(x - mu), W(y - mu)) for each pair of rows of x and y, (n,).

    Computed as 1 - ||u - v||^2 / 2 on the unit vectors u, v: accurate near 1 (the invariant regime)
    and exactly 1 for identical inputs.
    """
    dev = resolve_device(device, x, y)
    a, b = as_matrix("x", x, dev, dtype), as_matrix("y", y, dev, dtype)
    check_rows("x", a, "y", b)
    fused = cupy_adapter(backend, "whitened_cosine", dev, a.shape[0], dtype)
    wa, wb = whiten(a, stats, dtype, dev), whiten(b, stats, dtype, dev)
    if fused is not None:
        return fused.unit_cosines(wa, wb)
    u = torch.nn.functional.normalize(wa, dim=1, eps=1e-12)
    v = torch.nn.functional.normalize(wb, dim=1, eps=1e-12)
    return (1.0 - 0.5 * (u - v).pow(2).sum(dim=1)).clamp(-1.0, 1.0)


@dataclass(frozen=True)
class GroupScores:
    """Per-group mean pairwise Mahalanobis distance and mean cosine matrix (diagonal included), and their averages."""

    groups: np.ndarray
    sizes: np.ndarray
    distance: torch.Tensor
    similarity: torch.Tensor

    @property
    def mean_distance(self) -> float:
        """Average over groups of the mean pairwise Mahalanobis distance."""
        return float(self.distance.mean())

    @property
    def mean_similarity(self) -> float:
        """Average over groups of the mean of the full cosine-similarity matrix."""
        return float(self.similarity.mean())


def group_pairwise(features: Any, groups: Any, stats: ReferenceStats, dtype: torch.dtype = torch.float32,
                   device: str | torch.device | None = None, max_pairs: int = 4_000_000,
                   backend: str = "auto") -> GroupScores:
    """All pairs within each group: mean pdist of whitened features, and mean of the full cosine matrix (diagonal included).

    `groups` holds one group id per row. Cosine means come from a segment sum of unit vectors (the sum of
    a group's cosine matrix is ||sum of its unit vectors||^2). Distances: torch computes padded
    distance matrices of groups of similar size, `max_pairs` distances at a time; cupy one kernel over
    every group. Neither waits for the device per group.
    """
    dev = resolve_device(device, features)
    z = whiten(features, stats, dtype, dev)
    ids = groups.detach().cpu().numpy() if isinstance(groups, torch.Tensor) else np.asarray(groups)
    if ids.ndim != 1 or ids.shape[0] != z.shape[0]:
        raise KernelInputError(f"groups must hold one id per feature row ({z.shape[0]}), got shape {ids.shape}")
    names, seg, sizes = np.unique(ids, return_inverse=True, return_counts=True)
    if (sizes < 2).any():
        raise KernelInputError(f"{int((sizes < 2).sum())} group(s) have a single member (e.g. {names[sizes < 2][0]!r}); "
                               "every group needs at least two images")
    fused = cupy_adapter(backend, "group_pairwise", dev, z.shape[0], dtype)
    members = np.argsort(seg, kind="stable")  # rows grouped by group, groups in `names` order
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    plan = _PaddedGroups(sizes, offsets, members, max_pairs) if fused is None else None
    parts = [seg, members, offsets, sizes] + ([plan.rows, plan.order] if plan is not None else [])
    seg_t, members_t, offsets_t, sizes_t, *padded = torch.as_tensor(np.concatenate(parts), device=dev).split(
        [len(p) for p in parts])  # one transfer for every index the device needs
    unit = torch.nn.functional.normalize(z, dim=1, eps=1e-12)
    sums = torch.zeros(len(names), z.shape[1], dtype=dtype, device=dev).index_add_(0, seg_t, unit)
    size_t = sizes_t.to(torch.float64)
    similarity = (sums.to(torch.float64) ** 2).sum(dim=1) / size_t ** 2
    if fused is not None:
        distance_sums = fused.group_distance_sums(z, members_t, offsets_t, int(sizes.max()))
    else:
        distance_sums = plan.distance_sums(z, *padded, sizes_t)
    return GroupScores(names, sizes, distance_sums / (size_t * (size_t - 1) / 2), similarity)


class _PaddedGroups:
    """The torch plan for within-group distances: groups sorted by size, cut into chunks padded to
    their largest group, each chunk's (groups x width x width) distance entries at most max_pairs
    (at least one group). All index arrays are built on the host, so the device never waits."""

    def __init__(self, sizes: np.ndarray, offsets: np.ndarray, members: np.ndarray, max_pairs: int):
        self.order = np.argsort(sizes, kind="stable")  # groups by size
        self.chunks: list[tuple[int, int, int, int]] = []  # (first group, end group, width, first index)
        rows, lo, at = [], 0, 0
        while lo < len(self.order):
            hi = lo + 1
            while hi < len(self.order) and (hi + 1 - lo) * int(sizes[self.order[hi]]) ** 2 <= max_pairs:
                hi += 1
            chunk = self.order[lo:hi]
            width = int(sizes[chunk[-1]])
            slots = np.minimum(np.arange(width), sizes[chunk, None] - 1)  # padding repeats a group's last row
            rows.append(members[offsets[chunk, None] + slots].ravel())
            self.chunks.append((lo, hi, width, at))
            at += (hi - lo) * width
            lo = hi
        self.rows = np.concatenate(rows)

    def distance_sums(self, z: torch.Tensor, rows: torch.Tensor, order: torch.Tensor, sizes: torch.Tensor
                      ) -> torch.Tensor:
        """Per group (in group order), the sum of distances over its pairs of distinct members (float64)."""
        sums = torch.empty(len(self.order), dtype=torch.float64, device=z.device)
        for lo, hi, width, at in self.chunks:
            block = z[rows[at:at + (hi - lo) * width]].view(hi - lo, width, -1)
            d = torch.cdist(block, block, compute_mode="donot_use_mm_for_euclid_dist").to(torch.float64)
            index = torch.arange(width, device=z.device)
            counted = (index[:, None] < index[None, :]) & (index[None, None, :] < sizes[order[lo:hi], None, None])
            sums[lo:hi] = (d * counted).sum(dim=(1, 2))
        return torch.empty_like(sums).index_copy_(0, order, sums)
