"""The device a command runs on (`--device`, with `auto` for the best one present) and the kernel
settings a training run puts on it for its duration.

torch is imported inside the functions, so command modules can import this one at start-up.
"""
import contextlib
import os
from collections.abc import Iterator

from fastinv.errors import UsageError

DEVICE_CHOICES = "auto (CUDA when present, else cpu), cpu, cuda or cuda:N"
AMP_MODES = ("auto", "bf16", "fp16", "none")
CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"
DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")


def parse_device(text: str, flag: str = "--device"):
    """The torch.device that `text` names: 'auto' is CUDA when a CUDA device is present, else the
    CPU; 'cuda' (or 'auto' on a CUDA machine) without an index is cuda:LOCAL_RANK under torchrun
    and cuda:0 otherwise. UsageError, one line naming `flag`, for an unknown name or a device
    this machine does not have."""
    import torch
    name = text
    if text == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"{flag} {text!r}: unknown device; use {DEVICE_CHOICES}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{flag} {text}: CUDA is not available here; use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is None:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % count)
        if device.index >= count:
            raise UsageError(f"{flag} {text}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return device
    module = torch.backends.mps if device.type == "mps" else getattr(torch, device.type, None)
    if not getattr(module, "is_available", lambda: False)():
        raise UsageError(f"{flag} {text}: no {device.type} device is available here; use {DEVICE_CHOICES}")
    return device


def native_bf16(device) -> bool:
    """Whether `device` runs bf16 convolutions and matmuls natively: CUDA, or a CPU whose oneDNN
    has bf16 kernels (AVX-512 BF16 or AMX). Elsewhere bf16 is emulated and several times slower
    than float32."""
    import torch
    device = torch.device(device)
    if device.type == "cuda":
        return True
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return device.type == "cpu" and probe is not None and bool(probe())


def amp_dtype(mode: str, device):
    """The autocast dtype of precision `mode` (one of AMP_MODES) on `device`, or None for full
    precision; 'auto' is bf16 where the device runs it natively (`native_bf16`), else none."""
    import torch
    if mode == "auto":
        mode = "bf16" if native_bf16(device) else "none"
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}
    if mode not in dtypes:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}; got {mode!r}")
    return dtypes[mode]


@contextlib.contextmanager
def kernel_settings(device, deterministic: bool) -> Iterator[None]:
    """Within the block: with `deterministic`, torch's deterministic algorithms, cuDNN's
    deterministic kernels without autotuning, and CUBLAS_WORKSPACE_CONFIG=:4096:8 (unless it
    already holds a deterministic value; cuBLAS reads it when first used, so enter this before
    any CUDA matmul); otherwise cuDNN autotuning (cudnn.benchmark) on CUDA, for the fixed shapes
    of a training step. Every setting, the environment variable included, is restored after."""
    import torch
    cudnn = torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             cudnn.deterministic, cudnn.benchmark, os.environ.get(CUBLAS_WORKSPACE))
    try:
        if deterministic:
            if os.environ.get(CUBLAS_WORKSPACE) not in DETERMINISTIC_CUBLAS:
                os.environ[CUBLAS_WORKSPACE] = DETERMINISTIC_CUBLAS[0]
            torch.use_deterministic_algorithms(True)
            cudnn.deterministic, cudnn.benchmark = True, False
        elif torch.device(device).type == "cuda":
            cudnn.benchmark = True
        yield
    finally:
        enabled, warn_only, cudnn.deterministic, cudnn.benchmark, workspace = saved
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        if workspace is None:
            os.environ.pop(CUBLAS_WORKSPACE, None)
        else:
            os.environ[CUBLAS_WORKSPACE] = workspace
