"""K-fold splits (seeded, stratified for labels) and the fold-score summary shared by every solver."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ._validate import KernelInputError

Splits = list[tuple[torch.Tensor, torch.Tensor]]


def kfold_splits(n: int, folds: int | Sequence[tuple[Sequence[int], Sequence[int]]], seed: int = 0,
                 labels: torch.Tensor | None = None, shuffle: bool = True) -> Splits:
    """(train_index, val_index) pairs: `folds` explicit pairs, or a seeded k-fold (stratified when `labels` is given).

    Explicit pairs (e.g. from sklearn's KFold) are checked and passed through, so runs can share folds.
    """
    if not isinstance(folds, int):
        splits = [(torch.as_tensor(np.asarray(tr), dtype=torch.int64), torch.as_tensor(np.asarray(va), dtype=torch.int64)) for tr, va in folds]
        for tr, va in splits:
            if tr.numel() == 0 or va.numel() == 0 or int(torch.cat([tr, va]).max()) >= n or int(torch.cat([tr, va]).min()) < 0:
                raise KernelInputError(f"each explicit fold needs non-empty train and validation indices within 0..{n - 1}")
        return splits
    if folds < 2:
        raise KernelInputError(f"folds must be at least 2, got {folds}")
    if n < folds:
        raise KernelInputError(f"{n} samples cannot be split into {folds} folds; use fewer folds or more samples")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    fold_of = np.empty(n, dtype=np.int64)
    if labels is None:
        fold_of[order] = np.arange(n) * folds // n
    else:
        codes = labels.detach().cpu().numpy()[order]
        by_class = order[np.argsort(codes, kind="stable")]
        fold_of[by_class] = np.arange(n) % folds
    return [(torch.as_tensor(np.flatnonzero(fold_of != k)), torch.as_tensor(np.flatnonzero(fold_of == k))) for k in range(folds)]


def summarise(fold_scores: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 0, as sklearn's cv_results_) over the first axis of (folds, ...) scores."""
    scores = fold_scores.detach().to("cpu", torch.float64).numpy()
    return scores.mean(axis=0), scores.std(axis=0)
