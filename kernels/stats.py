"""Reference statistics: streaming mean/covariance, Ledoit-Wolf shrinkage and a whitening matrix W with W^T W = S^-1."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch

from ._validate import KernelInputError, as_matrix, resolve_device


class RunningMoments:
    """Streaming first and second moments of features, in float64, for sets larger than memory.

    Sums are kept about a shift (the first batch's mean) so large offsets do not cancel; they also carry
    what the Ledoit-Wolf estimate needs (sum of ||x||^4 and of ||x||^2 x), so no second pass is required.
    """

    def __init__(self, device: str | torch.device | None = None):
        self.device = None if device is None else torch.device(device)
        self.n = 0
        self._shift: torch.Tensor | None = None

    def update(self, batch: Any) -> "RunningMoments":
        """Add a (b, d) batch of features; returns self."""
        x = as_matrix("batch", batch, resolve_device(self.device, batch), torch.float64)
        if self._shift is None:
            self.device = x.device
            self._shift = x.mean(dim=0)
            d = x.shape[1]
            self._sum = torch.zeros(d, dtype=torch.float64, device=x.device)
            self._outer = torch.zeros(d, d, dtype=torch.float64, device=x.device)
            self._sq_x = torch.zeros(d, dtype=torch.float64, device=x.device)
            self._sq2 = torch.zeros((), dtype=torch.float64, device=x.device)
        elif x.shape[1] != self._shift.shape[0]:
            raise KernelInputError(f"batch has {x.shape[1]} features but earlier batches had {self._shift.shape[0]}")
        y = x.to(self._shift.device) - self._shift
        sq = (y * y).sum(dim=1)
        self.n += y.shape[0]
        self._sum += y.sum(dim=0)
        self._outer += y.T @ y
        self._sq_x += sq @ y
        self._sq2 += (sq * sq).sum()
        return self

    def mean(self) -> torch.Tensor:
        """Mean of all features seen, (d,) float64."""
        self._need(1)
        return self._shift + self._sum / self.n

    def scatter(self) -> torch.Tensor:
        """Centred scatter matrix sum_k (x_k - mean)(x_k - mean)^T, (d, d) float64."""
        self._need(1)
        m = self._sum / self.n
        return self._outer - self.n * torch.outer(m, m)

    def ledoit_wolf_shrinkage(self) -> float:
        """Ledoit-Wolf shrinkage coefficient, as sklearn.covariance.ledoit_wolf_shrinkage (empirical covariance / n)."""
        self._need(2)
        n, d = self.n, self._sum.shape[0]
        m = self._sum / n
        emp = self.scatter() / n
        mm = m @ m
        # sum_k ||y_k - m||^4 expanded in the accumulated sums (a = ||y||^2, b = y.m, c = ||m||^2)
        sum_b2 = m @ self._outer @ m
        sum_ab = self._sq_x @ m
        sum_a = self._outer.diagonal().sum()
        sum_b = self._sum @ m
        fourth = self._sq2 + 4 * sum_b2 + n * mm * mm - 4 * sum_ab + 2 * mm * sum_a - 4 * mm * sum_b
        trace = emp.diagonal().sum()
        mu = trace / d
        fro = (emp * emp).sum()
        beta = (fourth / n - fro) / (d * n)
        delta = (fro - 2 * mu * trace + d * mu * mu) / d
        beta = torch.minimum(beta, delta)
        return 0.0 if float(beta) <= 0 else float(beta / delta)

    _STATE = ("shift", "sum", "outer", "sq_x", "sq2")

    def state(self) -> dict[str, torch.Tensor]:
        """The accumulated sums as named float64 tensors (with the count), to store and restore them."""
        self._need(1)
        sums = (self._shift, self._sum, self._outer, self._sq_x, self._sq2)
        return {"n": torch.tensor(self.n, dtype=torch.int64), **dict(zip(self._STATE, sums))}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], device: str | torch.device | None = None) -> "RunningMoments":
        """Moments restored from `state()`, on `device` (default: where the tensors are)."""
        missing = sorted({"n", *cls._STATE} - set(state))
        if missing:
            raise KernelInputError(f"moment state lacks {', '.join(missing)}")
        moments = cls(device if device is not None else state["shift"].device)
        moments.n = int(state["n"])
        moments._shift, moments._sum, moments._outer, moments._sq_x, moments._sq2 = (
            state[name].to(moments.device, torch.float64) for name in cls._STATE)
        return moments

    def _need(self, k: int) -> None:
        if self.n < k:
            raise KernelInputError(f"reference statistics need at least {k} sample(s), got {self.n}; pass more features")


@dataclass(frozen=True)
class ReferenceStats:
    """Mean (d,), covariance (d, d) and whitening W (d, d) with W^T W = S^-1, and which estimate was used and why."""

    mean: torch.Tensor
    covariance: torch.Tensor
    whitening: torch.Tensor
    estimator: str
    reason: str
    shrinkage: float
    n: int
    d: int

    def to(self, device: str | torch.device, dtype: torch.dtype = torch.float32) -> "ReferenceStats":
        """A copy with the tensors on `device` in `dtype`."""
        move = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        return ReferenceStats(move(self.mean), move(self.covariance), move(self.whitening), self.estimator, self.reason,
                              self.shrinkage, self.n, self.d)


def ledoit_wolf(features: Any) -> tuple[torch.Tensor, float]:
    """Ledoit-Wolf shrunk covariance (d, d) float64 and its shrinkage, as sklearn.covariance.ledoit_wolf."""
    moments = RunningMoments().update(features)
    shrinkage = moments.ledoit_wolf_shrinkage()
    return _shrunk(moments.scatter() / moments.n, shrinkage), shrinkage


def _shrunk(emp: torch.Tensor, shrinkage: float) -> torch.Tensor:
    mu = emp.diagonal().mean()
    out = (1.0 - shrinkage) * emp
    out.diagonal().add_(shrinkage * mu)
    return out


def reference_stats(features: Any | RunningMoments | Iterable[Any], estimator: str = "auto", min_ratio: float = 10.0,
                    device: str | torch.device | None = None) -> ReferenceStats:
    """Mean, covariance and whitening of reference features: (n, d) array, an iterable of batches, or RunningMoments.

    estimator: "empirical" (sample covariance, 1/(n-1), inverted exactly as the reference did), "ledoit-wolf",
    or "auto" = empirical when n >= min_ratio * d, else Ledoit-Wolf (S would be singular or badly conditioned).
    """
    if isinstance(features, RunningMoments):
        moments = features
    elif isinstance(features, torch.Tensor) or hasattr(features, "__array__"):
        moments = RunningMoments(device).update(features)
    else:
        moments = RunningMoments(device)
        for batch in features:
            moments.update(batch)
    if estimator not in ("auto", "empirical", "ledoit-wolf"):
        raise KernelInputError(f"unknown estimator {estimator!r}; choose 'auto', 'empirical' or 'ledoit-wolf'")
    moments._need(2)
    n, d = moments.n, moments.mean().shape[0]
    if estimator == "auto":
        estimator = "empirical" if n >= min_ratio * d else "ledoit-wolf"
        reason = f"n={n} {'>=' if estimator == 'empirical' else '<'} {min_ratio:g} x d={d}"
    else:
        reason = "requested"
    if estimator == "empirical":
        cov, shrink = moments.scatter() / (n - 1), 0.0
    else:
        shrink = moments.ledoit_wolf_shrinkage()
        cov = _shrunk(moments.scatter() / n, shrink)
        reason += f"; shrinkage {shrink:.4g}"
    whitening, how = whitening_matrix(cov)
    return ReferenceStats(moments.mean(), cov, whitening, estimator, f"{reason}; whitening by {how}", shrink, n, d)


def whitening_matrix(cov: torch.Tensor) -> tuple[torch.Tensor, str]:
    """W (d, d) with W^T W = cov^-1: inverse Cholesky factor, or the eigen route (floored eigenvalues) when not positive definite."""
    cov64 = cov.to(torch.float64)
    factor, info = torch.linalg.cholesky_ex(cov64)
    if int(info) == 0:
        eye = torch.eye(cov64.shape[0], dtype=torch.float64, device=cov64.device)
        return torch.linalg.solve_triangular(factor, eye, upper=False), "Cholesky"
    values, vectors = torch.linalg.eigh(cov64)
    floor = values.max().clamp_min(torch.finfo(torch.float64).tiny) * cov64.shape[0] * torch.finfo(torch.float64).eps
    clipped = int((values < floor).sum())
    return (vectors / values.clamp_min(floor).sqrt()).T, f"eigendecomposition ({clipped} eigenvalue(s) floored: covariance is singular)"
