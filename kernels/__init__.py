"""Device math on tensors: statistics, distances and whole-grid solvers.

Every public function takes numpy arrays or torch tensors, computes on `device` (default: where the input
lives, else the CPU) and returns a small dataclass or a tensor. Bad input raises KernelInputError, a
ValueError and a fastinv DataError, with a message that says how to fix it.
"""
from ._validate import KernelInputError
from .backends import available_backends
from .cv import kfold_splits
from .distances import GroupScores, group_pairwise, mahalanobis, whiten, whitened_cosine
from .kernel_ridge import DEFAULT_ALPHAS, DEFAULT_GAMMAS, KernelRidgeResult, kernel_ridge_cv
from .knn import KnnResult, knn_classify, knn_leave_one_out
from .metrics import accuracy, mean_per_class_accuracy, r2_per_output, r2_score
from .probe import DEFAULT_WD_GRID, ProbeResult, linear_probe
from .significance import HoeffdingResult, hoeffding_threshold, hoeffding_winner
from .stats import ReferenceStats, RunningMoments, ledoit_wolf, reference_stats, whitening_matrix

__all__ = [
    "DEFAULT_ALPHAS", "DEFAULT_GAMMAS", "DEFAULT_WD_GRID", "GroupScores", "HoeffdingResult", "KernelInputError",
    "KernelRidgeResult", "KnnResult", "ProbeResult", "ReferenceStats", "RunningMoments", "accuracy",
    "available_backends", "group_pairwise", "hoeffding_threshold", "hoeffding_winner", "kernel_ridge_cv",
    "kfold_splits", "knn_classify", "knn_leave_one_out", "ledoit_wolf", "linear_probe", "mahalanobis", "mean_per_class_accuracy",
    "r2_per_output", "r2_score", "reference_stats", "whiten", "whitened_cosine", "whitening_matrix",
]
