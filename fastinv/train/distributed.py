"""torch.distributed set-up (torchrun environment) and the collectives MoCo needs."""
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from fastinv.devices import parse_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes checkpoints and logs."""
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT) with NCCL on CUDA and gloo otherwise; a single process needs no group.
    `device` is read by fastinv.devices.parse_device: 'auto' or 'cuda' picks cuda:LOCAL_RANK on a
    CUDA machine."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = parse_device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(minutes=10),
                                device_id=target if target.type == "cuda" else None)
    return DistInfo(rank, world_size, local_rank, target)


def shutdown_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0, in rank order (no gradient)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of `value` over ranks (a copy; the input is unchanged)."""
    out = value.detach().clone()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(out)
        out /= dist.get_world_size()
    return out


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if dist.is_initialized():
        dist.barrier()
