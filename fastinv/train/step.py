"""The MoCo-v2 optimisation step and everything it touches (the `Engine`)."""
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fastinv.devices import amp_dtype
from fastinv.log import get_logger
from fastinv.models import build_resnet, feature_dim, mlp_head, norm_layer
from fastinv.train.config import TrainConfig
from fastinv.train.distributed import DistInfo
from fastinv.train.moco import MoCo, QueryEncoder
from fastinv.train.schedule import cosine_schedule

_log = get_logger(__name__)
_SHUFFLE_FOR_BN = {"shuffle": "ranks", "split": "local", "sync": "none", "plain": "none"}
# The stages of train_step, in order; data loading and the host-to-device copy come before them.
STEP_STAGES = ("forward_query", "momentum_update", "forward_keys_loss", "backward", "optimizer", "enqueue")


@dataclass
class Engine:
    """The model, optimiser, scaler and schedule of a run: what `train_step` needs."""

    moco: MoCo
    query: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    lr: np.ndarray
    m: float
    symmetric: bool
    clip_grad: float
    device: torch.device


def build_encoder(cfg: TrainConfig, world_size: int) -> nn.Module:
    """The query encoder: backbone with the MLP head as its fc, BN chosen for `world_size`."""
    bn = cfg.bn_mode(world_size)
    encoder = build_resnet(cfg.model.arch, norm_layer(bn, cfg.model.bn_splits))
    width = feature_dim(encoder)
    hidden = width if cfg.model.head_hidden is None else cfg.model.head_hidden
    encoder.fc = mlp_head(width, hidden, cfg.model.head_dim)
    if bn == "sync":
        encoder = nn.SyncBatchNorm.convert_sync_batchnorm(encoder)
    return encoder


def _sgd(params: list[nn.Parameter], cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    o = cfg.optim
    fused = device.type in ("cuda", "cpu")
    return torch.optim.SGD(params, lr=0.0, momentum=o.momentum, weight_decay=o.weight_decay,
                           fused=fused, foreach=None if fused else True)


def build_engine(cfg: TrainConfig, dist: DistInfo, steps_per_epoch: int) -> Engine:
    """Model (seeded), DDP wrapper, optional compile, fused SGD, GradScaler and lr schedule."""
    torch.manual_seed(cfg.run.seed)
    bn = cfg.bn_mode(dist.world_size)
    memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    encoder = build_encoder(cfg, dist.world_size).to(dist.device, memory_format=memory_format)
    moco = MoCo(encoder, cfg.model.head_dim, cfg.moco.K, cfg.moco.T, _SHUFFLE_FOR_BN[bn], cfg.run.seed,
                cfg.moco.queue_init)
    moco.to(dist.device)
    if cfg.run.compile:
        moco.encoder_q.compile()
        moco.encoder_k.compile()
    query: nn.Module = QueryEncoder(moco.encoder_q)
    if dist.world_size > 1:
        query = DistributedDataParallel(query, device_ids=[dist.device] if dist.device.type == "cuda" else None)
    dtype = amp_dtype(cfg.run.amp, dist.device)
    global_batch = cfg.data.batch_size
    lr = cosine_schedule(cfg.optim.base_lr(global_batch), 0.0, cfg.optim.epochs, steps_per_epoch,
                         cfg.optim.warmup_epochs)
    _log.info("MoCo-v2: %s, head %s, K=%d m=%g T=%g, bn %s, amp %s, lr %.4g (global batch %d)",
              cfg.model.arch, tuple(p.shape[0] for p in encoder.fc.parameters() if p.ndim == 2), cfg.moco.K,
              cfg.moco.m, cfg.moco.T, bn, dtype, lr.max(), global_batch)
    return Engine(moco=moco, query=query, optimizer=_sgd(list(moco.encoder_q.parameters()), cfg, dist.device),
                  scaler=torch.amp.GradScaler(dist.device.type, enabled=dtype == torch.float16),
                  amp_dtype=dtype, lr=lr, m=cfg.moco.m, symmetric=cfg.moco.symmetric,
                  clip_grad=cfg.optim.clip_grad, device=dist.device)


class StepTimer(Protocol):
    """What `train_step` times its stages with (e.g. fastinv.profiling.timing.StageTimer)."""

    def stage(self, name: str) -> AbstractContextManager[object]:
        """A context manager that times the enclosed code as one call of stage `name`."""


def _untimed(name: str) -> AbstractContextManager[object]:
    return nullcontext()


def train_step(engine: Engine, view1: torch.Tensor, view2: torch.Tensor, step: int,
               timer: StepTimer | None = None) -> torch.Tensor:
    """One MoCo-v2 step at global step `step`: queries, momentum update, keys, InfoNCE, the
    optimiser step (AMP order: scale, backward, unscale, clip, step, update), then enqueue.
    Returns the detached loss without synchronising the device. With a `timer`, each of
    STEP_STAGES runs under `timer.stage(name)`, in that order; the work is the same either way."""
    stage = _untimed if timer is None else timer.stage
    for group in engine.optimizer.param_groups:
        group["lr"] = float(engine.lr[step])
    moco = engine.moco
    autocast = dict(device_type=engine.device.type, dtype=engine.amp_dtype or torch.float32,
                    enabled=engine.amp_dtype is not None)
    with stage("forward_query"), torch.autocast(**autocast):
        queries = engine.query(view1, view2) if engine.symmetric else engine.query(view1)
    with stage("momentum_update"):
        moco.momentum_update(engine.m)
    with stage("forward_keys_loss"):
        with torch.autocast(**autocast):
            keys, gathered = moco.encode_keys([view1, view2] if engine.symmetric else [view2], step)
        loss = moco.pair_loss(queries, keys)
    with stage("backward"):
        engine.optimizer.zero_grad(set_to_none=True)
        engine.scaler.scale(loss).backward()
    with stage("optimizer"):
        if engine.clip_grad > 0:
            engine.scaler.unscale_(engine.optimizer)
            nn.utils.clip_grad_norm_(moco.encoder_q.parameters(), engine.clip_grad)
        engine.scaler.step(engine.optimizer)
        engine.scaler.update()
    with stage("enqueue"):
        moco.enqueue(torch.cat(gathered))
    return loss.detach()
