"""Hoeffding test with Bonferroni correction: is the best model significantly more invariant than every other?"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ._validate import KernelInputError


@dataclass(frozen=True)
class HoeffdingResult:
    """Outcome of the test: the leading model, whether it wins significantly, and the numbers behind it."""

    best: str
    significant: bool
    means: dict[str, float]
    margins: dict[str, float]
    threshold: float
    delta_per_test: float
    n: int

    @property
    def winner(self) -> str | None:
        """The best model when it beats every other significantly, else None."""
        return self.best if self.significant else None


def hoeffding_threshold(n: int, delta: float, value_range: float) -> float:
    """(b - a) sqrt(ln(1/delta) / (2n)): the smallest mean difference Hoeffding calls significant at level delta."""
    return value_range * math.sqrt(math.log(1.0 / delta) / (2.0 * n))


def hoeffding_winner(scores: Mapping[str, Any], delta: float = 0.05, bounds: tuple[float, float] = (-2.0, 2.0),
                     higher_is_better: bool = True) -> HoeffdingResult:
    """Test whether the best of m models beats each other one on paired per-image scores (m >= 2).

    `scores` maps model name -> (n,) per-image scores on the same images. `bounds` = [a, b] bounds each
    per-image difference (cosine similarity differences lie in [-2, 2]). Bonferroni: each of the m - 1
    comparisons of the best against another is run at delta / (m - 1).
    """
    if len(scores) < 2:
        raise KernelInputError(f"the test compares at least two models, got {len(scores)}")
    if not 0 < delta < 1:
        raise KernelInputError(f"delta must lie in (0, 1), got {delta}")
    if not bounds[1] > bounds[0]:
        raise KernelInputError(f"bounds must be (low, high) with high > low, got {bounds}")
    arrays = {name: (v.detach().to("cpu", torch.float64).numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float64)).reshape(-1)
              for name, v in scores.items()}
    lengths = {a.shape[0] for a in arrays.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise KernelInputError(f"every model needs scores on the same non-empty set of images, got lengths {sorted(lengths)}")
    if any(not np.isfinite(a).all() for a in arrays.values()):
        raise KernelInputError("scores contain NaN or infinite values; drop those images from every model")
    sign = 1.0 if higher_is_better else -1.0
    means = {name: float(a.mean()) for name, a in arrays.items()}
    best = max(means, key=lambda k: sign * means[k])
    n = lengths.pop()
    delta_each = delta / (len(arrays) - 1)
    threshold = hoeffding_threshold(n, delta_each, bounds[1] - bounds[0])
    margins = {name: float(sign * (arrays[best] - a).mean()) for name, a in arrays.items() if name != best}
    return HoeffdingResult(best, all(m > threshold for m in margins.values()), means, margins, threshold, delta_each, n)
