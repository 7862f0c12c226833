"""Stage timers: CUDA events on a GPU, perf_counter on the CPU.

On CUDA a stage is timed with a pair of CUDA events recorded on the current stream around it
and read after one synchronisation at the end: the time the stream took from reaching the first
event to reaching the second (kernels of the stage plus any gap while the host was still
launching them). On the CPU, where ops run synchronously, a stage is the perf_counter interval
around it. Host-only work (reading files, waiting for a loader) is added with `add` as measured
by the caller. Warm-up is excluded by timing it with no timer or calling `reset` after it.
"""
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """Accumulates seconds and calls per named stage, in first-seen order, on one device."""

    def __init__(self, device: str | torch.device):
        self.device = torch.device(device)
        self._seconds: dict[str, float] = {}
        self._calls: dict[str, int] = {}
        self._events: list[tuple[str, Any, Any]] = []

    @property
    def uses_cuda_events(self) -> bool:
        """True when stages are timed with CUDA events rather than perf_counter."""
        return self.device.type == "cuda"

    def _count(self, name: str, seconds: float) -> None:
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds
        self._calls[name] = self._calls.get(name, 0) + 1

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed code as one call of stage `name` (CUDA events or perf_counter)."""
        if self.uses_cuda_events:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._seconds.setdefault(name, 0.0)
            self._calls.setdefault(name, 0)
            self._events.append((name, start, end))
            return
        begin = time.perf_counter()
        yield
        self._count(name, time.perf_counter() - begin)

    def add(self, name: str, seconds: float) -> None:
        """Add one call of `seconds` measured on the host (e.g. waiting for the loader)."""
        self._count(name, seconds)

    def reset(self) -> None:
        """Forget everything timed so far (call after the warm-up)."""
        self._seconds.clear()
        self._calls.clear()
        self._events.clear()

    def totals(self) -> dict[str, tuple[float, int]]:
        """{stage: (seconds, calls)}; on CUDA this synchronises once and reads the events."""
        if self._events:
            synchronize(self.device)
            for name, start, end in self._events:
                self._count(name, start.elapsed_time(end) / 1000.0)
            self._events.clear()
        return {name: (self._seconds[name], self._calls[name]) for name in self._seconds}


def time_call(fn: Callable[[], T], device: str | torch.device) -> tuple[T, float]:
    """Run `fn` once and return (its result, seconds) - device work included (synchronised)."""
    dev = torch.device(device)
    synchronize(dev)
    begin = time.perf_counter()
    result = fn()
    synchronize(dev)
    return result, time.perf_counter() - begin
