"""Two CPU processes (gloo): DDP with shuffle-BN keeps ranks in sync (weights, key encoder, queue)."""
import os
import socket

import torch
import torch.multiprocessing as mp

from fastinv.checkpoint import load_checkpoint
from fastinv.train.config import DataConfig, ModelConfig, MoCoConfig, OptimConfig, RunConfig, TrainConfig
from fastinv.train.loop import train


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, cfg: TrainConfig, port: int, dump: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from fastinv.train import loop
    captured = {}
    original = loop.build_engine

    def keep(*args, **kwargs):
        captured["engine"] = original(*args, **kwargs)
        return captured["engine"]

    loop.build_engine = keep
    train(cfg)
    torch.save(captured["engine"].moco.state_dict(), f"{dump}/rank{rank}.pt")


def test_two_processes_stay_in_sync(tiny_world, tmp_path):
    cfg = TrainConfig(
        data=DataConfig(root=str(tiny_world / "trainset"), image_size=32, batch_size=16, workers=0),
        model=ModelConfig(arch="resnet10x0.25", head_hidden=32, head_dim=16, bn="shuffle"),
        moco=MoCoConfig(K=64, m=0.99),
        optim=OptimConfig(epochs=1, lr=0.05),
        run=RunConfig(out=str(tmp_path / "run"), device="cpu", tensorboard=False, progress=False, log_every=1,
                      max_steps=3),
    )
    mp.spawn(_worker, args=(cfg, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # parameters and queue; BN running statistics are local between DDP's per-forward broadcasts
    compared = [k for k in a if k in ("queue", "queue_ptr") or not ("running" in k or "num_batches" in k)]
    assert len(compared) > 20
    for key in compared:
        assert torch.equal(a[key], b[key]), key
    assert a["queue_ptr"].item() == 3 * 16 % 64
    initial = torch.nn.functional.normalize(torch.randn(16, 64, generator=torch.Generator().manual_seed(0)), dim=0)
    assert not torch.equal(a["queue"][:, :48], initial[:, :48]) and torch.equal(a["queue"][:, 48:], initial[:, 48:])
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["step"] == 3 and torch.equal(saved["model"]["queue"], a["queue"])
