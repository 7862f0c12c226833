"""cupy adapter (the 'gpu' extra): fused CUDA kernels for the reductions of the distance kernels.

The whitening matmuls stay in torch (cuBLAS either way); what cupy replaces is everything after
them: one kernel per call where torch launches one per elementwise op and reduction, and for
`group_pairwise` one launch over every group of a ragged dataset (segment offsets) instead of a
batch of padded distance matrices per group size. Tensors cross in both directions through
DLPack without a copy: the kernels read torch's memory and write into outputs torch allocated,
on torch's current stream, so nothing waits for the device and nothing runs out of order.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import cupy
import numpy as np
import torch

_WARP = 32
_BLOCK = 256  # threads per block: 8 warps
_MAX_PAIR_BLOCKS = 1024  # blocks per group along grid y (each takes every 8 * 1024-th pair)

_SOURCE = r"""
__device__ __forceinline__ float warp_sum(float value) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    }
    return value;
}

// out[r] = ||z[r]||: one warp per row.
extern "C" __global__ void row_norms(const float* z, const long long n, const int d, float* out) {
    const int lane = threadIdx.x & 31;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= n) {
        return;  // the whole warp leaves together
    }
    const float* a = z + row * d;
    float sum = 0.0f;
    for (int k = lane; k < d; k += 32) {
        sum += a[k] * a[k];
    }
    sum = warp_sum(sum);
    if (lane == 0) {
        out[row] = sqrtf(sum);
    }
}

// out[r] = cos(u[r], v[r]) as 1 - ||u/|u| - v/|v|||^2 / 2, clamped to [-1, 1]; norms floored at
// 1e-12 as torch.nn.functional.normalize does. One warp per row.
extern "C" __global__ void unit_cosines(const float* u, const float* v, const long long n, const int d,
                                        float* out) {
    const int lane = threadIdx.x & 31;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= n) {
        return;
    }
    const float* a = u + row * d;
    const float* b = v + row * d;
    float aa = 0.0f, bb = 0.0f;
    for (int k = lane; k < d; k += 32) {
        aa += a[k] * a[k];
        bb += b[k] * b[k];
    }
    const float na = fmaxf(sqrtf(warp_sum(aa)), 1e-12f);
    const float nb = fmaxf(sqrtf(warp_sum(bb)), 1e-12f);
    float gap = 0.0f;
    for (int k = lane; k < d; k += 32) {
        const float t = a[k] / na - b[k] / nb;
        gap += t * t;
    }
    gap = warp_sum(gap);
    if (lane == 0) {
        out[row] = fminf(fmaxf(1.0f - 0.5f * gap, -1.0f), 1.0f);
    }
}

// partial[g * gridDim.y + blockIdx.y] = sum of ||z[rows[i]] - z[rows[j]]|| over the pairs
// i < j of group g (rows[offsets[g]] .. rows[offsets[g + 1] - 1]) that fall to this block: the
// pairs of a group are numbered p = i * m + j, and warp w of block y takes p = (y * W + w),
// (y * W + w) + gridDim.y * W, ... One warp per pair, lanes split the features; distances are
// summed in double. Every group of the dataset in one launch (grid x = groups).
extern "C" __global__ void group_distance_sums(const float* z, const long long* rows,
                                               const long long* offsets, const int d, double* partial) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    const long long start = offsets[blockIdx.x];
    const long long m = offsets[blockIdx.x + 1] - start;
    double total = 0.0;
    for (long long p = (long long)blockIdx.y * warps + warp; p < m * m; p += (long long)gridDim.y * warps) {
        const long long i = p / m;
        const long long j = p - i * m;
        if (j <= i) {
            continue;  // the whole warp skips together
        }
        const float* a = z + rows[start + i] * d;
        const float* b = z + rows[start + j] * d;
        float sum = 0.0f;
        for (int k = lane; k < d; k += 32) {
            const float t = a[k] - b[k];
            sum += t * t;
        }
        sum = warp_sum(sum);
        total += sqrt((double)sum);
    }
    __shared__ double per_warp[32];
    if (lane == 0) {
        per_warp[warp] = total;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double block_total = 0.0;
        for (int w = 0; w < warps; ++w) {
            block_total += per_warp[w];
        }
        partial[(long long)blockIdx.x * gridDim.y + blockIdx.y] = block_total;
    }
}
"""


@functools.lru_cache(maxsize=None)
def _module() -> cupy.RawModule:
    return cupy.RawModule(code=_SOURCE)


@contextlib.contextmanager
def _torch_stream(device: torch.device) -> Iterator[None]:
    """Run cupy on `device` and on torch's current stream there (the CUDA stream protocol: cupy
    >= 14, torch >= 2.10)."""
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(stream.device_index), cupy.cuda.Stream.from_external(stream):
        yield


def _cp(tensor: torch.Tensor) -> cupy.ndarray:
    return cupy.from_dlpack(tensor.detach())


def _row_blocks(n: int) -> tuple[int]:
    return (-(-n // (_BLOCK // _WARP)),)


def row_norms(z: torch.Tensor) -> torch.Tensor:
    """||z_r|| for each row of a float32 CUDA matrix (n, d): (n,) float32."""
    z = z.contiguous()
    out = torch.empty(z.shape[0], dtype=torch.float32, device=z.device)
    with _torch_stream(z.device):
        _module().get_function("row_norms")(_row_blocks(z.shape[0]), (_BLOCK,),
                                            (_cp(z), np.int64(z.shape[0]), np.int32(z.shape[1]), _cp(out)))
    return out


def unit_cosines(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """cos(u_r, v_r) for each pair of rows of two float32 CUDA matrices (n, d), computed as
    1 - ||u_r/|u_r| - v_r/|v_r|||^2 / 2 and clamped to [-1, 1]: (n,) float32."""
    u, v = u.contiguous(), v.contiguous()
    out = torch.empty(u.shape[0], dtype=torch.float32, device=u.device)
    with _torch_stream(u.device):
        _module().get_function("unit_cosines")(_row_blocks(u.shape[0]), (_BLOCK,),
                                               (_cp(u), _cp(v), np.int64(u.shape[0]), np.int32(u.shape[1]),
                                                _cp(out)))
    return out


def group_distance_sums(z: torch.Tensor, rows: torch.Tensor, offsets: torch.Tensor, largest: int) -> torch.Tensor:
    """For each group g, the sum of Euclidean distances over its pairs of distinct members: the
    members are rows[offsets[g]:offsets[g + 1]] of the float32 CUDA matrix z (n, d); `largest`
    is the largest group size (it sets the launch). (groups,) float64, all groups in one launch."""
    z, rows, offsets = z.contiguous(), rows.contiguous(), offsets.contiguous()
    groups = offsets.shape[0] - 1
    per_group = -(-largest * largest // (_BLOCK // _WARP * _WARP))  # about 32 pairs per warp
    blocks_y = max(1, min(_MAX_PAIR_BLOCKS, per_group))
    partial = torch.empty(groups, blocks_y, dtype=torch.float64, device=z.device)
    with _torch_stream(z.device):
        _module().get_function("group_distance_sums")((groups, blocks_y), (_BLOCK,),
                                                      (_cp(z), _cp(rows), _cp(offsets), np.int32(z.shape[1]),
                                                       _cp(partial)))
    return partial.sum(dim=1)
