"""Synthetic invariance (paper Table 2, SPEC 3): Mahalanobis distance and whitened cosine similarity
between clean and transformed features, every image at every magnitude of every transform.

Each transform acts on an image at its native resolution; the k views of one image (one per grid
magnitude) are made together on the device, packed with the next images' views into forward
batches, and every base model runs on each batch once. The scores of every model and fusion are
computed from those features at once and cached per (model, transform, grid) - per-image scores,
not features, so a paper-sized run (1,000 images x about 4,000 views) needs no feature store.
"""
from collections.abc import Iterator, Sequence

import torch
from tqdm import tqdm

from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData
from fastinv.eval.suites import SUITES
from fastinv.pipelines.evaltf.views import resize_crop, to_float
from fastinv.kernels import ReferenceStats, mahalanobis, whitened_cosine
from fastinv.pipelines.eval_transforms import EVAL_TRANSFORMS, VIEW_RESIZE, EvalTransform
from fastinv.results import Table

NAME = "synthetic"
SUITE = SUITES.get(NAME)
COSINE_BOUNDS = (-2.0, 2.0)


def items(data: EvalData) -> list[EvalTransform]:
    """The transforms this suite measures, in the paper's order."""
    return list(EVAL_TRANSFORMS.values())


def _view_batches(images: Sequence[torch.Tensor], transform: EvalTransform, indices: list[int], ctx: EvalContext,
                  pixel_scale: float) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(image rows (B,), grid columns (B,), views (B, 3, crop, crop)) for every image at every
    non-identity position of `indices`, `batch_size` views at a time (rows and columns on the CPU)."""
    view, size = ctx.config.synthetic_view, ctx.config.batch_size
    device = next(iter(ctx.extractors.values())).device
    columns = [c for c, index in enumerate(indices) if index != transform.identity_index]
    pending, rows, cols, count = [], [], [], 0
    for row, image in enumerate(images):
        image = image.to(device, non_blocking=True)
        for start in range(0, len(columns), size):
            chunk = columns[start:start + size]
            pending.append(transform.views(image, [indices[c] for c in chunk], resize=view.resize, crop=view.crop,
                                           pixel_scale=pixel_scale))
            rows.append(torch.full((len(chunk),), row, dtype=torch.long))
            cols.append(torch.tensor(chunk, dtype=torch.long))
            count += len(chunk)
            while count >= size:
                views, rows_all, cols_all = torch.cat(pending), torch.cat(rows), torch.cat(cols)
                yield rows_all[:size], cols_all[:size], views[:size]
                pending, rows, cols, count = [views[size:]], [rows_all[size:]], [cols_all[size:]], count - size
    if count:
        yield torch.cat(rows), torch.cat(cols), torch.cat(pending)


def _score_grid(ctx: EvalContext, transform: EvalTransform, indices: list[int], images: Sequence[torch.Tensor],
                clean: dict[str, torch.Tensor], stats: dict[str, ReferenceStats], key_parts: dict[str, str],
                pixel_scale: float) -> dict[str, dict[str, torch.Tensor]]:
    """Per model: {"distance", "similarity"}, each (N, k) float64 over images x grid positions."""
    keys = {m: ctx.cache.key(kind="synthetic-scores", models=",".join(ctx.extractors[c].hash for c in ctx.components(m)),
                             transform=transform.name, grid=",".join(map(str, indices)), **key_parts) for m in ctx.models}
    scores = {m: cached for m in ctx.models if (cached := ctx.cache.load(keys[m])) is not None}
    pending = [m for m in ctx.models if m not in scores]
    if not pending:
        return scores
    device = next(iter(clean.values())).device
    shape = (len(images), len(indices))
    fresh = {m: {"distance": torch.zeros(shape, dtype=torch.float64, device=device),
                 "similarity": torch.ones(shape, dtype=torch.float64, device=device)} for m in pending}
    bases = list(dict.fromkeys(c for m in pending for c in ctx.components(m)))
    batches = _view_batches(images, transform, indices, ctx, pixel_scale)
    total = len(images) * sum(index != transform.identity_index for index in indices)
    with tqdm(total=total, desc=transform.name, unit="view", leave=False, disable=not ctx.config.progress) as bar:
        for rows, cols, views in batches:
            features = {name: ctx.extractors[name].forward(views) for name in bases}
            where = (rows.to(device, non_blocking=True), cols.to(device, non_blocking=True))
            for m in pending:
                parts = [features[c] for c in ctx.components(m)]
                moved = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
                before = clean[m][where[0]]
                fresh[m]["distance"][where] = mahalanobis(before, moved, stats[m]).double()
                fresh[m]["similarity"][where] = whitened_cosine(before, moved, stats[m]).double()
            bar.update(len(rows))
    for m in pending:
        ctx.cache.store(keys[m], fresh[m])
    return {**scores, **fresh}


def _json_magnitude(value):
    return [_json_magnitude(v) for v in value] if isinstance(value, (tuple, list)) else value


def run(ctx: EvalContext, data: EvalData) -> list[Table]:
    """Tables synthetic_mahalanobis and synthetic_cosine, with significance on cosine."""
    native, dataset = data.synthetic
    config = ctx.config
    view = config.synthetic_view
    pixel_scale = view.resize / VIEW_RESIZE
    stats = {m: data.reference_stats(ctx, m) for m in ctx.models}
    device = next(iter(ctx.extractors.values())).device
    on_device = {m: s.to(device) for m, s in stats.items()}
    clean_views = torch.stack([resize_crop(image, view.resize, view.crop) for image in native.images])
    clean = {m: ctx.features(m, clean_views, dataset=dataset, view=view, prepare=to_float,
                             transform_key="clean-native") for m in ctx.models}
    key_parts = {"dataset": dataset, "view": view.describe(), "pixel_scale": repr(pixel_scale),
                 "reference": data.reference_images.key}
    distance = {m: {} for m in ctx.models}
    similarity = {m: {} for m in ctx.models}
    winners, grids = {}, {}
    for transform in ctx.each(NAME, items(data)):
        name = transform.name
        indices = transform.grid_indices(config.grid_size)
        grids[name] = {"indices": indices,
                       "magnitudes": [_json_magnitude(transform.applied(transform.magnitudes[i], pixel_scale)) for i in indices]}
        scores = _score_grid(ctx, transform, indices, native.images, clean, on_device, key_parts, pixel_scale)
        for m in ctx.models:
            distance[m][name] = float(scores[m]["distance"].mean())
            similarity[m][name] = float(scores[m]["similarity"].mean())
        winners[name] = ctx.winner({m: s["similarity"].mean(dim=1) for m, s in scores.items()}, COSINE_BOUNDS)
    ctx.meta["synthetic_grid"] = grids
    ctx.meta["synthetic_images"] = list(native.paths)
    kinds = {name: t.kind for name, t in EVAL_TRANSFORMS.items()}
    columns = list(EVAL_TRANSFORMS)
    grid_note = "full SPEC grids" if config.grid_size is None else f"grids subsampled to {config.grid_size} magnitudes"
    estimators = "; ".join(f"{m}: {s.estimator} ({s.reason})" for m, s in stats.items())
    common = (f"{len(native.images)} images of {dataset}, each transformed at its native resolution then Resize "
              f"{view.resize} + CenterCrop {view.crop} (pixel magnitudes x {pixel_scale:g}); {grid_note}, positions and "
              f"values in results.json meta.synthetic_grid; mean over images then magnitudes. Reference statistics from "
              f"{len(data.reference_images.paths)} images of {data.reference_images.name}: {estimators}.")
    significance = ctx.significance_note("images (per-image cosine averaged over magnitudes)", COSINE_BOUNDS)
    return [
        Table(**SUITE.table_args("synthetic_mahalanobis"), columns=columns, rows=distance, column_kinds=kinds,
              note=common),
        Table(**SUITE.table_args("synthetic_cosine"), columns=columns, rows=similarity, column_kinds=kinds,
              winners=winners, note=f"{common} {significance}"),
    ]
