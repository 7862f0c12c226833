"""kNN monitor (SPEC 7): top-1 of a k = 20, T = 0.07 weighted kNN on L2-normalised features,
for every classification task present; and, beyond the paper, the same kNN leave-one-out on each
real-world group set with the groups as classes: is an image's nearest neighbour the same object
(scene, material) under another pose or light?"""
import numpy as np

from fastinv.datasets import DATASETS
from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData, Loaded, Task
from fastinv.eval.suites import SUITES
from fastinv.kernels import knn_classify, knn_leave_one_out
from fastinv.results import Table

NAME = "knn"
SUITE = SUITES.get(NAME)


def _classification(data: EvalData) -> list[Task]:
    return [task for task in data.tasks("downstream") if task.task == "classification"]


def items(data: EvalData) -> list[Task | Loaded]:
    """The classification tasks, then the group sets, this suite classifies."""
    return [*_classification(data), *data.group_sets]


def run(ctx: EvalContext, data: EvalData) -> list[Table]:
    """Table knn_top1 (rows = models, columns = classification tasks) and, when group sets are
    present, knn_groups (columns = group sets)."""
    tables = [_task_table(ctx, data)]
    if data.group_sets:
        tables.append(_group_table(ctx, data))
    return tables


def _task_table(ctx: EvalContext, data: EvalData) -> Table:
    config = ctx.config
    tasks = _classification(data)
    rows = {m: {} for m in ctx.models}
    for task in ctx.each(NAME, tasks):
        for model in ctx.models:
            train_x = ctx.features(model, task.train.images, dataset=data.dataset_key(task.name, "train"), view=config.clean_view)
            test_x = ctx.features(model, task.test.images, dataset=data.dataset_key(task.name, "test"), view=config.clean_view)
            result = knn_classify(train_x, task.train.targets, test_x, task.test.targets, k=config.knn_k,
                                  temperature=config.knn_temperature, backend=config.knn_backend)
            rows[model][task.name] = float(result.top1)
    return Table(**SUITE.table_args("knn_top1", k=config.knn_k, temperature=config.knn_temperature),
                 columns=[t.name for t in tasks], rows=rows, column_kinds={t.name: t.kind for t in tasks},
                 note="Cosine similarity on L2-normalised features, votes weighted exp(sim / T).")


def _group_table(ctx: EvalContext, data: EvalData) -> Table:
    config = ctx.config
    rows = {m: {} for m in ctx.models}
    winners = {}
    for group_set in ctx.each(NAME, data.group_sets):
        hits = {}
        for model in ctx.models:
            features = ctx.features(model, group_set.images, dataset=data.dataset_key(group_set.name, "all"),
                                    view=config.clean_view)
            result = knn_leave_one_out(features, group_set.groups, k=config.knn_k, temperature=config.knn_temperature,
                                       backend=config.knn_backend)
            rows[model][group_set.name] = float(result.top1)
            hits[model] = (result.predictions == np.asarray(group_set.groups)).astype(np.float64)
        winners[group_set.name] = ctx.winner(hits, (-1.0, 1.0))
    return Table(**SUITE.table_args("knn_groups", k=config.knn_k, temperature=config.knn_temperature),
                 columns=[s.name for s in data.group_sets], rows=rows,
                 column_kinds={s.name: DATASETS.get(s.name).kind for s in data.group_sets}, winners=winners,
                 note=f"{data.group_set_sizes()}. Each image is voted on by its k nearest other images of its set; higher = the "
                      "features find the same object again across the set's changes. "
                      f"{ctx.significance_note('images (hit differences)', (-1.0, 1.0))}")
