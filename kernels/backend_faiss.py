"""faiss adapter: exact inner-product search (faiss-cpu, or faiss-gpu with its index on the GPU)."""
from __future__ import annotations

import functools

import faiss
import numpy as np
import torch


@functools.lru_cache(maxsize=None)
def gpu_resources(device_index: int) -> "faiss.StandardGpuResources":
    """The faiss-gpu resources (cuBLAS handle, streams, scratch memory) of one CUDA device,
    built on its first search and shared by every later one there."""
    return faiss.StandardGpuResources()


def search_inner_product(train: torch.Tensor, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest inner products (m, k) of each query row with the train rows, and their indices (m, k)."""
    index = faiss.IndexFlatIP(train.shape[1])
    if train.is_cuda and hasattr(faiss, "StandardGpuResources"):
        device_index = train.device.index if train.device.index is not None else torch.cuda.current_device()
        index = faiss.index_cpu_to_gpu(gpu_resources(device_index), device_index, index)
    index.add(np.ascontiguousarray(train.detach().cpu().numpy(), dtype=np.float32))
    sims, idx = index.search(np.ascontiguousarray(query.detach().cpu().numpy(), dtype=np.float32), k)
    return torch.from_numpy(sims).to(query.device), torch.from_numpy(idx).to(query.device)
