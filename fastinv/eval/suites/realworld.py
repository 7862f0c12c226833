"""Real-world invariance (paper Table 3, SPEC 4): within each group of images of one object,
scene or material, the mean pairwise Mahalanobis distance and the mean of the full whitened
cosine-similarity matrix (diagonal included, as the reference did), averaged over groups."""
from fastinv.datasets import DATASETS
from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData, Loaded
from fastinv.eval.suites import SUITES
from fastinv.kernels import group_pairwise
from fastinv.results import Table

NAME = "realworld"
SUITE = SUITES.get(NAME)


def items(data: EvalData) -> list[Loaded]:
    """The group sets this suite measures."""
    return data.group_sets


def run(ctx: EvalContext, data: EvalData) -> list[Table]:
    """Tables realworld_mahalanobis and realworld_cosine, with significance on cosine over groups."""
    sets = items(data)
    stats = {m: data.reference_stats(ctx, m) for m in ctx.models}
    distance = {m: {} for m in ctx.models}
    similarity = {m: {} for m in ctx.models}
    per_group = {s.name: {} for s in sets}
    for group_set in ctx.each(NAME, sets):
        for model in ctx.models:
            features = ctx.features(model, group_set.images, dataset=data.dataset_key(group_set.name, "all"),
                                    view=ctx.config.clean_view)
            scores = group_pairwise(features, group_set.groups, stats[model])
            distance[model][group_set.name] = scores.mean_distance
            similarity[model][group_set.name] = scores.mean_similarity
            per_group[group_set.name][model] = scores.similarity
    # A group's mean cosine matrix is ||sum of unit vectors||^2 / n^2, in [0, 1]: differences lie in [-1, 1].
    winners = {name: ctx.winner(scores, (-1.0, 1.0)) for name, scores in per_group.items()}
    kinds = {s.name: DATASETS.get(s.name).kind for s in sets}
    columns = [s.name for s in sets]
    notes = [DATASETS.get(s.name).note for s in sets]
    note = (f"{data.group_set_sizes()}. Reference statistics from the {len(data.reference_images.paths)} images of "
            f"{data.reference_images.name}, as Table 2. The cosine mean includes each group matrix's diagonal (as the "
            "reference code did)." + "".join(f" {n}" for n in notes if n))
    return [
        Table(**SUITE.table_args("realworld_mahalanobis"), columns=columns, rows=distance, column_kinds=kinds, note=note),
        Table(**SUITE.table_args("realworld_cosine"), columns=columns, rows=similarity, column_kinds=kinds,
              winners=winners, note=f"{note} {ctx.significance_note('groups', (-1.0, 1.0))}"),
    ]
