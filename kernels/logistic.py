"""Multinomial L2 logistic regression for a whole grid of penalties at once: batched, preconditioned L-BFGS.

Each grid value g solves sklearn's LogisticRegression(C = 1 / lam_g) problem
    min_W,b  sum_i logloss(x_i W + b, y_i) + lam_g / 2 ||W||^2      (intercept unpenalised),
written per sample (divided by n) as sklearn's lbfgs does. All grid values share the matrix products
(one (n, d) x (d, G*C) product per evaluation); each keeps its own L-BFGS memory, step and stopping test.
`logistic_grid` solves a third of the grid cold and starts the rest between their solved neighbours.
Features are expected centred and, ideally, in a principal-axes basis (`principal_axes`), where the
diagonal preconditioner 1 / (c * var_j + lam_g / n) is close to the inverse Hessian.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

_CURVATURE = 0.25  # typical p (1 - p) scale of the softmax Hessian, for the preconditioner
_ARMIJO = 1e-4
_MAX_HALVINGS = 12


@dataclass(frozen=True)
class LogisticPath:
    """Solutions for G grid values: weights (G, d, C), intercepts (G, C), final gradient norms (G,), iterations (G,)."""

    coef: torch.Tensor
    intercept: torch.Tensor
    grad_norm: torch.Tensor
    iterations: torch.Tensor
    tol: float

    @property
    def converged(self) -> torch.Tensor:
        """Which grid values reached the tolerance, (G,) bool."""
        return self.grad_norm <= self.tol


def principal_axes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean (d,), orthonormal axes V (d, d) and per-axis variances (d,) of x (n, d), for rotating logistic problems."""
    mean = x.mean(dim=0)
    xc = x - mean
    values, vectors = torch.linalg.eigh(xc.T @ xc / x.shape[0])
    return mean, vectors, values.clamp_min(0.0)


def _loss_grad(z: torch.Tensor, onehot: torch.Tensor, theta: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample objective (G,) and gradient (d+1, G, C) for parameters theta (d+1, G, C), last row = intercept."""
    n, d = z.shape
    g, c = theta.shape[1], theta.shape[2]
    weights = theta[:d]
    logits = (z @ weights.reshape(d, g * c)).view(n, g, c) + theta[d]
    lse = torch.logsumexp(logits, dim=2)
    fit = (lse.sum(dim=0) - torch.einsum("ngc,nc->g", logits, onehot)) / n
    loss = fit + 0.5 * lam / n * (weights * weights).sum(dim=(0, 2))
    resid = (torch.exp(logits - lse[:, :, None]) - onehot[:, None, :]) / n
    grad = torch.empty_like(theta)
    grad[:d] = (z.T @ resid.view(n, g * c)).view(d, g, c) + (lam / n)[None, :, None] * weights
    grad[d] = resid.sum(dim=0)
    return loss, grad


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=(0, 2))


def logistic_path(z: torch.Tensor, labels: torch.Tensor, n_classes: int, lam: torch.Tensor, variances: torch.Tensor,
                  tol: float = 1e-3, max_iter: int = 500, memory: int = 10,
                  init: tuple[torch.Tensor, torch.Tensor] | None = None) -> LogisticPath:
    """Solve all G problems (lam: (G,) penalties = 1/C) on centred features z (n, d) with labels 0..C-1.

    Stops each problem when the 2-norm of its per-sample gradient is <= tol (at least as strict as sklearn's
    max-abs test at the same tol) or after max_iter iterations. `variances` (d,) scale the preconditioner;
    `init` = (coef (G, d, C), intercept (G, C)) warm-starts every problem. A problem that finishes leaves
    the working set, so the cost of an iteration follows the number of problems still running.
    """
    n, d = z.shape
    g = lam.shape[0]
    dt, dev = z.dtype, z.device
    lam = lam.to(dev, dt)
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(dt)
    precond = torch.empty(d + 1, g, 1, dtype=dt, device=dev)
    precond[:d] = 1.0 / (_CURVATURE * variances.to(dev, dt)[:, None, None] + lam[None, :, None] / n)
    precond[d] = 1.0 / _CURVATURE
    theta = torch.zeros(d + 1, g, n_classes, dtype=dt, device=dev)
    if init is not None:
        theta[:d] = init[0].to(dev, dt).permute(1, 0, 2)
        theta[d] = init[1].to(dev, dt)
    loss, grad = _loss_grad(z, onehot, theta, lam)
    solution = torch.empty_like(theta)
    final_gnorm = torch.empty(g, dtype=dt, device=dev)
    final_iters = torch.zeros(g, dtype=torch.int64, device=dev)
    ids = torch.arange(g, device=dev)
    s_hist = torch.zeros(memory, d + 1, g, n_classes, dtype=dt, device=dev)
    y_hist = torch.zeros_like(s_hist)
    rho = torch.zeros(memory, g, dtype=dt, device=dev)
    gamma = torch.ones(g, dtype=dt, device=dev)
    iters = torch.zeros(g, dtype=torch.int64, device=dev)
    gnorm = grad.pow(2).sum(dim=(0, 2)).sqrt()
    stalled = torch.zeros(g, dtype=torch.bool, device=dev)
    stored = 0
    for it in range(max_iter + 1):
        finished = (gnorm <= tol) | stalled if it < max_iter else torch.ones_like(stalled)
        if bool(finished.any()):  # record finished problems and drop them from every piece of state
            done = ids[finished]
            solution[:, done], final_gnorm[done], final_iters[done] = theta[:, finished], gnorm[finished], iters[finished]
            keep = ~finished
            if not bool(keep.any()):
                break
            ids, lam, precond, theta, loss, grad = ids[keep], lam[keep], precond[:, keep], theta[:, keep], loss[keep], grad[:, keep]
            gnorm, iters, stalled, gamma, rho = gnorm[keep], iters[keep], stalled[keep], gamma[keep], rho[:, keep]
            s_hist, y_hist = s_hist[:, :, keep], y_hist[:, :, keep]
        g = ids.shape[0]
        # two-loop recursion, batched over grid values (a slot without a curvature pair has rho = 0)
        q = grad.clone()
        alpha = torch.zeros(memory, g, dtype=dt, device=dev)
        for k in range(stored - 1, max(-1, stored - memory - 1), -1):
            slot = k % memory
            alpha[slot] = rho[slot] * _dot(s_hist[slot], q)
            q -= alpha[slot][None, :, None] * y_hist[slot]
        r = gamma[None, :, None] * precond * q
        for k in range(max(0, stored - memory), stored):
            slot = k % memory
            beta = rho[slot] * _dot(y_hist[slot], r)
            r += (alpha[slot] - beta)[None, :, None] * s_hist[slot]
        direction = -r
        slope = _dot(grad, direction)
        uphill = slope >= 0
        if bool(uphill.any()):
            direction[:, uphill] = -(precond * grad)[:, uphill]
            slope = _dot(grad, direction)
        # batched backtracking (Armijo) line search
        step = torch.ones(g, dtype=dt, device=dev)
        pending = torch.arange(g, device=dev)
        new_theta, new_loss, new_grad = theta.clone(), loss.clone(), grad.clone()
        for _ in range(_MAX_HALVINGS):
            trial = theta[:, pending] + step[pending][None, :, None] * direction[:, pending]
            t_loss, t_grad = _loss_grad(z, onehot, trial, lam[pending])
            base = loss[pending]
            ok = t_loss <= base + _ARMIJO * step[pending] * slope[pending]
            # near the optimum float32 cannot resolve the Armijo decrease: accept a step that keeps the
            # objective within rounding noise and shrinks the gradient
            noise = 8 * torch.finfo(dt).eps * base.abs()
            shrinks = t_grad.pow(2).sum(dim=(0, 2)) < gnorm[pending] ** 2
            ok |= (t_loss <= base + noise) & shrinks
            accept = pending[ok]
            new_theta[:, accept], new_loss[accept], new_grad[:, accept] = trial[:, ok], t_loss[ok], t_grad[:, ok]
            pending = pending[~ok]
            if pending.numel() == 0:
                break
            step[pending] *= 0.5
        stalled[pending] = True
        moved = ~stalled
        s = new_theta - theta
        y = new_grad - grad
        sy = _dot(s, y)
        good = moved & (sy > 1e-10 * _dot(y, y).sqrt() * _dot(s, s).sqrt())
        slot = stored % memory
        s_hist[slot] = torch.where(good[None, :, None], s, 0.0)
        y_hist[slot] = torch.where(good[None, :, None], y, 0.0)
        rho[slot] = torch.where(good, 1.0 / sy.clamp_min(torch.finfo(dt).tiny), 0.0)
        gamma = torch.where(good, sy / _dot(y, precond * y).clamp_min(torch.finfo(dt).tiny), gamma)
        stored += 1
        theta, loss, grad = new_theta, new_loss, new_grad
        iters += moved.to(torch.int64)
        gnorm = grad.pow(2).sum(dim=(0, 2)).sqrt()
    return LogisticPath(solution[:d].permute(1, 0, 2).contiguous(), solution[d].contiguous(), final_gnorm, final_iters, tol)


def logistic_grid(z: torch.Tensor, labels: torch.Tensor, n_classes: int, lam: torch.Tensor, variances: torch.Tensor,
                  tol: float = 1e-3, max_iter: int = 500, stride: int = 3) -> LogisticPath:
    """Solve every grid value of lam (G,) on one training set: every `stride`-th value in penalty order (and
    the strongest) from zero, then the rest warm-started between their solved neighbours.

    A value between two solved ones starts from the interpolation of their solutions in log(lam), which is
    close to its own, so it needs a fraction of a cold start's iterations. Same problems and stopping
    test as `logistic_path`; only the starting points differ.
    """
    g = lam.shape[0]
    order = torch.argsort(lam.cpu())
    anchors = sorted(set(range(0, g, stride)) | {g - 1})
    rest = sorted(set(range(g)) - set(anchors))
    anchor_ids = order[anchors].to(lam.device)
    solved = logistic_path(z, labels, n_classes, lam[anchor_ids], variances, tol, max_iter)
    if not rest:
        return _scatter_paths(g, [(anchor_ids, solved)], tol)
    position = torch.tensor(rest, dtype=torch.float64)
    upper = torch.searchsorted(torch.tensor(anchors, dtype=torch.float64), position)
    log_lam = lam.detach().to("cpu", torch.float64)[order].log()
    a_pos, b_pos = torch.tensor(anchors)[upper - 1], torch.tensor(anchors)[upper]
    t = ((log_lam[rest] - log_lam[a_pos]) / (log_lam[b_pos] - log_lam[a_pos])).to(z.device, z.dtype)
    lo, hi = (upper - 1).to(z.device), upper.to(z.device)
    coef = solved.coef[lo] + t[:, None, None] * (solved.coef[hi] - solved.coef[lo])
    intercept = solved.intercept[lo] + t[:, None] * (solved.intercept[hi] - solved.intercept[lo])
    rest_ids = order[rest].to(lam.device)
    warm = logistic_path(z, labels, n_classes, lam[rest_ids], variances, tol, max_iter, init=(coef, intercept))
    return _scatter_paths(g, [(anchor_ids, solved), (rest_ids, warm)], tol)


def _scatter_paths(g: int, parts: list[tuple[torch.Tensor, LogisticPath]], tol: float) -> LogisticPath:
    """One LogisticPath over G grid values from solutions of disjoint subsets (grid indices, path)."""
    first = parts[0][1]
    coef = first.coef.new_empty((g, *first.coef.shape[1:]))
    intercept = first.intercept.new_empty((g, first.intercept.shape[1]))
    grad_norm, iterations = first.grad_norm.new_empty(g), first.iterations.new_empty(g)
    for ids, path in parts:
        coef[ids], intercept[ids], grad_norm[ids], iterations[ids] = path.coef, path.intercept, path.grad_norm, path.iterations
    return LogisticPath(coef, intercept, grad_norm, iterations, tol)


def logistic_decision(z: torch.Tensor, coef: torch.Tensor, intercept: torch.Tensor) -> torch.Tensor:
    """Class scores (G, m, C) of m centred feature rows z (m, d) under G solutions coef (G, d, C), intercept (G, C)."""
    return torch.matmul(z, coef) + intercept[:, None, :]
