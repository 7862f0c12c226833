"""Optional accelerated backends, imported only when asked for; a missing one raises MissingExtraError."""
from __future__ import annotations

import importlib
from types import ModuleType

from fastinv.errors import MissingExtraError

from ._validate import KernelInputError

# backend name -> (module holding our adapter, third-party modules it needs)
_BACKENDS = {
    "faiss": ("fastinv.kernels.backend_faiss", ("faiss",)),
    "cuml": ("fastinv.kernels.backend_cuml", ("cupy", "cuml")),
}


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
