"""RBF kernel ridge regression over an (alpha, gamma) grid, chosen per output: per-gamma kernels, per-alpha solves for all outputs."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ._validate import KernelInputError, as_matrix, check_grid, check_rows, check_same_width, resolve_device
from .backends import require_backend
from .cv import kfold_splits, summarise
from .metrics import r2_per_output

DEFAULT_ALPHAS = tuple(np.logspace(0, -4, 5))
DEFAULT_GAMMAS = tuple(np.logspace(-5, 2, 8))

# one symmetric eigendecomposition costs about this many Cholesky factorisations of the same size
# (measured with torch on a 2-core CPU at n = 1,638: 0.65 s against 0.028 s in float64)
EIGH_COST_IN_CHOLESKY = 20.0
_JACOBI_MAX_RATIO = 0.01  # off-diagonal row sum / diagonal below which Jacobi iteration converges in a few steps


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (n, m) between rows of a (n, d) and b (m, d), float64, clamped at 0."""
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    sq = (a64 * a64).sum(dim=1)[:, None] + (b64 * b64).sum(dim=1)[None, :] - 2.0 * a64 @ b64.T
    return sq.clamp_min_(0.0)


def choose_solver(n_alphas: int, solver: str) -> str:
    """'cholesky' (one factorisation per alpha) or 'eigh' (one decomposition for all alphas) by the cost model, unless forced."""
    if solver != "auto":
        return solver
    return "eigh" if n_alphas > EIGH_COST_IN_CHOLESKY else "cholesky"


def krr_dual_coef(kernel: torch.Tensor, y: torch.Tensor, alphas: torch.Tensor, solver: str) -> torch.Tensor:
    """Dual coefficients (A, n, t) solving (K + alpha I) c = y for each alpha, K (n, n) float64, y (n, t).

    A strongly diagonally dominant K + alpha I (large gamma: off-diagonal row sums below 1% of the
    diagonal) is solved by Jacobi iteration to float64 accuracy, a few matrix products instead of a
    factorisation; otherwise by `solver` ("cholesky": one factorisation per alpha, "eigh": one for all).
    """
    row_sums = kernel.abs().sum(dim=1)
    diag = kernel.diagonal()
    if float(((row_sums - diag.abs()) / (diag + alphas.min())).max()) <= _JACOBI_MAX_RATIO and float(diag.min()) > 0:
        solved = _jacobi(kernel, alphas, y, float(row_sums.max()))
        if solved is not None:
            return solved
    if solver == "eigh":
        values, vectors = torch.linalg.eigh(kernel)
        projected = vectors.T @ y
        return torch.matmul(vectors, projected[None] / (values[None, :, None] + alphas[:, None, None]))
    out = torch.empty(len(alphas), kernel.shape[0], y.shape[1], dtype=kernel.dtype, device=kernel.device)
    for i, alpha in enumerate(alphas.tolist()):
        out[i] = _cholesky_solve(kernel, alpha, y)
    return out


def _cholesky_solve(kernel: torch.Tensor, alpha: float, y: torch.Tensor) -> torch.Tensor:
    """(K + alpha I)^-1 y by a Cholesky factorisation (least squares if K + alpha I is not positive definite).
    The diagonal is shifted in place and restored, so no copy of K is made."""
    diagonal = kernel.diagonal().clone()
    kernel.diagonal().add_(alpha)
    try:
        # the upper factor of a row-major matrix is LAPACK's lower one in place: about 15% faster on a CPU
        upper, info = torch.linalg.cholesky_ex(kernel, upper=True)
        if int(info) != 0:
            return torch.linalg.lstsq(kernel, y).solution
        return torch.linalg.solve_triangular(upper, torch.linalg.solve_triangular(upper.mT, y, upper=False), upper=True)
    finally:
        kernel.diagonal().copy_(diagonal)


def _jacobi(kernel: torch.Tensor, alphas: torch.Tensor, y: torch.Tensor, norm_inf: float,
            max_iter: int = 50) -> torch.Tensor | None:
    """Jacobi iteration for (K + alpha I) x = y, all alphas at once (one matrix product per sweep), until every
    ||r||_inf <= sqrt(n) eps ||K + alpha I||_inf ||x||_inf; (A, n, t), or None if one stalls."""
    n, t = y.shape
    a = alphas[:, None, None]
    diag = kernel.diagonal()[None, :, None] + a
    bound = math.sqrt(n) * torch.finfo(torch.float64).eps * (norm_inf + alphas)
    x = y[None] / diag
    for _ in range(max_iter):
        product = (kernel @ x.transpose(0, 1).reshape(n, -1)).view(n, -1, t).transpose(0, 1)
        r = y[None] - product - a * x
        if bool((r.abs().amax(dim=(1, 2)) <= bound * x.abs().amax(dim=(1, 2))).all()):
            return x
        x += r / diag
    return None


def rbf_kernels(sq_dist: torch.Tensor, gammas: Sequence[float]) -> Iterator[torch.Tensor]:
    """exp(-gamma * sq_dist) for each gamma in turn. When a gamma is a whole multiple r <= 16 of the one
    before (a log grid of decades), the kernel is the previous one to the power r, by repeated squaring:
    a few multiplications instead of an exp, within a few float64 ulps of it."""
    previous, previous_gamma = None, None
    for gamma in gammas:
        ratio = gamma / previous_gamma if previous is not None else 0.0
        whole = round(ratio)
        if previous is not None and 2 <= whole <= 16 and abs(ratio - whole) <= 1e-12 * whole:
            kernel = _whole_power(previous, whole)
        else:
            kernel = torch.exp(-gamma * sq_dist)
        yield kernel
        previous, previous_gamma = kernel, gamma


def _whole_power(base: torch.Tensor, exponent: int) -> torch.Tensor:
    result = None
    while exponent:
        if exponent & 1:
            result = base.clone() if result is None else result.mul_(base)
        exponent >>= 1
        if exponent:
            base = base * base
    return result


@dataclass(frozen=True)
class KernelRidgeResult:
    """CV R^2 of every output over the (alpha, gamma) grid, the pair each output chose, and its test R^2.

    fold_scores (F, A, G, T) and its mean / std over folds cv_mean, cv_std (A, G, T); best_index
    (T, 2): each output's (alpha, gamma) grid indices, the first best of its cv_mean in alpha-major
    order (as sklearn's GridSearchCV picks), and best_alpha, best_gamma (T,) their values. With test
    data, test_r2_per_output (T,) holds each output's test R^2 after refitting with its own pair, and
    test_r2 their mean.
    """

    alphas: np.ndarray
    gammas: np.ndarray
    fold_scores: np.ndarray
    cv_mean: np.ndarray
    cv_std: np.ndarray
    best_index: np.ndarray
    standardized_targets: bool
    test_r2_per_output: np.ndarray | None = None
    test_r2: float | None = None
    solver: str = "cholesky"

    @property
    def best_alpha(self) -> np.ndarray:
        """(T,) the alpha each output chose."""
        return self.alphas[self.best_index[:, 0]]

    @property
    def best_gamma(self) -> np.ndarray:
        """(T,) the gamma each output chose."""
        return self.gammas[self.best_index[:, 1]]

    @property
    def best_cv_mean(self) -> np.ndarray:
        """(T,) each output's mean CV R^2 at its chosen pair."""
        return self.cv_mean[self.best_index[:, 0], self.best_index[:, 1], np.arange(self.best_index.shape[0])]


# fit on (train features, train targets), predict the evaluation rows: (A, G, m, t) for every (alpha, gamma)
GridPredictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def grid_predictions(x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor, alphas: torch.Tensor,
                     gammas: torch.Tensor, solver: str = "auto") -> torch.Tensor:
    """Predictions (A, G, m, t) for x_eval (m, d) of RBF kernel ridge fit on x_train (n, d), y_train (n, t), float64.

    One kernel per gamma serves every alpha and every output; `solver` as in `krr_dual_coef` ("auto"
    picks by the number of alphas).
    """
    method = choose_solver(len(alphas), solver)
    alphas = alphas.to(device=x_train.device, dtype=torch.float64)
    out = torch.empty(len(alphas), len(gammas), x_eval.shape[0], y_train.shape[1], dtype=torch.float64, device=x_train.device)
    pairs = zip(rbf_kernels(squared_distances(x_train, x_train), gammas.tolist()),
                rbf_kernels(squared_distances(x_eval, x_train), gammas.tolist()))
    for j, (k_train, k_eval) in enumerate(pairs):
        out[:, j] = torch.matmul(k_eval, krr_dual_coef(k_train, y_train, alphas, method))
    return out


def kernel_ridge_cv(features: Any, targets: Any, alphas: Sequence[float] = DEFAULT_ALPHAS, gammas: Sequence[float] = DEFAULT_GAMMAS,
                    folds: int | Sequence[tuple[Sequence[int], Sequence[int]]] = 5, seed: int = 0, shuffle: bool = True,
                    test_features: Any = None, test_targets: Any = None, standardize_features: bool = True,
                    standardize_targets: bool = False, solver: str = "auto", backend: str = "torch",
                    device: str | torch.device | None = None) -> KernelRidgeResult:
    """RBF kernel ridge (sklearn KernelRidge, no intercept) with (alpha, gamma) chosen per output by k-fold CV on
    that output's R^2, then each output refit on all training data with its own pair.

    features (n, d), targets (n,) or (n, t); the result is what one GridSearchCV of
    make_pipeline(StandardScaler(), KernelRidge(kernel="rbf")) per target column gives on the same folds.
    Features are standardised (mean, std ddof 0, 1 for constant columns) with statistics of each fold's
    training part, and of all training data for the refit; targets likewise only when standardize_targets
    (recorded in the result). Every output shares one kernel per (fold, gamma) and one factorisation per
    (fold, gamma, alpha). solver: "auto", "cholesky" (one factorisation per alpha) or "eigh" (one per gamma);
    backend "cuml" fits cuML's KernelRidge once per setting instead.
    """
    if solver not in ("auto", "cholesky", "eigh"):
        raise KernelInputError(f"unknown solver {solver!r}; choose 'auto', 'cholesky' or 'eigh'")
    if backend not in ("torch", "cuml"):
        raise KernelInputError(f"kernel_ridge_cv has no backend {backend!r}; choose 'torch' or 'cuml'")
    if (test_features is None) != (test_targets is None):
        raise KernelInputError("pass both test_features and test_targets, or neither")
    alpha_t, gamma_t = check_grid("alphas", alphas), check_grid("gammas", gammas)
    dev = resolve_device(device, features)
    x = as_matrix("features", features, dev, torch.float64)
    y = as_matrix("targets", targets, dev, torch.float64)
    check_rows("features", x, "targets", y)
    if test_features is not None:
        xt = as_matrix("test_features", test_features, dev, torch.float64)
        yt = as_matrix("test_targets", test_targets, dev, torch.float64)
        check_same_width("test_features", xt, "features", x)
        check_rows("test_features", xt, "test_targets", yt)
        check_same_width("test_targets", yt, "targets", y)
    splits = kfold_splits(x.shape[0], folds, seed, shuffle=shuffle)
    if backend == "torch":
        method = choose_solver(len(alpha_t), solver)
        predict: GridPredictor = lambda *args: grid_predictions(*args, solver=method)  # noqa: E731
    else:
        method = backend
        predict = require_backend(backend, f"kernel_ridge_cv(backend={backend!r})").krr_grid_predictions
    scaled = (standardize_features, standardize_targets)
    scores = torch.empty(len(splits), len(alpha_t), len(gamma_t), y.shape[1], dtype=torch.float64, device=dev)
    for f, (train, val) in enumerate(splits):
        train, val = train.to(dev), val.to(dev)
        scores[f] = r2_per_output(_fit_predict(predict, x[train], y[train], x[val], alpha_t, gamma_t, *scaled), y[val])
    cv_mean, cv_std = summarise(scores)
    flat = cv_mean.reshape(-1, y.shape[1]).argmax(axis=0)
    best = np.stack(np.unravel_index(flat, cv_mean.shape[:2]), axis=1)
    result = KernelRidgeResult(alpha_t.numpy(), gamma_t.numpy(), scores.cpu().numpy(), cv_mean, cv_std, best,
                               standardize_targets, solver=method)
    if test_features is None:
        return result
    pred = torch.empty_like(yt)
    for g in np.unique(best[:, 1]):
        outputs = np.flatnonzero(best[:, 1] == g)
        chosen, position = np.unique(best[outputs, 0], return_inverse=True)
        cols = torch.as_tensor(outputs, device=dev)
        grid = _fit_predict(predict, x, y[:, cols], xt, alpha_t[torch.as_tensor(chosen)], gamma_t[g:g + 1], *scaled)[:, 0]
        pred[:, cols] = grid[torch.as_tensor(position, device=dev), :, torch.arange(len(outputs), device=dev)].T
    per_output = r2_per_output(pred, yt)
    return replace(result, test_r2_per_output=per_output.cpu().numpy(), test_r2=float(per_output.mean()))


def _fit_predict(predict: GridPredictor, x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor, alphas: torch.Tensor,
                 gammas: torch.Tensor, standardize_features: bool, standardize_targets: bool) -> torch.Tensor:
    """Grid predictions (A, G, m, t) for x_eval in target units, the scalers fit on (x, y) alone."""
    x_mean, x_scale = _standardizer(x, standardize_features)
    y_mean, y_scale = _standardizer(y, standardize_targets)
    pred = predict((x - x_mean) / x_scale, (y - y_mean) / y_scale, (x_eval - x_mean) / x_scale, alphas, gammas)
    return pred * y_scale + y_mean


def _standardizer(x: torch.Tensor, enabled: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and scale as sklearn's StandardScaler (std with ddof 0; 1 for a column whose variance is within
    float64 rounding of zero), or (0, 1) when disabled."""
    if not enabled:
        return torch.zeros_like(x[0]), torch.ones_like(x[0])
    mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)
    n, eps = x.shape[0], torch.finfo(torch.float64).eps
    constant = var <= n * eps * var + (n * eps * mean) ** 2
    return mean, torch.where(constant, torch.ones_like(var), var.sqrt())
