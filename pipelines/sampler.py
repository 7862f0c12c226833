"""Which samples each rank reads in each batch, and the seeds of each batch's random draws.

Order: a permutation of the dataset seeded by (seed, epoch) - the same on every rank - padded by
wrapping to a multiple of world_size, then rank r takes every world_size-th entry from r
(DistributedSampler's scheme). Batches are consecutive slices of the rank's share.
"""
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

_ORDER_STREAM = 0
_AUGMENT_STREAM = 1


def batch_seed(seed: int, epoch: int, rank: int, batch: int) -> int:
    """A 63-bit seed for the augmentation draws of one batch: depends on these four numbers only."""
    state = np.random.SeedSequence([_AUGMENT_STREAM, seed, epoch, rank, batch]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def batch_generator(seed: int, epoch: int, rank: int, batch: int) -> torch.Generator:
    """A CPU torch.Generator seeded by `batch_seed` (draws are made on the CPU, then moved)."""
    return torch.Generator().manual_seed(batch_seed(seed, epoch, rank, batch))


@lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng(np.random.SeedSequence([_ORDER_STREAM, seed, epoch])).permutation(n)


@dataclass(frozen=True)
class ShardedBatches:
    """The batches of one rank: n samples, sharded over world_size ranks, batch_size per batch."""

    n: int
    batch_size: int
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    shuffle: bool = True
    drop_last: bool = True

    def per_rank(self) -> int:
        """Samples each rank sees per epoch (the dataset is padded by wrapping to divide evenly)."""
        return -(-self.n // self.world_size)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        share = self.per_rank()
        return share // self.batch_size if self.drop_last else -(-share // self.batch_size)

    def rank_indices(self, epoch: int) -> np.ndarray:
        """Dataset indices this rank reads in `epoch`, in order."""
        total = self.per_rank() * self.world_size
        order = np.resize(_epoch_order(self.n, self.seed, epoch, self.shuffle), total)  # wraps, as DistributedSampler pads
        return order[self.rank::self.world_size]

    def batch(self, epoch: int, b: int) -> np.ndarray:
        """Dataset indices of batch `b` of `epoch` on this rank."""
        if not 0 <= b < len(self):
            raise IndexError(f"batch {b} out of range: this rank has {len(self)} batches per epoch")
        return self.rank_indices(epoch)[b * self.batch_size:(b + 1) * self.batch_size]
