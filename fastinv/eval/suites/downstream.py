"""Downstream linear probes (paper Table 5, SPEC 6): multinomial logistic regression for
recognition, ridge regression for pose, k-fold CV over the weight-decay grid, mean +/- std,
and the test score after refitting the best grid value on all training data."""
import numpy as np

from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData, Task
from fastinv.eval.modelspec import fusion_grid, width_units
from fastinv.eval.suites import SUITES
from fastinv.kernels import linear_probe
from fastinv.results import Table

NAME = "downstream"
SUITE = SUITES.get(NAME)


def items(data: EvalData) -> list[Task]:
    """The probe tasks present."""
    return data.tasks(NAME)


def model_width(ctx: EvalContext, model: str) -> float:
    """How many width-1 backbones wide `model`'s features are (`width_units` of its components' width
    multipliers; a backbone without one counts as width 1)."""
    return width_units([getattr(ctx.extractors[name].model, "width", 1.0) for name in ctx.components(model)])


def probe_grid(ctx: EvalContext, model: str) -> tuple[float, float, int]:
    """The log10 weight-decay grid of `model`: the configured grid shifted with the model's width."""
    return fusion_grid(ctx.config.probe_grid, model_width(ctx, model), ctx.config.fusion_grid_shift)


def run(ctx: EvalContext, data: EvalData) -> list[Table]:
    """Tables downstream_cv (mean +/- std over folds) and downstream_test."""
    config = ctx.config
    tasks = items(data)
    cv = {m: {} for m in ctx.models}
    std = {m: {} for m in ctx.models}
    test = {m: {} for m in ctx.models}
    grids = {m: probe_grid(ctx, m) for m in ctx.models}
    for task in ctx.each(NAME, tasks):
        for model in ctx.models:
            train_x = ctx.features(model, task.train.images, dataset=data.dataset_key(task.name, "train"), view=config.clean_view)
            test_x = ctx.features(model, task.test.images, dataset=data.dataset_key(task.name, "test"), view=config.clean_view)
            wd = np.logspace(*grids[model])
            # SPEC 6: logistic C = 1/wd (the kernel's grid value is wd); ridge alpha = 1/wd.
            grid = wd if task.task == "classification" else 1.0 / wd
            result = linear_probe(train_x, task.train.targets, task=task.task, grid=grid, folds=config.folds,
                                  seed=config.seed, metric=task.metric, test_features=test_x,
                                  test_targets=task.test.targets, backend=config.solver_backend)
            cv[model][task.name] = float(result.cv_mean[result.best_index])
            std[model][task.name] = float(result.cv_std[result.best_index])
            test[model][task.name] = float(result.test_score)
    kinds = {task.name: task.kind for task in tasks}
    columns = [task.name for task in tasks]
    metrics = "; ".join(f"{task.name}: {task.task}, {task.metric}" for task in tasks)
    shifted = [f"{m} (width {model_width(ctx, m):g}) logspace({g[0]:g}, {g[1]:g}, {g[2]})"
               for m, g in grids.items() if g != config.probe_grid]
    note = (f"Grid: weight decay logspace{config.probe_grid} (C = 1/wd; ridge alpha = 1/wd), shifted by "
            f"{config.fusion_grid_shift:g} decade(s) per width-1 backbone beyond the first, as the paper widens it "
            "with the features: a model's width is the sum of its parts' width multipliers (a fusion's components), "
            "each counted as at least 1, so Spa+App is 2 wide and Def+Spa+App and ResNet50(x3) are 3 wide"
            f"{'; shifted: ' + ', '.join(shifted) if shifted else ''}. {config.folds}-fold CV on the training split. "
            f"{metrics}.")
    return [
        Table(**SUITE.table_args("downstream_cv", folds=config.folds), columns=columns, rows=cv, std=std,
              column_kinds=kinds, note=note),
        Table(**SUITE.table_args("downstream_test"), columns=columns, rows=test, column_kinds=kinds, note=note),
    ]
