"""Weighted k-nearest-neighbour classifier on L2-normalised features (DINO convention), chunked to bound memory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._validate import KernelInputError, as_labels, as_matrix, check_same_width, resolve_device
from .backends import require_backend


@dataclass(frozen=True)
class KnnResult:
    """Predicted labels (m,) and, when query labels were given, top-1 accuracy."""

    predictions: np.ndarray
    top1: float | None = None


def knn_votes(similarities: torch.Tensor, neighbours: torch.Tensor, train_codes: torch.Tensor, n_classes: int,
              temperature: float) -> torch.Tensor:
    """Class votes (m, C): each of the k neighbours adds exp(similarity / temperature) to its class."""
    votes = torch.zeros(similarities.shape[0], n_classes, dtype=torch.float64, device=similarities.device)
    return votes.scatter_add_(1, train_codes[neighbours], torch.exp(similarities.to(torch.float64) / temperature))


def knn_classify(train_features: Any, train_labels: Any, query_features: Any, query_labels: Any = None, k: int = 20,
                 temperature: float = 0.07, chunk: int = 1024, backend: str = "torch",
                 device: str | torch.device | None = None) -> KnnResult:
    """Classify queries (m, d) by temperature-weighted votes of their k most cosine-similar training rows (n, d).

    backend: "torch" (chunked matmul + top-k, `chunk` queries at a time) or "faiss" (exact inner-product index).
    """
    _check_settings(k, temperature, chunk)
    dev = resolve_device(device, train_features)
    train = _unit_rows("train_features", train_features, dev)
    query = _unit_rows("query_features", query_features, dev)
    check_same_width("query_features", query, "train_features", train)
    codes, classes = as_labels("train_labels", train_labels, train.shape[0], dev)
    winners = _winning_codes(train, codes, len(classes), query, min(k, train.shape[0]), temperature, chunk, backend, False)
    return _result(classes[winners.cpu().numpy()], query_labels)


def knn_leave_one_out(features: Any, labels: Any, k: int = 20, temperature: float = 0.07, chunk: int = 1024,
                      backend: str = "torch", device: str | torch.device | None = None) -> KnnResult:
    """Classify every row of `features` (n, d) by the weighted votes of its k most cosine-similar
    other rows (leave-one-out), and score the predictions against `labels`: kNN on one labelled
    set, such as views of object instances grouped by instance."""
    _check_settings(k, temperature, chunk)
    dev = resolve_device(device, features)
    rows = _unit_rows("features", features, dev)
    if rows.shape[0] < 2:
        raise KernelInputError(f"leave-one-out kNN needs at least 2 rows, got {rows.shape[0]}")
    codes, classes = as_labels("labels", labels, rows.shape[0], dev)
    winners = _winning_codes(rows, codes, len(classes), rows, min(k, rows.shape[0] - 1), temperature, chunk, backend, True)
    return _result(classes[winners.cpu().numpy()], labels)


def _check_settings(k: int, temperature: float, chunk: int) -> None:
    if k < 1 or temperature <= 0 or chunk < 1:
        raise KernelInputError(f"need k >= 1, temperature > 0 and chunk >= 1, got k={k}, temperature={temperature}, chunk={chunk}")


def _unit_rows(name: str, value: Any, dev: torch.device) -> torch.Tensor:
    return torch.nn.functional.normalize(as_matrix(name, value, dev, torch.float32), dim=1)


def _winning_codes(train: torch.Tensor, codes: torch.Tensor, n_classes: int, query: torch.Tensor, k: int, temperature: float,
           chunk: int, backend: str, skip_self: bool) -> torch.Tensor:
    """The winning class code of each query; with skip_self, query i is train row i and not its own neighbour."""
    if backend == "torch":
        parts = []
        for lo in range(0, query.shape[0], chunk):
            sims = query[lo:lo + chunk] @ train.T
            if skip_self:
                rows = torch.arange(sims.shape[0], device=sims.device)
                sims[rows, rows + lo] = -torch.inf
            top, idx = sims.topk(k, dim=1)
            parts.append(knn_votes(top, idx, codes, n_classes, temperature).argmax(dim=1))
        return torch.cat(parts)
    search = require_backend(backend, f"knn_classify(backend={backend!r})").search_inner_product
    sims, idx = search(train, query, k + skip_self)
    if skip_self:
        own = idx == torch.arange(query.shape[0], device=idx.device).unsqueeze(1)
        sims, order = sims.masked_fill(own, -torch.inf).topk(k, dim=1)
        idx = idx.gather(1, order)
    return knn_votes(sims, idx, codes, n_classes, temperature).argmax(dim=1)


def _result(predictions: np.ndarray, query_labels: Any) -> KnnResult:
    if query_labels is None:
        return KnnResult(predictions)
    truth = query_labels.detach().cpu().numpy() if isinstance(query_labels, torch.Tensor) else np.asarray(query_labels)
    if truth.reshape(-1).shape[0] != predictions.shape[0]:
        raise KernelInputError(f"query_labels has {truth.size} labels but query_features has {predictions.shape[0]} rows")
    return KnnResult(predictions, float((predictions == truth.reshape(-1)).mean()))
