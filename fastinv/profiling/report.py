"""What a profile measured: stage rows, rates and notes, printed as aligned tables or written as JSON."""
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastinv.errors import UsageError
from fastinv.files import atomic_write
from fastinv.profiling.timing import StageTimer


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
    """What `fastinv profile` measured: settings, stage rows, throughputs (name -> value) and notes;
    `summary` is one line printed above the table (not part of the JSON)."""

    mode: str
    device: str
    settings: dict[str, Any]
    stages: list[StageRow] = field(default_factory=list)
    rates: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    summary: str = ""

    def add_stages(self, timer: StageTimer, group: str, how: dict[str, str]) -> None:
        """Append the timer's stages under `group`, each described by `how[name]`."""
        for name, (seconds, calls) in timer.totals().items():
            self.stages.append(StageRow(name, group, seconds, calls, how[name]))

    def group_seconds(self, group: str) -> float:
        """Total seconds of the stages in `group`."""
        return sum(row.seconds for row in self.stages if row.group == group)

    def shares(self) -> dict[str, float]:
        """Each stage's fraction of its group's total seconds."""
        totals = {row.group: self.group_seconds(row.group) for row in self.stages}
        return {row.name: row.seconds / totals[row.group] if totals[row.group] > 0 else 0.0 for row in self.stages}

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
    return "cuda events" if device.startswith("cuda") else "perf_counter"


def _markdown(head: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if i in right else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return [line(head), rule, *(line(r) for r in rows)]


def format_table(report: ProfileReport) -> str:
    """The summary line (if any), then aligned Markdown tables: the stages (share = of the group's
    total) and the rates."""
    shares = report.shares()
    stages = [(r.group, r.name, str(r.calls), f"{r.seconds:.4f}", f"{r.ms_per_call:.3f}", f"{100 * shares[r.name]:.1f}%")
              for r in report.stages]
    lines = [report.summary] if report.summary else []
    lines.append(f"profile {report.mode} on {report.device} ({_timer_name(report.device)}; warm-up excluded)")
    lines += _markdown(("group", "stage", "calls", "total s", "ms/call", "share"), stages, {2, 3, 4, 5})
    if report.rates:
        lines += [""] + _markdown(("rate", "value"), [(k, f"{v:.1f}") for k, v in report.rates.items()], {1})
    return "\n".join(lines)


def write_json(report: ProfileReport, path: str | Path) -> Path:
    """Write the report as JSON to `path` (parent folders created); UsageError if not writable."""
    target = Path(path)
    try:
        with atomic_write(target, "w") as handle:
            handle.write(json.dumps(report.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"--json {target}: cannot write there ({exc.strerror or exc})") from None
    return target
