"""Time fastinv.kernels against the paper's reference tools on the same data, in one run.

    python benchmarks/solvers.py            # the acceptance sizes (several minutes on 2 CPU cores)
    python benchmarks/solvers.py --quick    # small sizes, under a minute
    python benchmarks/solvers.py --only logistic krr --logistic-n 5000 --logistic-d 2048

Baselines: sklearn LogisticRegression (lbfgs, multinomial, max_iter 100, warm start along the 45 C values)
and Ridge in 5-fold CV; GridSearchCV(make_pipeline(StandardScaler(), KernelRidge(kernel="rbf"))) scored per target
(each target picks its own alpha and gamma); scipy.spatial.distance.mahalanobis.
Prints seconds, the speed-up (baseline / ours) and both scores.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import make_scorer, r2_score
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from fastinv.kernels import (DEFAULT_ALPHAS, DEFAULT_GAMMAS, DEFAULT_WD_GRID, kernel_ridge_cv, linear_probe, mahalanobis,
                             reference_stats)


def feature_like(n: int, d: int, latent: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative features (n, d) from a random ReLU map of `latent` factors, and the factors (n, latent)."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, latent))
    features = np.maximum(factors @ rng.normal(size=(latent, d)) / np.sqrt(latent) + 0.5 * rng.normal(size=(n, d)), 0)
    return features.astype(np.float32), factors


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_logistic(n: int, d: int, classes: int, folds: int, seed: int) -> tuple:
    x, factors = feature_like(n, d, 32, seed)
    y = (factors[:, :classes] + 0.8 * np.random.default_rng(seed + 1).normal(size=(n, classes))).argmax(1)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    ours, t_ours = timed(lambda: linear_probe(x, y, "classification", DEFAULT_WD_GRID, splits))

    def sklearn_protocol():
        scores = np.zeros((folds, len(DEFAULT_WD_GRID)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for f, (tr, va) in enumerate(splits):
                model = LogisticRegression(solver="lbfgs", max_iter=100, warm_start=True)
                for g, wd in enumerate(DEFAULT_WD_GRID):
                    scores[f, g] = model.set_params(C=1.0 / wd).fit(x[tr], y[tr]).score(x[va], y[va])
        return scores.mean(0)

    theirs, t_theirs = timed(sklearn_protocol)
    note = f"ours: {ours.solver_info['unconverged_fits']} of {folds * len(DEFAULT_WD_GRID)} fits above tol {ours.solver_info['tol']:g}"
    return (f"logistic 45 wd x {folds}-fold n={n} d={d} C={classes}", t_ours, t_theirs,
            f"{ours.cv_mean.max():.4f}", f"{theirs.max():.4f}", note)


def bench_ridge(n: int, d: int, targets: int, folds: int, seed: int) -> tuple:
    x, factors = feature_like(n, d, 32, seed)
    y = factors[:, :targets] + 0.3 * np.random.default_rng(seed + 2).normal(size=(n, targets))
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(x))
    ours, t_ours = timed(lambda: linear_probe(x, y, "regression", DEFAULT_WD_GRID, splits))

    def sklearn_protocol():
        return np.array([[Ridge(alpha=wd).fit(x[tr], y[tr]).score(x[va], y[va]) for wd in DEFAULT_WD_GRID]
                         for tr, va in splits]).mean(0)

    theirs, t_theirs = timed(sklearn_protocol)
    return (f"ridge 45 alpha x {folds}-fold n={n} d={d} t={targets}", t_ours, t_theirs,
            f"{ours.cv_mean.max():.4f}", f"{theirs.max():.4f}", "")


def bench_krr(n: int, d: int, targets: int, folds: int, seed: int) -> tuple:
    x, factors = feature_like(n, d, 16, seed)
    y = np.tanh(factors[:, :targets]) + 0.1 * np.random.default_rng(seed + 3).normal(size=(n, targets))
    splits = list(KFold(folds).split(x))
    ours, t_ours = timed(lambda: kernel_ridge_cv(x, y, folds=splits))
    # the reference protocol, one pipeline per target, at its cheapest: one multi-output fit per (fold, setting)
    # scored per target, so each target still picks its own pair
    scoring = {f"t{t}": make_scorer(lambda truth, pred, t=t: r2_score(truth[:, t], pred[:, t])) for t in range(targets)}
    grid = {"kernelridge__alpha": list(DEFAULT_ALPHAS), "kernelridge__gamma": list(DEFAULT_GAMMAS)}
    pipeline = make_pipeline(StandardScaler(), KernelRidge(kernel="rbf"))
    search, t_theirs = timed(lambda: GridSearchCV(pipeline, grid, scoring=scoring, refit=False, cv=splits).fit(x, y))
    means = np.stack([search.cv_results_[f"mean_test_t{t}"] for t in range(targets)], axis=1)
    flat = ours.best_index[:, 0] * len(DEFAULT_GAMMAS) + ours.best_index[:, 1]
    same = int((means.argmax(axis=0) == flat).sum())
    return (f"kernel ridge 5 alpha x 8 gamma x {folds}-fold per target n={n} d={d} t={targets}", t_ours, t_theirs,
            f"{ours.best_cv_mean.mean():.4f}", f"{means.max(axis=0).mean():.4f}",
            f"chosen pairs agree on {same} of {targets} targets; scores: mean over targets of the best CV R^2")


def bench_distances(n: int, d: int, seed: int) -> tuple:
    ref, _ = feature_like(4 * d, d, 32, seed)
    x, _ = feature_like(n, d, 32, seed + 1)
    y = x + 0.1 * np.random.default_rng(seed).normal(size=x.shape).astype(np.float32)
    stats = reference_stats(ref)
    ours, t_ours = timed(lambda: mahalanobis(x, y, stats))
    inverse = np.linalg.inv(stats.covariance.numpy())
    theirs, t_theirs = timed(lambda: np.array([scipy_mahalanobis(a, b, inverse) for a, b in zip(x, y)]))
    err = float(np.max(np.abs(ours.numpy() - theirs) / theirs))
    return (f"mahalanobis paired n={n} d={d} ({stats.estimator})", t_ours, t_theirs, f"{float(ours.mean()):.4f}",
            f"{theirs.mean():.4f}", f"max relative difference {err:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--only", nargs="+", choices=["logistic", "ridge", "krr", "distances"],
                        default=["logistic", "ridge", "krr", "distances"])
    parser.add_argument("--logistic-n", type=int, default=5000)
    parser.add_argument("--logistic-d", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--ridge-n", type=int, default=5000)
    parser.add_argument("--ridge-d", type=int, default=2048)
    parser.add_argument("--krr-n", type=int, default=2048)
    parser.add_argument("--krr-d", type=int, default=512)
    parser.add_argument("--dist-n", type=int, default=5000)
    parser.add_argument("--dist-d", type=int, default=2048)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch and for the BLAS under numpy/scipy/sklearn alike (default: library choice); "
                             "use 1 when other jobs share the machine, oversubscribed threads distort both sides")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    if args.quick:
        args.logistic_n, args.logistic_d, args.ridge_n, args.ridge_d = 1000, 256, 1000, 256
        args.krr_n, args.krr_d, args.dist_n, args.dist_d = 512, 64, 1000, 256
    runs = {
        "logistic": lambda: bench_logistic(args.logistic_n, args.logistic_d, args.classes, args.folds, args.seed),
        "ridge": lambda: bench_ridge(args.ridge_n, args.ridge_d, 10, args.folds, args.seed),
        "krr": lambda: bench_krr(args.krr_n, args.krr_d, 10, args.folds, args.seed),
        "distances": lambda: bench_distances(args.dist_n, args.dist_d, args.seed),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    header = f"| {'task':<58} | {'ours s':>8} | {'baseline s':>10} | {'speed-up':>8} | {'ours score':>10} | {'baseline score':>14} | note"
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:]))
    for name in args.only:
        task, t_ours, t_base, s_ours, s_base, note = runs[name]()
        print(f"| {task:<58} | {t_ours:8.2f} | {t_base:10.2f} | {t_base / t_ours:7.1f}x | {s_ours:>10} | {s_base:>14} | {note}",
              flush=True)


if __name__ == "__main__":
    main()
