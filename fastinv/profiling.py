"""Stage timers and the report of `fastinv profile` (also used by benchmarks/device_check.py).

On CUDA a stage is timed with a pair of CUDA events recorded on the current stream around it
and read after one synchronisation at the end: the time the stream took from reaching the first
event to reaching the second (kernels of the stage plus any gap while the host was still
launching them). On the CPU, where ops run synchronously, a stage is the perf_counter interval
around it. Host-only work (reading files, waiting for a loader) is added with `add` as measured
by the caller. Warm-up is excluded by timing it with no timer or calling `reset` after it.
"""
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from fastinv.errors import UsageError

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


@dataclass(frozen=True)
class StageRow:
    """One timed stage: its group (stages of a group add up to a whole), total seconds, calls,
    and how the number was obtained."""

    name: str
    group: str
    seconds: float
    calls: int
    how: str

    @property
    def ms_per_call(self) -> float:
        """Mean milliseconds per call."""
        return 1000.0 * self.seconds / max(self.calls, 1)


@dataclass
class ProfileReport:
    """What `fastinv profile` measured: settings, stage rows, throughputs (name -> value) and notes."""

    mode: str
    device: str
    settings: dict[str, Any]
    stages: list[StageRow] = field(default_factory=list)
    rates: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_stages(self, timer: StageTimer, group: str, how: dict[str, str]) -> None:
        """Append the timer's stages under `group`, each described by `how[name]`."""
        for name, (seconds, calls) in timer.totals().items():
            self.stages.append(StageRow(name, group, seconds, calls, how[name]))

    def shares(self) -> dict[str, float]:
        """Each stage's fraction of its group's total seconds."""
        group_total: dict[str, float] = {}
        for row in self.stages:
            group_total[row.group] = group_total.get(row.group, 0.0) + row.seconds
        return {row.name: row.seconds / group_total[row.group] if group_total[row.group] > 0 else 0.0
                for row in self.stages}

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready primitives; stages keyed by name."""
        shares = self.shares()
        stages = {row.name: {**asdict(row), "ms_per_call": row.ms_per_call, "share": shares[row.name]}
                  for row in self.stages}
        for entry in stages.values():
            del entry["name"]
        return {"mode": self.mode, "device": self.device, "timer": _timer_name(self.device),
                "settings": self.settings, "stages": stages, "rates": self.rates, "notes": self.notes}


def _timer_name(device: str) -> str:
    return "cuda events" if torch.device(device).type == "cuda" else "perf_counter"


def _markdown(head: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if i in right else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return [line(head), rule, *(line(r) for r in rows)]


def format_table(report: ProfileReport) -> str:
    """Aligned Markdown tables: the stages (share = of the group's total), then the rates."""
    shares = report.shares()
    stages = [(r.group, r.name, str(r.calls), f"{r.seconds:.4f}", f"{r.ms_per_call:.3f}", f"{100 * shares[r.name]:.1f}%")
              for r in report.stages]
    lines = [f"profile {report.mode} on {report.device} ({_timer_name(report.device)}; warm-up excluded)"]
    lines += _markdown(("group", "stage", "calls", "total s", "ms/call", "share"), stages, {2, 3, 4, 5})
    if report.rates:
        lines += [""] + _markdown(("rate", "value"), [(k, f"{v:.1f}") for k, v in report.rates.items()], {1})
    return "\n".join(lines)


def write_json(report: ProfileReport, path: str | Path) -> Path:
    """Write the report as JSON to `path` (parent folders created); UsageError if not writable."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--json {target}: cannot write there ({exc.strerror or exc})") from None
    return target
