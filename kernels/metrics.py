"""Scores on tensors: accuracy, mean per-class accuracy and R^2 (scikit-learn's semantics)."""
from __future__ import annotations

import torch


def accuracy(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Fraction of equal entries in two label tensors of shape (..., n); batched over leading dims."""
    return (pred == true).to(torch.float64).mean(dim=-1)


def mean_per_class_accuracy(pred: torch.Tensor, true: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Recall averaged over the classes present in `true` (balanced accuracy); batched over leading dims of `pred`."""
    hits = (pred == true).to(torch.float64)
    count = torch.bincount(true, minlength=n_classes).to(torch.float64)
    per_class = torch.zeros(*hits.shape[:-1], n_classes, dtype=torch.float64, device=hits.device)
    per_class.index_add_(-1, true, hits)
    present = count > 0
    return (per_class[..., present] / count[present]).mean(dim=-1)


def r2_per_output(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """R^2 of each output, shape (..., t), for `pred` (..., n, t) and `true` (n, t); constant targets as in sklearn."""
    true = true.to(torch.float64)
    resid = ((true - pred.to(torch.float64)) ** 2).sum(dim=-2)
    total = ((true - true.mean(dim=0)) ** 2).sum(dim=0)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    constant = torch.where(resid == 0, 1.0, 0.0).to(torch.float64)
    return torch.where(total > 0, 1.0 - resid / safe, constant)


def r2_score(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """R^2 averaged uniformly over outputs, as sklearn.metrics.r2_score; batched over leading dims of `pred`."""
    return r2_per_output(pred, true).mean(dim=-1)
