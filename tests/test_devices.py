"""fastinv.devices: --device parsing ('auto' and friends) and the kernel settings of a run."""
import os

import pytest
import torch

from fastinv.devices import CUBLAS_WORKSPACE, kernel_settings, parse_device
from fastinv.errors import UsageError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="covers a machine without CUDA")


@no_cuda
def test_auto_is_the_cpu_without_cuda():
    assert parse_device("auto") == torch.device("cpu")


def test_cpu_and_the_best_device_parse():
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("text,message", [
    ("gpu0", "unknown device"),
    ("cuda:x", "unknown device"),
    ("meta", "no meta device"),
    pytest.param("cuda", "CUDA is not available", marks=no_cuda),
    pytest.param("cuda:1", "CUDA is not available", marks=no_cuda),
])
def test_unknown_or_absent_devices_are_one_line_usage_errors(text, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_device(text, flag="--device")
    assert str(info.value).startswith(f"--device {text}") or str(info.value).startswith(f"--device {text!r}")
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_without_an_index_is_the_local_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count() - 1))
    assert parse_device("cuda") == torch.device("cuda", torch.cuda.device_count() - 1)
    assert parse_device("auto") == torch.device("cuda", torch.cuda.device_count() - 1)
    with pytest.raises(UsageError, match="CUDA device"):
        parse_device(f"cuda:{torch.cuda.device_count()}")


def _flags() -> tuple:
    cudnn = torch.backends.cudnn
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            cudnn.deterministic, cudnn.benchmark, os.environ.get(CUBLAS_WORKSPACE))


def test_deterministic_settings_hold_inside_and_are_restored_after_an_error(monkeypatch):
    monkeypatch.delenv(CUBLAS_WORKSPACE, raising=False)
    before = _flags()
    with pytest.raises(RuntimeError, match="inside"):
        with kernel_settings(torch.device("cuda"), deterministic=True):
            assert _flags() == (True, False, True, False, ":4096:8")
            raise RuntimeError("inside")
    assert _flags() == before


def test_a_deterministic_cublas_setting_already_there_is_kept(monkeypatch):
    monkeypatch.setenv(CUBLAS_WORKSPACE, ":16:8")
    with kernel_settings(torch.device("cpu"), deterministic=True):
        assert os.environ[CUBLAS_WORKSPACE] == ":16:8"
    assert os.environ[CUBLAS_WORKSPACE] == ":16:8"


@pytest.mark.parametrize("device,benchmark", [("cuda", True), ("cpu", False)])
def test_training_on_cuda_autotunes_cudnn_and_restores_it(device, benchmark, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    with kernel_settings(torch.device(device), deterministic=False):
        assert torch.backends.cudnn.benchmark is benchmark
        assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark is False


def test_auto_precision_is_bf16_only_where_the_cpu_runs_it_natively() -> None:
    import torch
    from fastinv.devices import amp_dtype, native_bf16
    assert native_bf16("cpu") == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert amp_dtype("auto", "cpu") == (torch.bfloat16 if native_bf16("cpu") else None)
    assert amp_dtype("fp16", "cpu") == torch.float16 and amp_dtype("none", "cpu") is None
    with pytest.raises(ValueError, match="amp must be one of auto, bf16, fp16, none"):
        amp_dtype("fp8", "cpu")
