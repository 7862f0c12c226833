"""Invariance distances under reference statistics: paired Mahalanobis and whitened cosine, and within-group all-pairs means."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._validate import KernelInputError, as_matrix, check_rows, check_same_width, resolve_device
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
                device: str | torch.device | None = None) -> torch.Tensor:
    """sqrt((x-y)^T S^-1 (x-y)) for each pair of rows of x and y, (n,)."""
    dev = resolve_device(device, x, y)
    a, b = as_matrix("x", x, dev, dtype), as_matrix("y", y, dev, dtype)
    check_rows("x", a, "y", b)
    check_same_width("x", a, "y", b)
    _check_dim(a, stats)
    return ((a - b) @ stats.whitening.to(dev, dtype).T).norm(dim=1)


def whitened_cosine(x: Any, y: Any, stats: ReferenceStats, dtype: torch.dtype = torch.float32,
                    device: str | torch.device | None = None) -> torch.Tensor:
    """cos(W(x - mu), W(y - mu)) for each pair of rows of x and y, (n,).

    Computed as 1 - ||u - v||^2 / 2 on the unit vectors u, v: accurate near 1 (the invariant regime)
    and exactly 1 for identical inputs.
    """
    dev = resolve_device(device, x, y)
    a, b = as_matrix("x", x, dev, dtype), as_matrix("y", y, dev, dtype)
    check_rows("x", a, "y", b)
    u = torch.nn.functional.normalize(whiten(a, stats, dtype, dev), dim=1, eps=1e-12)
    v = torch.nn.functional.normalize(whiten(b, stats, dtype, dev), dim=1, eps=1e-12)
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
                   device: str | torch.device | None = None, max_pairs: int = 4_000_000) -> GroupScores:
    """All pairs within each group: mean pdist of whitened features, and mean of the full cosine matrix (diagonal included).

    `groups` holds one group id per row. Cosine means come from a segment sum of unit vectors (the sum of
    a group's cosine matrix is ||sum of its unit vectors||^2); distances are batched over groups of equal
    size, `max_pairs` distances at a time.
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
    seg_t = torch.as_tensor(seg, device=dev)
    size_t = torch.as_tensor(sizes, device=dev, dtype=torch.float64)
    unit = torch.nn.functional.normalize(z, dim=1, eps=1e-12)
    sums = torch.zeros(len(names), z.shape[1], dtype=dtype, device=dev).index_add_(0, seg_t, unit)
    similarity = (sums.to(torch.float64) ** 2).sum(dim=1) / size_t ** 2
    distance = torch.empty(len(names), dtype=torch.float64, device=dev)
    order = np.argsort(seg, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for size in np.unique(sizes):
        members = np.flatnonzero(sizes == size)
        rows = torch.as_tensor(order[starts[members][:, None] + np.arange(size)], device=dev)
        step = max(1, max_pairs // int(size * size))
        upper = torch.triu_indices(int(size), int(size), offset=1, device=dev)
        for lo in range(0, len(members), step):
            block = z[rows[lo:lo + step]]
            d = torch.cdist(block, block, compute_mode="donot_use_mm_for_euclid_dist")[:, upper[0], upper[1]]
            distance[torch.as_tensor(members[lo:lo + step], device=dev)] = d.to(torch.float64).mean(dim=1)
    return GroupScores(names, sizes, distance, similarity)
