"""Time the MoCo-v2 training step: fp32 vs AMP (bf16), NCHW vs channels_last, eager vs
torch.compile, on whatever device is present. Prints a table with ratios to the fp32 / NCHW /
eager baseline. CPU default: resnet18 at 64 px, batch 32; --quick runs fewer steps and skips
compile.

    python benchmarks/train_step.py [--device cuda] [--arch resnet50 --image-size 224 --batch 64] [--quick]
"""
import argparse
import time
from dataclasses import replace

import torch

from fastinv.train.config import DataConfig, ModelConfig, MoCoConfig, OptimConfig, RunConfig, TrainConfig
from fastinv.train.distributed import DistInfo
from fastinv.train.step import build_engine, train_step


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(root="-", image_size=args.image_size, batch_size=args.batch),
        model=ModelConfig(arch=args.arch, head_hidden=512, head_dim=128, bn="split", bn_splits=args.bn_splits),
        moco=MoCoConfig(K=args.batch * 32, m=0.99),
        optim=OptimConfig(epochs=1),
        run=RunConfig(out="-", device=args.device),
    )


def time_step(cfg: TrainConfig, device: torch.device, warmup: int, steps: int) -> float:
    """Median seconds per train_step on random views (device synchronised around each step)."""
    engine = build_engine(cfg, DistInfo(0, 1, 0, device), steps_per_epoch=warmup + steps)
    fmt = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (cfg.data.batch_size, 3, cfg.data.image_size, cfg.data.image_size)
    views = [torch.randn(shape, device=device, generator=gen).contiguous(memory_format=fmt) for _ in range(2)]
    times = []
    for step in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        train_step(engine, views[0], views[1], step)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    """Run every variant and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bn-splits", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 timed steps, no compile variants")
    args = parser.parse_args()
    device = torch.device(args.device)
    steps, warmup = (3, 1) if args.quick else (args.steps, 3)
    base = _config(args)
    variants = [("fp32 NCHW eager (baseline)", "none", False, False), ("fp32 channels_last", "none", True, False),
                ("bf16 NCHW", "bf16", False, False), ("bf16 channels_last", "bf16", True, False)]
    if not args.quick:
        variants += [("fp32 channels_last compile", "none", True, True), ("bf16 channels_last compile", "bf16", True, True)]
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
          f"{torch.get_num_threads()} threads), {args.arch} at {args.image_size} px, batch {args.batch}, "
          f"median of {steps} steps after {warmup} warm-up")
    print(f"| {'variant':30} | ms/step | img/s | speed-up |\n|{'-' * 32}|---------|-------|----------|")
    baseline = None
    for name, amp, channels_last, compiled in variants:
        cfg = replace(base, run=replace(base.run, amp=amp, channels_last=channels_last, compile=compiled))
        seconds = time_step(cfg, device, warmup + (2 if compiled else 0), steps)
        baseline = baseline or seconds
        print(f"| {name:30} | {seconds * 1e3:7.1f} | {args.batch / seconds:5.0f} | {baseline / seconds:7.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
