"""Optional accelerated backends, imported only when asked for; a missing one raises MissingExtraError.

`cupy_adapter` resolves `backend="auto"` for the distance kernels from `CUPY_FASTER_FROM_ROWS`,
a table of measurements: auto picks cupy only for an operation recorded there as faster than
torch on CUDA. The table is filled from the `cupy_distances` step of benchmarks/device_check.sh;
until a device check has recorded a speed-up it stays empty and auto means torch everywhere.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

import torch

from fastinv.errors import MissingExtraError

from ._validate import KernelInputError

# backend name -> (module holding our adapter, third-party modules it needs)
_BACKENDS = {
    "faiss": ("fastinv.kernels.backend_faiss", ("faiss",)),
    "cuml": ("fastinv.kernels.backend_cuml", ("cupy", "cuml")),
    "cupy": ("fastinv.kernels.backend_cupy", ("cupy",)),
}
DISTANCE_BACKENDS = ("auto", "torch", "cupy")

# operation -> the number of rows from which the cupy kernel was measured faster than torch on
# CUDA (float32). No measurement recorded yet, so backend="auto" means torch for every operation.
CUPY_FASTER_FROM_ROWS: dict[str, int] = {}


def available_backends() -> list[str]:
    """Names accepted by `backend=` besides the default 'torch'."""
    return sorted(_BACKENDS)


def require_backend(name: str, what: str) -> ModuleType:
    """Import and return the adapter module of backend `name`, or raise MissingExtraError naming the 'gpu' extra."""
    if name not in _BACKENDS:
        raise KernelInputError(f"unknown backend {name!r}; choose 'torch' or one of {available_backends()}")
    adapter, needs = _BACKENDS[name]
    for module in needs:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingExtraError(what, "gpu", exc) from exc
    return importlib.import_module(adapter)


def cupy_adapter(backend: str, op: str, device: torch.device, rows: int, dtype: torch.dtype) -> ModuleType | None:
    """The cupy adapter module if distance operation `op` on `rows` rows of `dtype` on `device`
    runs on cupy, None if on torch: `backend` 'torch' or 'cupy' as asked, 'auto' cupy only where
    CUPY_FASTER_FROM_ROWS records it faster (float32 on CUDA, cupy installed). Asking for cupy
    raises MissingExtraError without cupy, and KernelInputError off CUDA or in another dtype."""
    if backend not in DISTANCE_BACKENDS:
        raise KernelInputError(f"unknown backend {backend!r} for {op}; choose one of {', '.join(DISTANCE_BACKENDS)}")
    if backend == "auto":
        threshold = CUPY_FASTER_FROM_ROWS.get(op)
        measured = threshold is not None and rows >= threshold and importlib.util.find_spec("cupy") is not None
        backend = "cupy" if measured and device.type == "cuda" and dtype == torch.float32 else "torch"
    if backend == "torch":
        return None
    adapter = require_backend("cupy", f"{op}(backend='cupy')")
    if device.type != "cuda" or dtype != torch.float32:
        raise KernelInputError(f"{op}(backend='cupy') runs in float32 on CUDA, got {dtype} on {device}; pass "
                               "CUDA tensors (or device='cuda') and dtype=torch.float32, or use backend='torch'")
    return adapter
