"""RBF kernel ridge regression over an (alpha, gamma) grid: shared squared distances, per-gamma solves for all alphas."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ._validate import KernelInputError, as_matrix, check_grid, check_rows, check_same_width, resolve_device
from .backends import require_backend
from .cv import kfold_splits, summarise
from .metrics import r2_per_output, r2_score

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
    """CV R^2 over the (alpha, gamma) grid (A, G), the chosen pair, the refit model and its test R^2 per output."""

    alphas: np.ndarray
    gammas: np.ndarray
    fold_scores: np.ndarray
    cv_mean: np.ndarray
    cv_std: np.ndarray
    best_alpha: float
    best_gamma: float
    standardized_targets: bool
    test_r2_per_output: np.ndarray | None = None
    test_r2: float | None = None
    solver: str = "cholesky"


def kernel_ridge_cv(features: Any, targets: Any, alphas: Sequence[float] = DEFAULT_ALPHAS, gammas: Sequence[float] = DEFAULT_GAMMAS,
                    folds: int | Sequence[tuple[Sequence[int], Sequence[int]]] = 5, seed: int = 0, shuffle: bool = True,
                    test_features: Any = None, test_targets: Any = None, standardize_features: bool = True,
                    standardize_targets: bool = False, solver: str = "auto", backend: str = "torch",
                    device: str | torch.device | None = None) -> KernelRidgeResult:
    """RBF kernel ridge (sklearn KernelRidge, no intercept) with k-fold CV on mean R^2 over outputs, refit on all train.

    features (n, d), targets (n,) or (n, t). Features are standardised with training statistics (as the
    reference did); targets only when standardize_targets (recorded in the result; R^2 is unchanged by
    it, the fitted function is not). solver: "auto", "cholesky" (one factorisation per alpha) or "eigh".
    """
    if solver not in ("auto", "cholesky", "eigh"):
        raise KernelInputError(f"unknown solver {solver!r}; choose 'auto', 'cholesky' or 'eigh'")
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
    x_mean, x_scale = _standardizer(x, standardize_features)
    y_mean, y_scale = _standardizer(y, standardize_targets)
    xs, ys = (x - x_mean) / x_scale, (y - y_mean) / y_scale
    if backend != "torch":
        module = require_backend(backend, f"kernel_ridge_cv(backend={backend!r})")
        return module.kernel_ridge_cv(xs, ys, alpha_t, gamma_t, splits, standardize_targets,
                                      None if test_features is None else ((xt - x_mean) / x_scale, yt, y_mean, y_scale))
    method = choose_solver(len(alpha_t), solver)
    alphas_dev = alpha_t.to(dev)
    dist = squared_distances(xs, xs)
    scores = torch.empty(len(splits), len(alpha_t), len(gamma_t), dtype=torch.float64, device=dev)
    for f, (train, val) in enumerate(splits):
        train, val = train.to(dev), val.to(dev)
        d_tt, d_vt = dist[train][:, train], dist[val][:, train]
        pairs = zip(rbf_kernels(d_tt, gamma_t.tolist()), rbf_kernels(d_vt, gamma_t.tolist()))
        for j, (k_tt, k_vt) in enumerate(pairs):
            coef = krr_dual_coef(k_tt, ys[train], alphas_dev, method)
            scores[f, :, j] = r2_score(torch.matmul(k_vt, coef), ys[val])
    cv_mean, cv_std = summarise(scores)
    a, g = np.unravel_index(int(np.argmax(cv_mean)), cv_mean.shape)
    result = KernelRidgeResult(alpha_t.numpy(), gamma_t.numpy(), scores.cpu().numpy(), cv_mean, cv_std, float(alpha_t[a]),
                               float(gamma_t[g]), standardize_targets, solver=method)
    if test_features is None:
        return result
    coef = krr_dual_coef(torch.exp(-result.best_gamma * dist), ys, alphas_dev[a:a + 1], method)[0]
    pred = torch.exp(-result.best_gamma * squared_distances((xt - x_mean) / x_scale, xs)) @ coef * y_scale + y_mean
    per_output = r2_per_output(pred, yt)
    return replace(result, test_r2_per_output=per_output.cpu().numpy(), test_r2=float(per_output.mean()))


def _standardizer(x: torch.Tensor, enabled: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and scale (std, ddof 0; 1 for constant columns) as StandardScaler, or (0, 1) when disabled."""
    if not enabled:
        return torch.zeros_like(x[0]), torch.ones_like(x[0])
    std = x.std(dim=0, unbiased=False)
    return x.mean(dim=0), torch.where(std > 0, std, torch.ones_like(std))
