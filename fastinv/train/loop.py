"""`train(cfg)`: MoCo-v2 pre-training, read top to bottom in phases (DINO style):
processes -> data -> model/optimiser/schedule -> resume -> loop (steps, logs, checkpoints, kNN)."""
import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from fastinv.checkpoint import CHECKPOINT_NAME, find_checkpoint, load_checkpoint, remove_partial_writes, rng_state, \
    save_checkpoint, set_rng_state
from fastinv.devices import kernel_settings
from fastinv.errors import DataError, UsageError
from fastinv.eval.features import FeatureExtractor
from fastinv.kernels import knn_classify, knn_leave_one_out
from fastinv.log import get_logger
from fastinv.models import export_backbone
from fastinv.paths import writable_dir
from fastinv.train.config import TrainConfig, resume_mismatches
from fastinv.train.data import build_pretrain_loader, clean_images, timed_batches
from fastinv.train.distributed import DistInfo, all_reduce_mean, barrier, init_distributed, shutdown_distributed
from fastinv.train.monitor import Monitor, NonFiniteLossError, Throughput
from fastinv.train.step import Engine, build_engine, train_step

CHECKPOINT_FORMAT = "fastinv.moco"
BACKBONE_NAME = "backbone.safetensors"
_log = get_logger(__name__)


@dataclass(frozen=True)
class TrainSummary:
    """What a run did: global steps reached (of total), where its files are, last figures."""

    out: Path
    step: int
    total_steps: int
    checkpoint: Path
    backbone: Path | None
    last_loss: float | None
    knn_top1: float | None


def train(cfg: TrainConfig) -> TrainSummary:
    """Pre-train MoCo-v2 as configured; resumes from cfg.run.resume or out/checkpoint.pt.
    Under torchrun every process calls this; rank 0 writes the files. The kernel settings of the
    run (deterministic algorithms, cuDNN autotuning) hold only while it runs."""
    joined_here = not torch.distributed.is_initialized()
    dist = init_distributed(cfg.run.device)
    try:
        with kernel_settings(dist.device, cfg.run.deterministic):
            return _train(cfg, dist)
    finally:
        if joined_here:
            shutdown_distributed()


def _train(cfg: TrainConfig, dist: DistInfo) -> TrainSummary:
    # -- processes and settings ----------------------------------------------------------------
    cfg.validate(dist.world_size)
    out = writable_dir(cfg.run.out)
    resume_from = _read_resume(cfg, out)  # a bad checkpoint fails here, before any work

    # -- data ----------------------------------------------------------------------------------
    loader = build_pretrain_loader(cfg, dist)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise UsageError(f"--data {cfg.data.root}: fewer images per process than the batch "
                         f"({cfg.data.batch_size // dist.world_size}); lower --batch-size")
    images = steps_per_epoch * cfg.data.batch_size
    if cfg.moco.K > images and dist.is_main:
        _log.warning("--queue-size %d exceeds the %d images of an epoch: the queue will hold older keys of a "
                     "query's own image as negatives; choose K below %d", cfg.moco.K, images, images)
    knn_sets = _knn_sets(cfg) if cfg.run.knn_every and dist.is_main else None

    # -- model, loss, optimiser, schedule --------------------------------------------------------
    engine = build_engine(cfg, dist, steps_per_epoch)
    total = cfg.optim.epochs * steps_per_epoch
    stop = min(total, cfg.run.max_steps or total)

    # -- resume ---------------------------------------------------------------------------------
    ckpt_path = out / CHECKPOINT_NAME
    if dist.is_main:
        for stale in remove_partial_writes(out):
            _log.info("removed %s, left by an interrupted checkpoint write", stale)
    step = _restore(engine, *resume_from) if resume_from is not None else 0
    saved_step = step

    # -- loop -----------------------------------------------------------------------------------
    monitor = Monitor(out, dist.is_main, cfg.run.tensorboard, cfg.run.progress, stop, step)
    throughput = Throughput()
    nonfinite = torch.zeros((), device=dist.device)
    loss_sum, window, last_loss, last_knn = torch.zeros((), device=dist.device), 0, None, None
    try:
        if knn_sets is not None and step == 0:  # the random-init baseline the trained features should beat
            last_knn = _knn_accuracy(engine, knn_sets, cfg)
            monitor.log(step, {"epoch": 0, "knn_top1": last_knn})
        while step < stop:
            epoch, first = divmod(step, steps_per_epoch)
            loader.set_epoch(epoch)
            loader.start_at(first)
            for batch, wait_s in timed_batches(loader, dist.device, cfg.run.channels_last,
                                               cfg.data.batch_size // dist.world_size):
                loss = train_step(engine, batch.view1, batch.view2, step)
                step += 1
                nonfinite += (~torch.isfinite(loss)).float()
                loss_sum += torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0)
                window += 1
                throughput.add(cfg.data.batch_size, wait_s)
                monitor.advance()
                epoch_end = step % steps_per_epoch == 0
                due_ckpt = step % cfg.run.ckpt_every == 0 or epoch_end or step == stop
                if due_ckpt or step % cfg.run.log_every == 0:
                    _stop_if_nonfinite(nonfinite, step, ckpt_path, saved_step)
                    last_loss = float(all_reduce_mean(loss_sum)) / window
                    monitor.log(step, {"epoch": epoch, "loss": last_loss, "lr": float(engine.lr[step - 1]),
                                       **throughput.window()})
                    loss_sum.zero_()
                    window = 0
                if epoch_end and knn_sets is not None and (epoch + 1) % cfg.run.knn_every == 0:
                    last_knn = _knn_accuracy(engine, knn_sets, cfg)
                    monitor.log(step, {"epoch": epoch, "knn_top1": last_knn})
                if due_ckpt:
                    if dist.is_main:
                        save_checkpoint(_checkpoint_state(cfg, engine, step, steps_per_epoch), ckpt_path)
                    saved_step = step
                if step == stop:
                    break
    finally:
        monitor.close()
    backbone = out / BACKBONE_NAME if step == total else None
    if backbone is not None and dist.is_main:
        export_backbone(engine.moco.encoder_q, backbone)
    barrier()
    return TrainSummary(out, step, total, ckpt_path, backbone, last_loss, last_knn)


def _stop_if_nonfinite(nonfinite: torch.Tensor, step: int, ckpt_path: Path, saved_step: int) -> None:
    if float(all_reduce_mean(nonfinite)) > 0:
        kept = f"the last good checkpoint {ckpt_path} (step {saved_step}) is kept" if saved_step else \
            "no checkpoint had been written yet"
        raise NonFiniteLossError(f"the loss became NaN/inf by step {step}; stopped, {kept}. Lower --lr, "
                                 "use --amp bf16 or none, or set --clip-grad")


def _checkpoint_state(cfg: TrainConfig, engine: Engine, step: int, steps_per_epoch: int) -> dict:
    epoch, batch = divmod(step, steps_per_epoch)
    return {
        "format": CHECKPOINT_FORMAT, "version": 1, "arch": cfg.model.arch, "config": cfg.to_dict(),
        "step": step, "epoch": epoch, "batch": batch,
        "model": engine.moco.state_dict(), "optimizer": engine.optimizer.state_dict(),
        "scaler": engine.scaler.state_dict(), "rng": rng_state(),
    }


def _read_resume(cfg: TrainConfig, out: Path) -> tuple[Path, dict] | None:
    """(path, state) of the checkpoint to resume from, if one is named or present in `out`,
    checked against the run's settings."""
    path = Path(cfg.run.resume) if cfg.run.resume else find_checkpoint(out)
    if path is None:
        return None
    state = load_checkpoint(path)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"--resume {path}: not a fastinv pretrain checkpoint (no format {CHECKPOINT_FORMAT!r}); "
                        "to start from other weights, convert them with fastinv.models.load_backbone")
    mismatches = resume_mismatches(state["config"], cfg)
    if mismatches:
        raise UsageError(f"cannot resume from {path}: settings differ ({'; '.join(mismatches)}); use the "
                         "original settings or a new --out")
    return path, state


def _restore(engine: Engine, path: Path, state: dict) -> int:
    """Load a checked checkpoint into the engine and the RNGs; return the global step to start at."""
    engine.moco.load_state_dict(state["model"])
    engine.optimizer.load_state_dict(state["optimizer"])
    if state["scaler"]:
        engine.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    _log.info("resumed from %s at step %d (epoch %d, batch %d)", path, state["step"], state["epoch"], state["batch"])
    return int(state["step"])


@dataclass(frozen=True)
class _KnnSets:
    """Clean images and labels the kNN monitor embeds; no held-out part means leave-one-out."""

    reference: tuple[torch.Tensor, torch.Tensor]
    held_out: tuple[torch.Tensor, torch.Tensor] | None


def _knn_sets(cfg: TrainConfig) -> _KnnSets:
    train_root = Path(cfg.run.knn_train or cfg.data.root)
    test_root = cfg.run.knn_test
    if test_root is None:
        sibling = train_root.parent / "testset"
        if train_root.name != "trainset" or not sibling.is_dir():
            raise UsageError("--knn-every needs --knn-test DIR, a held-out ImageFolder (found no testset/ beside "
                             f"{train_root})")
        test_root = sibling
    reference = clean_images(train_root, cfg.data.image_size)
    if Path(test_root).resolve() == train_root.resolve():
        if reference[0].shape[0] < 2:
            raise UsageError(f"--knn-test {test_root}: leave-one-out kNN (the same folder as --knn-train) needs at "
                             f"least 2 decodable images, found {reference[0].shape[0]}")
        return _KnnSets(reference, None)
    return _KnnSets(reference, clean_images(test_root, cfg.data.image_size))


def _knn_accuracy(engine: Engine, sets: _KnnSets, cfg: TrainConfig) -> float:
    parts = [sets.reference] if sets.held_out is None else [sets.reference, sets.held_out]
    with _without_head(engine.moco.encoder_q) as backbone:
        extractor = FeatureExtractor(backbone, engine.device, amp=cfg.run.amp, channels_last=cfg.run.channels_last,
                                     batch_size=256)
        feats = [F.normalize(extractor.extract([images]), dim=1) for images, _ in parts]
    if sets.held_out is None:
        accuracy = knn_leave_one_out(feats[0], sets.reference[1], k=cfg.run.knn_k).top1
    else:
        accuracy = knn_classify(feats[0], sets.reference[1], feats[1], sets.held_out[1], k=cfg.run.knn_k).top1
    if not math.isfinite(accuracy):
        raise NonFiniteLossError("kNN features became NaN/inf; the run has diverged")
    return accuracy


@contextlib.contextmanager
def _without_head(encoder: nn.Module) -> Iterator[nn.Module]:
    """The encoder without its projection head for the block; head and train/eval mode restored after."""
    head, training = encoder.fc, encoder.training
    encoder.fc = nn.Identity()
    try:
        yield encoder
    finally:
        encoder.fc = head
        encoder.train(training)
