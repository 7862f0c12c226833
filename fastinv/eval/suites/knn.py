"""kNN monitor (SPEC 7): top-1 of a k = 20, T = 0.07 weighted kNN on L2-normalised features,
for every classification task present."""
from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData
from fastinv.kernels import knn_classify
from fastinv.results import Table

NAME = "knn"


def _classification(data: EvalData) -> list:
    return [task for task in data.tasks("downstream") if task.task == "classification"]


def steps(ctx: EvalContext, data: EvalData) -> int:
    """Progress steps this suite will report."""
    return len(ctx.extractors) * len(_classification(data))


def run(ctx: EvalContext, data: EvalData) -> list[Table]:
    """Table knn_top1: rows = models, columns = classification tasks."""
    config = ctx.config
    tasks = _classification(data)
    rows = {m: {} for m in ctx.models}
    for task in tasks:
        for model in ctx.models:
            train_x = ctx.features(model, task.train.images, dataset=data.dataset_key(task.name, "train"), view=config.clean_view)
            test_x = ctx.features(model, task.test.images, dataset=data.dataset_key(task.name, "test"), view=config.clean_view)
            result = knn_classify(train_x, task.train.targets, test_x, task.test.targets, k=config.knn_k,
                                  temperature=config.knn_temperature)
            rows[model][task.name] = float(result.top1)
            if model in ctx.extractors:
                ctx.advance(f"{NAME} {model} {task.name}")
    return [Table(key="knn_top1", title=f"kNN top-1 (k = {config.knn_k}, T = {config.knn_temperature})",
                  columns=[t.name for t in tasks], rows=rows, better="higher",
                  column_kinds={t.name: "recognition" for t in tasks},
                  note="Cosine similarity on L2-normalised features, votes weighted exp(sim / T).", section=NAME)]
