"""Linear probes over a whole penalty grid: k-fold CV, best grid value, refit and test score."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ._validate import KernelInputError, as_labels, encode_labels, as_matrix, check_grid, check_rows, check_same_width, resolve_device
from .backends import require_backend
from .cv import kfold_splits, summarise
from .logistic import logistic_decision, logistic_grid, logistic_path, principal_axes
from .metrics import accuracy, mean_per_class_accuracy, r2_score
from .ridge import ridge_coef, ridge_gram, ridge_path_predict

DEFAULT_WD_GRID = np.logspace(-6, 5, 45)
_METRICS = {"classification": ("accuracy", "mean_per_class_accuracy"), "regression": ("r2",)}


@dataclass(frozen=True)
class ProbeResult:
    """CV scores per grid value (wd; C = 1/wd, ridge alpha = wd), the chosen value, the refit model and its test score."""

    task: str
    metric: str
    grid: np.ndarray
    fold_scores: np.ndarray
    cv_mean: np.ndarray
    cv_std: np.ndarray
    best_index: int
    coef: torch.Tensor
    intercept: torch.Tensor
    classes: np.ndarray | None = None
    test_score: float | None = None
    solver_info: dict[str, Any] = field(default_factory=dict)

    @property
    def best_value(self) -> float:
        """The grid value (weight decay) with the best mean CV score."""
        return float(self.grid[self.best_index])

    def predict(self, features: Any) -> torch.Tensor:
        """Predicted labels (classification, as indices into `classes`) or targets (regression) for (m, d) features."""
        x = as_matrix("features", features, self.coef.device, self.coef.dtype)
        check_same_width("features", x, "the probe's training features", self.coef.T)
        out = x @ self.coef + self.intercept
        return out.argmax(dim=1) if self.task == "classification" else out


def linear_probe(features: Any, targets: Any, task: str = "classification", grid: Sequence[float] | None = None,
                 folds: int | Sequence[tuple[Sequence[int], Sequence[int]]] = 5, seed: int = 0,
                 test_features: Any = None, test_targets: Any = None, metric: str | None = None,
                 device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                 tol: float = 1e-3, max_iter: int = 500, precondition: str = "auto", backend: str = "torch") -> ProbeResult:
    """Fit a linear probe for every grid value with k-fold CV, pick the best mean score, refit, score on test data.

    features (n, d); targets: labels (n,) for task="classification" (multinomial L2 logistic regression,
    sklearn's loss with C = 1/wd) or values (n, t) for task="regression" (ridge, alpha = wd). metric:
    "accuracy" (default) or "mean_per_class_accuracy" for classification, "r2" for regression. folds: k, or
    explicit (train, val) index pairs. tol: stop when the per-sample gradient's 2-norm is <= tol.
    precondition: "pca" (rotate to principal axes; default up to 4,096 features), "diagonal" or "auto".
    """
    if task not in _METRICS:
        raise KernelInputError(f"unknown task {task!r}; choose 'classification' or 'regression'")
    metric = metric or _METRICS[task][0]
    if metric not in _METRICS[task]:
        raise KernelInputError(f"metric {metric!r} does not fit task {task!r}; choose one of {_METRICS[task]}")
    if precondition not in ("auto", "pca", "diagonal"):
        raise KernelInputError(f"unknown precondition {precondition!r}; choose 'auto', 'pca' or 'diagonal'")
    if (test_features is None) != (test_targets is None):
        raise KernelInputError("pass both test_features and test_targets, or neither")
    wd = check_grid("grid", DEFAULT_WD_GRID if grid is None else grid)
    dev = resolve_device(device, features)
    x = as_matrix("features", features, dev, dtype)
    if backend != "torch":
        module = require_backend(backend, f"linear_probe(backend={backend!r})")
        return module.linear_probe(x, targets, task, wd, folds, seed, test_features, test_targets, metric, tol, max_iter)
    if task == "classification":
        codes, classes = as_labels("targets", targets, x.shape[0], dev)
        splits = kfold_splits(x.shape[0], folds, seed, labels=codes)
        return _classification(x, codes, classes, wd, splits, metric, test_features, test_targets, tol, max_iter, precondition)
    y = as_matrix("targets", targets, dev, torch.float64)
    check_rows("features", x, "targets", y)
    return _regression(x, y, wd, kfold_splits(x.shape[0], folds, seed), test_features, test_targets)


def _score(metric: str, pred: torch.Tensor, true: torch.Tensor, n_classes: int = 0) -> torch.Tensor:
    if metric == "accuracy":
        return accuracy(pred, true)
    if metric == "mean_per_class_accuracy":
        return mean_per_class_accuracy(pred, true, n_classes)
    return r2_score(pred, true)


def _classification(x: torch.Tensor, codes: torch.Tensor, classes: np.ndarray, wd: torch.Tensor, splits, metric: str,
                    test_features: Any, test_targets: Any, tol: float, max_iter: int, precondition: str) -> ProbeResult:
    n_classes = len(classes)
    if precondition == "pca" or (precondition == "auto" and x.shape[1] <= 4096):
        mean, axes, variances = principal_axes(x)
        z = (x - mean) @ axes
    else:
        mean, axes, variances = x.mean(dim=0), None, x.var(dim=0, unbiased=False)
        z = x - mean
    lam = wd.to(x.device, x.dtype)
    scores, grad_norms, iterations, path = [], [], [], None
    for train, val in splits:
        train, val = train.to(x.device), val.to(x.device)
        # Every fold starts cold: another fold's solution was fitted on this fold's validation
        # images, and a weakly regularised fit that stops at max_iter would carry them over.
        path = logistic_grid(z[train], codes[train], n_classes, lam, variances, tol, max_iter)
        pred = logistic_decision(z[val], path.coef, path.intercept).argmax(dim=2)
        scores.append(_score(metric, pred, codes[val], n_classes))
        grad_norms.append(path.grad_norm)
        iterations.append(path.iterations)
    fold_scores = torch.stack(scores)
    cv_mean, cv_std = summarise(fold_scores)
    best = int(np.argmax(cv_mean))
    final = logistic_path(z, codes, n_classes, lam[best:best + 1], variances, tol, max_iter,
                          init=(path.coef[best:best + 1], path.intercept[best:best + 1]))
    coef = final.coef[0] if axes is None else axes @ final.coef[0]
    intercept = final.intercept[0] - mean @ coef
    grad_all = torch.stack(grad_norms)
    info = {"solver": "batched preconditioned L-BFGS, warm-started along the grid within each fold", "tol": tol,
            "max_grad_norm": float(grad_all.max()),
            "unconverged_fits": int((grad_all > tol).sum()), "refit_grad_norm": float(final.grad_norm[0]),
            "iterations_per_fold": torch.stack(iterations).cpu().numpy(), "precondition": "diagonal" if axes is None else "pca"}
    result = ProbeResult("classification", metric, wd.numpy(), fold_scores.cpu().numpy(), cv_mean, cv_std, best, coef,
                         intercept, classes, None, info)
    if test_features is None:
        return result
    xt = as_matrix("test_features", test_features, x.device, x.dtype)
    check_same_width("test_features", xt, "features", x)
    true = encode_labels("test_targets", test_targets, classes, xt.shape[0], x.device)
    test = float(_score(metric, result.predict(xt), true, n_classes))
    return ProbeResult(**{**result.__dict__, "test_score": test})


def _regression(x: torch.Tensor, y: torch.Tensor, wd: torch.Tensor, splits, test_features: Any, test_targets: Any) -> ProbeResult:
    x64 = x.to(torch.float64)
    gram, cross = x64.T @ x64, x64.T @ y
    sum_x, sum_y = x64.sum(dim=0), y.sum(dim=0)
    alphas = wd.to(x.device)
    scores = []
    for train, val in splits:
        train, val = train.to(x.device), val.to(x.device)
        xv, yv = x64[val], y[val]
        if len(train) + len(val) == x.shape[0]:  # train is the complement of val: subtract its moments
            model = ridge_gram(gram - xv.T @ xv, cross - xv.T @ yv, sum_x - xv.sum(dim=0), sum_y - yv.sum(dim=0), len(train))
        else:
            xt, yt = x64[train], y[train]
            model = ridge_gram(xt.T @ xt, xt.T @ yt, xt.sum(dim=0), yt.sum(dim=0), len(train))
        scores.append(r2_score(ridge_path_predict(model, xv, alphas), yv))
    fold_scores = torch.stack(scores)
    cv_mean, cv_std = summarise(fold_scores)
    best = int(np.argmax(cv_mean))
    coef, intercept = ridge_coef(ridge_gram(gram, cross, sum_x, sum_y, x.shape[0]), float(wd[best]))
    result = ProbeResult("regression", "r2", wd.numpy(), fold_scores.cpu().numpy(), cv_mean, cv_std, best, coef, intercept,
                         solver_info={"solver": "ridge path from one eigendecomposition per fold"})
    if test_features is None:
        return result
    xt = as_matrix("test_features", test_features, x.device, torch.float64)
    yt = as_matrix("test_targets", test_targets, x.device, torch.float64)
    check_same_width("test_features", xt, "features", x)
    check_rows("test_features", xt, "test_targets", yt)
    check_same_width("test_targets", yt, "targets", y)
    return ProbeResult(**{**result.__dict__, "test_score": float(r2_score(result.predict(xt), yt))})
