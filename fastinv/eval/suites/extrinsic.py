"""Extrinsic invariance (paper Table 4, SPEC 5): how well kernel ridge regression on frozen
features recovers each generative latent (test R^2 per latent)."""
import numpy as np

from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData, Task
from fastinv.kernels import kernel_ridge_cv
from fastinv.results import Table
from fastinv.world.config import POSE_LATENTS

NAME = "extrinsic"
_POSE_WORDS = ("pos", "rot", "scale")


def steps(ctx: EvalContext, data: EvalData) -> int:
    """Progress steps this suite will report."""
    return len(ctx.extractors) * len(data.names(NAME))


def _kind(latent: str) -> str:
    return "pose" if latent in POSE_LATENTS or latent.startswith(_POSE_WORDS) else "appearance"


def _table(ctx: EvalContext, data: EvalData, task: Task) -> Table:
    config = ctx.config
    alphas, gammas = np.logspace(*config.krr_alphas), np.logspace(*config.krr_gammas)
    names = list(task.target_names or [f"latent_{i}" for i in range(task.train.targets.shape[1])])
    rows, chosen = {}, {}
    for model in ctx.models:
        train_x = ctx.features(model, task.train.images, dataset=data.dataset_key(task.name, "train"), view=config.clean_view)
        test_x = ctx.features(model, task.test.images, dataset=data.dataset_key(task.name, "test"), view=config.clean_view)
        result = kernel_ridge_cv(train_x, task.train.targets, alphas=alphas, gammas=gammas, folds=config.folds,
                                 seed=config.seed, test_features=test_x, test_targets=task.test.targets)
        rows[model] = dict(zip(names, (float(v) for v in result.test_r2_per_output)))
        chosen[model] = f"alpha {result.best_alpha:.0e}, gamma {result.best_gamma:.0e}"
        if model in ctx.extractors:
            ctx.advance(f"{NAME} {model} {task.name}")
    key = "extrinsic_r2" if task.name == "world_latents" else f"extrinsic_r2_{task.name}"
    note = (f"{task.name}: kernel ridge (RBF), alpha in logspace{config.krr_alphas}, gamma in logspace{config.krr_gammas}, "
            f"{config.folds}-fold CV on mean R^2 over all latents, refit on {len(task.train.images)} training images, "
            f"test R^2 on {len(task.test.images)}. Features standardised, targets not (as the reference code). "
            f"Chosen: {'; '.join(f'{m}: {c}' for m, c in chosen.items())}.")
    return Table(key=key, title=f"Table 4 ({task.name}): test R^2 of kernel ridge regression of each latent (higher = better)",
                 columns=names, rows=rows, better="higher", column_kinds={n: _kind(n) for n in names}, note=note, section=NAME)


def run(ctx: EvalContext, data: EvalData) -> list[Table]:
    """One table per extrinsic dataset: rows = models, columns = its latents."""
    return [_table(ctx, data, task) for task in data.tasks(NAME)]
