"""MoCo-v2 trainer: schedule, config checks, MoCo parts, the AMP step, exact resume, NaN stop."""
import math
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastinv.checkpoint import load_checkpoint
from fastinv.errors import UsageError
from fastinv.models import build_resnet, load_backbone
from fastinv.profiling.timing import StageTimer
from fastinv.train.config import ConfigError, DataConfig, ModelConfig, MoCoConfig, OptimConfig, RunConfig, TrainConfig
from fastinv.train.distributed import DistInfo
from fastinv.train.loop import train
from fastinv.train.moco import MoCo
from fastinv.train.monitor import NonFiniteLossError, read_metrics
from fastinv.train.schedule import cosine_schedule
from fastinv.train.step import STEP_STAGES, build_engine, train_step
from fastinv.world.config import WorldConfig
from fastinv.world.generate import generate_world

CPU = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def tiny_config(root, out, **run) -> TrainConfig:
    """A seconds-long run on the 32-px world: 84 images, batch 16 -> 5 steps per epoch."""
    return TrainConfig(
        data=DataConfig(root=str(root), image_size=32, batch_size=16, workers=0),
        model=ModelConfig(arch="resnet10x0.25", head_hidden=32, head_dim=16, bn_splits=4),
        moco=MoCoConfig(K=64, m=0.99, T=0.2),
        optim=OptimConfig(epochs=2, lr=0.05),
        run=RunConfig(out=str(out), ckpt_every=3, log_every=2, tensorboard=False, progress=False,
                      deterministic=True, **run),
    )


def test_cosine_schedule_warms_up_then_decays_to_final():
    lr = cosine_schedule(1.0, 0.1, epochs=4, steps_per_epoch=10, warmup_epochs=1)
    assert lr.shape == (40,) and lr[0] == 0.0 and lr[10] == pytest.approx(1.0)
    assert np.all(np.diff(lr[:11]) > 0) and np.all(np.diff(lr[10:]) < 0) and lr[-1] > 0.1
    assert cosine_schedule(0.5, 0.0, 1, 4)[2] == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi / 2)))


@pytest.mark.parametrize("change,world,match", [
    ({"moco": MoCoConfig(K=100)}, 1, "moco.K 100 must be a multiple of the keys"),
    ({"moco": MoCoConfig(K=384, symmetric=True)}, 1, "x 2 views"),
    ({"model": ModelConfig(bn="shuffle")}, 1, "model.bn shuffle needs several processes.*model.bn split"),
    ({"model": ModelConfig(bn="split", bn_splits=5)}, 1, "multiple of model.bn_splits 5"),
    ({"model": ModelConfig(bn="sync"), "run": RunConfig(out="-", device="cpu")}, 2, "model.bn sync needs CUDA"),
    ({"run": RunConfig(out="-", device="tpu")}, 1, "run.device 'tpu': unknown device"),
    ({"moco": MoCoConfig(K=256, m=1.0)}, 1, r"moco.m must be in \[0, 1\)"),
    ({"data": DataConfig(root="x", batch_size=1)}, 1, "data.batch_size must be at least 2, got 1"),
    ({"run": RunConfig(out="-", max_steps=0)}, 1, "run.max_steps must be at least 1"),
    ({}, 3, "data.batch_size 128 .* divisible"),
])
def test_config_errors_name_the_field_and_say_how_to_fix(change, world, match, tmp_path):
    cfg = replace(TrainConfig(DataConfig(root="x", batch_size=128), RunConfig(out=str(tmp_path))), **change)
    with pytest.raises(ConfigError, match=match):
        cfg.validate(world)


def test_default_config_is_the_moco_v2_reference():
    cfg = TrainConfig(DataConfig(root="x"), RunConfig(out="y"))
    cfg.validate(1)
    assert (cfg.moco.K, cfg.moco.m, cfg.moco.T, cfg.optim.base_lr(512)) == (65536, 0.999, 0.2, 0.06)
    assert cfg.bn_mode(1) == "split" and cfg.bn_mode(8) == "shuffle"


def _moco(shuffle="local", K=8, queue_init="empty") -> MoCo:
    torch.manual_seed(0)
    encoder = build_resnet("resnet10x0.25")
    return MoCo(encoder, dim=128, K=K, T=0.2, shuffle=shuffle, queue_init=queue_init)


def test_queue_wraps_and_momentum_update_is_an_ema():
    moco = _moco(K=8)
    keys = F.normalize(torch.randn(4, 128), dim=1)
    moco.enqueue(keys)
    moco.enqueue(keys * 2)
    moco.enqueue(keys * 3)
    assert moco.queue_ptr.item() == 4 and torch.allclose(moco.queue[:, :4], 3 * keys.T)
    with torch.no_grad():
        for p in moco.encoder_q.parameters():
            p.add_(1.0)
    before = [p.clone() for p in moco.encoder_k.parameters()]
    moco.momentum_update(0.9)
    for k0, k1, q in zip(before, moco.encoder_k.parameters(), moco.encoder_q.parameters()):
        torch.testing.assert_close(k1, 0.9 * k0 + 0.1 * q)


def _infonce(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ negatives], dim=1) / 0.2
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def test_contrastive_loss_is_infonce_against_the_written_queue_slots():
    moco = _moco(K=8)
    q, k = F.normalize(torch.randn(4, 128), dim=1), F.normalize(torch.randn(4, 128), dim=1)
    assert moco.contrastive_loss(q, k).item() == 0.0  # no key written yet: nothing to contrast with
    moco.enqueue(F.normalize(torch.randn(4, 128), dim=1))
    torch.testing.assert_close(moco.contrastive_loss(q, k), _infonce(q, k, moco.queue[:, :4]))
    moco.enqueue(F.normalize(torch.randn(4, 128), dim=1))
    moco.enqueue(F.normalize(torch.randn(4, 128), dim=1))
    assert moco.queue_filled.item() == 8
    torch.testing.assert_close(moco.contrastive_loss(q, k), _infonce(q, k, moco.queue))


def test_random_queue_init_counts_every_slot_from_the_start():
    moco = _moco(K=8, queue_init="random")
    q, k = F.normalize(torch.randn(4, 128), dim=1), F.normalize(torch.randn(4, 128), dim=1)
    torch.testing.assert_close(moco.contrastive_loss(q, k), _infonce(q, k, moco.queue))


def test_shuffled_keys_come_back_in_input_order():
    moco = _moco("local").eval()
    x = torch.randn(8, 3, 32, 32)
    shuffled, gathered = moco.encode_keys([x], step=3)
    plain = F.normalize(moco.encoder_k(x), dim=1)
    torch.testing.assert_close(shuffled[0], plain)
    torch.testing.assert_close(gathered[0], plain)


@pytest.mark.parametrize("amp,symmetric,clip", [("bf16", False, 0.0), ("fp16", True, 1.0), ("none", False, 0.0)])
def test_step_runs_under_each_precision(amp, symmetric, clip, tmp_path):
    cfg = tiny_config("x", tmp_path)
    cfg = replace(cfg, moco=replace(cfg.moco, symmetric=symmetric), optim=replace(cfg.optim, clip_grad=clip),
                  run=replace(cfg.run, amp=amp, deterministic=False))
    engine = build_engine(cfg, CPU, steps_per_epoch=4)
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    before = engine.moco.encoder_q.conv1.weight.clone()
    losses = [train_step(engine, x, x.flip(3), s) for s in range(2)]
    assert all(torch.isfinite(v) for v in losses)
    assert engine.moco.queue_ptr.item() == (2 * 16 * (2 if symmetric else 1)) % 64
    assert not torch.equal(before, engine.moco.encoder_q.conv1.weight)
    assert engine.scaler.is_enabled() == (amp == "fp16")


@pytest.mark.parametrize("amp,symmetric,clip", [("bf16", True, 1.0), ("none", False, 0.0)])
def test_timed_step_gives_the_same_loss_and_weights_as_the_untimed_step(amp, symmetric, clip, tmp_path):
    cfg = tiny_config("x", tmp_path)
    cfg = replace(cfg, moco=replace(cfg.moco, symmetric=symmetric), optim=replace(cfg.optim, clip_grad=clip),
                  run=replace(cfg.run, amp=amp))
    views = torch.randn(2, 16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    untimed, timed = build_engine(cfg, CPU, steps_per_epoch=3), build_engine(cfg, CPU, steps_per_epoch=3)
    timer = StageTimer("cpu")
    for step in range(3):
        assert torch.equal(train_step(untimed, views[0], views[1], step),
                           train_step(timed, views[0], views[1], step, timer))
    for (name, a), b in zip(untimed.moco.state_dict().items(), timed.moco.state_dict().values()):
        assert torch.equal(a, b), name
    totals = timer.totals()
    assert tuple(totals) == STEP_STAGES and all(calls == 3 for _, calls in totals.values())


def _short_run(tmp_path, recipe: str, queue_init: str = "empty", **run) -> list[dict]:
    """Seconds of pre-training on a 32-px world of 280 images (8 steps per epoch; the K=128 queue
    is full after 4) with 8 pose groups of 6 images; returns the logged metrics."""
    world = tmp_path / "world"
    generate_world(WorldConfig(size=32, per_class=40, test_per_class=4, pose_groups=8, light_groups=2,
                               group_size=6, workers=1), world, progress=False)
    cfg = TrainConfig(
        data=DataConfig(root=str(world / "trainset"), image_size=32, batch_size=32, workers=0, recipe=recipe),
        model=ModelConfig(arch="resnet10x0.25", head_hidden=64, head_dim=32, bn_splits=2),
        moco=MoCoConfig(K=128, m=0.99, T=0.2, queue_init=queue_init),
        optim=OptimConfig(epochs=6, lr=0.06),
        run=RunConfig(out=str(tmp_path / "run"), log_every=4, tensorboard=False, progress=False, deterministic=True,
                      **run))
    train(cfg)
    return read_metrics(tmp_path / "run")


@pytest.mark.parametrize("queue_init,learns", [("empty", True), ("random", False)])
def test_a_short_run_lowers_the_loss_unless_fake_negatives_collapse_it(queue_init, learns, tmp_path):
    # With the reference's random initial queue the embedding collapses in the steps before the
    # queue has filled, and the loss stays near ln(K+1).
    losses = [row["loss"] for row in _short_run(tmp_path, "appearance", queue_init) if "loss" in row]
    full_queue, final = losses[1], float(np.mean(losses[-3:]))
    assert (full_queue - final > 0.25 and final < math.log(129) - 0.4) == learns, losses


@pytest.mark.parametrize("recipe", ["default", "spatial"])
def test_a_short_run_finds_objects_under_another_pose_better_than_random_init(recipe, tmp_path):
    # Leave-one-out kNN on the pose groups: is the nearest image the same object in another pose?
    pose_groups = str(tmp_path / "world" / "groups" / "pose")
    rows = _short_run(tmp_path, recipe, knn_every=6, knn_train=pose_groups, knn_test=pose_groups, knn_k=5)
    random_init, trained = [row["knn_top1"] for row in rows if "knn_top1" in row]
    assert trained > random_init + 0.1, (random_init, trained)


def test_knn_monitor_on_one_folder_never_counts_an_image_as_its_own_neighbour(tiny_world, tmp_path):
    # One image per class: leave-one-out kNN must miss every one (counting the image itself would hit all).
    folder = tmp_path / "one_each"
    for shape in ("arrow", "ell", "tee"):
        (folder / shape).mkdir(parents=True)
        shutil.copy(tiny_world / "trainset" / shape / "000000.jpg", folder / shape / "a.jpg")
    cfg = tiny_config(tiny_world / "trainset", tmp_path / "run", knn_every=1, knn_train=str(folder),
                      knn_test=str(folder), knn_k=1, max_steps=1)
    train(cfg)
    assert [row["knn_top1"] for row in read_metrics(tmp_path / "run") if "knn_top1" in row] == [0.0]


def test_resumed_run_ends_with_the_same_weights(tiny_world, tmp_path):
    root = tiny_world / "trainset"
    full = train(tiny_config(root, tmp_path / "full"))
    assert full.step == full.total_steps == 10 and full.backbone.is_file()
    part = train(tiny_config(root, tmp_path / "part", max_steps=7))
    assert part.step == 7 and part.backbone is None
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["batch"] == 2
    resumed = train(tiny_config(root, tmp_path / "part"))
    assert resumed.step == 10
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    steps = [r["step"] for r in read_metrics(tmp_path / "part") if "loss" in r]
    assert steps == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    backbone = load_backbone(tmp_path / "full" / "checkpoint.pt")
    torch.testing.assert_close(backbone.conv1.weight, a["model"]["encoder_q.conv1.weight"])


def _kernel_flags() -> tuple:
    cudnn = torch.backends.cudnn
    return (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


def test_resume_with_other_settings_is_refused(tiny_world, tmp_path):
    before = _kernel_flags()
    train(tiny_config(tiny_world / "trainset", tmp_path, max_steps=1))  # a --deterministic run
    assert _kernel_flags() == before
    other = tiny_config(tiny_world / "trainset", tmp_path)
    with pytest.raises(UsageError, match="model.arch"):
        train(replace(other, model=replace(other.model, arch="resnet10x0.5")))
    assert _kernel_flags() == before


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_world, tmp_path):
    cfg = tiny_config(tiny_world / "trainset", tmp_path)
    cfg = replace(cfg, optim=replace(cfg.optim, lr=1e30, warmup_epochs=0.4),
                  run=replace(cfg.run, ckpt_every=1, log_every=1))
    with pytest.raises(NonFiniteLossError, match="last good checkpoint") as info:
        train(cfg)
    kept = load_checkpoint(tmp_path / "checkpoint.pt")
    assert 1 <= kept["step"] and f"step {kept['step']}" in str(info.value)
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
