"""Input checks shared by the public kernels: one place that turns arrays into tensors and says how to fix bad input."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fastinv.errors import DataError


class KernelInputError(DataError, ValueError):
    """Features, targets or settings that a kernel cannot use; the message says how to fix them."""


def resolve_device(device: str | torch.device | None, *arrays: Any) -> torch.device:
    """The device to compute on: the given one, else that of the first tensor argument, else the CPU."""
    if device is not None:
        return torch.device(device)
    for array in arrays:
        if isinstance(array, torch.Tensor):
            return array.device
    return torch.device("cpu")


def as_matrix(name: str, x: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """`x` as a finite (n, d) tensor on `device`; a 1-d input is read as one feature per sample."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise KernelInputError(f"{name} must be a 2-d array (n_samples, n_features), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise KernelInputError(f"{name} is empty (shape {tuple(t.shape)}); pass at least one sample and one feature")
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)):
        raise KernelInputError(f"{name} must be numeric, got dtype {t.dtype}")
    t = t.to(device=device, dtype=dtype)
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).any(dim=1).sum())
        raise KernelInputError(f"{name} has NaN or infinite values in {bad} row(s); drop or impute them first")
    return t


def as_labels(name: str, y: Any, n: int, device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """Class labels as (codes 0..C-1 int64 tensor, sorted distinct labels); needs n entries and two classes."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise KernelInputError(f"{name} must be a 1-d array of class labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise KernelInputError(f"{name} has {arr.shape[0]} labels but the features have {n} rows; pass one label per sample")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise KernelInputError(f"{name} has NaN or infinite labels; drop those samples first")
    classes, codes = np.unique(arr, return_inverse=True)
    if classes.shape[0] < 2:
        raise KernelInputError(f"{name} holds a single class ({classes[0]!r}); classification needs at least two")
    return torch.as_tensor(codes, dtype=torch.int64, device=device), classes


def check_rows(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise unless `a` and `b` have the same number of rows."""
    if a.shape[0] != b.shape[0]:
        raise KernelInputError(f"{name_a} has {a.shape[0]} rows but {name_b} has {b.shape[0]}; they must pair up row by row")


def check_same_width(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise unless `a` and `b` have the same number of columns."""
    if a.shape[1] != b.shape[1]:
        raise KernelInputError(f"{name_a} has {a.shape[1]} features but {name_b} has {b.shape[1]}; use features from the same model")


def check_grid(name: str, values: Any) -> torch.Tensor:
    """A 1-d float64 CPU tensor of positive grid values."""
    t = torch.as_tensor(np.asarray(values, dtype=np.float64)).reshape(-1)
    if t.numel() == 0 or not torch.isfinite(t).all() or (t <= 0).any():
        raise KernelInputError(f"{name} must be a non-empty list of positive finite numbers, got {np.asarray(values).tolist()}")
    return t


def encode_labels(name: str, y: Any, classes: Any, n: int, device: torch.device) -> torch.Tensor:
    """Codes (n,) int64 of labels `y` against the training classes; raise on labels never seen in training."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    arr = arr.reshape(-1)
    if arr.shape[0] != n:
        raise KernelInputError(f"{name} has {arr.shape[0]} labels but its features have {n} rows; pass one label per sample")
    lookup = {v: i for i, v in enumerate(np.asarray(classes).tolist())}
    unknown = [v for v in np.unique(arr).tolist() if v not in lookup]
    if unknown:
        raise KernelInputError(f"{name} holds labels {unknown[:5]} that never occur in training; train on every class you test")
    return torch.as_tensor([lookup[v] for v in arr.tolist()], dtype=torch.int64, device=device)
