"""Schedules as arrays indexed by the global step (DINO style)."""
import numpy as np


def cosine_schedule(base: float, final: float, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float = 0.0, warmup_start: float = 0.0) -> np.ndarray:
    """(epochs * steps_per_epoch,) values: a linear warm-up from warmup_start to base over
    warmup_epochs, then a half cosine from base down to final."""
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"cosine_schedule needs epochs and steps_per_epoch >= 1, got {epochs}, {steps_per_epoch}")
    total = epochs * steps_per_epoch
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total)
    ramp = np.linspace(warmup_start, base, warmup, endpoint=False)
    t = np.arange(total - warmup) / max(total - warmup, 1)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * t))
    return np.concatenate([ramp, cosine])
