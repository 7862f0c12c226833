"""Ridge regression for a whole grid of penalties from one eigendecomposition per fold."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RidgeGram:
    """Centred second moments of one training set: eigenvectors/values of Xc^T Xc and the projection of Xc^T Yc."""

    mean_x: torch.Tensor
    mean_y: torch.Tensor
    vectors: torch.Tensor
    values: torch.Tensor
    projected: torch.Tensor


def ridge_gram(gram: torch.Tensor, cross: torch.Tensor, sum_x: torch.Tensor, sum_y: torch.Tensor, n: int) -> RidgeGram:
    """Decompose the centred problem given raw sums: gram = X^T X (d, d), cross = X^T Y (d, t), column sums, n rows (float64)."""
    mean_x, mean_y = sum_x / n, sum_y / n
    centred = gram - n * torch.outer(mean_x, mean_x)
    values, vectors = torch.linalg.eigh(centred)
    projected = vectors.T @ (cross - n * torch.outer(mean_x, mean_y))
    return RidgeGram(mean_x, mean_y, vectors, values.clamp_min(0.0), projected)


def ridge_path_predict(model: RidgeGram, x: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Predictions (g, m, t) on x (m, d) of ridge with intercept (sklearn Ridge) for each of the g alphas."""
    xv = (x.to(torch.float64) - model.mean_x) @ model.vectors
    scale = 1.0 / (model.values[None, :] + alphas[:, None])
    return torch.matmul(xv, scale[:, :, None] * model.projected) + model.mean_y


def ridge_coef(model: RidgeGram, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients (d, t) and intercept (t,) of the ridge solution at one alpha."""
    coef = model.vectors @ (model.projected / (model.values + alpha)[:, None])
    return coef, model.mean_y - model.mean_x @ coef
