"""cuML adapter (the 'gpu' extra): one cuML fit per grid setting, as a cross-check of the torch solvers on a GPU.

Inputs arrive as validated torch tensors; they are handed to cuML through DLPack (no host copy when on
CUDA) and predictions come back the same way, so scoring and the result types are shared with torch.
"""
from __future__ import annotations

from typing import Any

import cupy
import numpy as np
import torch
from cuml.kernel_ridge import KernelRidge
from cuml.linear_model import LogisticRegression, Ridge

from ._validate import as_labels, as_matrix, check_rows, encode_labels
from .cv import Splits, kfold_splits, summarise
from .kernel_ridge import KernelRidgeResult
from .metrics import accuracy, mean_per_class_accuracy, r2_per_output, r2_score
from .probe import ProbeResult


def _cp(t: torch.Tensor) -> "cupy.ndarray":
    return cupy.from_dlpack(t.contiguous()) if t.is_cuda else cupy.asarray(t.detach().cpu().numpy())


def _torch(a: Any, like: torch.Tensor) -> torch.Tensor:
    return torch.from_dlpack(cupy.asarray(a)).to(like.device)


def kernel_ridge_cv(xs: torch.Tensor, ys: torch.Tensor, alphas: torch.Tensor, gammas: torch.Tensor, splits: Splits,
                    standardized_targets: bool, test: tuple | None) -> KernelRidgeResult:
    """Grid search with cuml.kernel_ridge.KernelRidge(kernel="rbf"): one fit per (fold, alpha, gamma)."""
    scores = torch.empty(len(splits), len(alphas), len(gammas), dtype=torch.float64)
    for f, (train, val) in enumerate(splits):
        xtr, ytr, xva = _cp(xs[train]), _cp(ys[train]), _cp(xs[val])
        for i, alpha in enumerate(alphas.tolist()):
            for j, gamma in enumerate(gammas.tolist()):
                model = KernelRidge(alpha=alpha, kernel="rbf", gamma=gamma).fit(xtr, ytr)
                pred = _torch(model.predict(xva), ys).reshape(len(val), -1)
                scores[f, i, j] = r2_score(pred, ys[val.to(ys.device)])
    cv_mean, cv_std = summarise(scores)
    a, g = np.unravel_index(int(np.argmax(cv_mean)), cv_mean.shape)
    result = KernelRidgeResult(alphas.numpy(), gammas.numpy(), scores.numpy(), cv_mean, cv_std, float(alphas[a]), float(gammas[g]),
                               standardized_targets, solver="cuml")
    if test is None:
        return result
    xt, yt, y_mean, y_scale = test
    model = KernelRidge(alpha=result.best_alpha, kernel="rbf", gamma=result.best_gamma).fit(_cp(xs), _cp(ys))
    pred = _torch(model.predict(_cp(xt)), yt).reshape(len(yt), -1) * y_scale + y_mean
    per_output = r2_per_output(pred, yt)
    return KernelRidgeResult(**{**result.__dict__, "test_r2_per_output": per_output.cpu().numpy(), "test_r2": float(per_output.mean())})


def linear_probe(x: torch.Tensor, targets: Any, task: str, wd: torch.Tensor, folds, seed: int, test_features: Any,
                 test_targets: Any, metric: str, tol: float, max_iter: int) -> ProbeResult:
    """Probe with cuml LogisticRegression(C = 1/wd) or cuml Ridge(alpha = wd), one fit per (fold, grid value)."""
    if task == "classification":
        y, classes = as_labels("targets", targets, x.shape[0], x.device)
        n_classes = len(classes)
        make = lambda value: LogisticRegression(C=1.0 / value, tol=tol, max_iter=max_iter)  # noqa: E731
        score = (lambda p, t: accuracy(p, t)) if metric == "accuracy" else (lambda p, t: mean_per_class_accuracy(p, t, n_classes))
        splits = kfold_splits(x.shape[0], folds, seed, labels=y)
    else:
        y = as_matrix("targets", targets, x.device, torch.float64)
        check_rows("features", x, "targets", y)
        classes = None
        make = lambda value: Ridge(alpha=value)  # noqa: E731
        score = r2_score
        splits = kfold_splits(x.shape[0], folds, seed)
    xc, yc = _cp(x), _cp(y)
    fold_scores = torch.empty(len(splits), len(wd), dtype=torch.float64)
    for f, (train, val) in enumerate(splits):
        tr, va = cupy.asarray(train.numpy()), cupy.asarray(val.numpy())
        for g, value in enumerate(wd.tolist()):
            pred = _torch(make(value).fit(xc[tr], yc[tr]).predict(xc[va]), y)
            fold_scores[f, g] = score(pred.reshape(y[val.to(y.device)].shape).to(y.dtype), y[val.to(y.device)])
    cv_mean, cv_std = summarise(fold_scores)
    best = int(np.argmax(cv_mean))
    model = make(float(wd[best])).fit(xc, yc)
    coef = _torch(model.coef_, x).to(x.dtype)
    coef = coef.T if coef.shape[0] != x.shape[1] else coef
    intercept = _torch(model.intercept_, x).to(x.dtype).reshape(-1)
    result = ProbeResult(task, metric, wd.numpy(), fold_scores.numpy(), cv_mean, cv_std, best, coef, intercept,
                         classes, None, {"solver": "cuml, one fit per setting"})
    if test_features is None:
        return result
    xt = as_matrix("test_features", test_features, x.device, x.dtype)
    if task == "classification":
        truth = encode_labels("test_targets", test_targets, classes, xt.shape[0], x.device)
    else:
        truth = as_matrix("test_targets", test_targets, x.device, torch.float64)
    pred = _torch(model.predict(_cp(xt)), truth).reshape(truth.shape).to(truth.dtype)
    return ProbeResult(**{**result.__dict__, "test_score": float(score(pred, truth))})
