"""cuML adapter (the 'gpu' extra): one cuML fit per grid setting, as a cross-check of the torch solvers on a GPU.

Inputs arrive as validated torch tensors; they are handed to cuML through DLPack (no host copy when on
CUDA) and predictions come back the same way, so scoring and the result types are shared with torch.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import cupy
import numpy as np
import torch
from cuml.kernel_ridge import KernelRidge
from cuml.linear_model import LogisticRegression, Ridge

from ._validate import as_labels, as_matrix, check_rows, encode_labels
from .cv import kfold_splits, summarise
from .metrics import accuracy, mean_per_class_accuracy, r2_score
from .probe import ProbeResult


def _cp(t: torch.Tensor) -> "cupy.ndarray":
    return cupy.from_dlpack(t.contiguous()) if t.is_cuda else cupy.asarray(t.detach().cpu().numpy())


def _torch(a: Any, like: torch.Tensor) -> torch.Tensor:
    return torch.from_dlpack(cupy.asarray(a)).to(like.device)


def _keeps_dtype(method: Callable) -> dict[str, bool]:
    """Keyword arguments that stop `method` from casting float64 input to float32: older cuML releases do so
    unless given convert_dtype=False (its default is True); newer ones keep the input dtype and deprecate
    (26.08), then drop (26.10), the flag, so it is passed only where it still defaults to True."""
    flag = inspect.signature(method).parameters.get("convert_dtype")
    return {"convert_dtype": False} if flag is not None and flag.default is True else {}


_FIT_KEEPS_DTYPE = _keeps_dtype(KernelRidge.fit)
_PREDICT_KEEPS_DTYPE = _keeps_dtype(KernelRidge.predict)


def krr_grid_predictions(x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor, alphas: torch.Tensor,
                         gammas: torch.Tensor) -> torch.Tensor:
    """Predictions (A, G, m, t) of cuml.kernel_ridge.KernelRidge(kernel="rbf") fit on (x_train, y_train), one fit per
    (alpha, gamma), in the inputs' float64 (the same contract as fastinv.kernels.kernel_ridge.grid_predictions)."""
    xtr, ytr, xev = _cp(x_train), _cp(y_train), _cp(x_eval)
    out = torch.empty(len(alphas), len(gammas), x_eval.shape[0], y_train.shape[1], dtype=y_train.dtype, device=y_train.device)
    for i, alpha in enumerate(alphas.tolist()):
        for j, gamma in enumerate(gammas.tolist()):
            model = KernelRidge(alpha=alpha, kernel="rbf", gamma=gamma).fit(xtr, ytr, **_FIT_KEEPS_DTYPE)
            out[i, j] = _torch(model.predict(xev, **_PREDICT_KEEPS_DTYPE), y_train).reshape(out.shape[2:])
    return out


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
