"""Run monitoring: JSON-lines metrics, TensorBoard scalars, a progress bar, throughput and the
fraction of time spent waiting for data, and the non-finite-loss stop."""
import json
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fastinv.errors import FastinvError

METRICS_NAME = "metrics.jsonl"


class NonFiniteLossError(FastinvError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 1


class Throughput:
    """Images per second and the share of wall time spent waiting for the loader, per window."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._wait = 0.0
        self._images = 0

    def add(self, images: int, wait_s: float) -> None:
        """Count a step of `images` (global) that waited `wait_s` seconds for its batch."""
        self._images += images
        self._wait += wait_s

    def window(self) -> dict[str, float]:
        """{'img_per_s', 'data_wait'} since the last call, then start a new window."""
        now = time.perf_counter()
        elapsed = max(now - self._start, 1e-9)
        out = {"img_per_s": self._images / elapsed, "data_wait": self._wait / elapsed}
        self._start, self._wait, self._images = now, 0.0, 0
        return out


class Monitor:
    """Writes records to out/metrics.jsonl and TensorBoard (out/tb), and drives a tqdm bar; all
    are no-ops when `enabled` is False (ranks other than 0)."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, progress: bool, total: int, initial: int):
        self.enabled = enabled
        self._jsonl = open(out / METRICS_NAME, "a", encoding="utf-8") if enabled else None
        self._tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(out / "tb"))
        self._bar = tqdm(total=total, initial=initial, disable=not (enabled and progress), unit="step",
                         dynamic_ncols=True)

    def advance(self, steps: int = 1) -> None:
        """Move the progress bar."""
        self._bar.update(steps)

    def log(self, step: int, record: dict[str, Any]) -> None:
        """Append `record` (plus the step) to the JSONL file, numeric fields to TensorBoard."""
        if not self.enabled:
            return
        row = {"step": step, **record}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        for key, value in record.items():
            if self._tb is not None and isinstance(value, (int, float)) and key != "epoch":
                self._tb.add_scalar(f"train/{key}", value, step)
        shown = {k: f"{v:.4g}" for k, v in record.items() if k in ("loss", "lr", "img_per_s", "knn_top1")}
        self._bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        """Flush and close files."""
        self._bar.close()
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """The records a run wrote to out/metrics.jsonl, in order."""
    path = Path(out) / METRICS_NAME
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
