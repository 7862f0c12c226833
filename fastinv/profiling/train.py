"""`fastinv profile train`: the MoCo-v2 step of a pre-training configuration on its real loader,
end to end and then stage by stage (fastinv.train.step.train_step with a StageTimer)."""
import time
from collections.abc import Iterator

import torch

from fastinv.devices import kernel_settings, parse_device
from fastinv.errors import UsageError
from fastinv.profiling.report import ProfileReport, StageRow
from fastinv.profiling.timing import StageTimer, synchronize
from fastinv.train.config import TrainConfig

TRAIN_HOW = {
    "data_wait": "host wait for the next batch from the real loader (perf_counter)",
    "h2d": "views to --device (non_blocking, memory format of the run), as timed_batches does",
    "forward_query": "query encoder on the view(s) under autocast",
    "momentum_update": "key encoder <- m * key encoder + (1 - m) * query encoder",
    "forward_keys_loss": "key encoder on the shuffled view(s) under autocast, then the float32 InfoNCE loss",
    "backward": "zero_grad + (scaled) loss.backward()",
    "optimizer": "unscale/clip when set, fused SGD step, GradScaler update",
    "enqueue": "write the step's keys over the oldest queue entries",
}


def _endless(loader) -> Iterator:
    """The loader's batches epoch after epoch."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def _time_steps(cfg: TrainConfig, device: torch.device, steps: int, warmup: int):
    """(engine, seconds of `steps` untimed steps after `warmup` ones, the StageTimer of `steps`
    more steps timed stage by stage)."""
    from fastinv.train.data import build_pretrain_loader
    from fastinv.train.distributed import DistInfo
    from fastinv.train.step import build_engine, train_step

    dist = DistInfo(0, 1, 0, device)
    loader = build_pretrain_loader(cfg, dist)
    if len(loader) == 0:
        raise UsageError(f"--data {cfg.data.root}: fewer images than --batch-size {cfg.data.batch_size}; lower it")
    engine = build_engine(cfg, dist, len(loader))
    fmt = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    batches = _endless(loader)
    timer = StageTimer(device)

    def next_views() -> tuple[torch.Tensor, torch.Tensor]:
        begin = time.perf_counter()
        batch = next(batches)
        timer.add("data_wait", time.perf_counter() - begin)
        with timer.stage("h2d"):
            return tuple(v.to(device, non_blocking=True, memory_format=fmt) for v in (batch.view1, batch.view2))

    def run(first: int, last: int, step_timer: StageTimer | None) -> None:
        for step in range(first, last):
            train_step(engine, *next_views(), step % len(engine.lr), step_timer)

    run(0, warmup, None)
    synchronize(device)
    begin = time.perf_counter()
    run(warmup, warmup + steps, None)
    synchronize(device)
    end_to_end = time.perf_counter() - begin
    timer.reset()
    run(warmup + steps, warmup + 2 * steps, timer)
    return engine, end_to_end, timer


def profile_train(cfg: TrainConfig, steps: int, warmup: int) -> ProfileReport:
    """Validate `cfg` (one process), then time `steps` training steps on its loader after `warmup`
    untimed ones, end to end, and `steps` more stage by stage, under the run's kernel settings."""
    from fastinv.models import parse_arch
    from fastinv.paths import existing_dir

    cfg.validate(1)
    parse_arch(cfg.model.arch)
    if not cfg.data.root.endswith(".beton"):
        existing_dir(cfg.data.root)
    device = parse_device(cfg.run.device)
    with kernel_settings(device, cfg.run.deterministic):  # the settings a training run has
        engine, end_to_end, timer = _time_steps(cfg, device, steps, warmup)
    settings = {"arch": cfg.model.arch, "loader": cfg.data.loader, "recipe": cfg.data.recipe,
                "image_size": cfg.data.image_size, "batch_size": cfg.data.batch_size, "workers": cfg.data.workers,
                "amp": str(engine.amp_dtype).replace("torch.", "") if engine.amp_dtype else "none",
                "channels_last": cfg.run.channels_last, "compile": cfg.run.compile, "bn": cfg.bn_mode(1),
                "symmetric": cfg.moco.symmetric, "queue_size": cfg.moco.K, "steps": steps, "warmup": warmup}
    report = ProfileReport("train", str(device), settings)
    report.stages.append(StageRow("train_step", "end_to_end", end_to_end, steps,
                                  "the real loader + timed_batches-style transfer + fastinv.train.step.train_step, "
                                  "wall time, device synchronised at the end"))
    report.add_stages(timer, "step", TRAIN_HOW)
    report.rates["images_per_s"] = steps * cfg.data.batch_size / end_to_end
    report.rates["images_per_s_instrumented"] = steps * cfg.data.batch_size / report.group_seconds("step")
    report.notes.append("the stage split comes from the same train_step run with a stage timer (each stage "
                        "boundary is a CUDA event on GPU, so queued work is not overlapped across stages the way "
                        "the untimed step overlaps it)")
    return report
