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
    if k < 1 or temperature <= 0 or chunk < 1:
        raise KernelInputError(f"need k >= 1, temperature > 0 and chunk >= 1, got k={k}, temperature={temperature}, chunk={chunk}")
    dev = resolve_device(device, train_features)
    train = torch.nn.functional.normalize(as_matrix("train_features", train_features, dev, torch.float32), dim=1)
    query = torch.nn.functional.normalize(as_matrix("query_features", query_features, dev, torch.float32), dim=1)
    check_same_width("query_features", query, "train_features", train)
    codes, classes = as_labels("train_labels", train_labels, train.shape[0], dev)
    k = min(k, train.shape[0])
    if backend == "torch":
        parts = []
        for lo in range(0, query.shape[0], chunk):
            sims, idx = (query[lo:lo + chunk] @ train.T).topk(k, dim=1)
            parts.append(knn_votes(sims, idx, codes, len(classes), temperature).argmax(dim=1))
        pred = torch.cat(parts)
    else:
        search = require_backend(backend, f"knn_classify(backend={backend!r})").search_inner_product
        sims, idx = search(train, query, k)
        pred = knn_votes(sims, idx, codes, len(classes), temperature).argmax(dim=1)
    predictions = classes[pred.cpu().numpy()]
    if query_labels is None:
        return KnnResult(predictions)
    truth = query_labels.detach().cpu().numpy() if isinstance(query_labels, torch.Tensor) else np.asarray(query_labels)
    if truth.reshape(-1).shape[0] != predictions.shape[0]:
        raise KernelInputError(f"query_labels has {truth.size} labels but query_features has {predictions.shape[0]} rows")
    return KnnResult(predictions, float((predictions == truth.reshape(-1)).mean()))
