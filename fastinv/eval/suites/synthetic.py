"""Synthetic invariance (paper Table 2, SPEC 3): Mahalanobis distance and whitened cosine similarity
between clean and transformed features, every image at every magnitude of every transform."""
import numpy as np
import torch

from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData
from fastinv.kernels import hoeffding_winner, mahalanobis, whitened_cosine
from fastinv.pipelines.eval_transforms import EVAL_TRANSFORMS
from fastinv.results import Table

NAME = "synthetic"


def steps(ctx: EvalContext, data: EvalData) -> int:
    """Progress steps this suite will report."""
    return len(ctx.extractors) * len(EVAL_TRANSFORMS)


def run(ctx: EvalContext, data: EvalData) -> list[Table]:
    """Tables synthetic_mahalanobis and synthetic_cosine, with significance on cosine."""
    images, dataset = data.synthetic
    view = ctx.config.synthetic_view
    distance: dict[str, dict[str, float]] = {m: {} for m in ctx.models}
    similarity: dict[str, dict[str, float]] = {m: {} for m in ctx.models}
    per_image: dict[str, dict[str, torch.Tensor]] = {t: {} for t in EVAL_TRANSFORMS}
    estimators = {}
    for model in ctx.models:
        stats = data.reference_stats(ctx, model)
        estimators[model] = f"{stats.estimator} ({stats.reason})"
        clean = ctx.features(model, images, dataset=dataset, view=view)
        for name, transform in EVAL_TRANSFORMS.items():
            dist_sum = torch.zeros(clean.shape[0], device=clean.device, dtype=torch.float64)
            sim_sum = torch.zeros_like(dist_sum)
            indices = transform.grid_indices(ctx.config.grid_size)
            grid = [transform.magnitudes[i] for i in indices]
            for index, magnitude in zip(indices, grid):
                # The identity magnitude maps every image to itself bit for bit: reuse the clean features.
                moved = clean if index == transform.identity_index else ctx.features(
                    model, images, dataset=dataset, view=view, transform_key=f"{name}={magnitude!r}",
                    prepare=lambda batch, m=magnitude, t=transform: t.view(batch, m, normalise=False))
                dist_sum += mahalanobis(clean, moved, stats).to(torch.float64)
                sim_sum += whitened_cosine(clean, moved, stats).to(torch.float64)
            distance[model][name] = float(dist_sum.mean() / len(grid))
            similarity[model][name] = float(sim_sum.mean() / len(grid))
            per_image[name][model] = sim_sum / len(grid)
            if model in ctx.extractors:
                ctx.advance(f"{NAME} {model} {name}")
    winners = {}
    if len(ctx.models) >= 2:
        for name in EVAL_TRANSFORMS:
            winners[name] = hoeffding_winner(per_image[name], delta=ctx.config.delta, bounds=(-2.0, 2.0)).winner
    kinds = {name: t.kind for name, t in EVAL_TRANSFORMS.items()}
    columns = list(EVAL_TRANSFORMS)
    grid_note = "full SPEC grids" if ctx.config.grid_size is None else f"grids subsampled to {ctx.config.grid_size} magnitudes"
    common = (f"{len(images)} images of {dataset}, {grid_note}; mean over images then magnitudes. "
              f"Reference statistics: {'; '.join(f'{m}: {e}' for m, e in estimators.items())}.")
    significance = (f"• = significantly more invariant than every other model (Hoeffding, per-image cosine "
                    f"differences bounded in [-2, 2], delta {ctx.config.delta} Bonferroni-split over the "
                    f"{max(1, len(ctx.models) - 1)} comparisons of the best with each other model).")
    return [
        Table(key="synthetic_mahalanobis", title="Table 2 (top): Mahalanobis distance to the clean view (lower = more invariant)",
              columns=columns, rows=distance, better="lower", column_kinds=kinds, note=common, section=NAME),
        Table(key="synthetic_cosine", title="Table 2 (bottom): whitened cosine similarity to the clean view (higher = more invariant)",
              columns=columns, rows=similarity, better="higher", column_kinds=kinds, winners=winners,
              note=f"{common} {significance}", section=NAME),
    ]
