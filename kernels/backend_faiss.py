"""faiss adapter: exact inner-product search (faiss-cpu, or faiss-gpu with its index on the GPU)."""
from __future__ import annotations

import faiss
import numpy as np
import torch


def search_inner_product(train: torch.Tensor, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest inner products (m, k) of each query row with the train rows, and their indices (m, k)."""
    index = faiss.IndexFlatIP(train.shape[1])
    if train.is_cuda and hasattr(faiss, "StandardGpuResources"):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), train.device.index or 0, index)
    index.add(np.ascontiguousarray(train.detach().cpu().numpy(), dtype=np.float32))
    sims, idx = index.search(np.ascontiguousarray(query.detach().cpu().numpy(), dtype=np.float32), k)
    return torch.from_numpy(sims).to(query.device), torch.from_numpy(idx).to(query.device)
