"""On-disk cache of feature matrices, keyed by everything that determines them.

Each entry is a safetensors file whose metadata repeats its key and a SHA-256 of the feature
bytes. An entry that is missing, truncated, unreadable or fails its checks is recomputed and
rewritten (atomically), never trusted.
"""
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fastinv.log import get_logger

log = get_logger(__name__)
CACHE_VERSION = "1"


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


class FeatureCache:
    """Feature matrices on disk under `root`, one file per key."""

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

    def _read(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
            features = load_file(str(path))["features"]
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
            log.warning("feature cache entry %s is unreadable (%s); recomputing", path, exc)
            return None
        if meta.get("key") != key or meta.get("sha256") != _digest(features):
            log.warning("feature cache entry %s fails its check; recomputing", path)
            return None
        return features

    def _write(self, key: str, features: torch.Tensor) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        cpu = features.detach().to("cpu", torch.float32).contiguous()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"features": cpu}, str(tmp), metadata={"key": key, "sha256": _digest(cpu)})
        os.replace(tmp, path)

    def get_or_compute(self, key: str, compute: Callable[[], torch.Tensor], device: str | torch.device) -> torch.Tensor:
        """Return the cached features for `key` on `device`, computing and storing them if needed."""
        cached = self._read(key)
        if cached is not None:
            self.hits += 1
            return cached.to(device)
        if self.path(key).exists():
            self.rebuilt += 1
        self.misses += 1
        features = compute()
        self._write(key, features)
        return features
