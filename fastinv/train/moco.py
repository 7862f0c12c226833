"""MoCo-v2 (He et al. 2020; Chen et al. 2020): query/key encoders, the key queue, the loss.

Names follow the reference code: encoder_q, encoder_k, buffers `queue` (dim, K) and
`queue_ptr`, so `state_dict()` is the reference layout without its `module.` prefix.
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn

from fastinv.train.config import QUEUE_INITS
from fastinv.train.distributed import concat_all_gather

SHUFFLES = ("none", "local", "ranks")


class QueryEncoder(nn.Module):
    """Runs the query encoder on each view separately (each view is its own BN batch) and returns
    L2-normalised embeddings; one forward call per step, so DDP sees each parameter once."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, 3, H, W) views -> (B, dim) unit-norm embeddings, one per view."""
        return tuple(F.normalize(self.encoder(v), dim=1) for v in views)


class MoCo(nn.Module):
    """The MoCo state: query encoder (trained), key encoder (momentum copy), queue of keys.

    K: queue length; T: softmax temperature; shuffle: how keys avoid the BN shortcut - 'ranks'
    (shuffle-BN across processes), 'local' (shuffle within the device batch, for split BN) or
    'none' (SyncBN / plain BN). queue_init: 'empty' leaves slots no key has written yet out of
    the loss; 'random' counts the reference code's random unit vectors as negatives from step 0.
    Those fake negatives are orthogonal to every query, so until the queue has filled the loss
    only rewards pulling queries together: on short runs over similar images (the synthetic
    world) that collapses the embedding within a few steps, and it never recovers."""

    def __init__(self, encoder_q: nn.Module, dim: int, K: int = 65536, T: float = 0.2, shuffle: str = "local",
                 seed: int = 0, queue_init: str = "empty"):
        super().__init__()
        if shuffle not in SHUFFLES:
            raise ValueError(f"shuffle must be one of {SHUFFLES}, got {shuffle!r}")
        if queue_init not in QUEUE_INITS:
            raise ValueError(f"queue_init must be one of {QUEUE_INITS}, got {queue_init!r}")
        self.K, self.T, self.shuffle, self.seed = K, T, shuffle, seed
        self.encoder_q = encoder_q
        self.encoder_k = copy.deepcopy(encoder_q)
        self.encoder_k.requires_grad_(False)
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("queue", F.normalize(torch.randn(dim, K, generator=generator), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("queue_filled", torch.full((1,), K if queue_init == "random" else 0, dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        """encoder_k <- m * encoder_k + (1 - m) * encoder_q, over parameters."""
        k_params = list(self.encoder_k.parameters())
        q_params = [p.detach() for p in self.encoder_q.parameters()]
        torch._foreach_lerp_(k_params, q_params, 1.0 - m)

    @torch.no_grad()
    def encode_keys(self, views: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Key embeddings for each view: (this rank's keys, all ranks' keys in rank order).
        The shuffle permutation is drawn from (seed, step), identical on every rank."""
        local, gathered = [], []
        for i, view in enumerate(views):
            if self.shuffle == "ranks":
                k_local, k_all = self._keys_shuffled_across_ranks(view, step * len(views) + i)
            else:
                k_local = self._keys_shuffled_locally(view, step * len(views) + i)
                k_all = concat_all_gather(k_local)
            local.append(k_local)
            gathered.append(k_all)
        return local, gathered

    def _permutation(self, n: int, draw: int, device: torch.device) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + draw)
        return torch.randperm(n, generator=generator).to(device, non_blocking=True)

    def _keys_shuffled_locally(self, view: torch.Tensor, draw: int) -> torch.Tensor:
        if self.shuffle == "none":
            return F.normalize(self.encoder_k(view), dim=1)
        perm = self._permutation(view.shape[0], draw, view.device)
        keys = F.normalize(self.encoder_k(view[perm]), dim=1)
        return torch.empty_like(keys).index_copy_(0, perm, keys)

    def _keys_shuffled_across_ranks(self, view: torch.Tensor, draw: int) -> tuple[torch.Tensor, torch.Tensor]:
        everything = concat_all_gather(view)
        n, b = everything.shape[0], view.shape[0]
        rank = (torch.distributed.get_rank() if torch.distributed.is_initialized() else 0)
        perm = self._permutation(n, draw, view.device)
        mine = perm[rank * b:(rank + 1) * b]
        keys = F.normalize(self.encoder_k(everything[mine]), dim=1)
        shuffled = concat_all_gather(keys)
        unshuffled = torch.empty_like(shuffled).index_copy_(0, perm, shuffled)
        return unshuffled[rank * b:(rank + 1) * b], unshuffled

    def contrastive_loss(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """InfoNCE of unit-norm queries q (B, dim) against their keys k (B, dim) and the filled
        queue slots, computed in float32 (call outside autocast)."""
        q, k = q.float(), k.float()
        l_pos = (q * k).sum(dim=1, keepdim=True)
        unfilled = torch.arange(self.K, device=q.device) >= self.queue_filled
        l_neg = (q @ self.queue).masked_fill(unfilled, float("-inf"))
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, labels)

    def pair_loss(self, queries: tuple[torch.Tensor, ...], keys: list[torch.Tensor]) -> torch.Tensor:
        """The step's loss: view 1's queries against view 2's keys, or with two queries (the
        symmetric loss) the mean of both pairings."""
        if len(queries) == 1:
            return self.contrastive_loss(queries[0], keys[0])
        return 0.5 * (self.contrastive_loss(queries[0], keys[1]) + self.contrastive_loss(queries[1], keys[0]))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write gathered keys (n, dim) over the oldest queue entries; K must be a multiple of n.
        Stays on the device (no host sync)."""
        n = keys.shape[0]
        if self.K % n:
            raise ValueError(f"queue length K={self.K} is not a multiple of the {n} keys enqueued per step")
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % self.K
        self.queue.index_copy_(1, idx, keys.to(self.queue.dtype).T)
        self.queue_ptr.copy_((self.queue_ptr + n) % self.K)
        self.queue_filled.clamp_(max=self.K - n).add_(n)
