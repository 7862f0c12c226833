"""On-disk cache of feature matrices, keyed by everything that determines them.

Each entry is a safetensors file whose metadata repeats its key and a SHA-256 of the feature
bytes. An entry that is missing, truncated, unreadable or fails its checks is recomputed and
rewritten (atomically), never trusted.
"""
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from fastinv.files import atomic_write
from fastinv.log import get_logger

log = get_logger(__name__)
CACHE_VERSION = "2"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Feature matrices (and other named tensors) on disk under `root`, one file per key."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self.rebuilt = 0

    def key(self, **parts: str) -> str:
        """The cache key of a feature matrix described by named string parts."""
        text = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        """Where the entry for `key` lives."""
        return self.root / key[:2] / f"{key}.safetensors"

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        """The tensors stored under `key` (on the CPU), or None when absent or failing its checks.

        Counts a hit, or a miss (and a rebuild when an entry was there but unusable)."""
        path = self.path(key)
        tensors = self._read(path, key) if path.exists() else None
        if tensors is None:
            self.misses += 1
            self.rebuilt += int(path.exists())
        else:
            self.hits += 1
        return tensors

    def _read(self, path: Path, key: str) -> dict[str, torch.Tensor] | None:
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
            log.warning("feature cache entry %s is unreadable (%s); recomputing", path, exc)
            return None
        if meta.get("key") != key or meta.get("sha256") != _digest(tensors):
            log.warning("feature cache entry %s fails its check; recomputing", path)
            return None
        return tensors

    def store(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Write `tensors` under `key` atomically (a reader never sees a partial entry)."""
        cpu = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
        with atomic_write(self.path(key), durable=False) as handle:
            handle.write(save(cpu, metadata={"key": key, "sha256": _digest(cpu)}))

    def get_or_compute(self, key: str, compute: Callable[[], torch.Tensor], device: str | torch.device) -> torch.Tensor:
        """Return the cached features for `key` on `device`, computing and storing them if needed."""
        cached = self.load(key)
        if cached is not None and "features" in cached:
            return cached["features"].to(device)
        features = compute()
        self.store(key, {"features": features.float()})
        return features
