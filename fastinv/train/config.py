"""Typed configuration of a MoCo-v2 pre-training run, one dataclass per part of the trainer.

Defaults are the MoCo-v2 reference settings (SPEC section 1). Each part reads only its own
dataclass; `TrainConfig` bundles them and checks the rules that involve several parts.
"""
from dataclasses import asdict, dataclass, field
from typing import Any

from fastinv.devices import AMP_MODES, parse_device
from fastinv.errors import UsageError

BN_MODES = ("auto", "shuffle", "sync", "split", "plain")
LOADERS = ("torch", "dali", "ffcv")
QUEUE_INITS = ("empty", "random")


class ConfigError(UsageError):
    """A TrainConfig value that breaks a rule; the message names fields as part.name
    (data.batch_size), which a command line can rewrite as its flags (fastinv.train.flags)."""


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are augmented and batched.

    batch_size is the global batch (all ranks together), as in the paper's lr rule."""

    root: str
    recipe: str = "default"
    loader: str = "torch"
    image_size: int = 224
    batch_size: int = 256
    workers: int = 4


@dataclass(frozen=True)
class ModelConfig:
    """Encoder architecture, projection head and batch-norm handling.

    head_hidden None = the backbone's feature width (MoCo-v2: 2048 for ResNet-50); 0 = linear
    head. bn 'auto' = shuffle-BN across ranks when distributed, split-BN on one device."""

    arch: str = "resnet50"
    head_hidden: int | None = None
    head_dim: int = 128
    bn: str = "auto"
    bn_splits: int = 8


@dataclass(frozen=True)
class MoCoConfig:
    """The contrastive objective, with the paper's names: queue length K, key-encoder momentum m,
    softmax temperature T; symmetric adds the loss with the views swapped; queue_init 'empty'
    leaves unwritten queue slots out of the loss, 'random' is the reference code's random keys."""

    K: int = 65536
    m: float = 0.999
    T: float = 0.2
    symmetric: bool = False
    queue_init: str = "empty"


@dataclass(frozen=True)
class OptimConfig:
    """SGD with a cosine schedule; lr None = 0.03 x global batch / 256 (the paper's rule)."""

    epochs: int = 200
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    clip_grad: float = 0.0

    def base_lr(self, global_batch: int) -> float:
        """The peak learning rate for `global_batch`."""
        return self.lr if self.lr is not None else 0.03 * global_batch / 256


@dataclass(frozen=True)
class RunConfig:
    """Where and how the job runs: device, precision, checkpoints and monitoring.

    device is read by fastinv.devices.parse_device ('auto': CUDA when present, else the CPU);
    ckpt_every / log_every are in steps, knn_every in epochs (0 = off); max_steps stops the run
    early after that many global steps (a checkpoint is written), e.g. for time-boxed jobs;
    deterministic runs with deterministic kernels (fastinv.devices.kernel_settings)."""

    out: str
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    ckpt_every: int = 500
    log_every: int = 20
    knn_every: int = 0
    knn_train: str | None = None
    knn_test: str | None = None
    knn_k: int = 20
    tensorboard: bool = True
    progress: bool = True
    resume: str | None = None
    max_steps: int | None = None
    deterministic: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Everything a pre-training run needs."""

    data: DataConfig
    run: RunConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    moco: MoCoConfig = field(default_factory=MoCoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self, world_size: int = 1) -> None:
        """Check values and cross-part rules for `world_size` processes; raise ConfigError naming
        the fields as written here (data.batch_size) and saying how to fix the first problem."""
        d, m, q, o, r = self.data, self.model, self.moco, self.optim, self.run
        _choice("data.loader", d.loader, LOADERS)
        _choice("run.amp", r.amp, AMP_MODES)
        _choice("model.bn", m.bn, BN_MODES)
        _choice("moco.queue_init", q.queue_init, QUEUE_INITS)
        for name, value, low in (("data.image_size", d.image_size, 16), ("data.batch_size", d.batch_size, 2),
                                 ("data.workers", d.workers, 0), ("model.head_dim", m.head_dim, 1),
                                 ("model.head_hidden", m.head_hidden, 0), ("moco.K", q.K, 1),
                                 ("optim.epochs", o.epochs, 1), ("run.ckpt_every", r.ckpt_every, 1),
                                 ("run.log_every", r.log_every, 1), ("run.knn_every", r.knn_every, 0),
                                 ("run.max_steps", r.max_steps, 1)):
            if value is not None and value < low:
                raise ConfigError(f"{name} must be at least {low}, got {value}")
        if not 0.0 <= q.m < 1.0:
            raise ConfigError(f"moco.m must be in [0, 1), got {q.m}; the paper uses 0.999 (0.99 for short runs)")
        if q.T <= 0:
            raise ConfigError(f"moco.T must be positive, got {q.T}; the paper uses 0.2")
        if o.lr is not None and o.lr <= 0:
            raise ConfigError(f"optim.lr must be positive, got {o.lr}")
        if d.batch_size % world_size:
            raise ConfigError(f"data.batch_size {d.batch_size} (global) must be divisible by the {world_size} "
                              "processes")
        per_step = d.batch_size * (2 if q.symmetric else 1)
        if q.K % per_step:
            raise ConfigError(f"moco.K {q.K} must be a multiple of the keys enqueued per step ({per_step} = "
                              f"global batch{' x 2 views (symmetric)' if q.symmetric else ''}); e.g. "
                              f"{max(per_step, q.K // per_step * per_step)}")
        try:
            device = parse_device(r.device, "run.device")
        except UsageError as exc:
            raise ConfigError(str(exc)) from None
        bn = self.bn_mode(world_size)
        if bn == "shuffle" and world_size == 1:
            raise ConfigError("model.bn shuffle needs several processes (launch with torchrun); on one device use "
                              "model.bn split, which keeps a query and its key in different BN sub-batches")
        if bn == "sync" and world_size > 1 and device.type != "cuda":
            raise ConfigError("model.bn sync needs CUDA devices (torch SyncBatchNorm); on CPU use model.bn shuffle")
        if bn == "split" and (d.batch_size // world_size) % m.bn_splits:
            raise ConfigError(f"model.bn split: the per-process batch {d.batch_size // world_size} must be a "
                              f"multiple of model.bn_splits {m.bn_splits}")

    def bn_mode(self, world_size: int) -> str:
        """The batch-norm mode in effect ('auto' resolved for `world_size` processes)."""
        if self.model.bn != "auto":
            return self.model.bn
        return "shuffle" if world_size > 1 else "split"

    def to_dict(self) -> dict[str, Any]:
        """The configuration as nested primitives (for checkpoints and logs)."""
        return asdict(self)


# Fields that must agree between a checkpoint and the run resuming from it.
RESUME_KEYS = (("model", "arch"), ("model", "head_hidden"), ("model", "head_dim"), ("moco", "K"),
               ("moco", "symmetric"), ("moco", "queue_init"), ("data", "batch_size"), ("optim", "epochs"), ("run", "seed"))


def resume_mismatches(saved: dict[str, Any], current: "TrainConfig") -> list[str]:
    """The RESUME_KEYS whose value in the checkpoint's config differs from `current`."""
    now = current.to_dict()
    return [f"{part}.{key}: checkpoint {saved.get(part, {}).get(key)!r} vs now {now[part][key]!r}"
            for part, key in RESUME_KEYS if saved.get(part, {}).get(key) != now[part][key]]


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name} {value!r}: choose one of {', '.join(valid)}")
