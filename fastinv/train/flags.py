"""The command-line flags of a MoCo-v2 pre-training configuration (`fastinv pretrain`,
`fastinv profile train`): declaring them, reading a TrainConfig back, and naming them in errors.

FLAGS maps each TrainConfig field ("part.name") to its flag; a flag's argparse dest is its name
without the dashes, so `config_from_args` reads every field whose flag was declared.
"""
import argparse
import re
from collections.abc import Iterator
from contextlib import contextmanager

from fastinv.devices import AMP_MODES, DEVICE_CHOICES
from fastinv.errors import UsageError
from fastinv.train.config import BN_MODES, LOADERS, QUEUE_INITS, ConfigError, DataConfig, ModelConfig, \
    MoCoConfig, OptimConfig, RunConfig, TrainConfig

FLAGS: dict[str, str] = {
    "data.root": "--data", "data.recipe": "--recipe", "data.loader": "--loader", "data.image_size": "--image-size",
    "data.batch_size": "--batch-size", "data.workers": "--workers",
    "model.arch": "--arch", "model.head_hidden": "--head-hidden", "model.head_dim": "--head-dim", "model.bn": "--bn",
    "model.bn_splits": "--bn-splits",
    "moco.K": "--queue-size", "moco.m": "--momentum", "moco.T": "--temperature", "moco.queue_init": "--queue-init",
    "moco.symmetric": "--symmetric",
    "optim.epochs": "--epochs", "optim.lr": "--lr", "optim.weight_decay": "--weight-decay",
    "optim.momentum": "--sgd-momentum", "optim.warmup_epochs": "--warmup-epochs", "optim.clip_grad": "--clip-grad",
    "run.out": "--out", "run.resume": "--resume", "run.device": "--device", "run.amp": "--amp",
    "run.channels_last": "--channels-last", "run.compile": "--compile", "run.seed": "--seed",
    "run.ckpt_every": "--ckpt-every", "run.log_every": "--log-every", "run.knn_every": "--knn-every",
    "run.knn_train": "--knn-train", "run.knn_test": "--knn-test", "run.knn_k": "--knn-k",
    "run.tensorboard": "--tensorboard", "run.progress": "--progress", "run.max_steps": "--max-steps",
    "run.deterministic": "--deterministic",
}
_FIELD = re.compile(r"\b(?:data|model|moco|optim|run)\.\w+\b")


def add_training_arguments(parser: argparse.ArgumentParser, *, whole_run: bool = True) -> None:
    """Declare the flags of a training step: data, model, MoCo, optimiser, device and precision
    (defaults: the MoCo-v2 reference settings). With `whole_run` also those of a whole run:
    output folder, resume, checkpoints, logs, the kNN monitor and an early stop."""
    d, m, q, o, r = DataConfig(root=""), ModelConfig(), MoCoConfig(), OptimConfig(), RunConfig(out="")
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, help="ImageFolder of training images (e.g. WORLD/trainset), or a "
                      ".beton file with --loader ffcv")
    data.add_argument("--recipe", default=d.recipe, help="augmentations: default, spatial, appearance, or a "
                      ".yaml/.json recipe file; the paper compares the three presets")
    data.add_argument("--loader", choices=LOADERS, default=d.loader, help="decode/augment backend; torch always "
                      "works, dali/ffcv are faster when installed (same recipe semantics)")
    data.add_argument("--image-size", type=int, default=d.image_size, help="side of the augmented views in px; "
                      "224 as in the paper, 64 for CPU runs (cost grows with its square)")
    data.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch over all processes; the "
                      "lr scales with it (0.03 x B/256); lower it if memory runs out")
    data.add_argument("--workers", type=int, default=d.workers, help="decode processes per training process; raise "
                      "it while the logged data_wait fraction is high")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", default=m.arch, help="backbone: resnet10/18/34/50/101, optionally with a width "
                       "multiplier (resnet50x3, resnet18x0.5); resnet18 for CPU runs")
    model.add_argument("--head-hidden", type=int, default=m.head_hidden, help="hidden width of the MLP head "
                       "(default: the backbone's feature width, 2048 for resnet50; 0 = linear MoCo-v1 head)")
    model.add_argument("--head-dim", type=int, default=m.head_dim, help="embedding (output) dim of the head; 128 "
                       "in MoCo-v2 (the paper's ResNet50x3 used 384)")
    model.add_argument("--bn", choices=BN_MODES, default=m.bn, help="how BN avoids the query/key shortcut: shuffle "
                       "(across processes, the original), sync (SyncBN, CUDA), split (sub-batches + shuffled keys, "
                       "for one device), plain (no protection); auto = shuffle if distributed else split")
    model.add_argument("--bn-splits", type=int, default=m.bn_splits, help="sub-batches for --bn split; the "
                       "per-process batch must divide by it (8 mimics 8 GPUs)")
    moco = parser.add_argument_group("MoCo")
    moco.add_argument("--queue-size", type=int, default=q.K, help="K, negatives in the queue; a multiple of the "
                      "keys per step (global batch, x2 with --symmetric); keep it below the dataset size")
    moco.add_argument("--momentum", type=float, default=q.m, help="m, key-encoder momentum; 0.999 for long runs, "
                      "0.99 for short ones (few steps)")
    moco.add_argument("--temperature", type=float, default=q.T, help="T, softmax temperature; 0.2 in MoCo-v2 "
                      "(0.07 in v1)")
    moco.add_argument("--queue-init", choices=QUEUE_INITS, default=q.queue_init, help="empty: queue slots no key "
                      "has written yet stay out of the loss; random: the reference code's random unit vectors count "
                      "as negatives until overwritten (they collapse short runs on similar images)")
    moco.add_argument("--symmetric", action="store_true", help="add the loss with the views swapped (twice the "
                      "compute per step, better sample use on short schedules)")
    optim = parser.add_argument_group("optimiser")
    optim.add_argument("--epochs", type=int, default=o.epochs, help="passes over the data (200 in the paper); the "
                       "cosine schedule spans them")
    optim.add_argument("--lr", type=float, default=o.lr, help="peak learning rate (default 0.03 x batch/256); "
                       "lower it if the loss diverges")
    optim.add_argument("--weight-decay", type=float, default=o.weight_decay, help="SGD weight decay (1e-4)")
    optim.add_argument("--sgd-momentum", type=float, default=o.momentum, help="SGD momentum (0.9)")
    optim.add_argument("--warmup-epochs", type=float, default=o.warmup_epochs, help="linear lr warm-up before the "
                       "cosine; helps large batches (MoCo-v2 used none)")
    optim.add_argument("--clip-grad", type=float, default=o.clip_grad, help="clip the gradient norm to this "
                       "(0 = off); try 3 if fp16 runs diverge")
    run = parser.add_argument_group("run")
    if whole_run:
        run.add_argument("--out", required=True, help="output folder: checkpoint.pt, metrics.jsonl, tb/, "
                         "backbone.safetensors; a run there is resumed automatically")
        run.add_argument("--resume", default=None, help="resume from this checkpoint file (default: "
                         "OUT/checkpoint.pt when present)")
    run.add_argument("--device", default=r.device, help=f"{DEVICE_CHOICES}; under torchrun cuda (and auto on a "
                     "CUDA machine) means cuda:LOCAL_RANK")
    run.add_argument("--amp", choices=AMP_MODES, default=r.amp, help="autocast precision; bf16 is fastest on recent "
                     "GPUs, fp16 uses a GradScaler, none is fp32; auto = bf16 where the device runs it natively (CUDA, "
                     "CPUs with AVX-512 BF16 or AMX), else none")
    run.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=r.channels_last,
                     help="NHWC memory format; usually faster for convolutions on CPU and tensor-core GPUs")
    run.add_argument("--compile", action="store_true", help="torch.compile the encoders; pays off on long GPU runs "
                     "(compiling takes minutes)")
    run.add_argument("--seed", type=int, default=r.seed, help="seed of the model init, data order and augmentations")
    run.add_argument("--deterministic", action="store_true", help="deterministic kernels, slower: torch's "
                     "deterministic algorithms, cuDNN without autotuning, CUBLAS_WORKSPACE_CONFIG=:4096:8 (all "
                     "restored after the run); resumed runs then match uninterrupted ones bit for bit on the same "
                     "machine. Without it, CUDA runs let cuDNN autotune its kernels")
    if not whole_run:
        return
    run.add_argument("--ckpt-every", type=int, default=r.ckpt_every, help="checkpoint every N steps (and at every "
                     "epoch end); lower it on preemptible machines")
    run.add_argument("--log-every", type=int, default=r.log_every, help="log loss, lr, images/s every N steps (each "
                     "log synchronises the device once)")
    run.add_argument("--knn-every", type=int, default=r.knn_every, help="kNN top-1 on held-out images every N "
                     "epochs (0 = off); costs one pass over both sets")
    run.add_argument("--knn-train", default=None, help="ImageFolder of kNN reference images (default: --data)")
    run.add_argument("--knn-test", default=None, help="held-out ImageFolder for kNN (default: testset/ beside a "
                     "trainset/ --data); the same folder as --knn-train scores each image by its neighbours among "
                     "the others (leave-one-out), e.g. WORLD/groups/pose: find the same object under another pose")
    run.add_argument("--knn-k", type=int, default=r.knn_k, help="neighbours that vote in the kNN monitor (20)")
    run.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=r.tensorboard,
                     help="also write TensorBoard scalars to OUT/tb")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=r.progress,
                     help="show a progress bar")
    run.add_argument("--max-steps", type=int, default=None, help="stop after this many global steps (checkpoint "
                     "written; rerun to continue); for time-boxed jobs")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the declared flags describe; a field whose flag was not declared keeps its
    default (run.out: "")."""
    given = vars(args)
    parts: dict[str, dict] = {"data": {}, "model": {}, "moco": {}, "optim": {}, "run": {"out": ""}}
    for path, flag in FLAGS.items():
        dest = flag[2:].replace("-", "_")
        if dest in given:
            part, name = path.split(".")
            parts[part][name] = given[dest]
    return TrainConfig(data=DataConfig(**parts["data"]), run=RunConfig(**parts["run"]),
                       model=ModelConfig(**parts["model"]), moco=MoCoConfig(**parts["moco"]),
                       optim=OptimConfig(**parts["optim"]))


def in_flag_terms(message: str) -> str:
    """`message` with each TrainConfig field it names ("data.batch_size") replaced by its flag
    ("--batch-size")."""
    return _FIELD.sub(lambda match: FLAGS.get(match.group(0), match.group(0)), message)


@contextmanager
def errors_in_flag_terms() -> Iterator[None]:
    """Re-raise a ConfigError of the enclosed code as a UsageError that names flags, not fields."""
    try:
        yield
    except ConfigError as exc:
        raise UsageError(in_flag_terms(str(exc))) from None
