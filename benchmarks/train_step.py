"""Time the MoCo-v2 training step: fp32 vs AMP (bf16), NCHW vs channels_last, eager vs
torch.compile, on whatever device is present, then split BN (the single-device default) against
plain BN in alternating rounds, then where the step's time goes (train_step with a stage timer).
Prints a table with ratios to the fp32 / NCHW / eager baseline, the split / plain ratio and the
stage split. CPU default: resnet18 at 64 px, batch 32; --quick runs fewer steps and skips compile.
On a CPU whose oneDNN has no bf16 kernels the bf16 variants are emulated and take tens of times
longer than float32; they are skipped there (with a line saying so) unless --emulated-bf16.

    python benchmarks/train_step.py [--device cuda] [--arch resnet50 --image-size 224 --batch 64] [--quick]
"""
import argparse
from dataclasses import replace

import torch

from fastinv.devices import kernel_settings, native_bf16, parse_device
from fastinv.profiling.timing import StageTimer, time_call
from fastinv.train.config import DataConfig, ModelConfig, MoCoConfig, OptimConfig, RunConfig, TrainConfig
from fastinv.train.distributed import DistInfo
from fastinv.train.step import Engine, build_engine, train_step


def step_config(arch: str, image_size: int, batch: int, bn_splits: int, device: str, queue: int,
                head_hidden: int | None = 512) -> TrainConfig:
    """A MoCo-v2 step of `arch` on `batch` views of `image_size` px with split BN (fp32, NCHW, eager:
    vary amp / channels_last / compile / bn with dataclasses.replace); head_hidden None is
    MoCo-v2's (the backbone's width)."""
    return TrainConfig(
        data=DataConfig(root="-", image_size=image_size, batch_size=batch),
        model=ModelConfig(arch=arch, head_hidden=head_hidden, head_dim=128, bn="split", bn_splits=bn_splits),
        moco=MoCoConfig(K=queue, m=0.99),
        optim=OptimConfig(epochs=1),
        run=RunConfig(out="-", device=device, amp="none", channels_last=False),
    )


def _engine_and_views(cfg: TrainConfig, device: torch.device, steps: int) -> tuple[Engine, list[torch.Tensor]]:
    """A seeded engine for `steps` steps and two fixed seeded random views in the run's memory format."""
    engine = build_engine(cfg, DistInfo(0, 1, 0, device), steps_per_epoch=steps)
    fmt = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    shape = (cfg.data.batch_size, 3, cfg.data.image_size, cfg.data.image_size)
    return engine, [torch.randn(shape, generator=gen).to(device).contiguous(memory_format=fmt) for _ in range(2)]


def time_step(cfg: TrainConfig, device: torch.device, warmup: int, steps: int) -> tuple[float, float]:
    """(median seconds per train_step, the last step's loss) on fixed seeded random views, device
    synchronised around each step, under the kernel settings of a training run."""
    with kernel_settings(device, cfg.run.deterministic):
        engine, views = _engine_and_views(cfg, device, warmup + steps)
        times, loss = [], None
        for step in range(warmup + steps):
            loss, seconds = time_call(lambda: train_step(engine, views[0], views[1], step), device)
            if step >= warmup:
                times.append(seconds)
    return sorted(times)[len(times) // 2], float(loss)


def stage_split(cfg: TrainConfig, device: torch.device, warmup: int, steps: int) -> dict[str, float]:
    """Milliseconds per call of each stage of train_step (fastinv.train.step.STEP_STAGES), timed
    with a StageTimer over `steps` steps after `warmup` untimed ones."""
    with kernel_settings(device, cfg.run.deterministic):
        engine, views = _engine_and_views(cfg, device, warmup + steps)
        timer = StageTimer(device)
        for step in range(warmup + steps):
            train_step(engine, views[0], views[1], step, timer if step >= warmup else None)
        totals = timer.totals()
    return {name: 1e3 * seconds / calls for name, (seconds, calls) in totals.items()}


def split_vs_plain(cfg: TrainConfig, device: torch.device, warmup: int, steps: int, rounds: int
                   ) -> tuple[float, float]:
    """Median seconds per step with split BN and with plain BN, measured in `rounds` alternating
    rounds so that both see the same load on a shared machine."""
    split, plain = [], []
    for _ in range(rounds):
        split.append(time_step(cfg, device, warmup, steps)[0])
        plain.append(time_step(replace(cfg, model=replace(cfg.model, bn="plain")), device, warmup, steps)[0])
    return sorted(split)[len(split) // 2], sorted(plain)[len(plain) // 2]


def main() -> None:
    """Run every variant and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else cpu), cpu, cuda or cuda:N")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bn-splits", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the split / plain BN comparison")
    parser.add_argument("--quick", action="store_true", help="3 timed steps, no compile variants")
    parser.add_argument("--emulated-bf16", action="store_true",
                        help="time the bf16 variants even where bf16 is emulated (a CPU without bf16 kernels)")
    args = parser.parse_args()
    device = parse_device(args.device)
    steps, warmup = (3, 1) if args.quick else (args.steps, 3)
    base = step_config(args.arch, args.image_size, args.batch, args.bn_splits, str(device), args.batch * 32)
    variants = [("fp32 NCHW eager (baseline)", "none", False, False), ("fp32 channels_last", "none", True, False),
                ("bf16 NCHW", "bf16", False, False), ("bf16 channels_last", "bf16", True, False)]
    if not args.quick:
        variants += [("fp32 channels_last compile", "none", True, True), ("bf16 channels_last compile", "bf16", True, True)]
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
          f"{torch.get_num_threads()} threads), {args.arch} at {args.image_size} px, batch {args.batch}, "
          f"median of {steps} steps after {warmup} warm-up")
    print(f"| {'variant':30} | ms/step | img/s | speed-up |\n|{'-' * 32}|---------|-------|----------|")
    skip_bf16 = not (native_bf16(device) or args.emulated_bf16)
    if skip_bf16:
        variants = [v for v in variants if v[1] != "bf16"]
    baseline = None
    for name, amp, channels_last, compiled in variants:
        cfg = replace(base, run=replace(base.run, amp=amp, channels_last=channels_last, compile=compiled))
        seconds = time_step(cfg, device, warmup + (2 if compiled else 0), steps)[0]
        baseline = baseline or seconds
        print(f"| {name:30} | {seconds * 1e3:7.1f} | {args.batch / seconds:5.0f} | {baseline / seconds:7.2f}x |",
              flush=True)
    if skip_bf16:
        print("bf16 variants skipped: this CPU has no native bf16 kernels (--emulated-bf16 times them anyway)")
    amp = "bf16" if device.type == "cuda" else "none"
    cfg = replace(base, run=replace(base.run, amp=amp, channels_last=True))
    split, plain = split_vs_plain(cfg, device, warmup, steps, args.rounds)
    print(f"\nsplit BN ({args.bn_splits} sub-batches) vs plain BN, {amp} channels_last, median of {args.rounds} "
          f"alternating rounds")
    print(f"| {'BN':30} | ms/step | img/s |\n|{'-' * 32}|---------|-------|")
    for name, seconds in ((f"split ({args.bn_splits})", split), ("plain", plain)):
        print(f"| {name:30} | {seconds * 1e3:7.1f} | {args.batch / seconds:5.0f} |")
    print(f"split / plain step time: {split / plain:.2f}x")
    stages = stage_split(cfg, device, warmup, steps)
    print(f"\nstage split of the {amp} channels_last step (split BN), mean of {steps} steps")
    print(f"| {'stage':30} | ms/step | share |\n|{'-' * 32}|---------|-------|")
    for name, ms in stages.items():
        print(f"| {name:30} | {ms:7.1f} | {100 * ms / sum(stages.values()):4.0f}% |")


if __name__ == "__main__":
    main()
