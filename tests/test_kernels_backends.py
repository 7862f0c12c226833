"""Backend selection of the distance kernels (torch, cupy, auto), the cupy kernels against torch
on CUDA, the torch within-group distances under any chunking, and faiss-gpu resources."""
import importlib.util

import numpy as np
import pytest
import torch

from fastinv.errors import MissingExtraError
from fastinv.kernels import KernelInputError, group_pairwise, mahalanobis, reference_stats, whitened_cosine
from fastinv.kernels.backends import CUPY_FASTER_FROM_ROWS, cupy_adapter

HAS_CUPY = importlib.util.find_spec("cupy") is not None
needs_cupy_on_cuda = pytest.mark.skipif(not (HAS_CUPY and torch.cuda.is_available()),
                                        reason="needs cupy (the 'gpu' extra) and a CUDA device")
OPS = ("mahalanobis", "whitened_cosine", "group_pairwise")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    stats = reference_stats(rng.normal(size=(400, 12)) * rng.uniform(0.5, 2, 12))
    x = rng.normal(size=(60, 12)).astype(np.float32)
    groups = np.repeat(np.arange(9), [2, 3, 4, 5, 6, 7, 8, 9, 16])
    return stats, x, x + 0.1 * rng.normal(size=x.shape).astype(np.float32), groups


@pytest.mark.parametrize("op", OPS)
def test_auto_means_torch_until_cupy_is_measured_faster(op):
    assert CUPY_FASTER_FROM_ROWS == {}  # nothing measured yet: see benchmarks/device_check.py, step cupy
    for device in ("cpu", "cuda"):
        assert cupy_adapter("auto", op, torch.device(device), 10**7, torch.float32) is None


def test_auto_follows_the_measured_table(monkeypatch):
    monkeypatch.setitem(CUPY_FASTER_FROM_ROWS, "mahalanobis", 1000)
    cuda = torch.device("cuda")
    assert cupy_adapter("auto", "mahalanobis", cuda, 999, torch.float32) is None
    assert cupy_adapter("auto", "mahalanobis", torch.device("cpu"), 10**6, torch.float32) is None
    assert cupy_adapter("auto", "mahalanobis", cuda, 10**6, torch.float64) is None
    if HAS_CUPY:
        assert cupy_adapter("auto", "mahalanobis", cuda, 1000, torch.float32) is not None
    else:
        assert cupy_adapter("auto", "mahalanobis", cuda, 1000, torch.float32) is None


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_torch_and_auto_give_the_same_values(backend, data):
    stats, x, y, groups = data
    torch.testing.assert_close(mahalanobis(x, y, stats, backend=backend), mahalanobis(x, y, stats))
    torch.testing.assert_close(whitened_cosine(x, y, stats, backend=backend), whitened_cosine(x, y, stats))
    chosen, default = group_pairwise(x, groups, stats, backend=backend), group_pairwise(x, groups, stats)
    assert chosen.mean_distance == default.mean_distance


def test_unknown_backend_is_refused(data):
    stats, x, y, _ = data
    with pytest.raises(KernelInputError, match="unknown backend 'numba'"):
        mahalanobis(x, y, stats, backend="numba")


@pytest.mark.skipif(HAS_CUPY, reason="covers a machine without cupy")
def test_cupy_without_the_extra_is_one_line_naming_it(data):
    stats, x, y, _ = data
    with pytest.raises(MissingExtraError, match=r"whitened_cosine\(backend='cupy'\) needs the 'gpu' extra") as info:
        whitened_cosine(x, y, stats, backend="cupy")
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.skipif(not HAS_CUPY, reason="needs cupy (the 'gpu' extra)")
def test_cupy_off_cuda_is_refused(data):
    stats, x, y, _ = data
    with pytest.raises(KernelInputError, match="runs in float32 on CUDA"):
        mahalanobis(x, y, stats, backend="cupy", device="cpu")


@needs_cupy_on_cuda
def test_cupy_distances_equal_torch_on_cuda(data):
    stats, x, y, groups = data
    x, y = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    for fn in (mahalanobis, whitened_cosine):
        torch.testing.assert_close(fn(x, y, stats, backend="cupy"), fn(x, y, stats, backend="torch"),
                                   rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(whitened_cosine(x, x, stats, backend="cupy"), torch.ones(60, device="cuda"))
    got = group_pairwise(x, groups, stats, backend="cupy")
    ref = group_pairwise(x, groups, stats, backend="torch")
    torch.testing.assert_close(got.distance, ref.distance, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(got.similarity, ref.similarity)


@needs_cupy_on_cuda
def test_cupy_kernels_follow_torch_streams(data):
    stats, x, y, _ = data
    x, y = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        got = mahalanobis(x, y, stats, backend="cupy")
    side.synchronize()
    torch.testing.assert_close(got, mahalanobis(x, y, stats, backend="torch"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("max_pairs", [1, 30, 200, 10**9])
def test_within_group_distances_do_not_depend_on_chunking(max_pairs, data):
    stats, x, _, groups = data
    shuffled = np.random.default_rng(1).permutation(len(groups))
    ref = group_pairwise(x, groups, stats, max_pairs=10**9)
    got = group_pairwise(x[shuffled], groups[shuffled], stats, max_pairs=max_pairs)
    torch.testing.assert_close(got.distance, ref.distance, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(got.similarity, ref.similarity, rtol=1e-6, atol=1e-9)
    assert list(got.sizes) == [2, 3, 4, 5, 6, 7, 8, 9, 16]


@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("faiss") is None,
                    reason="needs faiss-gpu and a CUDA device")
def test_faiss_gpu_resources_are_built_once_per_device():
    import faiss
    if not hasattr(faiss, "StandardGpuResources"):
        pytest.skip("faiss is the CPU build")
    from fastinv.kernels.backend_faiss import gpu_resources, search_inner_product
    train, query = torch.randn(50, 8, device="cuda"), torch.randn(5, 8, device="cuda")
    for _ in range(3):
        sims, idx = search_inner_product(train, query, 4)
    assert gpu_resources.cache_info().currsize == 1 and gpu_resources(torch.cuda.current_device()) is gpu_resources(
        torch.cuda.current_device())
    torch.testing.assert_close(sims, (query @ train.T).topk(4, dim=1).values, rtol=1e-4, atol=1e-4)
