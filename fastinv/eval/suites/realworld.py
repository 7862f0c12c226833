"""Real-world invariance (paper Table 3, SPEC 4): within each group of images of one object,
scene or material, the mean pairwise Mahalanobis distance and the mean of the full whitened
cosine-similarity matrix (diagonal included, as the reference did), averaged over groups."""
from fastinv.datasets import DATASETS
from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData
from fastinv.kernels import group_pairwise
from fastinv.results import Table

NAME = "realworld"


def steps(ctx: EvalContext, data: EvalData) -> int:
    """Progress steps this suite will report."""
    return len(ctx.extractors) * len(data.group_sets)


def run(ctx: EvalContext, data: EvalData) -> list[Table]:
    """Tables realworld_mahalanobis and realworld_cosine, with significance on cosine over groups."""
    sets = [group_set for group_set, _ in data.group_sets]
    distance = {m: {} for m in ctx.models}
    similarity = {m: {} for m in ctx.models}
    per_group = {s.name: {} for s in sets}
    for model in ctx.models:
        stats = data.reference_stats(ctx, model)
        for group_set in sets:
            features = ctx.features(model, group_set.images, dataset=data.dataset_key(group_set.name, "all"),
                                    view=ctx.config.clean_view)
            scores = group_pairwise(features, group_set.groups, stats)
            distance[model][group_set.name] = scores.mean_distance
            similarity[model][group_set.name] = scores.mean_similarity
            per_group[group_set.name][model] = scores.similarity
            if model in ctx.extractors:
                ctx.advance(f"{NAME} {model} {group_set.name}")
    # A group's mean cosine matrix is ||sum of unit vectors||^2 / n^2, in [0, 1]: differences lie in [-1, 1].
    winners = {name: ctx.winner(scores, (-1.0, 1.0)) for name, scores in per_group.items()}
    kinds = {group_set.name: kind for group_set, kind in data.group_sets}
    columns = [s.name for s in sets]
    note = (f"{data.group_set_sizes()}. Reference statistics from the {len(data.reference_images.paths)} images of "
            f"{data.reference_images.name}, as Table 2. The cosine mean includes each group matrix's diagonal (as the "
            "reference code did)." + "".join(f" {DATASETS[g.name].note}" for g in sets if DATASETS[g.name].note))
    return [
        Table(key="realworld_mahalanobis", title="Table 3 (top): mean pairwise Mahalanobis distance within groups (lower = more invariant)",
              columns=columns, rows=distance, better="lower", column_kinds=kinds, note=note, section=NAME),
        Table(key="realworld_cosine", title="Table 3 (bottom): mean whitened cosine similarity within groups (higher = more invariant)",
              columns=columns, rows=similarity, better="higher", column_kinds=kinds, winners=winners,
              note=f"{note} {ctx.significance_note('groups', (-1.0, 1.0))}", section=NAME),
    ]
